// Must NOT compile with -Werror=unused-result -Werror=unused-value: a ticker
// made as a temporary dies at once (its loop is stopped before it ticks).
// With -DLEASH_USE_VALUE the same code keeps the ticker and compiles: the
// positive control that keeps this test from passing for the wrong reason.
#include <chrono>
#include <leash/ticker.hpp>

int main() {
  using namespace std::chrono_literals;
  auto f = [] {};
#ifdef LEASH_USE_VALUE
  leash::ticker t(1ms, f);
#else
  leash::ticker(1ms, f);
#endif
}
