// Tests for leash/http/memory.hpp: in-memory connections (memory_pipe,
// memory_listener) and the transport's dial option, in real and virtual time.
#include <doctest/doctest.h>

#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <leash.hpp>
#include <leash/http/memory.hpp>
#include <leash/http/transport.hpp>
#include <leash/virtual_time.hpp>
#include <memory>
#include <span>
#include <string>
#include <string_view>

#include "support/blocked.hpp"
#include "support/memory_stub.hpp"

using namespace std::chrono_literals;
namespace http = leash::http;
using memory_stub::async_read_head;
using memory_stub::drain;
using memory_stub::get_request;
using memory_stub::hello_response;
using memory_stub::io_errno;
using memory_stub::read_head;

namespace {

// A stream with no socket that never overrides the waits.
class no_wait_stream final : public http::stream {
 public:
  http::step read(std::span<char>) override { return {0, http::want::read}; }
  http::step write(std::string_view data) override { return {data.size(), http::want::nothing}; }
  http::want shutdown() override { return http::want::nothing; }
};

}  // namespace

TEST_CASE("a client's header timeout against a server that never answers passes in virtual time") {
  leash::virtual_time vt;
  std::string request_seen;
  std::chrono::steady_clock::duration waited{};
  vt.run([&](leash::nursery& n) {
    http::memory_listener server;
    http::transport t({.response_header_timeout = 30s, .dial = server.dialer()});
    n.spawn([&] {  // reads the request, never answers
      std::unique_ptr<http::memory_end> c = server.accept();
      request_seen = read_head(*c);
      (void)drain(*c);  // until the client gives up and closes
    });
    const auto start = vt.now();
    CHECK_THROWS_WITH_AS(t.round_trip(get_request()),
                         "leash::http: timeout: no response header within 30000 ms", http::timeout);
    waited = vt.now() - start;
  });
  CHECK(waited == 30s);
  CHECK(request_seen.rfind("GET / HTTP/1.1\r\n", 0) == 0);
  CHECK(request_seen.find("Host: api.test\r\n") != std::string::npos);
}

TEST_CASE("a coroutine client's header timeout against a silent server passes in virtual time") {
  leash::virtual_time vt;
  std::chrono::steady_clock::duration waited{};
  bool timed_out = false;
  http::memory_listener server;  // outlive the tasks, which outlive the body
  http::transport t({.response_header_timeout = 30s, .dial = server.dialer()});
  vt.run([&](leash::nursery& n) {
    n.spawn([&]() -> leash::coro<void> {  // a coroutine server that never answers
      std::unique_ptr<http::memory_end> c = co_await server.async_accept();
      (void)co_await async_read_head(*c);
      char buf[64];
      while (co_await c->async_read_some(buf) > 0) {
      }
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
}

TEST_CASE("a server stub that sleeps before it answers is waited for in virtual time") {
  leash::virtual_time vt;
  std::chrono::steady_clock::duration waited{};
  std::string body;
  vt.run([&](leash::nursery& n) {
    http::memory_listener server;
    http::transport t({.response_header_timeout = 30s, .dial = server.dialer()});
    n.spawn([&] {
      std::unique_ptr<http::memory_end> c = server.accept();
      (void)read_head(*c);
      leash::this_task::sleep_for(10s);  // slow, but inside the header timeout
      c->write_all(hello_response);
      (void)drain(*c);
    });
    const auto start = vt.now();
    http::response r = t.round_trip(get_request());
    body = r.body.read_all(1024);
    waited = vt.now() - start;
  });
  CHECK(body == "hello");
  CHECK(waited == 10s);
}

TEST_CASE("a memory connection carries whole exchanges and is reused by the pool") {
  http::transport_stats stats;
  std::string bodies;
  leash::run_nursery([&](leash::nursery& n) {
    http::memory_listener server;
    http::transport t({.dial = server.dialer()});
    n.spawn([&]() -> leash::coro<void> {  // answers two requests on one connection
      std::unique_ptr<http::memory_end> c = co_await server.async_accept();
      for (int i = 0; i < 2; ++i) {
        (void)co_await async_read_head(*c);
        co_await c->async_write_all(hello_response);
      }
    });
    for (int i = 0; i < 2; ++i)
      bodies += t.round_trip(get_request()).body.read_all(1024);
    stats = t.stats();
  });
  CHECK(bodies == "hellohello");
  CHECK(stats.dials == 1);
  CHECK(stats.reuses == 1);
}

TEST_CASE("a pooled memory connection the server closed is not reused") {
  http::transport_stats stats;
  leash::run_nursery([&](leash::nursery& n) {
    http::memory_listener server;
    http::transport t({.dial = server.dialer()});
    leash::event first_closed;
    n.spawn([&] {
      for (int i = 0; i < 2; ++i) {
        std::unique_ptr<http::memory_end> c = server.accept();
        (void)read_head(*c);
        c->write_all(hello_response);
        c->close();
        if (i == 0) first_closed.set();
      }
    });
    CHECK(t.round_trip(get_request()).body.read_all(1024) == "hello");
    first_closed.wait();  // the idle connection's peer is gone before the next request
    CHECK(t.round_trip(get_request()).body.read_all(1024) == "hello");
    stats = t.stats();
  });
  CHECK(stats.dials == 2);
  CHECK(stats.reuses == 0);
}

TEST_CASE("memory_pipe: bytes arrive whole and in order through a small buffer") {
  auto ab = http::memory_pipe(7);  // far smaller than what is sent: writes wait for reads
  auto& a = ab.first;
  auto& b = ab.second;
  std::string sent;
  for (int i = 0; i < 5000; ++i)
    sent += static_cast<char>('a' + i % 26);
  std::string got;
  leash::run_nursery([&](leash::nursery& n) {
    n.spawn([&] {
      a->write_all(sent);
      a->shutdown();
    });
    char buf[3];
    while (const std::size_t k = b->read_some(buf))
      got.append(buf, k);
  });
  CHECK(got == sent);
}

TEST_CASE("memory_pipe: shutdown ends one direction, close ends both") {
  auto ab = http::memory_pipe();
  auto& a = ab.first;
  auto& b = ab.second;
  a->write_all("bye");
  (void)a->shutdown();
  CHECK(drain(*b) == 3);                                 // the bytes, then the end
  CHECK(io_errno([&] { a->write_all("x"); }) == EPIPE);  // a's writes ended
  b->write_all("still open");                            // the other direction is not
  char buf[32];
  CHECK(a->read_some(buf) == 10);
  b->write_all("unread");
  a->close();
  CHECK(io_errno([&] { b->write_all("x"); }) == EPIPE);        // the reader is gone
  CHECK(io_errno([&] { (void)a->read_some(buf); }) == EBADF);  // a closed end
  CHECK(b->read_some(buf) == 0);                               // a's writes had ended
}

TEST_CASE("memory_pipe: closing an end wakes its own blocked read, which fails with EBADF") {
  auto ab = http::memory_pipe();
  auto& a = ab.first;
  int err = 0;
  leash::run_nursery([&](leash::nursery& n) {
    n.spawn([&] {
      char buf[8];
      err = io_errno([&] { (void)a->read_some(buf); });
    });
    leash_test::wait_blocked(">::recv");  // the read waits on its doorbell
    a->close();
  });
  CHECK(err == EBADF);
}

TEST_CASE("memory_pipe: a blocked read is cancelled, thread and coroutine") {
  auto ab = http::memory_pipe();
  auto& a = ab.first;
  auto cd = http::memory_pipe();
  auto& c = cd.first;
  std::atomic<int> cancelled{0};
  leash::run_nursery([&](leash::nursery& n) {
    n.spawn([&] {
      char buf[8];
      try {
        (void)a->read_some(buf);
      } catch (const leash::cancelled&) {
        ++cancelled;
      }
    });
    n.spawn([&]() -> leash::coro<void> {
      char buf[8];
      try {
        (void)co_await c->async_read_some(buf);
      } catch (const leash::cancelled&) {
        ++cancelled;
      }
    });
    leash_test::wait_blocked("recv", 2);  // ::recv and ::async_recv
    n.cancel();
  });
  CHECK(cancelled == 2);
}

TEST_CASE("memory_pipe: a read with a deadline ends on the virtual clock") {
  auto ab = http::memory_pipe();
  auto& a = ab.first;
  leash::virtual_time vt;
  std::chrono::steady_clock::duration waited{};
  vt.run([&](leash::nursery&) {
    const auto start = vt.now();
    char buf[8];
    CHECK_THROWS_AS(leash::fail_after(1h, [&] { (void)a->read_some(buf); }),
                    leash::deadline_exceeded);
    waited = vt.now() - start;
  });
  CHECK(waited == 1h);
}

TEST_CASE("memory_pipe: a reader nobody writes to is a deadlock in virtual time") {
  auto ab = http::memory_pipe();
  auto& a = ab.first;
  leash::virtual_time vt;
  CHECK_THROWS_AS(vt.run([&](leash::nursery&) {
    char buf[8];
    (void)a->read_some(buf);
  }),
                  leash::deadlock);
}

TEST_CASE("memory_listener: dials are refused after close or with the backlog full") {
  http::memory_listener full(1);
  std::unique_ptr<http::memory_end> first = full.dial();
  CHECK(io_errno([&] { (void)full.dial(); }) == ECONNREFUSED);

  http::memory_listener l;
  std::unique_ptr<http::memory_end> client = l.dial();
  l.close();
  CHECK(io_errno([&] { (void)l.dial(); }) == ECONNREFUSED);
  std::unique_ptr<http::memory_end> server = l.accept();  // the one dialed before close
  REQUIRE(server != nullptr);
  client->write_all("hi");
  char buf[4];
  CHECK(server->read_some(buf) == 2);
  CHECK(l.accept() == nullptr);
}

TEST_CASE("memory_listener: a dialer outliving its listener is refused; unaccepted ends close") {
  std::function<std::unique_ptr<http::stream>(const std::string&, std::uint16_t)> dial;
  std::unique_ptr<http::memory_end> unaccepted;
  {
    http::memory_listener l;
    dial = l.dialer();
    unaccepted = l.dial();
    unaccepted->write_all("GET");
  }
  CHECK(io_errno([&] { (void)dial("api.test", 80); }) == ECONNREFUSED);
  CHECK(io_errno([&] { unaccepted->write_all("x"); }) == EPIPE);  // its server end is gone
  char buf[4];
  CHECK(unaccepted->read_some(buf) == 0);
}

TEST_CASE("transport dial: misuse is a clear error") {
  http::memory_listener server;
  CHECK_THROWS_WITH_AS(
      http::transport({.wrap_connection = [](int, const std::string&) { return nullptr; },
                       .dial = server.dialer()}),
      "leash::http::transport: dial and wrap_connection both set (wrap_connection wraps a "
      "socket; a dialed stream has none)",
      leash::usage_error);

  http::transport no_stream({.dial = [](const std::string&, std::uint16_t) { return nullptr; }});
  CHECK_THROWS_WITH_AS(no_stream.round_trip(get_request()),
                       "leash::http: I/O error: leash::http::transport: dial gave no stream: "
                       "Invalid argument",
                       http::io_error);

  http::transport no_wait({.dial = [](const std::string&, std::uint16_t) {
    return std::make_unique<no_wait_stream>();
  }});
  CHECK_THROWS_WITH_AS(no_wait.round_trip(get_request()),
                       "leash::http::stream: a stream with no socket (transport_options::dial) "
                       "must override wait() and async_wait()",
                       leash::usage_error);
  CHECK_THROWS_AS((void)http::memory_pipe(0), leash::usage_error);
  CHECK_THROWS_AS(http::memory_listener(1, 0), leash::usage_error);
}
