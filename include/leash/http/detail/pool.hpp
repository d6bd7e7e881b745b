// SPDX-License-Identifier: BSL-1.0
// leash/http/detail/pool.hpp: the transport's connections and keep-alive pool.
//
// A connection is a socket, its stream (plain TCP, or the transport's
// wrap_connection adapter over the socket), its read buffer and its
// response parser; or, dialed by transport_options::dial, a stream alone
// that waits by itself (no socket, fd -1). A coroutine task waits on its
// socket with no thread (async_fill, async_write): that needs the fd
// registered with the reactor, as an io::socket. A connection dialed by a
// thread caller is registered on its first such use, so thread-only
// programs never start the reactor; a thread caller polls the fd either
// way. Either kind of caller may reuse a connection the other kind pooled.
// It is owned by exactly one place at a time: a round trip, a response
// body, or the pool's idle list (where no thread watches it). The pool counts open
// connections per host (for max_conns_per_host) and decides, in put_idle(),
// whether a finished connection is kept: a refused one is closed on the spot
// by the caller (Go's putIdleConn learned to return bool the hard way).
// An idle connection is closed once idle_timeout passed: one timer, armed
// only while a connection is idle, for the oldest one (Go's per-connection
// time.AfterFunc, one at a time). Its time is the transport creator's clock,
// so in virtual time a pool with nothing idle has no pending timer, and a
// stuck exchange is a deadlock rather than a clock that ticks on. The timer
// closes what expired on the timer thread: close() calls and a stream's
// shutdown step, neither of which waits.
// Lock order: the pool's mutex, then the timer's; sockets are closed outside
// both.
#pragma once

#include <fcntl.h>

#include <cerrno>
#include <chrono>
#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <span>
#include <stop_token>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "../../detail/registry.hpp"
#include "../../detail/timer.hpp"
#include "../../detail/virtual_clock.hpp"
#include "../../detail/wait.hpp"
#include "../../io/socket.hpp"
#include "../response_parser.hpp"
#include "../stream.hpp"
#include "socket.hpp"
#include "stream_io.hpp"

namespace leash::inline v0::http {

// Counters of a transport (a snapshot; each is exact at some instant).
struct transport_stats {
  std::uint64_t dials = 0;      // connections opened
  std::uint64_t reuses = 0;     // round trips served by a pooled connection
  std::uint64_t discarded = 0;  // connections closed (not reusable, refused, expired, dead)
  std::size_t idle = 0;         // connections in the pool now
  std::size_t open = 0;         // connections open now (idle or in use)
  std::size_t waiting = 0;      // callers waiting for max_conns_per_host now
};

namespace detail {

// The http::io_error for an error of the event-driven socket layer, so that
// both forms of a round trip throw (and retry on) the same type: the cause
// without the io layer's prefix and the errno text http::io_error appends.
inline io_error http_io_error(const io::io_error& e) {
  std::string_view what = e.what();
  constexpr std::string_view prefix = "leash::io: ";
  if (what.starts_with(prefix)) what.remove_prefix(prefix.size());
  const std::string suffix = ": " + e.code().message();
  if (what.ends_with(suffix)) what.remove_suffix(suffix.size());
  return io_error(std::string(what), e.code());
}

// A connection's socket: a plain fd (dialed by a thread caller) until a
// coroutine task first waits on it, then an io::socket registered with the
// reactor. Blocking calls use fd() in either state.
class connection_socket {
 public:
  explicit connection_socket(socket plain) noexcept : plain_(std::move(plain)) {}
  explicit connection_socket(io::socket evented) noexcept : evented_(std::move(evented)) {}

  int fd() const noexcept { return evented_.is_open() ? evented_.native_handle() : plain_.fd(); }

  // The registered socket, registering the fd on first use. The fd keeps
  // its number (a wrapping stream holds it); when the registration fails
  // the fd is closed (fd() is -1 then) and the connection is dead. Throws
  // http::io_error.
  io::socket& evented() {
    if (evented_.is_open()) return evented_;
    try {
      evented_ = io::socket(plain_.release());  // closes the fd on failure
    } catch (const io::io_error& e) {
      throw http_io_error(e);
    }
    return evented_;
  }

 private:
  socket plain_;
  io::socket evented_;
};

// One client connection. Owned by one place at a time (see above).
struct connection {
  static constexpr std::size_t buffer_size = 16 * 1024;

  template <class Socket>
  connection(Socket s, std::string k, parser_limits limits)
      : sock(std::move(s)),
        plain(sock.fd()),
        key(std::move(k)),
        buffer(new char[buffer_size]),
        parser(limits) {}

  // A connection with no socket: every byte goes through `s`, which waits
  // by itself. Throws io_error for a null stream.
  connection(std::unique_ptr<stream> s, std::string k, parser_limits limits)
      : connection(socket(), std::move(k), limits) {
    adopt(std::move(s), "dial");
    socketless = true;
  }

  connection(const connection&) = delete;
  connection& operator=(const connection&) = delete;

  // A user's stream ends its write side in order (a TLS close_notify) before
  // the fd closes: one step, never waiting; skipped after a failed step, and
  // when the socket is gone already.
  ~connection() {
    if (wrapped == nullptr || wrapped->failed() || (fd() < 0 && !socketless)) return;
    try {
      (void)wrapped->shutdown();
    } catch (...) {
      // the peer is gone: nothing to tell it
    }
  }

  int fd() const noexcept { return sock.fd(); }

  // The connection's bytes: the user's stream, or plain TCP.
  stream& bytes() noexcept { return wrapped ? static_cast<stream&>(*wrapped) : plain; }

  // Wraps the connection in the stream `wrap` gives for it (dialed to
  // `host`). Throws what `wrap` throws, io_error for a null stream.
  void wrap_with(const std::function<std::unique_ptr<stream>(int, const std::string&)>& wrap,
                 const std::string& host) {
    adopt(wrap(fd(), host), "wrap_connection");
  }

  // Carries every byte through `s` (from `what`, for the message). Throws
  // io_error for a null stream.
  void adopt(std::unique_ptr<stream> s, const char* what) {
    if (s == nullptr) {
      throw io_error(std::string("leash::http::transport: ") + what + " gave no stream",
                     std::make_error_code(std::errc::invalid_argument));
    }
    wrapped = std::make_unique<checked_stream>(std::move(s));
  }

  // True when the idle connection may carry another request: nothing came
  // (no byte, EOF or error on the fd, no byte the stream holds: a stream
  // with no socket reports its end of stream there).
  bool idle_alive() const noexcept {
    if (wrapped != nullptr && wrapped->has_buffered()) return false;
    return socketless || detail::idle_alive(fd());
  }

  std::size_t buffered() const noexcept { return end - begin; }
  std::span<const char> pending(std::size_t max) const noexcept {
    return {buffer.get() + begin, std::min(buffered(), max)};
  }
  // Reads more bytes into an empty buffer; returns the status of the read.
  read_status fill(clock::time_point deadline, const std::stop_token& token) {
    begin = end = 0;
    std::size_t got = 0;
    const read_status st =
        read_some(bytes(), fd(), buffer.get(), buffer_size, got, deadline, token);
    end = got;
    return st;
  }

  // fill() for a coroutine task: waits with no thread; the ambient scope
  // cancels (its deadlines are the timeouts). false at the end of stream.
  LEASH_DETAIL_CORO_NO_FUNCTION_SANITIZER coro<bool> async_fill() {
    begin = end = 0;
    end = co_await async_read_some(bytes(), desc(), std::span(buffer.get(), buffer_size),
                                   "io::async_read_some");
    co_return end != 0;
  }

  // Writes all of `data` from a coroutine task; throws http::io_error.
  LEASH_DETAIL_CORO_NO_FUNCTION_SANITIZER coro<void> async_write(std::string_view data) {
    co_await async_write_all(bytes(), desc(), data, "io::async_write_all");
  }

  // The socket's reactor slots, registering it on first use; null for a
  // connection with no socket. Throws http::io_error.
  io::detail::poll_desc* desc() {
    return socketless ? nullptr : &io::socket_access::desc(sock.evented());
  }

  connection_socket sock;
  plain_stream plain;                       // the bytes without wrap_connection
  std::unique_ptr<checked_stream> wrapped;  // wrap_connection's stream, if any
  std::string key;                          // "host:port": the pool's bucket
  std::unique_ptr<char[]> buffer;
  std::size_t begin = 0;  // unconsumed bytes are buffer[begin, end)
  std::size_t end = 0;
  response_parser parser;
  bool request_close = false;  // the request said "Connection: close"
  bool socketless = false;     // dialed by transport_options::dial: fd() is -1
  clock::time_point idle_since{};
};

struct pool_limits {
  std::size_t max_idle_per_host;
  std::size_t max_idle_total;
  std::size_t max_conns_per_host;  // 0: unlimited
  bool keep_alives;
  clock::duration idle_timeout;  // zero: idle connections stay until used or evicted
};

class pool final : private leash::detail::timer_client {
 public:
  // Times idle connections on the clock of the code that creates it.
  explicit pool(pool_limits limits) : limits_(limits), vclock_(leash::detail::current_vclock()) {}

  // An idle connection to `key` that passed the liveness check, or nullptr
  // with a reserved slot for a new dial (call dialed() or dial_failed()).
  // Waits while max_conns_per_host are open; a waiter that is cancelled
  // leaves nothing behind. Blocks; cancellable; throws cancelled.
  std::unique_ptr<connection> checkout(const std::string& key, const std::stop_token& token) {
    std::unique_lock lock(mutex_);
    host& h = hosts_[key];
    for (;;) {
      while (!h.idle.empty()) {
        std::unique_ptr<connection> c = std::move(h.idle.back());
        h.idle.pop_back();
        --idle_total_;
        if (c->idle_alive()) {
          ++reuses_;
          return c;
        }
        drop_locked(h);  // EOF, error or unsolicited bytes: never reused
        lock.unlock();
        c.reset();
        lock.lock();
      }
      if (limits_.max_conns_per_host == 0 || h.open < limits_.max_conns_per_host) {
        ++h.open;
        return nullptr;
      }
      ++h.waiting;
      ++waiting_;
      const auto st = leash::detail::wait(
          lock, cv_, token, [&] { return !h.idle.empty() || h.open < limits_.max_conns_per_host; });
      --h.waiting;
      --waiting_;
      if (st == leash::detail::wait_status::stopped) {
        // Someone may have freed a slot for us meanwhile: pass the wake-up on.
        cv_.notify_all();
        lock.unlock();
        leash::detail::throw_cancelled(token);
      }
    }
  }

  void dialed() {
    std::lock_guard lock(mutex_);
    ++dials_;
  }
  void dial_failed(const std::string& key) {
    std::lock_guard lock(mutex_);
    --hosts_[key].open;
    cv_.notify_all();
  }

  // Offers a finished, reusable connection. true: the pool owns it now
  // (`c` is empty). false: refused (pool closed, keep-alives off, or the
  // host's idle list full); `c` is still the caller's, who must discard it.
  [[nodiscard]] bool put_idle(std::unique_ptr<connection>& c) {
    std::unique_ptr<connection> evicted;
    {
      std::lock_guard lock(mutex_);
      host& h = hosts_[c->key];
      if (closed_ || !limits_.keep_alives || h.idle.size() >= limits_.max_idle_per_host ||
          limits_.max_idle_total == 0) {
        return false;
      }
      if (idle_total_ >= limits_.max_idle_total) evicted = take_oldest_locked();
      c->idle_since = now();
      h.idle.push_back(std::move(c));
      ++idle_total_;
      arm_reaper_locked();
      cv_.notify_all();
    }
    return true;
  }

  // Closes a connection that will not be reused and frees its slot.
  void discard(std::unique_ptr<connection> c) {
    if (c == nullptr) return;
    {
      std::lock_guard lock(mutex_);
      drop_locked(hosts_[c->key]);
    }
    c.reset();  // closes the socket, outside the lock
  }

  // Closes every idle connection now.
  void close_idle() {
    std::vector<std::unique_ptr<connection>> doomed;
    std::lock_guard lock(mutex_);
    take_idle_locked(clock::duration::zero(), doomed);
  }  // `doomed` closes its sockets after the lock is released

  // No more pooling: stops the reaper and closes the idle connections;
  // later put_idle() refuses. The reaper's callback may run meanwhile (it
  // re-arms nothing once closed_); cancel_timer waits for it.
  void shut() {
    leash::detail::timer_handle reaper;
    {
      std::lock_guard lock(mutex_);
      closed_ = true;
      reaper = std::exchange(reaper_, {});
    }
    leash::detail::cancel_timer(vclock_, reaper);
    close_idle();
  }

  transport_stats stats() const {
    std::lock_guard lock(mutex_);
    transport_stats s;
    s.dials = dials_;
    s.reuses = reuses_;
    s.discarded = discarded_;
    s.idle = idle_total_;
    for (const auto& [key, h] : hosts_)
      s.open += h.open;
    s.waiting = waiting_;
    return s;
  }

 private:
  struct host {
    std::size_t open = 0;     // connections open (idle or in use): max_conns_per_host
    std::size_t waiting = 0;  // callers waiting for a slot
    std::vector<std::unique_ptr<connection>> idle;  // most recently used last
  };

  void drop_locked(host& h) {
    --h.open;
    ++discarded_;
    cv_.notify_all();
  }

  clock::time_point now() const { return leash::detail::now_for(vclock_); }

  // Moves the idle connections idle for `max_age` or longer (all of them
  // for zero) into `doomed`, to be closed outside the lock.
  void take_idle_locked(clock::duration max_age, std::vector<std::unique_ptr<connection>>& doomed) {
    const auto t = now();
    for (auto& [key, h] : hosts_) {
      for (auto it = h.idle.begin(); it != h.idle.end();) {
        if (max_age == clock::duration::zero() || t - (*it)->idle_since >= max_age) {
          doomed.push_back(std::move(*it));
          it = h.idle.erase(it);
          --idle_total_;
          drop_locked(h);
        } else {
          ++it;
        }
      }
    }
  }

  // The time the connection idle the longest, or none.
  std::optional<clock::time_point> oldest_idle_locked() const {
    std::optional<clock::time_point> oldest;
    for (const auto& [key, h] : hosts_) {
      if (!h.idle.empty() && (!oldest || h.idle.front()->idle_since < *oldest)) {
        oldest = h.idle.front()->idle_since;
      }
    }
    return oldest;
  }

  // Arms the reaper for the oldest idle connection, unless it is armed,
  // nothing is idle, the pool is shut, or idle connections never expire.
  // With no timer thread to be had (out of threads), the idle connections
  // stay until used, evicted or closed with the transport.
  void arm_reaper_locked() noexcept {
    if (reaper_.id != 0 || closed_ || limits_.idle_timeout == clock::duration::zero()) return;
    if (const auto oldest = oldest_idle_locked()) {
      try {
        reaper_ = leash::detail::schedule_timer(vclock_, *oldest + limits_.idle_timeout, this);
      } catch (...) {
        reaper_ = {};
      }
    }
  }

  // The reaper fired: closes what expired, and arms for the next oldest.
  void on_timer() noexcept override {
    std::vector<std::unique_ptr<connection>> doomed;
    std::lock_guard lock(mutex_);
    reaper_ = {};
    take_idle_locked(limits_.idle_timeout, doomed);
    arm_reaper_locked();
  }  // `doomed` closes its sockets after the lock is released

  // LRU eviction for max_idle_total: the connection idle the longest.
  std::unique_ptr<connection> take_oldest_locked() {
    host* oldest = nullptr;
    for (auto& [key, h] : hosts_) {
      if (!h.idle.empty() &&
          (oldest == nullptr || h.idle.front()->idle_since < oldest->idle.front()->idle_since)) {
        oldest = &h;
      }
    }
    if (oldest == nullptr) return nullptr;
    std::unique_ptr<connection> c = std::move(oldest->idle.front());
    oldest->idle.erase(oldest->idle.begin());
    --idle_total_;
    drop_locked(*oldest);
    return c;
  }

  const pool_limits limits_;
  mutable std::mutex mutex_;           // guards everything below
  std::condition_variable cv_;         // a slot or an idle connection became available
  std::map<std::string, host> hosts_;  // never erased: references stay valid across waits
  std::size_t idle_total_ = 0;
  std::size_t waiting_ = 0;
  std::uint64_t dials_ = 0;
  std::uint64_t reuses_ = 0;
  std::uint64_t discarded_ = 0;
  bool closed_ = false;                         // the transport is gone: put_idle refuses
  leash::detail::virtual_clock* const vclock_;  // idle times' clock (null: real time)
  leash::detail::timer_handle reaper_;          // id 0: not armed
};

}  // namespace detail
}  // namespace leash::inline v0::http
