// Must NOT compile: a receive callback taking T& (the case delivers an rvalue;
// the value would be taken off the channel and never reach the callback).
// tests/CMakeLists.txt checks the static_assert says which shapes are
// accepted. With -DLEASH_POSITIVE_CONTROL the same case takes an accepted
// shape and compiles, so the test cannot pass for another reason.
#include <leash/select.hpp>

int main() {
  leash::channel<int> ch(1);
#ifdef LEASH_POSITIVE_CONTROL
  leash::select(leash::on_recv(ch, [](int) {}));
#else
  leash::select(leash::on_recv(ch, [](int&) {}));
#endif
}
