// Tests for leash/http/detail/request_body.hpp through the server: request
// bodies read on demand (Content-Length and chunked), the drain of an unread
// tail, Expect: 100-continue, the server's write timeout; and the request
// framing and Host rules that keep one request from smuggling another.
#include <doctest/doctest.h>

#include <atomic>
#include <chrono>
#include <future>
#include <leash/http/server.hpp>
#include <leash/http/transport.hpp>
#include <leash/nursery.hpp>
#include <optional>
#include <string>

#include "support/http_fixture.hpp"
#include "support/paced_source.hpp"

using namespace std::chrono_literals;
namespace http = leash::http;
namespace net = leash::http::detail;
using http_test::eventually;
using http_test::exchange_raw;

namespace {

// Reads from `fd` until `until` appears in what was read (or EOF, or 5 s).
std::string read_until(int fd, std::string_view until) {
  std::string out;
  char c;
  std::size_t got = 0;
  const auto deadline = leash::detail::deadline_after(5s);
  while (out.find(until) == std::string::npos &&
         net::read_some(fd, &c, 1, got, deadline, {}) == net::read_status::data) {
    out.push_back(c);
  }
  return out;
}

// Everything until EOF (or 5 s).
std::string read_to_eof(int fd) {
  std::string out;
  char buf[4096];
  std::size_t got = 0;
  const auto deadline = leash::detail::deadline_after(5s);
  while (net::read_some(fd, buf, sizeof buf, got, deadline, {}) == net::read_status::data)
    out.append(buf, got);
  return out;
}

net::socket dial(std::uint16_t port) {
  return net::dial("127.0.0.1", port, net::clock::time_point::max(), {});
}

void send(const net::socket& s, std::string_view bytes) {
  net::write_all(s.fd(), bytes, net::clock::time_point::max(), {});
}

}  // namespace

TEST_CASE("a chunked upload is read by the handler in pieces and the connection serves on") {
  leash::nursery n;
  std::atomic<int> reads{0};
  http::server srv(n, [&](http::server_request& req, http::response_writer& w) {
    if (req.method() == "POST") CHECK_FALSE(req.body_length().has_value());  // chunked: unknown
    std::string all;
    char buf[4];
    while (std::size_t got = req.body().read(std::span<char>(buf))) {
      ++reads;
      all.append(buf, got);
    }
    w.write("[" + all + "]");
  });
  const std::string reply =
      exchange_raw(srv.port(),
                   "POST /up HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
                   "5;ext=\"1\"\r\nhello\r\n2\r\n, \r\n5\r\nworld\r\n0\r\nX-Trailer: t\r\n\r\n"
                   "GET /next HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
  CHECK(reply.find("Content-Length: 14\r\n\r\n[hello, world]") != std::string::npos);
  CHECK(reads >= 3);  // 12 bytes through a 4-byte buffer
  // The second request on the same connection was answered too (body "[]").
  CHECK(reply.find("HTTP/1.1 200", reply.find("[hello, world]")) != std::string::npos);
  CHECK(reply.substr(reply.size() - 2) == "[]");
}

TEST_CASE("a 5 MiB Content-Length upload streams through the handler in bounded pieces") {
  constexpr std::size_t piece = 64 * 1024;
  constexpr std::size_t pieces = 80;  // 5 MiB
  http_test::progress received;
  std::atomic<std::size_t> largest{0};
  std::atomic<int> reads{0};
  leash::nursery n;
  http::server srv(n, [&](http::server_request& req, http::response_writer& w) {
    CHECK(req.body_length() == pieces * piece);
    std::string buf(piece, '\0');
    std::size_t total = 0;
    bool intact = true;
    while (std::size_t got = req.body().read(std::span<char>(buf.data(), buf.size()))) {
      for (std::size_t i = 0; i < got; i += 4096)
        intact = intact && buf[i] == http_test::piece_byte((total + i) / piece);
      total += got;
      ++reads;
      largest = std::max<std::size_t>(largest, got);
      received.add(got);
    }
    w.write(std::to_string(total) + (intact ? " intact" : " corrupt"));
  });
  http::transport t;
  http::request up{"127.0.0.1", srv.port(), {"PUT", "/big"}, {}};
  // The client makes piece k only after the handler got all but 8 pieces
  // before it: a server that read the whole body before the handler would
  // never see this upload end (the wait throws after 20 s).
  up.stream =
      leash::body(std::make_unique<http_test::paced_source>(pieces, piece, [&](std::size_t k) {
        if (k > 8) received.wait_for((k - 8) * piece);
      }));
  up.stream_length = pieces * piece;
  http::response r = t.round_trip(up);
  CHECK(r.status() == 200);
  CHECK(r.body.read_all(100) == std::to_string(pieces * piece) + " intact");
  CHECK(reads > 1);
  CHECK(largest <= piece);
}

TEST_CASE("read_all over the limit escaping the handler is answered 413") {
  leash::nursery n;
  http::server srv(
      n, [](http::server_request& req, http::response_writer& w) { w.write(req.read_body()); },
      {.max_body_bytes = 10});
  http::transport t;
  CHECK(t.round_trip({"127.0.0.1", srv.port(), {"POST", "/"}, "0123456789"}).body.read_all(100) ==
        "0123456789");
  http::response r = t.round_trip({"127.0.0.1", srv.port(), {"POST", "/"}, std::string(100, 'x')});
  CHECK(r.status() == 413);
  CHECK(r.head.headers.get("connection") == "close");
  r.body.close();
}

TEST_CASE("an ignored small body is drained and the connection reused; a large one closes it") {
  leash::nursery n;
  http::server srv(n, [](http::server_request&, http::response_writer& w) { w.write("ok"); });
  http::transport t;
  for (int i = 0; i < 3; ++i) {
    http::response r =
        t.round_trip({"127.0.0.1", srv.port(), {"POST", "/"}, std::string(1024, 'x')});
    CHECK(r.head.headers.get("connection") == std::nullopt);
    CHECK(r.body.read_all(10) == "ok");
  }
  CHECK(t.stats().dials == 1);
  CHECK(t.stats().reuses == 2);
  // Over the 64 KiB drain limit: answered, then the connection is closed.
  http::response big =
      t.round_trip({"127.0.0.1", srv.port(), {"POST", "/"}, std::string(200 * 1024, 'x')});
  CHECK(big.head.headers.get("connection") == "close");
  CHECK(big.body.read_all(10) == "ok");
  CHECK(t.round_trip(http_test::get(srv.port())).body.read_all(10) == "ok");
  CHECK(t.stats().dials == 2);
}

TEST_CASE("Expect: 100-continue is answered when the handler reads, and not when it does not") {
  leash::nursery n;
  std::atomic<int> calls{0};
  http::server srv(n, [&](http::server_request& req, http::response_writer& w) {
    ++calls;
    if (req.target() == "/read")
      w.write("got " + req.read_body());
    else
      w.write("no thanks");
  });
  {
    net::socket s = dial(srv.port());
    send(s, "POST /read HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n");
    // The body is sent only after the 100: without it this never completes.
    CHECK(read_until(s.fd(), "\r\n\r\n") == "HTTP/1.1 100 Continue\r\n\r\n");
    send(s, "hello");
    const std::string final_response = read_until(s.fd(), "got hello");
    CHECK(final_response.find("HTTP/1.1 200 OK\r\n") == 0);
    CHECK(final_response.find("Connection: close") == std::string::npos);
  }
  {
    net::socket s = dial(srv.port());
    send(s,
         "POST /ignore HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n");
    const std::string reply = read_to_eof(s.fd());  // the server closes after it
    CHECK(reply.find("HTTP/1.1 200 OK\r\n") == 0);
    CHECK(reply.find("100 Continue") == std::string::npos);
    CHECK(reply.find("Connection: close\r\n") != std::string::npos);
    CHECK(reply.substr(reply.size() - 9) == "no thanks");
  }
  CHECK(calls == 2);
}

TEST_CASE("a request body shorter than declared ends the connection cleanly") {
  leash::nursery n;
  std::promise<http::reason> seen;
  http::server srv(n, [&](http::server_request& req, http::response_writer& w) {
    try {
      w.write(req.read_body());
      seen.set_value(http::reason::bad_status_line);  // any other reason fails below
    } catch (const http::protocol_error& e) {
      seen.set_value(e.reason());
      throw;
    }
  });
  net::socket s = dial(srv.port());
  send(s, "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\n12345");
  ::shutdown(s.fd(), SHUT_WR);
  const std::string reply = read_to_eof(s.fd());
  CHECK(seen.get_future().get() == http::reason::truncated_body);
  CHECK(reply.find("HTTP/1.1 400 ") == 0);
  CHECK(eventually([&] { return srv.stats().connections == 0; }));
}

TEST_CASE("a response write stalled longer than write_timeout ends the connection") {
  leash::nursery n;
  std::promise<std::string> outcome;
  const auto start = std::chrono::steady_clock::now();
  http::server srv(n,
                   [&](http::server_request&, http::response_writer& w) {
                     const std::string piece(64 * 1024, 'x');
                     try {
                       for (int i = 0; i < 100'000; ++i) {  // 6 GiB: more than any socket buffer
                         w.write(piece);
                         w.flush();
                       }
                       outcome.set_value("wrote everything");
                     } catch (const http::timeout& e) {
                       outcome.set_value(std::string("timeout: ") + e.what());
                       throw;
                     } catch (const std::exception& e) {
                       outcome.set_value(std::string("other: ") + e.what());
                       throw;
                     }
                   },
                   {.write_timeout = 200ms});
  // A client with a tiny receive window that never reads.
  net::socket s(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
  const int small = 4096;
  ::setsockopt(s.fd(), SOL_SOCKET, SO_RCVBUF, &small, sizeof small);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(srv.port());
  ::inet_pton(AF_INET, "127.0.0.1", &addr.sin_addr);
  REQUIRE(::connect(s.fd(), reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0);
  REQUIRE(::send(s.fd(), "GET / HTTP/1.1\r\nHost: x\r\n\r\n", 27, MSG_NOSIGNAL) == 27);
  std::future<std::string> f = outcome.get_future();
  // Without the timeout the handler blocks forever; 30 s is only a bound.
  const bool ended = f.wait_for(30s) == std::future_status::ready;
  CHECK(ended);
  if (ended) {
    const std::string what = f.get();
    CHECK(
        what.find(
            "timeout: leash::http: timeout: response write: the client read nothing for 200 ms") ==
        0);
    CHECK(http_test::ms_since(start) < 30'000);
    CHECK(eventually([&] { return srv.stats().write_timeouts == 1; }));
  }
  s.close();  // unblocks the handler if the timeout did not
  CHECK(eventually([&] { return srv.stats().connections == 0; }));
}

TEST_CASE("an ignored small chunked body is drained and the next request is served") {
  leash::nursery n;
  std::atomic<int> calls{0};
  http::server srv(n, [&](http::server_request& req, http::response_writer& w) {
    ++calls;
    w.write(std::string(req.target()));
  });
  const std::string reply =
      exchange_raw(srv.port(),
                   "POST /ignored HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
                   "3\r\nabc\r\n4\r\ndefg\r\n0\r\n\r\n"
                   "GET /next HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
  CHECK(calls == 2);
  CHECK(reply.find("/ignored") != std::string::npos);
  CHECK(reply.substr(reply.size() - 5) == "/next");
}

TEST_CASE("a body moved out of the handler reads nothing after the handler returned") {
  leash::nursery n;
  std::optional<leash::body> kept;
  http::server srv(n, [&](http::server_request& req, http::response_writer& w) {
    if (req.method() == "POST") {
      char first[2];
      CHECK(req.body().read(std::span<char>(first)) == 2);
      kept.emplace(std::move(req.body()));
    }
    w.write("moved");
  });
  http::transport t;
  CHECK(t.round_trip({"127.0.0.1", srv.port(), {"POST", "/"}, "0123456789"}).body.read_all(10) ==
        "moved");
  char buf[8];
  REQUIRE(kept.has_value());
  CHECK_THROWS_AS((void)kept->read(std::span<char>(buf)), leash::body_closed);
  kept->close();
  // The rest was drained by the server: the connection serves the next request.
  CHECK(t.round_trip(http_test::get(srv.port())).body.read_all(10) == "moved");
  CHECK(t.stats().dials == 1);
}

TEST_CASE("a handler blocked reading a body that never comes is cancelled by shutdown") {
  leash::nursery n;
  http_test::gate arrived(1);
  std::promise<std::string> outcome;
  http::server srv(n, [&](http::server_request& req, http::response_writer&) {
    arrived.arrive_and_wait();
    try {
      (void)req.read_body();
      outcome.set_value("read");
    } catch (const leash::cancelled&) {
      outcome.set_value("cancelled");
      throw;
    }
  });
  net::socket s = dial(srv.port());
  send(s, "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\n");  // and no body
  arrived.wait_arrived(1);
  srv.shutdown(0ms);  // returns once the connection task ended
  CHECK(outcome.get_future().get() == "cancelled");
  CHECK(srv.stats().connections == 0);
}

TEST_CASE("Transfer-Encoding on HTTP/1.0 is answered 400 and the bytes after it are never served") {
  leash::nursery n;
  std::atomic<int> calls{0};
  http::server srv(n, [&](http::server_request&, http::response_writer& w) {
    ++calls;
    w.write("served");
  });
  const std::string reply =
      exchange_raw(srv.port(),
                   "POST /a HTTP/1.0\r\nTransfer-Encoding: chunked\r\n"
                   "Connection: keep-alive\r\n\r\n0\r\n\r\n"
                   "GET /smuggled HTTP/1.0\r\nConnection: keep-alive\r\n\r\n");
  CHECK(reply.find("HTTP/1.1 400 ") == 0);
  CHECK(reply.find("Connection: close\r\n") != std::string::npos);
  CHECK(reply.find("HTTP/1.1", 1) == std::string::npos);  // one response, then the close
  CHECK(calls == 0);
}

TEST_CASE("an HTTP/1.1 request without exactly one valid Host is answered 400 and closed") {
  leash::nursery n;
  std::atomic<int> calls{0};
  http::server srv(n, [&](http::server_request&, http::response_writer& w) {
    ++calls;
    w.write("served");
  });
  const char* bad[] = {
      "GET / HTTP/1.1\r\n\r\n",
      "GET / HTTP/1.1\r\nHost: a\r\nHost: a\r\n\r\n",
      "GET / HTTP/1.1\r\nHost: a b\r\n\r\n",
      "GET / HTTP/1.1\r\nHost: evil.example/path\r\n\r\n",
      "GET / HTTP/1.1\r\nHost: user@a\r\n\r\n",
  };
  for (const char* b : bad) {
    CAPTURE(b);
    const std::string reply = exchange_raw(srv.port(), b);
    CHECK(reply.find("HTTP/1.1 400 ") == 0);
    CHECK(reply.find("HTTP/1.1", 1) == std::string::npos);
  }
  CHECK(calls == 0);
  CHECK(exchange_raw(srv.port(), "GET / HTTP/1.0\r\n\r\n").find("HTTP/1.1 200 ") == 0);
}

TEST_CASE("server_request::peer_address() is the client's address and port") {
  leash::nursery n;
  std::string peer;
  http::server srv(n, [&](http::server_request& req, http::response_writer& w) {
    peer = std::string(req.peer_address());
    w.write("ok");
  });
  net::socket s = dial(srv.port());
  sockaddr_in local{};
  socklen_t len = sizeof local;
  REQUIRE(::getsockname(s.fd(), reinterpret_cast<sockaddr*>(&local), &len) == 0);
  send(s, "GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
  CHECK(read_to_eof(s.fd()).find("HTTP/1.1 200 ") == 0);
  CHECK(peer == "127.0.0.1:" + std::to_string(ntohs(local.sin_port)));
}
