// Tests for leash/http/transport.hpp: leaks, the keep-alive pool,
// cancellation and timeouts, faults. Loopback only; the leash server
// plays the well-behaved peer, tests/support/raw_server.hpp the broken ones.
#include <doctest/doctest.h>

#include <atomic>
#include <chrono>
#include <leash/http/server.hpp>
#include <leash/http/transport.hpp>
#include <leash/must_close.hpp>
#include <leash/nursery.hpp>
#include <string>
#include <vector>

#include "support/http_fixture.hpp"
#include "support/paced_source.hpp"
#include "support/raw_server.hpp"

using namespace std::chrono_literals;
namespace http = leash::http;
using http_test::eventually;
using http_test::fd_count;
using http_test::get;
using http_test::ms_since;
using http_test::tasks_running;
using http_test::unclosed_count;

namespace {

// The leash server in a nursery of its own.
struct backend {
  explicit backend(http::server::handler h, http::server_options o = {})
      : srv(n, std::move(h), std::move(o)) {}
  std::uint16_t port() const { return srv.port(); }
  leash::nursery n;
  http::server srv;
};

std::string fetch(http::transport& t, const http::request& req) {
  http::response r = t.round_trip(req);
  return r.body.read_all(1 << 22);
}

void hello(http::server_request&, http::response_writer& w) {
  w.write("hello");
}

// A raw script answering every request with `response`.
http_test::raw_server::script answer_with(std::string response) {
  return [response](http_test::conn& c) {
    while (c.read_request())
      c.write(response);
  };
}

// 25 requests parked in the handler until all arrived, then released; each
// response is handled by `use`. Checks the counts the way Go's
// TestTransportPersistConnLeak does.
template <class Use>
void parked_requests(Use use, bool server_closes, std::size_t expect_idle) {
  constexpr int n = 25;
  http_test::gate gate(n);
  backend b([&](http::server_request&, http::response_writer& w) {
    gate.arrive_and_wait();
    if (server_closes) w.headers().set("Connection", "close");
    w.write(std::string(100, 'x'));
  });
  const int fds = fd_count();
  const std::size_t tasks = tasks_running();  // the server's accept task and watcher
  {
    http::transport t;
    // The transport opens no fd and runs no task: its idle timer is only
    // a timer, armed while a connection is idle.
    const int fds_with_reaper = fds;
    const std::size_t tasks_with_reaper = tasks;
    {
      leash::nursery clients;
      for (int i = 0; i < n; ++i)
        clients.spawn([&] { use(t.round_trip(get(b.port()))); });
      clients.wait();
    }
    const auto s = t.stats();
    CHECK(s.dials == n);
    CHECK(s.idle == expect_idle);
    // Client and server ends of each pooled connection; one server task each.
    CHECK(eventually([&] { return fd_count() == fds_with_reaper + 2 * int(expect_idle); }));
    CHECK(eventually([&] { return tasks_running() == tasks_with_reaper + expect_idle; }));
    t.close_idle();
    CHECK(t.stats().idle == 0);
    CHECK(t.stats().open == 0);
    CHECK(eventually([&] { return fd_count() == fds_with_reaper; }));
    CHECK(eventually([&] { return tasks_running() == tasks_with_reaper; }));
  }
  CHECK(fd_count() == fds);
  CHECK(eventually([&] { return tasks_running() == tasks; }));
}

}  // namespace

// --- 1. Leaks ---------------------------------------------------------------

TEST_CASE("25 parked requests: fds and tasks return to baseline plus the pool, then baseline") {
  parked_requests([](http::response r) { CHECK(r.body.read_all(1000).size() == 100); }, false, 25);
}

TEST_CASE("bodies closed early are drained, pooled, and leave nothing after close_idle") {
  parked_requests([](http::response r) { r.body.close(); }, false, 25);
}

TEST_CASE("bodies never closed are reported, closed, and leak no fd") {
  unclosed_count reports;
  parked_requests([](http::response r) { (void)r; }, false, 25);
  CHECK(reports.seen == 25);
}

TEST_CASE("a server that closes every connection leaves nothing pooled") {
  parked_requests([](http::response r) { CHECK(r.body.read_all(1000).size() == 100); }, true, 0);
}

TEST_CASE("a request body shorter than its declared length is refused before dialing") {
  backend b(hello);
  http::transport t;
  const int fds = fd_count();
  http::request req{"127.0.0.1", b.port(), {"POST", "/"}, "short"};
  req.head.headers.add("Content-Length", "10");
  try {
    (void)t.round_trip(req);
    FAIL("no exception");
  } catch (const http::invalid_request& e) {
    CHECK(e.reason() == http::reason::body_length_mismatch);
  }
  CHECK(t.stats().dials == 0);
  CHECK(fd_count() == fds);
}

// --- 2. Pool ----------------------------------------------------------------

TEST_CASE("sequential GETs dial once") {
  backend b(hello);
  http::transport t;
  const int n = http_test::scaled(10000);
  for (int i = 0; i < n; ++i)
    REQUIRE(fetch(t, get(b.port())) == "hello");
  CHECK(t.stats().dials == 1);
  CHECK(t.stats().reuses == std::uint64_t(n - 1));
}

TEST_CASE("8 workers dial at most 8 connections") {
  backend b(hello);
  http::transport t;
  const int per_worker = http_test::scaled(500);
  leash::run_nursery([&](leash::nursery& n) {
    for (int w = 0; w < 8; ++w)
      n.spawn([&] {
        for (int i = 0; i < per_worker; ++i)
          REQUIRE(fetch(t, get(b.port())) == "hello");
      });
  });
  CHECK(t.stats().dials <= 8);
  CHECK(t.stats().idle == t.stats().dials);
}

TEST_CASE(
    "max idle per host 2 with 3 parked requests: the third connection is refused and closed") {
  http_test::gate gate(3);
  backend b([&](http::server_request&, http::response_writer& w) {
    gate.arrive_and_wait();
    w.write("ok");
  });
  http::transport t({.max_idle_per_host = 2});
  const int fds = fd_count();
  leash::run_nursery([&](leash::nursery& n) {
    for (int i = 0; i < 3; ++i)
      n.spawn([&] { CHECK(fetch(t, get(b.port())) == "ok"); });
  });
  const auto s = t.stats();
  CHECK(s.dials == 3);
  CHECK(s.idle == 2);
  CHECK(s.discarded == 1);
  CHECK(s.open == 2);
  CHECK(eventually([&] { return fd_count() == fds + 4; }));  // two pooled, both ends
}

TEST_CASE("max conns per host 1 with 64 requests dials once and leaves no waiter") {
  backend b(hello);
  http::transport t({.max_conns_per_host = 1});
  leash::run_nursery([&](leash::nursery& n) {
    for (int i = 0; i < 64; ++i)
      n.spawn([&] { CHECK(fetch(t, get(b.port())) == "hello"); });
  });
  const auto s = t.stats();
  CHECK(s.dials == 1);
  CHECK(s.waiting == 0);
  CHECK(s.open == 1);
  CHECK(s.reuses == 63);
}

TEST_CASE("Connection: close on either side forces a new dial") {
  SUBCASE("request") {
    backend b(hello);
    http::transport t;
    http::request req = get(b.port());
    req.head.headers.add("Connection", "close");
    CHECK(fetch(t, req) == "hello");
    CHECK(fetch(t, req) == "hello");
    CHECK(t.stats().dials == 2);
    CHECK(t.stats().idle == 0);
  }
  SUBCASE("response") {
    backend b([](http::server_request&, http::response_writer& w) {
      w.headers().set("Connection", "close");
      w.write("bye");
    });
    http::transport t;
    CHECK(fetch(t, get(b.port())) == "bye");
    CHECK(fetch(t, get(b.port())) == "bye");
    CHECK(t.stats().dials == 2);
  }
  SUBCASE("disable_keep_alives") {
    backend b(hello);
    http::transport t({.disable_keep_alives = true});
    CHECK(fetch(t, get(b.port())) == "hello");
    CHECK(fetch(t, get(b.port())) == "hello");
    CHECK(t.stats().dials == 2);
  }
}

TEST_CASE("a small unread tail is drained and the connection reused; a large one is discarded") {
  backend b([](http::server_request& req, http::response_writer& w) {
    const std::size_t n = req.target() == "/small" ? 4000 : 1 << 20;
    w.write(std::string(n, 'y'));
  });
  http::transport t;
  {
    http::response r = t.round_trip(get(b.port(), "/small"));
    char buf[10];
    CHECK(r.body.read(std::span<char>(buf)) > 0);
    r.body.close();
  }
  CHECK(t.stats().idle == 1);
  CHECK(t.stats().discarded == 0);
  {
    http::response r = t.round_trip(get(b.port(), "/large"));
    r.body.close();
  }
  CHECK(t.stats().reuses == 1);
  CHECK(t.stats().idle == 0);
  CHECK(t.stats().discarded == 1);
}

TEST_CASE("closing an endless chunked body returns promptly and discards the connection") {
  http_test::raw_server srv([](http_test::conn& c) {
    if (!c.read_request()) return;
    c.write("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n");
    const std::string chunk = "400\r\n" + std::string(1024, 'z') + "\r\n";
    for (;;) {
      leash::this_task::checkpoint();
      c.write(chunk);
    }
  });
  http::transport t;
  http::response r = t.round_trip(get(srv.port()));
  char buf[100];
  CHECK(r.body.read(std::span<char>(buf)) > 0);
  const auto start = std::chrono::steady_clock::now();
  r.body.close();
  CHECK(ms_since(start) < 500);
  CHECK(t.stats().idle == 0);
  CHECK(t.stats().discarded == 1);
}

TEST_CASE("max idle total evicts the least recently used idle connection") {
  backend a(hello);
  backend b(hello);
  http::transport t({.max_idle_total = 1});
  CHECK(fetch(t, get(a.port())) == "hello");
  CHECK(fetch(t, get(b.port())) == "hello");  // a's connection is evicted for b's
  auto s = t.stats();
  CHECK(s.idle == 1);
  CHECK(s.discarded == 1);
  CHECK(fetch(t, get(b.port())) == "hello");
  CHECK(t.stats().reuses == 1);
  CHECK(fetch(t, get(a.port())) == "hello");
  CHECK(t.stats().dials == 3);
}

TEST_CASE("a response head over the limits is limit_exceeded and the connection discarded") {
  SUBCASE("bytes") {
    http_test::raw_server srv(
        answer_with("HTTP/1.1 200 OK\r\nX-Big: " + std::string(2000, 'b') + "\r\n\r\n"));
    http::transport t({.max_response_header_bytes = 1024});
    try {
      (void)t.round_trip(get(srv.port()));
      FAIL("no exception");
    } catch (const http::limit_exceeded& e) {
      CHECK(e.which() == http::limit::header_bytes);
    }
    CHECK(t.stats().open == 0);
  }
  SUBCASE("fields") {
    std::string head = "HTTP/1.1 200 OK\r\n";
    for (int i = 0; i < 11; ++i)
      head += "X-" + std::to_string(i) + ": v\r\n";
    http_test::raw_server srv(answer_with(head + "Content-Length: 0\r\n\r\n"));
    http::transport t({.max_header_fields = 10});
    CHECK_THROWS_AS((void)t.round_trip(get(srv.port())), http::limit_exceeded);
    CHECK(t.stats().open == 0);
  }
}

TEST_CASE("idle connections past idle_timeout are closed by the reaper") {
  backend b(hello);
  http::transport t({.idle_timeout = 50ms});
  CHECK(fetch(t, get(b.port())) == "hello");
  CHECK(t.stats().idle == 1);
  CHECK(eventually([&] { return t.stats().idle == 0; }));
  CHECK(t.stats().discarded == 1);
}

// --- 3. Cancellation and timeouts -------------------------------------------

namespace {

// Runs f under a 100 ms deadline; checks it threw E within 100 ms of it.
template <class E, class F>
void ends_near_deadline(F f) {
  const auto start = std::chrono::steady_clock::now();
  bool thrown = false;
  try {
    leash::cancel_scope deadline(100ms);
    f();
  } catch (const E&) {
    thrown = true;
  }
  CHECK(thrown);
  const auto took = ms_since(start);
  CHECK(took >= 99);
  CHECK(took < 200);
}

}  // namespace

TEST_CASE("a stall before the response head ends at the deadline with deadline_exceeded") {
  http_test::raw_server srv([](http_test::conn& c) {
    if (c.read_request()) c.wait_eof();
  });
  http::transport t;
  const int fds = fd_count();
  ends_near_deadline<leash::deadline_exceeded>([&] { (void)t.round_trip(get(srv.port())); });
  const auto s = t.stats();
  CHECK(s.open == 0);
  CHECK(s.idle == 0);
  CHECK(eventually([&] { return fd_count() == fds; }));
}

TEST_CASE("a stall mid-body ends at the deadline with deadline_exceeded") {
  http_test::raw_server srv([](http_test::conn& c) {
    if (!c.read_request()) return;
    c.write("HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\npartial");
    c.wait_eof();
  });
  http::transport t;
  const int fds = fd_count();
  ends_near_deadline<leash::deadline_exceeded>([&] {
    http::response r = t.round_trip(get(srv.port()));
    (void)r.body.read_all(1000);
  });
  CHECK(t.stats().open == 0);
  CHECK(eventually([&] { return fd_count() == fds; }));
}

TEST_CASE("a dial that hangs ends at the deadline; dial_timeout gives http::timeout") {
  // A listener that never accepts, with its backlog full: further SYNs are
  // dropped, so connect() hangs (loopback only).
  http_test::raw_server full({}, 0);
  std::vector<http::detail::socket> fillers;
  for (int i = 0; i < 8; ++i) {
    leash::cancel_scope quick(20ms);
    try {
      fillers.push_back(http::detail::dial("127.0.0.1", full.port(),
                                           http::detail::clock::time_point::max(),
                                           leash::this_task::stop_token()));
    } catch (const leash::cancelled&) {
      break;  // the backlog is full
    }
  }
  http::transport t;
  const int fds = fd_count();
  ends_near_deadline<leash::deadline_exceeded>([&] { (void)t.round_trip(get(full.port())); });
  CHECK(t.stats().open == 0);
  CHECK(t.stats().dials == 0);
  CHECK(fd_count() == fds);

  http::transport quick({.dial_timeout = 100ms});
  const auto start = std::chrono::steady_clock::now();
  CHECK_THROWS_AS((void)quick.round_trip(get(full.port())), http::timeout);
  CHECK(ms_since(start) < 200);
  CHECK(quick.stats().open == 0);
}

TEST_CASE("a caller queued for a connection is cancelled at the deadline and leaves no waiter") {
  http_test::gate gate(2);
  backend b([&](http::server_request&, http::response_writer& w) {
    gate.arrive_and_wait();
    w.write("late");
  });
  http::transport t({.max_conns_per_host = 1});
  leash::run_nursery([&](leash::nursery& n) {
    n.spawn([&] { CHECK(fetch(t, get(b.port())) == "late"); });
    gate.wait_arrived(1);
    ends_near_deadline<leash::deadline_exceeded>([&] { (void)t.round_trip(get(b.port())); });
    CHECK(t.stats().waiting == 0);
    gate.open();
  });
  const auto s = t.stats();
  CHECK(s.dials == 1);
  CHECK(s.waiting == 0);
  CHECK(s.open == 1);
}

TEST_CASE("an explicit stop token cancels a round trip") {
  http_test::raw_server srv([](http_test::conn& c) {
    if (c.read_request()) c.wait_eof();
  });
  http::transport t;
  std::stop_source stop;
  leash::run_nursery([&](leash::nursery& n) {
    n.spawn([&] {
      CHECK_THROWS_AS((void)t.round_trip(get(srv.port()), stop.get_token()), leash::cancelled);
    });
    CHECK(eventually([&] { return srv.accepted() == 1; }));
    stop.request_stop();
  });
  CHECK(t.stats().open == 0);
}

TEST_CASE("a response-header timeout fails only the slow request") {
  backend b([](http::server_request& req, http::response_writer& w) {
    if (req.target() == "/slow") leash::this_task::sleep_for(2s);
    w.write("fast");
  });
  http::transport t({.response_header_timeout = 100ms});
  const auto start = std::chrono::steady_clock::now();
  CHECK_THROWS_AS((void)t.round_trip(get(b.port(), "/slow")), http::timeout);
  CHECK(ms_since(start) < 200);
  CHECK(fetch(t, get(b.port(), "/fast")) == "fast");
  CHECK(t.stats().dials == 2);
}

// --- 4. Faults --------------------------------------------------------------

TEST_CASE("faults end in a clear exception and leave no connection behind") {
  struct fault {
    const char* name;
    http_test::raw_server::script script;
    http::reason reason;
  };
  std::vector<fault> faults{
      {"close mid-body",
       [](http_test::conn& c) {
         if (c.read_request()) c.write("HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nonly this");
       },
       http::reason::truncated_body},
      {"garbage", answer_with("SSH-2.0-OpenSSH_9.2\r\n\r\n"), http::reason::bad_status_line},
      {"CL+TE",
       answer_with("HTTP/1.1 200 OK\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n"
                   "0\r\n\r\n"),
       http::reason::content_length_with_transfer_encoding},
      {"close before the response", [](http_test::conn& c) { (void)c.read_request(); },
       http::reason::eof_before_response},
  };
  for (fault& f : faults) {
    CAPTURE(f.name);
    http_test::raw_server srv(f.script);
    http::transport t;
    const int fds = fd_count();
    try {
      fetch(t, get(srv.port()));
      FAIL("no exception");
    } catch (const http::protocol_error& e) {
      CHECK(e.reason() == f.reason);
    }
    CHECK(t.stats().open == 0);
    CHECK(t.stats().idle == 0);
    CHECK(eventually([&] { return fd_count() == fds; }));
  }
}

TEST_CASE("a reset before the response is an I/O or protocol error, never a hang") {
  http_test::raw_server srv([](http_test::conn& c) {
    if (c.read_request()) c.reset();
  });
  http::transport t;
  CHECK_THROWS_AS(fetch(t, get(srv.port())), http::error);
  CHECK(t.stats().open == 0);
}

TEST_CASE("unsolicited bytes on an idle connection: it is discarded, never reused") {
  std::atomic<int> conns{0};
  http_test::gate junk_written(1);
  http_test::gate pooled(2);  // opened by the test
  http_test::raw_server srv([&](http_test::conn& c) {
    const bool first = conns++ == 0;
    if (!c.read_request()) return;
    c.write("HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok");
    if (!first) {
      while (c.read_request())
        c.write("HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok");
      return;
    }
    pooled.arrive_and_wait();  // the client pooled the connection
    c.write("HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nevil!");
    junk_written.arrive_and_wait();
    c.wait_eof();
  });
  http::transport t;
  CHECK(fetch(t, get(srv.port())) == "ok");
  CHECK(t.stats().idle == 1);
  pooled.open();
  junk_written.wait_arrived(1);  // loopback: the bytes are in our receive queue now
  CHECK(fetch(t, get(srv.port())) == "ok");
  CHECK(t.stats().dials == 2);
  CHECK(t.stats().reuses == 0);
  CHECK(t.stats().discarded == 1);
}

TEST_CASE("a reused connection closed by the server is retried once for GET, not for POST") {
  std::atomic<int> conns{0};
  http_test::raw_server srv([&](http_test::conn& c) {
    const bool first = conns++ == 0;
    if (!c.read_request()) return;
    c.write("HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok");
    if (first) {
      (void)c.read_request();  // the second request dies with the connection
      return;
    }
    while (c.read_request())
      c.write("HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok");
  });
  SUBCASE("GET is retried on a new connection") {
    http::transport t;
    CHECK(fetch(t, get(srv.port())) == "ok");
    CHECK(fetch(t, get(srv.port())) == "ok");
    CHECK(t.stats().dials == 2);
  }
  SUBCASE("POST with a body is not") {
    http::transport t;
    CHECK(fetch(t, get(srv.port())) == "ok");
    http::request post{"127.0.0.1", srv.port(), {"POST", "/"}, "data"};
    CHECK_THROWS_AS(fetch(t, post), http::protocol_error);
    CHECK(t.stats().dials == 1);
  }
  SUBCASE("GET with a streaming body is not (it cannot be replayed)") {
    http::transport t;
    CHECK(fetch(t, get(srv.port())) == "ok");
    http::request streamed = get(srv.port());
    streamed.stream = leash::memory_body("data");
    CHECK_THROWS_AS(fetch(t, streamed), http::error);
    CHECK(streamed.stream.closed());
    CHECK(t.stats().dials == 1);
  }
}

TEST_CASE("a streaming request body goes chunked without a length, with Content-Length with one") {
  backend b([](http::server_request& req, http::response_writer& w) {
    w.write(std::string(req.headers().get("transfer-encoding").value_or("-")) + " " +
            std::string(req.headers().get("content-length").value_or("-")) + " " + req.read_body());
  });
  http::transport t;
  const std::string content = http_test::paced_content(3, 10);
  http::request chunked{"127.0.0.1", b.port(), {"PUT", "/"}, {}};
  chunked.stream = leash::body(std::make_unique<http_test::paced_source>(3, 10));
  CHECK(fetch(t, chunked) == "chunked - " + content);
  CHECK(chunked.stream.closed());
  http::request sized{"127.0.0.1", b.port(), {"PUT", "/"}, {}};
  sized.stream = leash::body(std::make_unique<http_test::paced_source>(3, 10));
  sized.stream_length = 30;
  CHECK(fetch(t, sized) == "- 30 " + content);
  CHECK(t.stats().dials == 1);  // both bodies were read whole: one connection
}

TEST_CASE("a stream whose length differs from stream_length fails and closes the connection") {
  backend b(hello);
  http::transport t;
  for (std::uint64_t declared : {20, 40}) {
    CAPTURE(declared);
    http::request req{"127.0.0.1", b.port(), {"PUT", "/"}, {}};
    req.stream = leash::body(std::make_unique<http_test::paced_source>(3, 10));
    req.stream_length = declared;
    try {
      (void)t.round_trip(req);
      FAIL("no exception");
    } catch (const http::invalid_request& e) {
      CHECK(e.reason() == http::reason::body_length_mismatch);
    }
    CHECK(req.stream.closed());
  }
  CHECK(t.stats().open == 0);  // a half-sent request's connection is never pooled
}

TEST_CASE("a server that answers an upload early and stops reading: its response is returned") {
  backend b([](http::server_request&, http::response_writer& w) {
    w.set_status(413);
    w.write("too big");  // the body is never read; the server closes after this
  });
  http::transport t;
  constexpr std::size_t piece = 64 * 1024;
  constexpr std::size_t pieces = 512;  // 32 MiB: more than the socket buffers hold
  http::request up{"127.0.0.1", b.port(), {"PUT", "/"}, {}};
  up.stream = leash::body(std::make_unique<http_test::paced_source>(pieces, piece));
  up.stream_length = pieces * piece;
  http::response r = t.round_trip(up);
  CHECK(r.status() == 413);
  CHECK(r.head.headers.get("connection") == "close");
  CHECK(r.body.read_all(100) == "too big");
  CHECK(up.stream.closed());
  CHECK(t.stats().open == 0);  // a request not sent whole never leaves its connection pooled
  // The same with a string body.
  http::response s =
      t.round_trip({"127.0.0.1", b.port(), {"PUT", "/"}, std::string(pieces * piece, 'x')});
  CHECK(s.status() == 413);
  CHECK(s.body.read_all(100) == "too big");
}
