// Tests for coroutine handlers of leash/http/server.hpp: answers written with
// async_write / async_flush, request bodies read with async_read (which waits
// for the client with no thread), 100-continue, errors, cancellation by the
// client, a deadline, many suspended handlers, and shutdown.
#include <dirent.h>
#include <doctest/doctest.h>

#include <atomic>
#include <chrono>
#include <future>
#include <leash/channel.hpp>
#include <leash/http/server.hpp>
#include <leash/http/transport.hpp>
#include <leash/nursery.hpp>
#include <stdexcept>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "support/http_fixture.hpp"

using namespace std::chrono_literals;
namespace http = leash::http;
namespace net = leash::http::detail;
using http_test::eventually;
using http_test::os_threads;

namespace {

// Generous bound of every blocking read a test client makes (a broken server
// fails the test instead of hanging it).
constexpr auto client_read_bound = 10s;

// What a request body's read waiting for the client shows in live_tasks().
constexpr std::string_view body_wait = "http::server: waiting for a request body";

net::socket dial(std::uint16_t port) {
  return net::dial("127.0.0.1", port, net::clock::time_point::max(), {});
}

void send(const net::socket& s, std::string_view bytes) {
  net::write_all(s.fd(), bytes, net::clock::time_point::max(), {});
}

// Reads from `s` until `until` appears in what was read (or EOF, or the bound).
std::string read_until(const net::socket& s, std::string_view until) {
  std::string out;
  char c;
  std::size_t got = 0;
  const auto deadline = leash::detail::deadline_after(client_read_bound);
  while (out.find(until) == std::string::npos &&
         net::read_some(s.fd(), &c, 1, got, deadline, {}) == net::read_status::data) {
    out.push_back(c);
  }
  return out;
}

// Everything until EOF (or the bound).
std::string read_to_eof(const net::socket& s) {
  std::string out;
  char buf[4096];
  std::size_t got = 0;
  const auto deadline = leash::detail::deadline_after(client_read_bound);
  while (net::read_some(s.fd(), buf, sizeof buf, got, deadline, {}) == net::read_status::data)
    out.append(buf, got);
  return out;
}

// Sends `request` on a fresh connection; the whole answer until the server closed.
std::string exchange(std::uint16_t port, std::string_view request) {
  const net::socket s = dial(port);
  send(s, request);
  return read_to_eof(s);
}

std::string_view status_line(std::string_view response) {
  return response.substr(0, response.find("\r\n"));
}

std::string_view body_of(std::string_view response) {
  const std::size_t head = response.find("\r\n\r\n");
  return head == std::string_view::npos ? std::string_view{} : response.substr(head + 4);
}

// Tasks that wait in a request body's read for the client, with no thread.
std::size_t tasks_waiting_for_body() {
  std::size_t n = 0;
  for (const auto& t : leash::live_tasks()) {
    n += t.blocked_in != nullptr && std::string_view(t.blocked_in) == body_wait ? 1 : 0;
  }
  return n;
}

// A coroutine handler that echoes the body it reads in pieces of
// `piece` bytes, and how many reads returned bytes ("<reads>:<body>").
auto echo_in_pieces(std::size_t piece) {
  return [piece](http::server_request& req, http::response_writer& w) -> leash::coro<> {
    std::string body;
    std::string buf(piece, '\0');
    int reads = 0;
    while (std::size_t n = co_await req.body().async_read(std::span<char>(buf))) {
      body.append(buf, 0, n);
      ++reads;
    }
    co_await w.async_write(std::to_string(reads) + ":" + body);
  };
}

constexpr std::string_view get_close = "GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n";

}  // namespace

TEST_CASE("a coroutine handler answers with async_write and async_flush") {
  leash::nursery n;
  leash::channel<int> next(1);  // the test read the first chunk
  http::server srv(n, [&](http::server_request& req, http::response_writer& w) -> leash::coro<> {
    if (req.target() == "/stream") {
      co_await w.async_write("first");
      co_await w.async_flush();
      (void)co_await next.async_recv();  // the client saw "first" before "second" was written
      co_await w.async_write("second");
      co_await w.async_flush();
      co_await w.async_write("third");
    } else {
      co_await w.async_write("hel");
      co_await w.async_write("lo");
    }
  });
  SUBCASE("flushed: chunked, each flush on the wire before the handler goes on") {
    const net::socket s = dial(srv.port());
    send(s, "GET /stream HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
    const std::string head = read_until(s, "5\r\nfirst\r\n");
    CHECK(head.find("Transfer-Encoding: chunked") != std::string::npos);
    CHECK(head.ends_with("5\r\nfirst\r\n"));
    REQUIRE(next.try_send(1) == leash::channel_status::ok);
    CHECK(read_to_eof(s) == "6\r\nsecond\r\n5\r\nthird\r\n0\r\n\r\n");
  }
  SUBCASE("not flushed: framed by Content-Length") {
    const std::string r = exchange(srv.port(), get_close);
    CHECK(status_line(r) == "HTTP/1.1 200 OK");
    CHECK(r.find("Content-Length: 5\r\n") != std::string::npos);
    CHECK(body_of(r) == "hello");
  }
  srv.shutdown(1s);
}

TEST_CASE("a coroutine handler's async_read waits for the body with no thread") {
  leash::nursery n;
  http::server srv(n, echo_in_pieces(4));
  const net::socket s = dial(srv.port());
  SUBCASE("Content-Length") {
    send(s, "POST / HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Length: 10\r\n\r\nabc");
    CHECK(eventually([] { return tasks_waiting_for_body() == 1; }));
    send(s, "defghij");
    const std::string r = read_to_eof(s);
    CHECK(status_line(r) == "HTTP/1.1 200 OK");
    CHECK(body_of(r) == "3:abcdefghij");  // "abc", "defg", "hij"
  }
  SUBCASE("chunked") {
    send(s,
         "POST / HTTP/1.1\r\nHost: x\r\nConnection: close\r\nTransfer-Encoding: chunked\r\n\r\n"
         "3\r\nabc\r\n");
    CHECK(eventually([] { return tasks_waiting_for_body() == 1; }));
    send(s, "7\r\ndefghij\r\n0\r\n\r\n");
    const std::string r = read_to_eof(s);
    CHECK(status_line(r) == "HTTP/1.1 200 OK");
    CHECK(body_of(r).ends_with(":abcdefghij"));  // chunk boundaries split pieces too
  }
  srv.shutdown(1s);
}

TEST_CASE("a keep-alive connection goes on after a coroutine handler read the body in pieces") {
  leash::nursery n;
  http::server srv(n, echo_in_pieces(2));
  const net::socket s = dial(srv.port());
  send(s, "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello");
  CHECK(read_until(s, "3:hello").ends_with("3:hello"));
  send(s, "POST / HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Length: 2\r\n\r\nok");
  CHECK(body_of(read_to_eof(s)) == "1:ok");
  srv.shutdown(1s);
}

TEST_CASE("async_read_all over its limit is answered 413") {
  leash::nursery n;
  http::server srv(n, [](http::server_request& req, http::response_writer& w) -> leash::coro<> {
    co_await w.async_write(co_await req.body().async_read_all(8));
  });
  const std::string r = exchange(srv.port(),
                                 "POST / HTTP/1.1\r\nHost: x\r\nConnection: "
                                 "close\r\nContent-Length: 16\r\n\r\n0123456789abcdef");
  CHECK(status_line(r) == "HTTP/1.1 413 Content Too Large");
  srv.shutdown(1s);
}

TEST_CASE("Expect: 100-continue is answered by a coroutine handler's first async_read") {
  leash::nursery n;
  http::server srv(n, echo_in_pieces(16));
  const net::socket s = dial(srv.port());
  send(s,
       "POST / HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Length: 5\r\n"
       "Expect: 100-continue\r\n\r\n");
  CHECK(read_until(s, "\r\n\r\n") == "HTTP/1.1 100 Continue\r\n\r\n");
  CHECK(eventually([] { return tasks_waiting_for_body() == 1; }));
  send(s, "hello");
  const std::string r = read_to_eof(s);
  CHECK(status_line(r) == "HTTP/1.1 200 OK");
  CHECK(body_of(r) == "1:hello");
  srv.shutdown(1s);
}

TEST_CASE("a body moved out of a coroutine handler and read after it returned is closed") {
  leash::nursery n;
  std::promise<std::string> seen;
  http::server srv(n, [&](http::server_request& req, http::response_writer&) -> leash::coro<> {
    n.spawn([&seen, b = std::move(req.body())]() mutable -> leash::coro<> {
      char buf[8];
      try {
        (void)co_await b.async_read(std::span<char>(buf));
        seen.set_value("read returned");
      } catch (const leash::body_closed&) {
        seen.set_value("body_closed");
      } catch (const std::exception& e) {
        seen.set_value(e.what());
      }
      (void)b.try_close();
    });
    // The handler returns only once the moved body's read waits for the client.
    while (tasks_waiting_for_body() == 0)
      co_await leash::this_task::async_checkpoint();  // lets the reader run
  });
  const net::socket s = dial(srv.port());
  send(s, "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\n");
  auto result = seen.get_future();
  REQUIRE(result.wait_for(client_read_bound) == std::future_status::ready);
  CHECK(result.get() == "body_closed");
  const std::string r = read_to_eof(s);  // answered, and the connection ends
  CHECK(status_line(r) == "HTTP/1.1 200 OK");
  CHECK(r.find("Connection: close\r\n") != std::string::npos);
  srv.shutdown(1s);
}

TEST_CASE("a coroutine handler that throws is answered 500") {
  leash::nursery n;
  http::server srv(n, [](http::server_request&, http::response_writer&) -> leash::coro<> {
    co_await leash::this_task::async_checkpoint();
    throw std::runtime_error("handler failed");
  });
  CHECK(status_line(exchange(srv.port(), get_close)) == "HTTP/1.1 500 Internal Server Error");
  srv.shutdown(1s);
}

TEST_CASE("a coroutine handler is cancelled with \"client disconnected\" when its client closes") {
  leash::nursery n;
  std::promise<std::pair<leash::stop_reason, std::string>> seen;
  std::atomic<int> entered{0};
  leash::channel<int> never;  // nothing is ever sent
  http::server srv(n, [&](http::server_request& req, http::response_writer&) -> leash::coro<> {
    if (req.method() == "POST") CHECK(co_await req.body().async_read_all(8) == "abc");
    try {
      ++entered;
      (void)co_await never.async_recv();  // until the client's leaving cancels it
    } catch (const leash::cancelled& e) {
      seen.set_value({e.reason(), e.message()});
      throw;
    }
  });
  net::socket c = dial(srv.port());
  SUBCASE("a request without a body") {
    send(c, "GET / HTTP/1.1\r\nHost: x\r\n\r\n");
  }
  SUBCASE("a request whose body the handler read") {
    send(c, "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\nabc");
  }
  CHECK(eventually([&] { return entered == 1; }));
  c.close();
  auto result = seen.get_future();
  REQUIRE(result.wait_for(client_read_bound) == std::future_status::ready);
  const auto [reason, message] = result.get();
  CHECK(reason == leash::stop_reason::cancelled);
  CHECK(message == "client disconnected");
  CHECK(eventually([&] { return srv.stats().client_disconnects == 1; }));
  srv.shutdown(1s);
}

TEST_CASE("a coroutine handler's own deadline is answered 504") {
  leash::nursery n;
  leash::channel<int> never;  // nothing is ever sent: only the deadline ends the wait
  http::server srv(n, [&](http::server_request&, http::response_writer& w) -> leash::coro<> {
    leash::cancel_scope deadline(5ms);
    (void)co_await never.async_recv();
    co_await w.async_write("never");
  });
  CHECK(status_line(exchange(srv.port(), get_close)) == "HTTP/1.1 504 Gateway Timeout");
  srv.shutdown(1s);
}

TEST_CASE("200 suspended coroutine handlers are served with fewer OS threads than requests") {
  constexpr int clients = 200;
  leash::nursery n;
  leash::channel<int> release(0);  // closed: every handler goes on
  std::atomic<int> waiting{0};
  http::server srv(n, [&](http::server_request&, http::response_writer& w) -> leash::coro<> {
    ++waiting;
    (void)co_await release.async_recv();
    co_await w.async_write("done");
  });
  std::vector<net::socket> socks;
  for (int i = 0; i < clients; ++i) {
    socks.push_back(dial(srv.port()));
    send(socks.back(), get_close);
  }
  REQUIRE(eventually([&] { return waiting == clients; }));
  CHECK(os_threads() < static_cast<std::size_t>(clients));
  release.close();
  int answered = 0;
  for (const auto& s : socks)
    answered += body_of(read_to_eof(s)) == "done" ? 1 : 0;
  CHECK(answered == clients);
  srv.shutdown(1s);
}

TEST_CASE("shutdown cancels suspended coroutine handlers, returns, and gives the fds back") {
  constexpr int clients = 20;
  const int fds = http_test::fd_count();
  std::atomic<int> waiting{0};
  std::atomic<int> cancelled{0};
  {
    leash::nursery n;
    leash::channel<int> never(0);
    http::server srv(n, [&](http::server_request& req, http::response_writer&) -> leash::coro<> {
      try {
        ++waiting;
        if (req.target() == "/body") {
          char buf[8];
          (void)co_await req.body().async_read(std::span<char>(buf));  // the body never comes
        } else {
          (void)co_await never.async_recv();
        }
      } catch (const leash::cancelled&) {
        ++cancelled;
        throw;
      }
    });
    std::vector<net::socket> socks;
    for (int i = 0; i < clients; ++i) {
      socks.push_back(dial(srv.port()));
      send(socks.back(), i % 2 == 0
                             ? std::string_view("GET / HTTP/1.1\r\nHost: x\r\n\r\n")
                             : "POST /body HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\n");
    }
    REQUIRE(eventually([&] { return waiting == clients; }));
    CHECK(eventually([] { return tasks_waiting_for_body() == clients / 2; }));
    srv.shutdown(0ms);
    CHECK(cancelled == clients);
    CHECK(srv.stats().connections == 0);
  }
  CHECK(eventually([&] { return http_test::fd_count() == fds; }));
}
