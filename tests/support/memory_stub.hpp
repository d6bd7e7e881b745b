// Test support: the server side of in-memory HTTP connections
// (leash/http/memory.hpp), written by hand as a stub: read a request head,
// answer fixed bytes, drain to the end.
#pragma once

#include <doctest/doctest.h>

#include <cstddef>
#include <leash/coro.hpp>
#include <leash/http/errors.hpp>
#include <leash/http/memory.hpp>
#include <leash/http/transport.hpp>
#include <string>
#include <string_view>

namespace memory_stub {

namespace http = leash::http;

inline constexpr std::string_view hello_response =
    "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello";

inline http::request get_request() {
  return http::request{"api.test", 80, {"GET", "/"}};
}

// Reads from `c` until a whole request head ("\r\n\r\n") arrived, or the end
// of the stream; returns what came.
inline std::string read_head(http::memory_end& c) {
  std::string got;
  char buf[64];
  while (got.find("\r\n\r\n") == std::string::npos) {
    const std::size_t n = c.read_some(buf);
    if (n == 0) break;
    got.append(buf, n);
  }
  return got;
}

// clang 14 cannot build an inline coroutine under -fsanitize=function.
LEASH_DETAIL_CORO_NO_FUNCTION_SANITIZER inline leash::coro<std::string> async_read_head(
    http::memory_end& c) {
  std::string got;
  char buf[64];
  while (got.find("\r\n\r\n") == std::string::npos) {
    const std::size_t n = co_await c.async_read_some(buf);
    if (n == 0) break;
    got.append(buf, n);
  }
  co_return got;
}

// Reads `c` to its end (or a broken stream); returns the count of bytes.
inline std::size_t drain(http::memory_end& c) {
  std::size_t total = 0;
  char buf[256];
  try {
    while (const std::size_t n = c.read_some(buf))
      total += n;
  } catch (const http::io_error&) {
  }
  return total;
}

// The errno value of the http::io_error that `f` throws, or 0 if none.
template <class F>
int io_errno(F f) {
  try {
    f();
  } catch (const http::io_error& e) {
    return e.code().value();
  }
  return 0;
}

}  // namespace memory_stub
