// Must NOT compile: a timer channel case whose callback takes an int (a timer
// delivers a std::chrono::steady_clock::time_point).
// tests/CMakeLists.txt checks the static_assert says which shapes are
// accepted. With -DLEASH_POSITIVE_CONTROL the same case takes an accepted
// shape and compiles, so the test cannot pass for another reason.
#include <chrono>
#include <leash/timer_channel.hpp>

int main() {
  using namespace std::chrono_literals;
  auto timer = leash::after(1ms);
#ifdef LEASH_POSITIVE_CONTROL
  leash::select(leash::on_recv(timer, [](std::chrono::steady_clock::time_point) {}));
#else
  leash::select(leash::on_recv(timer, [](int) {}));
#endif
}
