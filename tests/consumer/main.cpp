// Built by tests/consumer/check.cmake against an installed or vendored leash.
#include <cstdio>
#include <leash.hpp>

int main() {
  const int sum = leash::run_nursery([](leash::nursery& n) {
    auto a = n.spawn([] { return 20; });
    auto b = n.spawn([] { return 22; });
    return a.get() + b.get();
  });
  std::printf("consumer ok: %d\n", sum);
  return sum == 42 ? 0 : 1;
}
