// Must NOT compile: a receive callback taking a type the channel's values do not
// convert to (std::string on a channel<int>).
// tests/CMakeLists.txt checks the static_assert says which shapes are
// accepted. With -DLEASH_POSITIVE_CONTROL the same case takes an accepted
// shape and compiles, so the test cannot pass for another reason.
#include <leash/select.hpp>
#include <string>

int main() {
  leash::channel<int> ch(1);
#ifdef LEASH_POSITIVE_CONTROL
  leash::select(leash::on_recv(ch, [](int) {}));
#else
  leash::select(leash::on_recv(ch, [](std::string) {}));
#endif
}
