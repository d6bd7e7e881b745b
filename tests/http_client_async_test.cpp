// Tests for the coroutine-task forms of the HTTP client: transport::
// async_round_trip, client::async_get / async_post, and the response body's
// async_read / async_read_all. Loopback only; the leash server plays the
// well-behaved peer, tests/support/raw_server.hpp the stalling ones.
#include <doctest/doctest.h>

#include <array>
#include <atomic>
#include <chrono>
#include <cstddef>
#include <exception>
#include <leash/channel.hpp>
#include <leash/http/client.hpp>
#include <leash/http/server.hpp>
#include <leash/io/socket.hpp>
#include <leash/leak_check.hpp>
#include <leash/must_close.hpp>
#include <leash/nursery.hpp>
#include <leash/runtime.hpp>
#include <string>

#include "support/http_fixture.hpp"
#include "support/raw_server.hpp"

using namespace std::chrono_literals;
namespace http = leash::http;
using http_test::eventually;
using http_test::fd_count;
using http_test::get;
using http_test::unclosed_count;

namespace {

// The leash server in a nursery of its own.
struct backend {
  template <class H>
  explicit backend(H h) : srv(n, std::move(h)) {}
  std::uint16_t port() const { return srv.port(); }
  std::string url(const std::string& target = "/") const {
    return "http://127.0.0.1:" + std::to_string(port()) + target;
  }
  leash::nursery n;
  http::server srv;
};

void hello(http::server_request&, http::response_writer& w) {
  w.write("hello");
}

// A raw server that reads one request and then says nothing until the
// client leaves; counts the requests it read.
struct silent_server {
  std::atomic<int> requests{0};
  http_test::raw_server srv{[this](http_test::conn& c) {
    if (!c.read_request()) return;
    ++requests;
    c.wait_eof();
  }};
};

// A raw server that sends a response head and part of the body, then stalls.
struct stalled_body_server {
  http_test::raw_server srv{[](http_test::conn& c) {
    if (!c.read_request()) return;
    c.write("HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\npartial");
    c.wait_eof();
  }};
};

// Counts the live tasks blocked in `call`.
std::size_t tasks_blocked_in(std::string_view call) {
  std::size_t n = 0;
  for (const leash::live_task& t : leash::live_tasks())
    n += t.blocked_in != nullptr && call == t.blocked_in ? 1 : 0;
  return n;
}

}  // namespace

TEST_CASE("async_get and async_post from a coroutine task; the body is read with async_read") {
  backend b([](http::server_request& req, http::response_writer& w) {
    w.write(std::string(req.method()) + " " + std::string(req.target()) + " " + req.read_body());
  });
  http::transport t;
  http::client c(t);
  std::string got_get, got_post, got_chunks;
  leash::nursery n;
  n.spawn([&]() -> leash::coro<> {
    http::response r = co_await c.async_get(b.url("/a?x=1"));
    got_get = co_await r.body.async_read_all(100);
    r = co_await c.async_post(b.url("/up"), "text/plain", "data");
    got_post = co_await r.body.async_read_all(100);
    r = co_await c.async_get(b.url("/chunks"));
    std::array<char, 3> buf{};
    while (std::size_t k = co_await r.body.async_read(std::span<char>(buf)))
      got_chunks.append(buf.data(), k);
  });
  n.wait();
  CHECK(got_get == "GET /a?x=1 ");
  CHECK(got_post == "POST /up data");
  CHECK(got_chunks == "GET /chunks ");
  CHECK(t.stats().dials == 1);
  CHECK(t.stats().reuses == 2);
  CHECK(t.stats().idle == 1);
}

TEST_CASE("200 round trips in flight at once from coroutine tasks hold no thread each") {
  constexpr int clients = 200;
  std::atomic<int> arrived{0};
  leash::channel<int> release;  // closed once every request arrived
  // A coroutine handler: the server side holds no thread either.
  backend b([&](http::server_request&, http::response_writer& w) -> leash::coro<> {
    ++arrived;
    (void)co_await release.async_recv();
    co_await w.async_write("hello");
  });
  http::transport t;
  http::client c(t);
  std::atomic<int> ok{0};
  const std::uint64_t handoffs = leash::runtime::stats().coro_handoffs;
  leash::run_nursery([&](leash::nursery& n) {
    for (int i = 0; i < clients; ++i) {
      n.spawn([&]() -> leash::coro<> {
        http::response r = co_await c.async_get(b.url());
        if (co_await r.body.async_read_all(100) == "hello") ++ok;
      });
    }
    CHECK(eventually([&] { return arrived == clients; }));
    // Every request was sent and every client waits for its response head:
    // no worker was handed off (nothing blocked a thread), so the workers,
    // fewer than the tasks, carry them all.
    const leash::runtime_stats s = leash::runtime::stats();
    CHECK(s.coro_workers < std::size_t(clients));
    CHECK(s.coro_handoffs == handoffs);
    release.close();
  });
  CHECK(ok == clients);
  CHECK(t.stats().dials == clients);
  CHECK(t.stats().open == t.stats().idle);
}

TEST_CASE("a pooled connection is reused by async and blocking callers alike") {
  backend b(hello);
  http::transport t;
  http::client c(t);
  CHECK(c.get(b.url()).body.read_all(100) == "hello");
  std::string async_text;
  leash::nursery n;
  n.spawn([&]() -> leash::coro<> {
    http::response r = co_await c.async_get(b.url());
    async_text = co_await r.body.async_read_all(100);
  });
  n.wait();
  CHECK(async_text == "hello");
  CHECK(c.get(b.url()).body.read_all(100) == "hello");
  // A blocking read of a body an async round trip returned.
  leash::nursery m;
  m.spawn([&]() -> leash::coro<> {
    http::response r = co_await c.async_get(b.url());
    async_text = r.body.read_all(100);
  });
  m.wait();
  CHECK(async_text == "hello");
  const auto s = t.stats();
  CHECK(s.dials == 1);
  CHECK(s.reuses == 3);
  CHECK(s.idle == 1);
}

TEST_CASE("a cancel while waiting for the response head resumes the task at once, pools nothing") {
  silent_server server;
  http::transport t;
  const int fds = fd_count();
  std::atomic<bool> caught{false};
  leash::run_nursery([&](leash::nursery& n) {
    n.spawn([&]() -> leash::coro<> {
      try {
        (void)co_await t.async_round_trip(get(server.srv.port()));
      } catch (const leash::cancelled&) {
        caught = true;
        throw;
      }
    });
    CHECK(eventually([&] { return server.requests == 1; }));
    CHECK(eventually([&] { return tasks_blocked_in("io::async_read_some") == 1; }));
    n.cancel();
  });
  CHECK(caught);
  const auto s = t.stats();
  CHECK(s.open == 0);
  CHECK(s.idle == 0);
  CHECK(s.discarded == 1);
  CHECK(eventually([&] { return fd_count() == fds; }));
}

TEST_CASE("a cancel while an async body read waits: cancelled, then the connection is closed") {
  stalled_body_server server;
  http::transport t;
  const int fds = fd_count();
  std::atomic<bool> caught{false};
  std::atomic<bool> got_head{false};
  leash::run_nursery([&](leash::nursery& n) {
    n.spawn([&]() -> leash::coro<> {
      http::response r = co_await t.async_round_trip(get(server.srv.port()));
      got_head = true;
      std::exception_ptr failure;
      try {
        (void)co_await r.body.async_read_all(1000);
      } catch (const leash::cancelled&) {
        caught = true;
        failure = std::current_exception();
      }
      r.body.close();
      if (failure) std::rethrow_exception(failure);
    });
    // After the head: the wait is the body read's.
    CHECK(eventually([&] { return got_head && tasks_blocked_in("io::async_read_some") == 1; }));
    n.cancel();
  });
  CHECK(caught);
  const auto s = t.stats();
  CHECK(s.open == 0);
  CHECK(s.idle == 0);
  CHECK(eventually([&] { return fd_count() == fds; }));
}

TEST_CASE("close() from another thread wakes an async body read with body_closed") {
  stalled_body_server server;
  http::transport t;
  std::atomic<leash::body*> open_body{nullptr};
  std::atomic<bool> closed_seen{false};
  leash::channel<int> close_returned(1);  // the body outlives the close() call
  leash::run_nursery([&](leash::nursery& n) {
    n.spawn([&]() -> leash::coro<> {
      http::response r = co_await t.async_round_trip(get(server.srv.port()));
      open_body = &r.body;
      try {
        (void)co_await r.body.async_read_all(1000);
      } catch (const leash::body_closed&) {
        closed_seen = true;
      }
      (void)co_await close_returned.async_recv();
    });
    // After the head: the wait is the body read's.
    REQUIRE(eventually([&] {
      return open_body.load() != nullptr && tasks_blocked_in("io::async_read_some") == 1;
    }));
    open_body.load()->close();
    close_returned.send(1);
  });
  CHECK(closed_seen);
  CHECK(t.stats().open == 0);
}

TEST_CASE("a response-header timeout raises http::timeout in the async form") {
  silent_server server;
  http::transport t({.response_header_timeout = 50ms});
  bool timed_out = false;
  leash::nursery n;
  n.spawn([&]() -> leash::coro<> {
    try {
      (void)co_await t.async_round_trip(get(server.srv.port()));
    } catch (const http::timeout&) {
      timed_out = true;
    }
  });
  n.wait();
  CHECK(timed_out);
  CHECK(t.stats().open == 0);
}

TEST_CASE("an async dial to a closed port raises io_error naming the address") {
  std::uint16_t port = 0;
  {
    leash::io::socket probe = leash::io::listen("127.0.0.1", 0);
    port = probe.local_endpoint().port();
  }  // closed: nothing listens there now
  http::transport t;
  http::client c(t);
  std::string message;
  leash::nursery n;
  n.spawn([&]() -> leash::coro<> {
    try {
      (void)co_await c.async_get("http://127.0.0.1:" + std::to_string(port) + "/");
    } catch (const http::io_error& e) {
      message = e.what();
    }
  });
  n.wait();
  CHECK(message.find("127.0.0.1:" + std::to_string(port)) != std::string::npos);
  CHECK(t.stats().open == 0);
  CHECK(t.stats().dials == 0);
}

TEST_CASE("an async read after close throws body_closed at once") {
  backend b(hello);
  http::transport t;
  http::client c(t);
  int closed_errors = 0;
  leash::nursery n;
  n.spawn([&]() -> leash::coro<> {
    http::response r = co_await c.async_get(b.url());
    r.body.close();
    std::array<std::byte, 8> buf{};
    try {
      (void)co_await r.body.async_read(buf);
    } catch (const leash::body_closed&) {
      ++closed_errors;
    }
    try {
      (void)co_await r.body.async_read_all(100);
    } catch (const leash::body_closed&) {
      ++closed_errors;
    }
  });
  n.wait();
  CHECK(closed_errors == 2);
}

TEST_CASE("async_read_all over its limit throws body_too_large and closes the body") {
  backend b([](http::server_request&, http::response_writer& w) { w.write(std::string(50, 'x')); });
  http::transport t;
  http::client c(t);
  bool too_large = false;
  bool closed = false;
  leash::nursery n;
  n.spawn([&]() -> leash::coro<> {
    http::response r = co_await c.async_get(b.url());
    try {
      (void)co_await r.body.async_read_all(10);
    } catch (const leash::body_too_large&) {
      too_large = true;
    }
    closed = r.body.closed();
  });
  n.wait();
  CHECK(too_large);
  CHECK(closed);
}

TEST_CASE("an async response body never closed is reported and its connection closed") {
  backend b(hello);
  unclosed_count reports;
  http::transport t;
  http::client c(t);
  leash::nursery n;
  n.spawn([&]() -> leash::coro<> {
    http::response r = co_await c.async_get(b.url());
    (void)r;
  });
  n.wait();
  CHECK(reports.seen == 1);
  CHECK(t.stats().open == t.stats().idle);  // closed by the report: drained and pooled
}
