// Tests for leash/http/server.hpp and values.hpp: the server's accept loop and
// connection tasks, graceful shutdown, streaming flush(), request values that
// die with their request, strict request heads.
#include <doctest/doctest.h>

#include <atomic>
#include <chrono>
#include <leash/cancel.hpp>
#include <leash/http/reverse_proxy.hpp>
#include <leash/http/server.hpp>
#include <leash/http/transport.hpp>
#include <leash/nursery.hpp>
#include <mutex>
#include <stdexcept>
#include <string>
#include <vector>

#include "support/http_fixture.hpp"

using namespace std::chrono_literals;
namespace http = leash::http;
using http_test::eventually;
using http_test::exchange_raw;
using http_test::get;
using http_test::ms_since;

namespace {

struct counted {
  static inline std::atomic<int> live{0};
  std::string name;
  explicit counted(std::string n) : name(std::move(n)) { ++live; }
  counted(const counted& o) : name(o.name) { ++live; }
  ~counted() { --live; }
};

// What happened, in the order it happened, from any thread.
class event_log {
 public:
  void add(std::string what) {
    std::lock_guard lock(mutex_);
    events_.push_back(std::move(what));
  }
  std::vector<std::string> events() {
    std::lock_guard lock(mutex_);
    return events_;
  }

 private:
  std::mutex mutex_;
  std::vector<std::string> events_;
};

inline constexpr http::value_key<counted> current_user{"user"};
inline constexpr http::value_key<counted> other_key{"user"};  // same name, other key
inline constexpr http::value_key<int> request_number{"n"};

}  // namespace

TEST_CASE("request values are reachable in the handler and gone after each request") {
  leash::nursery n;
  std::atomic<int> seen{0};
  http::server srv(n, [&](http::server_request& req, http::response_writer& w) {
    req.values().set(current_user, counted("ada"));
    req.values().set(request_number, seen.load());
    CHECK(req.values().get(other_key) == nullptr);  // keys are objects, not names
    const counted* u = req.values().get(current_user);
    REQUIRE(u != nullptr);
    CHECK(counted::live.load() == 1);  // this request's copy only: the last one's is gone
    ++seen;
    w.write("hello " + u->name);
  });
  http::transport t;
  for (int i = 0; i < 50; ++i) {
    http::response r = t.round_trip(get(srv.port()));
    CHECK(r.body.read_all(100) == "hello ada");
  }
  CHECK(seen == 50);
  CHECK(counted::live == 0);
  CHECK(t.stats().dials == 1);
}

TEST_CASE("a plain handler that does not block runs on its worker: no hand-off per request") {
  constexpr int requests = 200;
  leash::nursery n;
  http::server srv(n, [](http::server_request&, http::response_writer& w) { w.write("quick"); });
  http::transport t;
  CHECK(t.round_trip(get(srv.port())).body.read_all(100) == "quick");  // everything started
  const auto before = leash::runtime::stats().coro_handoffs;
  for (int i = 0; i < requests; ++i)
    CHECK(t.round_trip(get(srv.port())).body.read_all(100) == "quick");
  // A handler preempted across two of the scheduler monitor's looks may
  // still lose its worker; one hand-off per request would be `requests`.
  CHECK(leash::runtime::stats().coro_handoffs - before < requests / 10);
}

TEST_CASE("graceful shutdown finishes in-flight requests and refuses new ones") {
  leash::nursery n;
  http_test::gate gate(100);  // opened by the test
  http::server srv(n, [&](http::server_request&, http::response_writer& w) {
    gate.arrive_and_wait();
    w.write("finished");
  });
  const std::uint16_t port = srv.port();
  http::transport t;
  std::atomic<bool> shut{false};
  leash::run_nursery([&](leash::nursery& clients) {
    clients.spawn([&] {
      http::response r = t.round_trip(get(port));
      CHECK(r.body.read_all(100) == "finished");
    });
    gate.wait_arrived(1);
    clients.spawn([&] {
      srv.shutdown(5s);
      shut = true;
    });
    // New connections are refused once shutdown started (a raw dial: an
    // accepted connection would never reach the handler).
    CHECK(eventually([&] {
      try {
        http::detail::socket s =
            http::detail::dial("127.0.0.1", port, http::detail::clock::time_point::max(), {});
        return false;
      } catch (const http::io_error&) {
        return true;
      }
    }));
    CHECK(!shut);
    gate.open();
  });
  CHECK(shut);
  CHECK(srv.stats().requests == 1);
  CHECK(srv.stats().connections == 0);
}

TEST_CASE("shutdown cancels a handler still running at the grace deadline") {
  leash::nursery n;
  http_test::gate gate(2);
  event_log log;
  http::server srv(n, [&](http::server_request&, http::response_writer& w) {
    try {
      gate.arrive_and_wait();  // cancelled by the shutdown deadline
    } catch (const leash::cancelled&) {
      log.add("handler cancelled");
      throw;
    }
    w.write("never");
  });
  http::transport t;
  leash::run_nursery([&](leash::nursery& clients) {
    clients.spawn([&] { CHECK_THROWS_AS(t.round_trip(get(srv.port())), http::error); });
    gate.wait_arrived(1);
    log.add("shutdown called");
    const auto start = std::chrono::steady_clock::now();
    srv.shutdown(100ms);
    const auto took = ms_since(start);
    log.add("shutdown returned");
    CHECK(took >= 99);  // the handler had its grace period
  });
  CHECK(log.events() ==
        std::vector<std::string>{"shutdown called", "handler cancelled", "shutdown returned"});
  CHECK(srv.stats().connections == 0);
}

TEST_CASE("a handler sees the shutdown as a soft stop and finishes within the grace") {
  leash::nursery n;
  http_test::gate gate(2);
  leash::channel<int> go;  // the test lets the handler look once the shutdown began
  std::atomic<bool> asked_not_cancelled{false};
  http::server srv(n, [&](http::server_request&, http::response_writer& w) {
    gate.arrive_and_wait();
    (void)go.recv();
    asked_not_cancelled =
        leash::this_task::soft_stop_requested() && !leash::this_task::stop_token().stop_requested();
    w.write("finished");
  });
  const std::uint16_t port = srv.port();
  http::transport t;
  std::atomic<bool> shut{false};
  leash::run_nursery([&](leash::nursery& clients) {
    clients.spawn([&] {
      http::response r = t.round_trip(get(port));
      CHECK(r.body.read_all(100) == "finished");
    });
    gate.wait_arrived(1);
    gate.open();
    clients.spawn([&] {
      srv.shutdown(1h);  // returns as soon as the handler finished
      shut = true;
    });
    CHECK(eventually([&] {  // a refused connect: the shutdown began
      try {
        http::detail::socket s =
            http::detail::dial("127.0.0.1", port, http::detail::clock::time_point::max(), {});
        return false;
      } catch (const http::io_error&) {
        return true;
      }
    }));
    go.send(1);
  });
  CHECK(shut);
  CHECK(asked_not_cancelled);
  CHECK(srv.stats().requests == 1);
  CHECK(srv.stats().connections == 0);
}

TEST_CASE("flush() streams: the client reads the first part while the handler still runs") {
  leash::nursery n;
  http_test::gate gate(2);
  http::server srv(n, [&](http::server_request&, http::response_writer& w) {
    w.write("first;");
    w.flush();
    gate.arrive_and_wait();
    w.write("second");
  });
  http::transport t;
  http::response r = t.round_trip(get(srv.port()));
  CHECK(r.head.headers.get("transfer-encoding") == "chunked");
  char buf[64];
  const std::size_t got = r.body.read(std::span<char>(buf));
  CHECK(std::string(buf, got) == "first;");
  gate.open();
  CHECK(r.body.read_all(100) == "second");
  CHECK(t.stats().idle == 1);
}

TEST_CASE("a handler's exception is answered 500 and the server keeps serving") {
  leash::nursery n;
  http::server srv(n, [](http::server_request& req, http::response_writer& w) {
    if (req.target() == "/boom") throw std::runtime_error("boom");
    const std::string body = req.read_body();
    w.write(body.empty() ? "ok" : body);
  });
  http::transport t;
  http::response r = t.round_trip(get(srv.port(), "/boom"));
  CHECK(r.status() == 500);
  r.body.close();
  http::response echo = t.round_trip({"127.0.0.1", srv.port(), {"POST", "/echo"}, "payload"});
  CHECK(echo.status() == 200);
  CHECK(echo.body.read_all(100) == "payload");
}

TEST_CASE("a body shorter or longer than the handler's Content-Length aborts the connection") {
  leash::nursery n;
  http::server srv(n, [](http::server_request& req, http::response_writer& w) {
    w.headers().set("Content-Length", "10");
    w.write(req.target() == "/short" ? "12345" : "12345678901");
  });
  http::transport t;
  for (const char* target : {"/short", "/long"}) {
    CAPTURE(target);
    CHECK_THROWS_AS(t.round_trip(get(srv.port(), target)).body.read_all(100), http::error);
  }
  http::response head = t.round_trip({"127.0.0.1", srv.port(), {"HEAD", "/short"}, {}});
  CHECK(head.head.headers.get("content-length") == "10");
  CHECK(head.body.read_all(100).empty());
  CHECK(t.round_trip({"127.0.0.1", srv.port(), {"HEAD", "/x"}, {}}).body.read_all(10).empty());
  CHECK(t.stats().reuses == 1);  // the HEAD connection stayed clean
}

TEST_CASE("HEAD gets no body; HTTP/1.0 gets a response and a close") {
  leash::nursery n;
  http::server srv(n, [](http::server_request&, http::response_writer& w) { w.write("body"); });
  http::transport t;
  http::response r = t.round_trip({"127.0.0.1", srv.port(), {"HEAD", "/"}, {}});
  CHECK(r.status() == 200);
  CHECK(r.body.read_all(100).empty());
  const std::string reply = exchange_raw(srv.port(), "GET / HTTP/1.0\r\n\r\n");
  CHECK(reply.find("HTTP/1.1 200 OK\r\n") == 0);
  CHECK(reply.find("Connection: close\r\n") != std::string::npos);
  CHECK(reply.substr(reply.size() - 4) == "body");
}

TEST_CASE("malformed request heads are answered 400 (or 431) and the connection closed") {
  leash::nursery n;
  std::atomic<int> calls{0};
  http::server srv(n, [&](http::server_request&, http::response_writer& w) {
    ++calls;
    w.write("no");
  });
  const char* bad[] = {
      "GET / HTTP/1.1\r\nHost : x\r\n\r\n",  // space before colon
      "GET / HTTP/1.1\nHost: x\n\n",         // bare LF
      // Each has a valid Host, so that it is refused for its own fault.
      "GET / HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n",
      "GET / HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n",
      "GET /a b HTTP/1.1\r\nHost: x\r\n\r\n",             // SP in target
      "GET / HTTP/2.0\r\nHost: x\r\n\r\n",                // version
      "GET / HTTP/1.1\r\nHost: x\r\nX: a\r\n b\r\n\r\n",  // obs-fold
      "GET / HTTP/1.1\r\nHost: x\r\nX: a\x01\r\n\r\n",    // CTL
  };
  for (const char* b : bad) {
    CAPTURE(b);
    const std::string reply = exchange_raw(srv.port(), b);
    CHECK(reply.find("HTTP/1.1 400 ") == 0);
    CHECK(calls == 0);
  }
  const std::string huge =
      "GET / HTTP/1.1\r\nHost: x\r\nX: " + std::string(70 * 1024, 'a') + "\r\n\r\n";
  CHECK(exchange_raw(srv.port(), huge).find("HTTP/1.1 431 ") == 0);
  CHECK(calls == 0);
}

TEST_CASE("a cancelled parent nursery ends the server and its connections") {
  http::transport t;
  leash::nursery n;
  http::server srv(n, [](http::server_request&, http::response_writer& w) { w.write("x"); });
  CHECK(t.round_trip(get(srv.port())).body.read_all(10) == "x");
  n.cancel();
  CHECK(eventually([&] { return srv.stats().connections == 0; }));
  srv.shutdown(0ms);
}

TEST_CASE("a handler's own deadline is answered 504, its own cancel 500, and the server goes on") {
  leash::nursery n;
  http::server srv(n, [](http::server_request& req, http::response_writer& w) {
    leash::cancel_scope scope(req.target() == "/deadline" ? 20ms : 1h);
    if (req.target() == "/cancel") scope.cancel("given up");
    leash::this_task::sleep_for(1h);
    w.write("never");
  });
  http::transport t;
  http::response late = t.round_trip(get(srv.port(), "/deadline"));
  CHECK(late.status() == 504);
  late.body.close();
  http::response cancelled = t.round_trip(get(srv.port(), "/cancel"));
  CHECK(cancelled.status() == 500);
  cancelled.body.close();
}

TEST_CASE("a proxy call cut by the handler's deadline answers 504, not an empty close") {
  leash::nursery n;
  http_test::gate hang(2);  // never reached by a second caller: open() ends it
  http::server upstream(n, [&](http::server_request&, http::response_writer& w) {
    hang.arrive_and_wait();  // hangs until the test ends
    w.write("too late");
  });
  http::transport to_upstream;
  http::reverse_proxy proxy(to_upstream, {.port = upstream.port()});
  http::server front(n, [&](http::server_request& req, http::response_writer& w) -> leash::coro<> {
    leash::cancel_scope scope(50ms);
    co_await proxy(req, w);
  });
  http::transport t;
  http::response r = t.round_trip(get(front.port()));
  CHECK(r.status() == 504);
  r.body.close();
  hang.open();
}
