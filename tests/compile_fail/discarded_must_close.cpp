// Must NOT compile with -Werror=unused-result -Werror=unused-value: the handle
// a must_close factory returns is dropped at once. With -DLEASH_USE_VALUE the
// handle is kept and closed, and the file compiles (the positive control).
#include <leash/must_close.hpp>

struct resource {
  void close() {}
};

int main() {
#ifdef LEASH_USE_VALUE
  auto h = leash::make_must_close(resource{});
  h.close();
#else
  leash::make_must_close(resource{});
#endif
}
