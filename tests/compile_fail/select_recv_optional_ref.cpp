// Must NOT compile: a receive callback taking std::optional<T>& (it cannot bind
// the optional a receive delivers).
// tests/CMakeLists.txt checks the static_assert says which shapes are
// accepted. With -DLEASH_POSITIVE_CONTROL the same case takes an accepted
// shape and compiles, so the test cannot pass for another reason.
#include <leash/select.hpp>
#include <optional>

int main() {
  leash::channel<int> ch(1);
#ifdef LEASH_POSITIVE_CONTROL
  leash::select(leash::on_recv(ch, [](const std::optional<int>&) {}));
#else
  leash::select(leash::on_recv(ch, [](std::optional<int>&) {}));
#endif
}
