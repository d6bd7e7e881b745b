// tests/support/http_fixture.hpp: what the HTTP transport and server tests share:
// resource counters (fds, running tasks), a gate that parks handlers until a
// number of them arrived, and request helpers; re-exports the shared
// eventually() poll and the sanitizer scale.
#pragma once

#include <dirent.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstddef>
#include <leash/cancel.hpp>
#include <leash/detail/wait.hpp>
#include <leash/http/transport.hpp>
#include <leash/io/reactor.hpp>
#include <leash/leak_check.hpp>
#include <leash/must_close.hpp>
#include <leash/runtime.hpp>
#include <mutex>
#include <string>
#include <string_view>
#include <thread>

#include "eventually.hpp"
#include "fds.hpp"
#include "sanitizer.hpp"

namespace http_test {

using leash_test::eventually;  // for fd counts, stats and other states with no event
using leash_test::scaled;

// Entries of the /proc directory `path` (not counting "." and "..").
inline int proc_entries(const char* path) {
  int n = 0;
  if (DIR* d = ::opendir(path)) {
    while (dirent* e = ::readdir(d))
      n += e->d_name[0] != '.' ? 1 : 0;
    ::closedir(d);
  }
  return n;
}

// Open fds of the process (leash_test::open_fds). The I/O reactor is
// started first: its two fds (epoll set, wake-up) are opened once per process
// at first use and kept.
inline int fd_count() {
  (void)leash::io::detail::reactor::instance();
  return leash_test::open_fds();
}

// The process's OS threads now.
inline std::size_t os_threads() {
  return static_cast<std::size_t>(proc_entries("/proc/self/task"));
}

// Counts the must-close handles reported unclosed while it lives.
struct unclosed_count {
  std::atomic<int> seen{0};
  leash::unclosed_handler previous;
  unclosed_count() {
    previous = leash::set_unclosed_handler([this](const leash::unclosed_handle&) { ++seen; });
  }
  unclosed_count(const unclosed_count&) = delete;
  unclosed_count& operator=(const unclosed_count&) = delete;
  ~unclosed_count() { leash::set_unclosed_handler(previous); }
};

// Tasks of either kind (threads, coroutines) and tickers running now: what
// a leaked connection or reaper would leave behind.
inline std::size_t tasks_running() {
  std::size_t tickers = 0;
  for (const auto& o : leash::detail::object_registry::instance().snapshot()) {
    tickers += o.kind == leash::detail::object_snapshot::ticker ? 1 : 0;
  }
  return leash::live_tasks().size() + tickers;
}

// Parks callers in arrive_and_wait() until `expected` arrived or open() was
// called. Waits are cancellable (a cancelled handler leaves).
class gate {
 public:
  explicit gate(int expected) : expected_(expected) {}
  void arrive_and_wait() {
    std::unique_lock lock(mutex_);
    if (++arrived_ >= expected_) open_ = true;
    cv_.notify_all();
    const auto st =
        leash::detail::wait(lock, cv_, leash::this_task::stop_token(), [&] { return open_; });
    if (st != leash::detail::wait_status::ready) leash::this_task::checkpoint();
  }
  // Waits until `n` callers arrived (not cancellable: tests only).
  void wait_arrived(int n) {
    std::unique_lock lock(mutex_);
    cv_.wait(lock, [&] { return arrived_ >= n; });
  }
  void open() {
    std::lock_guard lock(mutex_);
    open_ = true;
    cv_.notify_all();
  }
  int arrived() {
    std::lock_guard lock(mutex_);
    return arrived_;
  }

 private:
  std::mutex mutex_;
  std::condition_variable cv_;
  int expected_;
  int arrived_ = 0;
  bool open_ = false;
};

// A request for 127.0.0.1:port.
inline leash::http::request get(std::uint16_t port, std::string target = "/",
                                std::string method = "GET") {
  return {"127.0.0.1", port, {std::move(method), std::move(target)}, {}};
}

// Sends raw bytes on a fresh connection and returns everything the server
// sent until it closed the connection (or 2 s passed).
inline std::string exchange_raw(std::uint16_t port, std::string_view bytes) {
  namespace net = leash::http::detail;
  net::socket s = net::dial("127.0.0.1", port, net::clock::time_point::max(), {});
  net::write_all(s.fd(), bytes, net::clock::time_point::max(), {});
  std::string out;
  char buf[4096];
  std::size_t got = 0;
  const auto deadline = leash::detail::deadline_after(std::chrono::seconds(2));
  while (net::read_some(s.fd(), buf, sizeof buf, got, deadline, {}) == net::read_status::data)
    out.append(buf, got);
  return out;
}

// Milliseconds since `start`.
inline long long ms_since(std::chrono::steady_clock::time_point start) {
  return std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() -
                                                               start)
      .count();
}

}  // namespace http_test
