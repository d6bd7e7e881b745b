// Must NOT compile: a task must be callable as f() or f(std::stop_token).
// tests/CMakeLists.txt checks that the compiler says so in plain words.
#include <leash.hpp>

int main() {
  leash::run_nursery([](leash::nursery& n) { n.spawn([](int x) { return x; }); });
}
