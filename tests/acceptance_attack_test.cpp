// Acceptance attacks on in-memory HTTP connections (leash/http/memory.hpp,
// transport_options::dial) and on closed nurseries
// (nursery_options::detect_deadlocks).
//
// Written from outside, as an acceptance suite would: many of these cases
// failed when written (a close() that did not wake the peer's blocked
// write, an early answer lost after a failed send, an idle reaper that kept
// virtual time ticking, drains and idle timeouts on the real clock,
// virtual_time refused inside a watched nursery, a closed nursery in
// another's body with a clock of its own). Hangs are turned into
// failures: the HTTP cases run in virtual_time (a missing wake is a
// leash::deadlock there), the closed-nursery cases under a hang_guard.
#include <doctest/doctest.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <leash.hpp>
#include <leash/http/memory.hpp>
#include <leash/http/transport.hpp>
#include <leash/virtual_time.hpp>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <thread>
#include <utility>
#include <vector>

#include "support/blocked.hpp"
#include "support/deadlock_report.hpp"
#include "support/memory_stub.hpp"

using namespace std::chrono_literals;
namespace http = leash::http;
using leash_test::contains;
using leash_test::deadlock_of;
using leash_test::hang_guard;
using memory_stub::async_read_head;
using memory_stub::drain;
using memory_stub::get_request;
using memory_stub::hello_response;
using memory_stub::io_errno;
using memory_stub::read_head;

namespace {

// Writes `data` one byte per write.
void write_bytewise(http::memory_end& c, std::string_view data) {
  for (const char ch : data)
    c.write_all(std::string_view(&ch, 1));
}

}  // namespace

// ---------------------------------------------------------------------------
// memory_pipe / memory_end

TEST_CASE("memory_pipe: closing an end wakes the peer's write blocked on a full buffer") {
  // The peer's writes must fail with EPIPE (header comment of memory.hpp).
  auto ab = http::memory_pipe(1);
  int err = 0;
  leash::virtual_time vt;
  vt.run([&](leash::nursery& n) {
    n.spawn([&] { err = io_errno([&] { ab.first->write_all("abc"); }); });  // 1 byte fits
    n.spawn([&] {
      leash_test::wait_blocked("recv");  // the writer waits for room
      ab.second->close();
    });
  });
  CHECK(err == EPIPE);
}

TEST_CASE("memory_pipe: closing an end wakes the peer's coroutine write on a full buffer") {
  auto ab = http::memory_pipe(1);
  int err = 0;
  leash::virtual_time vt;
  vt.run([&](leash::nursery& n) {
    n.spawn([&]() -> leash::coro<void> {
      try {
        co_await ab.first->async_write_all("abc");
      } catch (const http::io_error& e) {
        err = e.code().value();
      }
    });
    n.spawn([&] {
      leash_test::wait_blocked("recv");  // the coroutine writer waits for room
      ab.second->close();
    });
  });
  CHECK(err == EPIPE);
}

TEST_CASE("memory_pipe: closing an end wakes its own write blocked on a full buffer (EBADF)") {
  auto ab = http::memory_pipe(1);
  int err = 0;
  leash::virtual_time vt;
  vt.run([&](leash::nursery& n) {
    n.spawn([&] { err = io_errno([&] { ab.first->write_all("abc"); }); });
    n.spawn([&] {
      leash_test::wait_blocked("recv");  // the writer waits for room
      ab.first->close();
    });
  });
  CHECK(err == EBADF);
}

TEST_CASE("memory_pipe: the peer's shutdown ends a read blocked on it; a write still fails after") {
  auto ab = http::memory_pipe(4);
  std::size_t got = 1;
  leash::virtual_time vt;
  vt.run([&](leash::nursery& n) {
    n.spawn([&] {
      char buf[8];
      got = ab.first->read_some(buf);
    });
    n.spawn([&] {
      leash_test::wait_blocked("recv");  // the reader waits for bytes
      (void)ab.second->shutdown();
    });
  });
  CHECK(got == 0);
  CHECK(io_errno([&] { ab.second->write_all("x"); }) == EPIPE);
}

TEST_CASE("memory_pipe: one end read and written at once from two threads, 1 MiB each way") {
  constexpr std::size_t total = 1 << 20;  // many buffer turns at capacity 4 KiB
  constexpr std::size_t capacity = 4096;
  auto ab = http::memory_pipe(capacity);
  auto& a = *ab.first;
  auto& b = *ab.second;
  std::size_t a_read = 0, b_read = 0;
  std::uint64_t a_sum = 0, b_sum = 0;
  leash::run_nursery([&](leash::nursery& n) {
    auto writer = [](http::memory_end& e) {
      std::string chunk(1000, '\0');
      std::size_t sent = 0;
      while (sent < total) {
        const std::size_t k = std::min(chunk.size(), total - sent);
        for (std::size_t i = 0; i < k; ++i)
          chunk[i] = static_cast<char>((sent + i) % 251);
        e.write_all(std::string_view(chunk.data(), k));
        sent += k;
      }
      (void)e.shutdown();
    };
    auto reader = [](http::memory_end& e, std::size_t& count, std::uint64_t& sum) {
      char buf[777];
      while (const std::size_t k = e.read_some(buf)) {
        for (std::size_t i = 0; i < k; ++i)
          sum += static_cast<unsigned char>(buf[i]) * ((count + i) % 7 + 1);
        count += k;
      }
    };
    n.spawn([&] { writer(a); });
    n.spawn([&] { reader(a, a_read, a_sum); });
    n.spawn([&] { writer(b); });
    n.spawn([&]() -> leash::coro<void> {  // b's reader is a coroutine
      char buf[333];
      while (const std::size_t k = co_await b.async_read_some(buf)) {
        for (std::size_t i = 0; i < k; ++i)
          b_sum += static_cast<unsigned char>(buf[i]) * ((b_read + i) % 7 + 1);
        b_read += k;
      }
    });
  });
  std::uint64_t expected = 0;
  for (std::size_t i = 0; i < total; ++i)
    expected += (i % 251) * (i % 7 + 1);
  CHECK(a_read == total);
  CHECK(b_read == total);
  CHECK(a_sum == expected);
  CHECK(b_sum == expected);
}

TEST_CASE("memory_listener: 1000 connections through one listener, one request each") {
  constexpr int connections = 1000;
  http::transport_stats stats;
  int ok = 0;
  leash::run_nursery([&](leash::nursery& n) {
    http::memory_listener server;
    http::transport t({.disable_keep_alives = true, .dial = server.dialer()});
    n.spawn("acceptor", [&] {
      leash::run_nursery([&](leash::nursery& handlers) {
        while (std::unique_ptr<http::memory_end> c = server.accept()) {
          handlers.spawn(
              [c = std::shared_ptr<http::memory_end>(std::move(c))]() -> leash::coro<void> {
                (void)co_await async_read_head(*c);
                co_await c->async_write_all(hello_response);
              });
        }
      });
    });
    for (int i = 0; i < connections; ++i) {
      if (t.round_trip(get_request()).body.read_all(64) == "hello") ++ok;
    }
    stats = t.stats();
    server.close();
  });
  CHECK(ok == connections);
  CHECK(stats.dials == connections);
  CHECK(stats.open == 0);
}

TEST_CASE("memory_listener: 8 coroutine clients share the pool, keep-alive, 25 requests each") {
  constexpr int clients = 8;
  constexpr int per_client = 25;
  http::transport_stats stats;
  std::atomic<int> ok{0};
  leash::run_nursery([&](leash::nursery& n) {
    http::memory_listener server;
    http::transport t({.max_conns_per_host = clients, .dial = server.dialer()});
    n.spawn("acceptor", [&] {
      leash::run_nursery([&](leash::nursery& handlers) {
        while (std::unique_ptr<http::memory_end> c = server.accept()) {
          handlers.spawn(
              [c = std::shared_ptr<http::memory_end>(std::move(c))]() -> leash::coro<void> {
                while (!(co_await async_read_head(*c)).empty())
                  co_await c->async_write_all(hello_response);
              });
        }
      });
    });
    leash::run_nursery([&](leash::nursery& cl) {
      for (int i = 0; i < clients; ++i) {
        cl.spawn([&]() -> leash::coro<void> {
          for (int k = 0; k < per_client; ++k) {
            http::response r = co_await t.async_round_trip(get_request());
            if (co_await r.body.async_read_all(64) == "hello") ++ok;
          }
        });
      }
    });
    stats = t.stats();
    server.close();
    t.close_idle();  // the handlers read the end of their streams
  });
  CHECK(ok == clients * per_client);
  CHECK(stats.dials <= clients);
  CHECK(stats.dials + stats.reuses == clients * per_client);
}

// ---------------------------------------------------------------------------
// transport over memory connections: misbehaving stubs

TEST_CASE("transport: a stub that answers early and closes while the body is sent") {
  // The transport's contract (transport.hpp, exchange): a failed send is
  // reported only if no response arrives; the early answer (a 413 to a big
  // upload) is the response. Over a socket the client's write fails with
  // EPIPE/ECONNRESET; over a memory connection it must not wait forever.
  leash::virtual_time vt;
  int status = 0;
  vt.run([&](leash::nursery& n) {
    http::memory_listener server(http::memory_listener::default_backlog, 128);  // < the body
    http::transport t({.dial = server.dialer()});
    n.spawn([&] {
      std::unique_ptr<http::memory_end> c = server.accept();
      (void)read_head(*c);
      c->write_all(
          "HTTP/1.1 413 Payload Too Large\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
      c->close();
    });
    http::response r = t.round_trip({"api.test", 80, {"POST", "/up"}, std::string(4096, 'x')});
    status = r.status();
    r.body.close();
  });
  CHECK(status == 413);
}

// A request body that sends its bytes only once `go` is set.
class gated_source final : public leash::body_source {
 public:
  explicit gated_source(leash::event& go) : go_(go) {}
  std::size_t read(std::span<std::byte> out, std::stop_token stop) override {
    if (sent_) return 0;
    go_.wait(stop);
    sent_ = true;
    std::fill(out.begin(), out.end(), std::byte{'x'});
    return out.size();
  }
  void close(bool) override {}

 private:
  leash::event& go_;
  bool sent_ = false;
};

TEST_CASE("transport: an early answer survives the failed send of the rest, over dial") {
  // exchange(): "a failed send is reported only if no response arrives". The
  // stub answers 413 and closes before the body's bytes come; their write
  // then fails with EPIPE (no wait involved), and the 413 must still win.
  leash::virtual_time vt;
  int status = 0;
  std::string error;
  vt.run([&](leash::nursery& n) {
    http::memory_listener server;
    http::transport t({.dial = server.dialer()});
    leash::event answered;
    n.spawn([&] {
      std::unique_ptr<http::memory_end> c = server.accept();
      (void)read_head(*c);
      c->write_all(
          "HTTP/1.1 413 Payload Too Large\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
      c->close();
      answered.set();
    });
    http::request req{"api.test", 80, {"POST", "/up"}};
    req.stream = leash::body(std::make_unique<gated_source>(answered));
    try {
      http::response r = t.round_trip(req);
      status = r.status();
      r.body.close();
    } catch (const std::exception& e) {
      error = e.what();
    }
  });
  CHECK(error == "");
  CHECK(status == 413);
}

TEST_CASE("transport: a stub answering one byte at a time, thread client") {
  leash::virtual_time vt;
  std::string body;
  vt.run([&](leash::nursery& n) {
    http::memory_listener server;
    http::transport t({.dial = server.dialer()});
    n.spawn([&] {
      std::unique_ptr<http::memory_end> c = server.accept();
      (void)read_head(*c);
      write_bytewise(*c,
                     "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
                     "3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n");
      (void)drain(*c);
    });
    body = t.round_trip(get_request()).body.read_all(64);
  });
  CHECK(body == "abcde");
}

TEST_CASE("transport: a stub answering one byte at a time, coroutine client reading async") {
  leash::virtual_time vt;
  std::string body;
  http::memory_listener server(http::memory_listener::default_backlog, 1);  // 1-byte buffers
  http::transport t({.dial = server.dialer()});
  vt.run([&](leash::nursery& n) {
    n.spawn([&] {
      std::unique_ptr<http::memory_end> c = server.accept();
      (void)read_head(*c);
      write_bytewise(*c, "HTTP/1.1 200 OK\r\nContent-Length: 11\r\n\r\nhello world");
    });  // closes its end: the transport outlives the scope, its pool would hold it open
    n.spawn([&]() -> leash::coro<void> {
      http::response r = co_await t.async_round_trip(get_request());
      char buf[4];
      while (const std::size_t k = co_await r.body.async_read(buf))
        body.append(buf, k);
    });
  });
  CHECK(body == "hello world");
}

TEST_CASE("transport: a stub answering garbage: protocol_error, thread and coroutine") {
  leash::virtual_time vt;
  int protocol_errors = 0;
  http::memory_listener server;
  http::transport t({.dial = server.dialer()});
  vt.run([&](leash::nursery& n) {
    n.spawn([&] {
      for (int i = 0; i < 2; ++i) {
        std::unique_ptr<http::memory_end> c = server.accept();
        (void)read_head(*c);
        c->write_all("SSH-2.0-OpenSSH_9.0\r\n\r\n");
        (void)drain(*c);
      }
    });
    try {
      (void)t.round_trip(get_request());
    } catch (const http::protocol_error&) {
      ++protocol_errors;
    }
    n.spawn([&]() -> leash::coro<void> {
      try {
        (void)co_await t.async_round_trip(get_request());
      } catch (const http::protocol_error&) {
        ++protocol_errors;
      }
    });
  });
  CHECK(protocol_errors == 2);
}

TEST_CASE("transport: a stub closing mid-body: the body read fails, thread and coroutine") {
  leash::virtual_time vt;
  int errors = 0;
  http::memory_listener server;
  http::transport t({.dial = server.dialer()});
  vt.run([&](leash::nursery& n) {
    n.spawn([&] {
      for (int i = 0; i < 2; ++i) {
        std::unique_ptr<http::memory_end> c = server.accept();
        (void)read_head(*c);
        c->write_all("HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nhello");
        c->close();
      }
    });
    try {
      (void)t.round_trip(get_request()).body.read_all(64);
    } catch (const http::error&) {
      ++errors;
    }
    n.spawn([&]() -> leash::coro<void> {
      try {
        http::response r = co_await t.async_round_trip(get_request());
        (void)co_await r.body.async_read_all(64);
      } catch (const http::error&) {
        ++errors;
      }
    });
  });
  CHECK(errors == 2);
}

TEST_CASE("transport: a round trip blocked on a full write is cancelled by a deadline") {
  leash::virtual_time vt;
  std::chrono::steady_clock::duration thread_waited{}, coro_waited{};
  http::memory_listener server(http::memory_listener::default_backlog, 1);
  http::transport t({.dial = server.dialer()});
  const std::string big(1 << 20, 'x');
  vt.run([&](leash::nursery& n) {
    // Nobody accepts: each request waits on a full 1-byte buffer.
    const auto start = vt.now();
    CHECK_THROWS_AS(leash::fail_after(5s,
                                      [&] {
                                        (void)t.round_trip({"api.test", 80, {"POST", "/"}, big});
                                      }),
                    leash::deadline_exceeded);
    thread_waited = vt.now() - start;
    n.spawn([&]() -> leash::coro<void> {
      const auto begin = vt.now();
      {
        leash::cancel_scope limit(7s);
        try {
          (void)co_await t.async_round_trip({"api.test", 80, {"POST", "/"}, big});
        } catch (const leash::cancelled&) {
        }
      }
      coro_waited = vt.now() - begin;
    });
  });
  CHECK(thread_waited == 5s);
  CHECK(coro_waited == 7s);
  CHECK(t.stats().open == 0);
}

TEST_CASE("transport: a coroutine client's header timeout when the stub answers after it") {
  leash::virtual_time vt;
  std::chrono::steady_clock::duration waited{};
  bool timed_out = false;
  int late_write_errno = -1;
  http::memory_listener server;
  http::transport t({.response_header_timeout = 30s, .dial = server.dialer()});
  vt.run([&](leash::nursery& n) {
    n.spawn([&] {
      std::unique_ptr<http::memory_end> c = server.accept();
      (void)read_head(*c);
      leash::this_task::sleep_for(31s);  // the client gave up at 30 s and closed
      late_write_errno = io_errno([&] { c->write_all(hello_response); });
    });
    n.spawn([&]() -> leash::coro<void> {
      const auto start = vt.now();
      try {
        (void)co_await t.async_round_trip(get_request());
      } catch (const http::timeout&) {
        timed_out = true;
      }
      waited = vt.now() - start;
    });
  });
  CHECK(timed_out);
  CHECK(waited == 30s);
  CHECK(late_write_errno == EPIPE);
}

TEST_CASE("transport: destroying the transport closes a memory connection idle in its pool") {
  leash::virtual_time vt;
  std::size_t after = 1;
  vt.run([&](leash::nursery& n) {
    http::memory_listener server;
    n.spawn([&] {
      std::unique_ptr<http::memory_end> c = server.accept();
      (void)read_head(*c);
      c->write_all(hello_response);
      after = drain(*c);  // ends only when the pooled connection is closed
    });
    http::transport t({.dial = server.dialer()});
    CHECK(t.round_trip(get_request()).body.read_all(64) == "hello");
    CHECK(t.stats().idle == 1);
  });  // ~transport: the stub's drain sees the end of the stream
  CHECK(after == 0);
}

// A body closed early over a tail that arrives 10 ms later: drained within
// drain_timeout (100 ms) and the connection is reused. `advance_first`: the
// virtual clock ran an hour before.
void drain_case(bool advance_first) {
  leash::virtual_time vt;
  http::transport_stats stats;
  http::memory_listener server;  // outlives the stub, which accepts until close()
  vt.run([&](leash::nursery& n) {
    if (advance_first) leash::this_task::sleep_for(1h);
    http::transport t({.dial = server.dialer()});
    n.spawn([&] {  // the first answer's tail comes 10 ms late; a client that left is fine
      bool first = true;
      while (std::unique_ptr<http::memory_end> c = server.accept()) {
        try {
          (void)read_head(*c);
          if (std::exchange(first, false)) {
            c->write_all("HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nhello");
            // The subject: a tail 10 ms late, inside the 100 ms drain_timeout.
            leash::this_task::sleep_for(10ms);
            c->write_all("world");
            (void)read_head(*c);
          }
          c->write_all(hello_response);
          (void)drain(*c);
        } catch (const http::io_error&) {
        }
      }
    });
    http::response r = t.round_trip(get_request());
    r.body.close();  // drains the tail
    CHECK(t.round_trip(get_request()).body.read_all(64) == "hello");
    stats = t.stats();
    server.close();
  });
  CHECK(stats.dials == 1);
  CHECK(stats.reuses == 1);
}

TEST_CASE("transport: closing a body early drains its tail on the virtual clock") {
  drain_case(false);
}

TEST_CASE("transport: the drain of a closed body, after virtual time has advanced") {
  drain_case(true);
}

TEST_CASE("transport: a stub that never answers, in virtual time, is a deadlock") {
  // docs/testing.md: "a missing answer is a deadlock instead of a hang". The
  // stub waits on `release`, which only a watcher outside the scope closes,
  // once an hour of virtual time has passed: a report at once is right.
  leash::virtual_time vt;
  leash::channel<int> release;
  std::atomic<bool> done{false};
  const auto start = vt.now();
  std::thread watcher([&] {
    while (!done.load() && vt.now() - start < 1h)
      std::this_thread::yield();
    release.close();
  });
  bool deadlock = false;
  try {
    vt.run([&](leash::nursery& n) {
      http::memory_listener server;
      http::transport t({.dial = server.dialer()});  // the default idle reaper ticks
      n.spawn([&] {
        std::unique_ptr<http::memory_end> c = server.accept();
        (void)read_head(*c);
        (void)release.recv();
      });
      (void)t.round_trip(get_request());
    });
  } catch (const leash::deadlock& e) {
    MESSAGE(std::string(e.what()));
    deadlock = true;
  } catch (const std::exception& e) {
    MESSAGE("instead: " << e.what() << " after " << (vt.now() - start) / 1s << " virtual s");
  }
  done.store(true);
  watcher.join();
  CHECK(deadlock);
}

TEST_CASE(
    "transport: with no idle reaper, a stub that never answers is a deadlock in virtual time") {
  // The case above without the reaper ticker: the report comes at once.
  leash::virtual_time vt;
  std::string report;
  try {
    vt.run([&](leash::nursery& n) {
      http::memory_listener server;
      http::transport t({.idle_timeout = 0ms, .dial = server.dialer()});
      n.spawn("stub", [&] {
        std::unique_ptr<http::memory_end> c = server.accept();
        (void)drain(*c);
      });
      (void)t.round_trip(get_request());
    });
  } catch (const leash::deadlock& e) {
    report = e.what();
  }
  CHECK(contains(report, "leash::virtual_time: deadlock"));
  CHECK(contains(report, "\"stub\""));
}

TEST_CASE("transport: idle_timeout closes a pooled memory connection on the virtual clock") {
  leash::virtual_time vt;
  std::size_t idle_before = 0, idle_after = 0;
  vt.run([&](leash::nursery& n) {
    http::memory_listener server;
    http::transport t({.idle_timeout = 10s, .dial = server.dialer()});
    n.spawn([&] {
      std::unique_ptr<http::memory_end> c = server.accept();
      (void)read_head(*c);
      c->write_all(hello_response);
      (void)drain(*c);
    });
    CHECK(t.round_trip(get_request()).body.read_all(64) == "hello");
    idle_before = t.stats().idle;
    leash::this_task::sleep_for(60s);  // six idle timeouts of virtual time
    idle_after = t.stats().idle;
  });
  CHECK(idle_before == 1);
  CHECK(idle_after == 0);
}

// ---------------------------------------------------------------------------
// closed nurseries (nursery_options::detect_deadlocks)

TEST_CASE("closed nursery: tasks blocked on select, event, semaphore and soft stop are reported") {
  const hang_guard guard;
  leash::channel<int> a, b;
  leash::event never;
  leash::semaphore none(1);
  const std::string report = deadlock_of([&] {
    leash::run_nursery({.name = "mixed", .detect_deadlocks = true}, [&](leash::nursery& n) {
      auto held = none.acquire();  // the owner keeps the only permit
      n.spawn("selector", [&] {
        (void)leash::select(leash::on_recv(a, [](int) {}), leash::on_recv(b, [](int) {}));
      });
      n.spawn("event waiter", [&] { never.wait(); });
      n.spawn("permit waiter", [&] { (void)none.acquire(); });
      n.spawn("soft stop waiter", [] { leash::this_task::wait_for_soft_stop(); });
      n.spawn("coroutine selector", [&]() -> leash::coro<void> {
        (void)co_await leash::async_select(leash::on_recv(a, [](int) {}));
      });
      n.wait();  // the owner blocks while holding the permit
    });
  });
  CHECK(contains(report, "(a closed nursery"));
  for (const char* name : {"selector", "event waiter", "permit waiter", "soft stop waiter",
                           "coroutine selector", "mixed owner"})
    CHECK(contains(report, std::string("\"") + name + "\""));
}

TEST_CASE("closed nursery: nested in a closed nursery's task, a deadlock inside is reported") {
  const hang_guard guard;
  leash::channel<int> ch;
  const std::string report = deadlock_of([&] {
    leash::run_nursery({.name = "outer", .detect_deadlocks = true}, [&](leash::nursery& n) {
      n.spawn("opener", [&] {
        leash::run_nursery({.name = "inner", .detect_deadlocks = true}, [&](leash::nursery& in) {
          in.spawn("stuck", [&] { (void)ch.recv(); });
        });
      });
    });
  });
  CHECK(contains(report, "\"stuck\""));
}

TEST_CASE("closed nursery: a task that spawns into its own nursery keeps it alive") {
  const hang_guard guard;
  leash::channel<int> ch;
  int sum = 0;
  CHECK_NOTHROW(leash::run_nursery({.detect_deadlocks = true}, [&](leash::nursery& n) {
    n.spawn("consumer", [&] {
      for (int v : ch)
        sum += v;
    });
    n.spawn("spawner", [&] {
      n.spawn("late producer", [&] {
        // The subject: the timer of a member spawned late keeps the nursery
        // from a standstill while the consumer waits.
        leash::this_task::sleep_for(5ms);
        ch.send(2);
        ch.close();
      });
    });
  }));
  CHECK(sum == 2);
}

TEST_CASE("closed nursery: a shutdown grace pending is no deadlock; the hard stop ends it") {
  const hang_guard guard;
  leash::channel<int> ch;
  bool cancelled = false;
  CHECK_NOTHROW(leash::run_nursery({.detect_deadlocks = true}, [&](leash::nursery& n) {
    n.spawn("ignores soft stop", [&] {
      try {
        (void)ch.recv();
      } catch (const leash::cancelled&) {
        cancelled = true;
        throw;
      }
    });
    n.shutdown(20ms);
  }));
  CHECK(cancelled);
}

TEST_CASE("closed nursery: a memory HTTP stub that never answers is a deadlock, not a hang") {
  const hang_guard guard;
  http::memory_listener server;
  http::transport t({.dial = server.dialer()});
  const std::string report = deadlock_of([&] {
    leash::run_nursery({.name = "http", .detect_deadlocks = true}, [&](leash::nursery& n) {
      n.spawn("silent stub", [&] {
        std::unique_ptr<http::memory_end> c = server.accept();
        (void)drain(*c);
      });
      n.spawn("client", [&] { (void)t.round_trip(get_request()); });
    });
  });
  CHECK(contains(report, "\"silent stub\""));
  CHECK(contains(report, "\"client\""));
}

TEST_CASE("closed nursery: a memory HTTP exchange that completes is no deadlock") {
  const hang_guard guard;
  http::memory_listener server;
  http::transport t({.dial = server.dialer()});
  std::string body;
  CHECK_NOTHROW(leash::run_nursery({.detect_deadlocks = true}, [&](leash::nursery& n) {
    n.spawn("stub", [&] {
      std::unique_ptr<http::memory_end> c = server.accept();
      (void)read_head(*c);
      leash::this_task::sleep_for(5ms);  // the subject: a pending timer while the client waits
      c->write_all(hello_response);
    });
    n.spawn("client", [&] { body = t.round_trip(get_request()).body.read_all(64); });
  }));
  CHECK(body == "hello");
}

TEST_CASE("closed nursery: virtual_time::run in one of its thread tasks is no deadlock") {
  // The thread task waits for its virtual_time scope, whose tasks run on the
  // virtual clock, not the watch's: the task is not blocked for good.
  const hang_guard guard;
  std::chrono::steady_clock::duration waited{};
  leash::channel<int> ch;
  CHECK_NOTHROW(leash::run_nursery({.detect_deadlocks = true}, [&](leash::nursery& n) {
    n.spawn("driver", [&] {
      leash::virtual_time vt;
      vt.run([&](leash::nursery& inner) {
        const auto start = vt.now();
        inner.spawn([&] {
          leash::this_task::sleep_for(1h);
          ch.send(1);
        });
        (void)ch.recv();
        waited = vt.now() - start;
      });
    });
  }));
  CHECK(waited == 1h);
}

TEST_CASE("runtime detect_deadlocks: virtual_time::run in a thread task of a watched nursery") {
  // The process-wide watch's clock is real time; it is no virtual_time scope.
  leash::runtime_options on;
  on.detect_deadlocks = true;
  leash::runtime::configure(on);
  std::chrono::steady_clock::duration waited{};
  std::string error;
  try {
    leash::run_nursery([&](leash::nursery& n) {
      n.spawn("driver", [&] {
        leash::virtual_time vt;
        vt.run([&](leash::nursery&) {
          const auto start = vt.now();
          leash::this_task::sleep_for(1h);
          waited = vt.now() - start;
        });
      });
    });
  } catch (const std::exception& e) {
    error = e.what();
  }
  leash::runtime::configure(leash::runtime_options{});
  CHECK(error == "");
  CHECK(waited == 1h);
}

TEST_CASE("closed nursery: opened in the body of another, fed by the outer one's task") {
  // The inner nursery is opened by the outer's owner thread, in its body;
  // its task is woken by a task of the outer nursery (whose timer is
  // pending). Both nurseries are closed: nothing outside both wakes them.
  const hang_guard guard;
  leash::channel<int> ch;
  int got = 0;
  std::string error;
  try {
    leash::run_nursery({.name = "outer", .detect_deadlocks = true}, [&](leash::nursery& outer) {
      outer.spawn("late sender", [&] {
        leash::this_task::sleep_for(20ms);  // the subject: an outer member's pending timer
        ch.send(7);
      });
      leash::run_nursery({.name = "inner", .detect_deadlocks = true}, [&](leash::nursery& inner) {
        inner.spawn("receiver", [&] { got = ch.recv().value_or(0); });
      });
    });
  } catch (const std::exception& e) {
    error = e.what();
  }
  CHECK(error == "");
  CHECK(got == 7);
}
