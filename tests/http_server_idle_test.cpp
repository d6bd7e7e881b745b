// Tests for leash/http/server.hpp with many idle keep-alive connections: a
// connection waiting for its client is a coroutine task that holds no OS
// thread, so thousands of them cost the process no thread each while fresh
// requests are still answered.
#include <dirent.h>
#include <doctest/doctest.h>
#include <sys/resource.h>

#include <algorithm>
#include <array>
#include <chrono>
#include <cstddef>
#include <leash/coro.hpp>
#include <leash/http/server.hpp>
#include <leash/io/socket.hpp>
#include <leash/nursery.hpp>
#include <leash/runtime.hpp>
#include <span>
#include <string>
#include <vector>

#include "support/http_fixture.hpp"
#include "support/sanitizer.hpp"

using namespace std::chrono_literals;
namespace http = leash::http;
namespace io = leash::io;
using http_test::eventually;
using http_test::os_threads;

namespace {

// Idle connections held at once. Sanitizers keep shadow state per thread and
// per socket operation: fewer there, the thread bound checked is the same.
constexpr int idle_wanted = leash_test::under_any_sanitizer ? 1'000 : 5'000;
// The client's and the server's end: both live in this process.
constexpr rlim_t fds_per_connection = 2;
// Fds for everything else (the test binary, the listener, the reactor, fresh
// connections, a sanitizer's own), with headroom.
constexpr rlim_t fd_margin = 200;
// Connects in flight at once: well under the listen backlog, so no handshake
// is dropped and retried a second later.
constexpr int connect_batch = 500;
// Threads the process may add beside the coroutine workers: the reactor, the
// timer thread, a spare worker after a plain handler's hand-off, the thread
// cache. A thread per connection would add thousands.
constexpr std::size_t thread_margin = 8;
// Every this many idle connections, one is asked a second request.
constexpr int sample_every = 50;
constexpr int fresh_requests = 5;

const std::string hello_request = "GET /hello HTTP/1.1\r\nHost: x\r\n\r\n";

void hello(http::server_request&, http::response_writer& w) {
  w.write("hello");
}

// Raises the soft RLIMIT_NOFILE to the hard limit for its lifetime; restores
// the soft limit on every path.
class raised_fd_limit {
 public:
  raised_fd_limit() {
    REQUIRE(::getrlimit(RLIMIT_NOFILE, &saved_) == 0);
    rlimit raised = saved_;
    raised.rlim_cur = saved_.rlim_max;
    ::setrlimit(RLIMIT_NOFILE, &raised);  // may refuse an unlimited hard value: the old one stays
    rlimit now{};
    REQUIRE(::getrlimit(RLIMIT_NOFILE, &now) == 0);
    soft_ = now.rlim_cur;
  }
  raised_fd_limit(const raised_fd_limit&) = delete;
  raised_fd_limit& operator=(const raised_fd_limit&) = delete;
  ~raised_fd_limit() { ::setrlimit(RLIMIT_NOFILE, &saved_); }
  rlim_t soft() const { return soft_; }

 private:
  rlimit saved_{};
  rlim_t soft_ = 0;
};

// Sends GET /hello on `s` and reads its whole answer; true for a 200 whose
// body is "hello".
leash::coro<bool> ask_hello(io::socket& s) {
  co_await s.async_write_all(std::as_bytes(std::span(hello_request)));
  std::string answer;
  std::array<std::byte, 512> buf;
  while (!answer.ends_with("\r\n\r\nhello")) {
    const std::size_t n = co_await s.async_read_some(buf);
    if (n == 0) break;  // closed by the server
    answer.append(reinterpret_cast<const char*>(buf.data()), n);
  }
  co_return answer.starts_with("HTTP/1.1 200") && answer.ends_with("\r\n\r\nhello");
}

// Connects `slot` to the server and asks once; the connection stays open in
// `slot` (keep-alive) after the answer.
leash::coro<bool> connect_and_ask(std::uint16_t port, io::socket& slot) {
  slot = co_await io::async_connect("127.0.0.1", port);
  co_return co_await ask_hello(slot);
}

// Runs each of `asks` as a coroutine task, all at once; how many returned true.
template <class Ask>
int count_answered(int count, Ask ask) {
  std::vector<leash::task<bool>> answers;
  leash::run_nursery([&](leash::nursery& n) {
    for (int i = 0; i < count; ++i)
      answers.push_back(n.spawn([&ask, i] { return ask(i); }));
  });
  return static_cast<int>(
      std::count_if(answers.begin(), answers.end(), [](auto& t) { return t.get(); }));
}

// Asks `count` fresh requests, each on a new connection closed after its answer.
int fresh_answered(std::uint16_t port, int count) {
  std::vector<io::socket> conns(static_cast<std::size_t>(count));
  const int ok =
      count_answered(count, [&](int i) { return connect_and_ask(port, conns[std::size_t(i)]); });
  return ok;
}

}  // namespace

TEST_CASE(
    "thousands of idle keep-alive connections hold no thread each, and fresh requests are "
    "answered meanwhile") {
  raised_fd_limit limit;
  const rlim_t needed = static_cast<rlim_t>(idle_wanted) * fds_per_connection + fd_margin;
  if (limit.soft() < needed) {
    MESSAGE("skipped: RLIMIT_NOFILE's hard limit is " << limit.soft() << ", " << idle_wanted
                                                      << " idle connections need " << needed);
    return;
  }
  // The reactor is process-wide and keeps its epoll set and wake-up fd for
  // good: started before the baseline so that the fds counted after are ours.
  (void)io::detail::reactor::instance();
  const int fds_before = http_test::fd_count();
  // Threads of the process before the server exists; what is added after is
  // the server's (and this test's coroutine clients' workers).
  const std::size_t threads_before = os_threads();
  {
    leash::nursery n;
    http::server srv(n, hello);
    std::vector<io::socket> idle(static_cast<std::size_t>(idle_wanted));
    int answered = 0;
    for (int opened = 0; opened < idle_wanted; opened += connect_batch) {
      const int batch = std::min(connect_batch, idle_wanted - opened);
      answered += count_answered(batch, [&](int i) {
        return connect_and_ask(srv.port(), idle[static_cast<std::size_t>(opened + i)]);
      });
      CHECK(fresh_answered(srv.port(), 1) == 1);  // a fresh request while they pile up
    }
    CHECK(answered == idle_wanted);
    CHECK(eventually([&] { return srv.stats().connections == std::size_t(idle_wanted); }));
    CHECK(srv.stats().connections_refused == 0);

    // What is compared: this process's OS threads now (/proc/self/task) minus
    // those that existed before the server started, against the coroutine
    // workers plus a small margin. The added threads are the workers (started
    // by the server if not before), the reactor and timer threads, and spare
    // workers left by plain handlers' hand-offs, which leave after a keep-alive
    // of their own: polled until they did. A server with a thread per
    // connection would hold idle_wanted threads here and never meet it.
    const std::size_t workers = leash::runtime::stats().coro_workers;
    CHECK(workers > 0);
    std::size_t threads = 0;
    const bool within = eventually([&] {
      threads = os_threads();
      return threads <= threads_before + workers + thread_margin;
    });
    INFO("threads before the server: " << threads_before << ", now: " << threads
                                       << ", coroutine workers: " << workers);
    CHECK(within);

    CHECK(fresh_answered(srv.port(), fresh_requests) == fresh_requests);
    const int sampled = idle_wanted / sample_every;
    CHECK(count_answered(sampled, [&](int i) {
            return ask_hello(idle[static_cast<std::size_t>(i * sample_every)]);
          }) == sampled);
    CHECK(eventually([&] { return srv.stats().connections == std::size_t(idle_wanted); }));

    idle.clear();  // the clients close
    CHECK(eventually([&] { return srv.stats().connections == 0; }));
    srv.shutdown(1s);
  }
  CHECK(eventually([&] { return http_test::fd_count() == fds_before; }));
}
