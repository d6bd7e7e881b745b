// Must NOT compile: an on_after callback taking an int (it gets nothing or the
// time point it fired at).
// tests/CMakeLists.txt checks the static_assert says which shapes are
// accepted. With -DLEASH_POSITIVE_CONTROL the same case takes an accepted
// shape and compiles, so the test cannot pass for another reason.
#include <chrono>
#include <leash/select.hpp>

int main() {
  using namespace std::chrono_literals;
#ifdef LEASH_POSITIVE_CONTROL
  leash::select(leash::on_after(1ms, [](const std::chrono::steady_clock::time_point&) {}));
#else
  leash::select(leash::on_after(1ms, [](int) {}));
#endif
}
