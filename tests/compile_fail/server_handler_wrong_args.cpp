// Must NOT compile: an HTTP server handler that takes only the request.
// tests/CMakeLists.txt checks that the server's static_assert names the
// accepted parameters. With -DLEASH_POSITIVE_CONTROL the handler takes the
// request and the writer and compiles, so the test cannot pass for another
// reason.
#include <leash/http/server.hpp>

void serve(leash::nursery& n) {
#ifdef LEASH_POSITIVE_CONTROL
  leash::http::server srv(n, [](leash::http::server_request&, leash::http::response_writer&) {});
#else
  leash::http::server srv(n, [](leash::http::server_request&) {});
#endif
}
