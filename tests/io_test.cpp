// Tests for leash/io: event-driven sockets used by coroutine tasks. An echo
// server and its clients run on loopback as coroutine tasks; cancellation
// from the ambient scope reaches every kind of wait at once and leaves no
// registration behind; thousands of idle connections cost no threads.
#include <doctest/doctest.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <fstream>
#include <latch>
#include <leash.hpp>
#include <leash/io/socket.hpp>
#include <memory>
#include <numeric>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

#include "support/eventually.hpp"
#include "support/fds.hpp"

using namespace std::chrono_literals;
using leash::coro;
using leash_test::eventually;
namespace io = leash::io;

namespace {

// How many tasks of nursery `n` are suspended in `what` (a snapshot).
std::size_t suspended_in(const leash::nursery& n, std::string_view what) {
  std::size_t count = 0;
  for (const auto& t : leash::live_tasks()) {
    if (t.nursery == n.name() && t.blocked_in != nullptr && std::string_view(t.blocked_in) == what)
      ++count;
  }
  return count;
}

std::size_t registered_fds() {
  return io::detail::reactor::instance().registered();
}

std::size_t open_fds() {
  return static_cast<std::size_t>(leash_test::open_fds());
}

std::size_t process_threads() {
  std::ifstream status("/proc/self/status");
  std::string key;
  while (status >> key) {
    if (key == "Threads:") {
      std::size_t n = 0;
      status >> n;
      return n;
    }
    status.ignore(4096, '\n');
  }
  return 0;
}

std::span<const std::byte> bytes_of(const std::string& s) {
  return std::as_bytes(std::span(s.data(), s.size()));
}

// Echoes everything `conn` sends until it ends its side.
coro<void> echo(io::socket conn) {
  std::vector<std::byte> buf(16 * 1024);
  for (;;) {
    const std::size_t n = co_await conn.async_read_some(buf);
    if (n == 0) co_return;
    co_await conn.async_write_all(std::span(buf.data(), n));
  }
}

// Accepts connections on `listener` and echoes each in its own task of `n`,
// until cancelled.
coro<void> serve_echo(io::socket& listener, leash::nursery& n) {
  for (;;) {
    auto conn = co_await io::async_accept(listener);
    n.spawn([c = std::move(conn)]() mutable { return echo(std::move(c)); });
  }
}

// Reads exactly buf.size() bytes.
coro<void> read_exactly(io::socket& s, std::span<std::byte> buf) {
  while (!buf.empty()) {
    const std::size_t n = co_await s.async_read_some(buf);
    if (n == 0) throw std::runtime_error("unexpected end of stream");
    buf = buf.subspan(n);
  }
}

// Sends `text` and returns what comes back, of the same length.
coro<std::string> round_trip(io::socket& s, const std::string& text) {
  co_await s.async_write_all(bytes_of(text));
  std::string back(text.size(), '\0');
  co_await read_exactly(s, std::as_writable_bytes(std::span(back.data(), back.size())));
  co_return back;
}

// A port nothing listens on (bound, then released).
std::uint16_t closed_port(const std::string& address) {
  io::socket probe = io::listen(address, 0);
  return probe.local_endpoint().port();
}

std::vector<io::endpoint> numeric(const std::string& host, std::uint16_t port) {
  return io::detail::getaddrinfo_all(host, port, AI_NUMERICHOST);
}

bool ipv6_loopback_available() {
  try {
    io::listen("::1", 0);
    return true;
  } catch (const io::io_error&) {
    return false;
  }
}

}  // namespace

TEST_CASE("an echo server and its clients as coroutine tasks keep every byte") {
  io::socket listener = io::listen("127.0.0.1", 0);
  const std::uint16_t port = listener.local_endpoint().port();
  constexpr int clients = 8;
  constexpr int rounds = 200;
  leash::nursery server;
  server.spawn([&]() { return serve_echo(listener, server); });
  {
    leash::nursery n;
    for (int c = 0; c < clients; ++c) {
      n.spawn([&, c]() -> coro<void> {
        auto s = co_await io::async_connect("127.0.0.1", port);
        for (int i = 0; i < rounds; ++i) {
          const std::string text = "client " + std::to_string(c) + " round " + std::to_string(i);
          CHECK(co_await round_trip(s, text) == text);
        }
      });
    }
    // Larger than any socket buffer: both sides wait for room and data many times.
    // One task writes while another reads: the echo cannot send more than
    // the client has read.
    std::string big(8 << 20, '\0');
    for (std::size_t i = 0; i < big.size(); ++i)
      big[i] = static_cast<char>('a' + (i * 7919) % 26);
    n.spawn([&]() -> coro<void> {
      auto s = std::make_shared<io::socket>(co_await io::async_connect("127.0.0.1", port));
      n.spawn([s, &big]() -> coro<void> { co_await s->async_write_all(bytes_of(big)); });
      std::string back(big.size(), '\0');
      co_await read_exactly(*s, std::as_writable_bytes(std::span(back.data(), back.size())));
      CHECK(back == big);
    });
    n.wait();
  }
  server.cancel();
  server.wait();  // a cancel by the owner is no failure
}

TEST_CASE("an echo over IPv6 loopback") {
  if (!ipv6_loopback_available()) {
    MESSAGE("skipped: no IPv6 loopback here");
    return;
  }
  io::socket listener = io::listen("::1", 0);
  const std::uint16_t port = listener.local_endpoint().port();
  leash::nursery server;
  server.spawn([&]() { return serve_echo(listener, server); });
  leash::nursery n;
  auto t = n.spawn([&]() -> coro<std::string> {
    auto s = co_await io::async_connect("::1", port);
    co_return co_await round_trip(s, "over six");
  });
  CHECK(t.get() == "over six");
  n.wait();
  server.cancel();
  server.wait();  // a cancel by the owner is no failure
}

TEST_CASE("a connect to a closed port fails with io_error naming the address") {
  const std::uint16_t port = closed_port("127.0.0.1");
  std::optional<leash::task<void>> t;
  {
    leash::nursery n;
    t = n.spawn([&]() -> coro<void> { co_await io::async_connect("127.0.0.1", port); });
    CHECK_THROWS_AS(n.wait(), io::io_error);
  }
  try {
    t->get();
    FAIL("connect succeeded");
  } catch (const io::io_error& e) {
    const std::string what = e.what();
    CHECK(what.starts_with("leash::io: connect to 127.0.0.1:" + std::to_string(port)));
    CHECK(what.find("Connection refused") != std::string::npos);
    CHECK(e.code().value() == ECONNREFUSED);
  }
}

TEST_CASE("a connect tries every address in turn and says what each got") {
  io::socket listener = io::listen("127.0.0.1", 0);
  const std::uint16_t open = listener.local_endpoint().port();
  const std::uint16_t closed = closed_port("127.0.0.1");
  std::vector<io::endpoint> first_closed = numeric("127.0.0.1", closed);
  const std::vector<io::endpoint> good = numeric("127.0.0.1", open);
  first_closed.insert(first_closed.end(), good.begin(), good.end());
  std::vector<io::endpoint> all_closed = numeric("127.0.0.1", closed);
  const bool six = ipv6_loopback_available();
  if (six) {
    const std::uint16_t closed6 = closed_port("::1");
    const auto v6 = numeric("::1", closed6);
    all_closed.insert(all_closed.end(), v6.begin(), v6.end());
  }
  leash::nursery n;
  auto connected = n.spawn([&]() -> coro<std::uint16_t> {
    auto s = co_await io::async_connect(first_closed);
    auto peer = co_await io::async_accept(listener);
    co_return peer.local_endpoint().port();
  });
  CHECK(connected.get() == open);
  n.wait();
  std::optional<leash::task<void>> failed;
  {
    leash::nursery m;
    failed = m.spawn([&]() -> coro<void> { co_await io::async_connect(all_closed); });
    CHECK_THROWS_AS(m.wait(), io::io_error);
  }
  try {
    failed->get();
    FAIL("connect succeeded");
  } catch (const io::io_error& e) {
    const std::string what = e.what();
    CHECK(what.find("127.0.0.1:" + std::to_string(closed) + ": Connection refused") !=
          std::string::npos);
    if (six) CHECK(what.find("[::1]:") != std::string::npos);
  }
}

TEST_CASE("n.cancel() reaches tasks suspended in read, accept and connect at once") {
  const std::size_t registered_before = registered_fds();
  io::socket listener = io::listen("127.0.0.1", 0);  // nobody connects: accept waits
  // Connections complete in its backlog, but nobody accepts or writes: a read waits.
  io::socket silent = io::listen("127.0.0.1", 0);
  const std::uint16_t silent_port = silent.local_endpoint().port();
  // A listener with a full backlog that never accepts: a connect to it stays
  // in progress.
  io::socket full = io::listen("127.0.0.1", 0, 0);
  const auto full_address = numeric("127.0.0.1", full.local_endpoint().port());
  std::vector<io::detail::unique_fd> fillers;
  for (int i = 0; i < 4; ++i) {
    fillers.emplace_back(::socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0));
    ::connect(fillers.back().get(), reinterpret_cast<const sockaddr*>(&full_address[0].addr),
              full_address[0].len);
  }
  std::atomic<int> cancelled{0};
  {
    leash::nursery n;
    auto count_cancel = [&](auto body) {
      return [&cancelled, body]() -> coro<void> {
        try {
          co_await body();
        } catch (const leash::cancelled&) {
          cancelled.fetch_add(1);
          throw;
        }
      };
    };
    n.spawn(count_cancel([&]() -> coro<void> { co_await io::async_accept(listener); }));
    n.spawn(count_cancel([&]() -> coro<void> {
      auto s = co_await io::async_connect("127.0.0.1", silent_port);
      std::byte b[1];
      co_await s.async_read_some(b);
    }));
    n.spawn(count_cancel([&]() -> coro<void> { co_await io::async_connect(full_address); }));
    REQUIRE(eventually([&] {
      return suspended_in(n, "io::async_read_some") == 1 &&
             suspended_in(n, "io::async_connect") == 1 && suspended_in(n, "io::async_accept") == 1;
    }));
    n.cancel();
    n.wait();
  }
  CHECK(cancelled.load() == 3);
  // The registrations are gone with the sockets; the listener's fd can be
  // closed and its number reused by a socket that works.
  listener.close();
  silent.close();
  full.close();
  CHECK(registered_fds() == registered_before);
  io::socket again = io::listen("127.0.0.1", 0);
  const std::uint16_t again_port = again.local_endpoint().port();
  leash::nursery server;
  server.spawn([&]() { return serve_echo(again, server); });
  leash::nursery m;
  auto t = m.spawn([&]() -> coro<std::string> {
    auto s = co_await io::async_connect("127.0.0.1", again_port);
    co_return co_await round_trip(s, "reused");
  });
  CHECK(t.get() == "reused");
  m.wait();
  server.cancel();
  server.wait();  // a cancel by the owner is no failure
}

TEST_CASE("a cancel_scope deadline ends a suspended async_read_some with deadline_exceeded") {
  int fds[2];
  REQUIRE(::socketpair(AF_UNIX, SOCK_STREAM, 0, fds) == 0);
  io::socket a(fds[0]), b(fds[1]);
  leash::nursery n;
  auto t = n.spawn([&]() -> coro<bool> {
    leash::cancel_scope scope(20ms);
    std::byte buf[16];
    try {
      co_await a.async_read_some(buf);
    } catch (const leash::deadline_exceeded&) {
      co_return true;
    }
    co_return false;
  });
  CHECK(t.get());
  n.wait();
}

TEST_CASE("a sibling's failure cancels a task suspended in async_accept") {
  io::socket listener = io::listen("127.0.0.1", 0);
  std::atomic<bool> accept_cancelled{false};
  leash::nursery n;
  n.spawn([&]() -> coro<void> {
    try {
      co_await io::async_accept(listener);
    } catch (const leash::cancelled&) {
      accept_cancelled = true;
      throw;
    }
  });
  REQUIRE(eventually([&] { return suspended_in(n, "io::async_accept") == 1; }));
  n.spawn([]() -> coro<void> {
    throw std::runtime_error("backend down");
    co_return;
  });
  CHECK_THROWS_WITH_AS(n.wait(), "backend down", std::runtime_error);
  CHECK(accept_cancelled.load());
}

TEST_CASE("a readiness that races a cancel either is read or stays readable") {
  constexpr int rounds = 500;
  int read_wins = 0, cancel_wins = 0;
  const std::size_t registered_before = registered_fds();
  for (int i = 0; i < rounds; ++i) {
    int fds[2];
    REQUIRE(::socketpair(AF_UNIX, SOCK_STREAM, 0, fds) == 0);
    io::socket a(fds[0]);
    io::detail::unique_fd b(fds[1]);
    std::latch reading(1);
    std::optional<leash::task<std::size_t>> t;
    {
      leash::nursery n;
      t = n.spawn([&]() -> coro<std::size_t> {
        std::byte buf[4];
        reading.count_down();
        co_return co_await a.async_read_some(buf);
      });
      reading.wait();
      const char byte = 'x';
      REQUIRE(::write(b.get(), &byte, 1) == 1);
      n.cancel();
      n.wait();
    }
    try {
      const std::size_t got = t->get();
      CHECK(got == 1);
      ++read_wins;
    } catch (const leash::cancelled&) {
      ++cancel_wins;
      char byte = 0;
      CHECK(::recv(a.native_handle(), &byte, 1, MSG_DONTWAIT) == 1);  // not lost
      CHECK(byte == 'x');
    }
  }
  CHECK(read_wins + cancel_wins == rounds);
  CHECK(registered_fds() == registered_before);
  MESSAGE("read won ", read_wins, ", cancel won ", cancel_wins);
}

TEST_CASE("async_resolve of localhost gives loopback addresses with the port") {
  leash::nursery n;
  auto t = n.spawn([&]() -> coro<std::vector<io::endpoint>> {
    co_return co_await io::async_resolve("localhost", 8080);
  });
  const auto addresses = t.get();
  n.wait();
  REQUIRE(!addresses.empty());
  for (const auto& e : addresses) {
    CHECK(e.port() == 8080);
    const std::string text = e.to_string();
    CHECK((text.starts_with("127.") || text.starts_with("[::1]")));
  }
}

namespace {
// A resolver that blocks until released, for the cancelled-resolve case.
std::latch* resolver_gate = nullptr;
std::atomic<int> resolver_returned{0};
std::vector<io::endpoint> blocked_resolve(const std::string&, std::uint16_t port) {
  resolver_gate->wait();
  resolver_returned.fetch_add(1);
  return numeric("127.0.0.1", port);
}
}  // namespace

TEST_CASE("a cancelled async_resolve resumes at once and its thread finishes alone") {
  std::latch gate(1);
  resolver_gate = &gate;
  resolver_returned = 0;
  const auto saved = io::detail::resolver.exchange(&blocked_resolve);
  struct restore {
    io::detail::resolve_function f;
    ~restore() { io::detail::resolver.store(f); }
  } restore_resolver{saved};
  std::optional<leash::task<void>> t;
  {
    leash::nursery n;
    t = n.spawn([&]() -> coro<void> { co_await io::async_resolve("slow.invalid", 80); });
    REQUIRE(eventually([&] { return suspended_in(n, "io::async_resolve") == 1; }));
    n.cancel();
    n.wait();
  }
  CHECK_THROWS_AS(t->get(), leash::cancelled);  // while the resolver still blocks
  CHECK(resolver_returned.load() == 0);
  gate.count_down();
  CHECK(eventually([&] { return resolver_returned.load() == 1; }));
}

TEST_CASE("closing a socket resumes a task waiting on it with io_error") {
  int fds[2];
  REQUIRE(::socketpair(AF_UNIX, SOCK_STREAM, 0, fds) == 0);
  io::socket a(fds[0]);
  io::detail::unique_fd b(fds[1]);
  std::optional<leash::task<void>> t;
  {
    leash::nursery n;
    t = n.spawn([&]() -> coro<void> {
      std::byte buf[4];
      co_await a.async_read_some(buf);
    });
    REQUIRE(eventually([&] { return suspended_in(n, "io::async_read_some") == 1; }));
    a.close();
    CHECK_THROWS_AS(n.wait(), io::io_error);
  }
  CHECK_THROWS_WITH_AS(t->get(), doctest::Contains("closed while waiting"), io::io_error);
}

TEST_CASE("socket operations outside a coroutine task throw usage_error") {
  int fds[2];
  REQUIRE(::socketpair(AF_UNIX, SOCK_STREAM, 0, fds) == 0);
  io::socket a(fds[0]), b(fds[1]);
  std::byte buf[4];
  CHECK_THROWS_AS(leash::sync_wait(a.async_read_some(buf)), leash::usage_error);
  CHECK_THROWS_AS(leash::sync_wait(a.async_write_all(buf)), leash::usage_error);
  CHECK_THROWS_AS(leash::sync_wait(io::async_accept(a)), leash::usage_error);
  CHECK_THROWS_AS(leash::sync_wait(io::async_connect("127.0.0.1", 1)), leash::usage_error);
  CHECK_THROWS_AS(leash::sync_wait(io::async_resolve("localhost", 1)), leash::usage_error);
}

// Starts the coroutine workers (and returns how many there are).
std::size_t start_workers() {
  leash::nursery n;
  n.spawn([]() -> coro<void> { co_return; });
  n.wait();
  return leash::runtime::stats().coro_workers;
}

// How long a test's busy task spins before it gives up and fails.
constexpr std::chrono::seconds spin_bound{10};

TEST_CASE("the reactor adds no thread: an idle worker waits in it") {
  start_workers();
  const std::size_t before = process_threads();
  int fds[2];
  REQUIRE(::socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, fds) == 0);
  io::socket a(fds[0]);
  io::detail::unique_fd b(fds[1]);
  leash::nursery n;
  auto t = n.spawn([&]() -> coro<std::size_t> {
    std::byte buf[1];
    co_await a.async_read_some(buf);
    co_return process_threads();
  });
  REQUIRE(eventually([&] { return suspended_in(n, "io::async_read_some") == 1; }));
  const std::size_t waiting = process_threads();
  REQUIRE(::send(b.get(), "x", 1, MSG_NOSIGNAL) == 1);
  CHECK(t.get() == before);
  CHECK(waiting == before);
}

TEST_CASE("a socket is served while every worker runs ready tasks and none goes idle") {
  const std::size_t workers = start_workers();
  int fds[2];
  REQUIRE(::socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, fds) == 0);
  io::socket a(fds[0]);
  io::detail::unique_fd b(fds[1]);
  std::atomic<bool> read{false};
  std::atomic<std::size_t> started{0}, gave_up{0};
  leash::nursery n;
  n.spawn([&]() -> coro<void> {
    std::byte buf[1];
    co_await a.async_read_some(buf);
    read = true;
  });
  REQUIRE(eventually([&] { return suspended_in(n, "io::async_read_some") == 1; }));
  // Twice as many yielding tasks as workers: no worker ever finds its queue
  // empty, so none parks in the reactor.
  const auto give_up = std::chrono::steady_clock::now() + spin_bound;
  for (std::size_t i = 0; i < 2 * workers; ++i) {
    n.spawn([&]() -> coro<void> {
      ++started;
      while (!read && std::chrono::steady_clock::now() < give_up)
        co_await leash::this_task::async_checkpoint();
      if (!read) ++gave_up;
    });
  }
  REQUIRE(eventually([&] { return started == 2 * workers; }));
  REQUIRE(::send(b.get(), "x", 1, MSG_NOSIGNAL) == 1);
  n.wait();
  CHECK(gave_up == 0);
}

TEST_CASE("a long slice on one worker does not keep another socket's readiness from an idle one") {
  if (start_workers() < 2) {
    MESSAGE("skipped: needs two coroutine workers");
    return;
  }
  int first[2], second[2];
  REQUIRE(::socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, first) == 0);
  REQUIRE(::socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, second) == 0);
  io::socket a1(first[0]), a2(second[0]);
  io::detail::unique_fd b1(first[1]), b2(second[1]);
  std::atomic<bool> spinning{false}, second_read{false}, read_while_spinning{false};
  leash::nursery n;
  // Woken by the first byte, this task holds its worker (never suspends)
  // until the second task has read: only another worker can see that byte.
  n.spawn([&]() -> coro<void> {
    std::byte buf[1];
    co_await a1.async_read_some(buf);
    spinning = true;
    spinning.notify_all();
    const auto give_up = std::chrono::steady_clock::now() + spin_bound;
    while (!second_read && std::chrono::steady_clock::now() < give_up)
      std::this_thread::yield();
    read_while_spinning = second_read.load();
  });
  n.spawn([&]() -> coro<void> {
    std::byte buf[1];
    co_await a2.async_read_some(buf);
    second_read = true;
  });
  REQUIRE(eventually([&] { return suspended_in(n, "io::async_read_some") == 2; }));
  REQUIRE(::send(b1.get(), "x", 1, MSG_NOSIGNAL) == 1);
  spinning.wait(false);
  REQUIRE(::send(b2.get(), "y", 1, MSG_NOSIGNAL) == 1);
  n.wait();
  CHECK(read_while_spinning);
}

TEST_CASE("thousands of idle connections cost no threads and leave no fds behind") {
  constexpr std::size_t connections = 5000;
  // Both ends of every connection live in this process, plus some headroom.
  constexpr rlim_t needed = 2 * connections + 200;
  rlimit limit{};
  REQUIRE(::getrlimit(RLIMIT_NOFILE, &limit) == 0);
  if (limit.rlim_cur < limit.rlim_max) {
    limit.rlim_cur = limit.rlim_max;
    ::setrlimit(RLIMIT_NOFILE, &limit);
  }
  if (limit.rlim_cur < needed) {
    MESSAGE("skipped: RLIMIT_NOFILE is ", limit.rlim_cur, ", this needs ", needed);
    return;
  }
  io::socket listener = io::listen("127.0.0.1", 0);
  const std::uint16_t port = listener.local_endpoint().port();
  const std::size_t fds_before = open_fds();
  leash::nursery server;
  server.spawn([&]() { return serve_echo(listener, server); });
  // Measured with the workers and the poller running already.
  const std::size_t threads_before = process_threads();
  const std::size_t workers = leash::runtime::stats().coro_workers;
  // Threads that may come and go meanwhile: spares after a hand-off, the
  // timer thread, the thread cache's.
  constexpr std::size_t few = 8;
  {
    leash::nursery n;
    auto t = n.spawn([&]() -> coro<std::size_t> {
      std::vector<io::socket> idle;
      idle.reserve(connections);
      for (std::size_t i = 0; i < connections; ++i)
        idle.push_back(co_await io::async_connect("127.0.0.1", port));
      auto fresh = co_await io::async_connect("127.0.0.1", port);
      CHECK(co_await round_trip(fresh, "still answering") == "still answering");
      co_return process_threads();
    });
    const std::size_t threads_during = t.get();
    n.wait();
    CHECK(threads_during <= threads_before + few);
    MESSAGE("threads before ", threads_before, ", with ", connections, " idle connections ",
            threads_during, " (", workers, " workers)");
  }
  server.cancel();
  server.wait();  // a cancel by the owner is no failure
  listener.close();
  CHECK(open_fds() == fds_before - 1);
}
