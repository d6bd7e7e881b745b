// Must NOT compile: an HTTP server handler that returns int (neither void nor
// leash::coro<void>). tests/CMakeLists.txt checks that the server's
// static_assert names the accepted results. With -DLEASH_POSITIVE_CONTROL the
// handler is a coroutine returning leash::coro<void> and compiles, so the
// test cannot pass for another reason.
#include <leash/http/server.hpp>

void serve(leash::nursery& n) {
#ifdef LEASH_POSITIVE_CONTROL
  leash::http::server srv(
      n, [](leash::http::server_request&, leash::http::response_writer&) -> leash::coro<> {
        co_return;
      });
#else
  leash::http::server srv(
      n, [](leash::http::server_request&, leash::http::response_writer&) { return 0; });
#endif
}
