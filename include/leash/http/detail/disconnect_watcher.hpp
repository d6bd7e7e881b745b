// SPDX-License-Identifier: BSL-1.0
// leash/http/detail/disconnect_watcher.hpp: cancels a server handler whose
// client went away, as Go's Request.Context() does.
//
// One epoll set holds the connections whose handler runs. The set is itself
// a socket of leash's reactor, and one coroutine task of the server serves
// it (run()), so noticing a client that left costs no thread. A watched
// connection whose peer reset it (EPOLLHUP, EPOLLERR) or closed it
// (EPOLLRDHUP, once the request body was read: before that a half close may
// still be followed by body bytes) has its scope cancelled with "client
// disconnected". A pipelined request's bytes are never an event (no
// EPOLLIN), and each connection fires at most once (EPOLLONESHOT).
//
// Thread-safe: watch/watch_eof/unwatch/stop from any thread; run() from one
// coroutine task.
#pragma once

#include "../../detail/config.hpp"

#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstdint>
#include <mutex>
#include <unordered_map>

#include "../../cancel.hpp"
#include "../../coro.hpp"
#include "../../io/socket.hpp"
#include "socket.hpp"

namespace leash::inline v0::http::detail {

class disconnect_watcher {
 public:
  // Throws io_error when the kernel gives no epoll set or eventfd.
  disconnect_watcher() : wake_(::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK)) {
    if (!wake_.valid()) throw_errno("leash::http::server: eventfd", errno);
    const int epoll = ::epoll_create1(EPOLL_CLOEXEC);
    if (epoll < 0) throw_errno("leash::http::server: epoll", errno);
    epoll_ = io::socket(epoll);  // readable whenever the set has an event
    add(wake_.fd(), wake_id, EPOLLIN);
  }

  disconnect_watcher(const disconnect_watcher&) = delete;
  disconnect_watcher& operator=(const disconnect_watcher&) = delete;

  // Watches `fd` until unwatch(id); `scope` must outlive that. `eof_too`: a
  // close by the peer counts (the request body was read).
  std::uint64_t watch(int fd, cancel_scope& scope, bool eof_too) {
    std::lock_guard lock(mutex_);
    const std::uint64_t id = ++last_id_;
    watched_.emplace(id, entry{fd, &scope, false});
    arm(fd, id, eof_too, EPOLL_CTL_ADD);  // unwatched if the kernel refuses: never cancelled
    return id;
  }

  // The request body of `id` was read to its end: a close by the peer counts now.
  void watch_eof(std::uint64_t id) {
    std::lock_guard lock(mutex_);
    const auto it = watched_.find(id);
    if (it != watched_.end() && !it->second.fired) arm(it->second.fd, id, true, EPOLL_CTL_MOD);
  }

  // Stops watching; true when the client went away (the scope was cancelled).
  // The scope is never touched after this returns.
  bool unwatch(std::uint64_t id) {
    std::lock_guard lock(mutex_);
    const auto it = watched_.find(id);
    if (it == watched_.end()) return false;
    ::epoll_ctl(fd(), EPOLL_CTL_DEL, it->second.fd, nullptr);
    const bool fired = it->second.fired;
    watched_.erase(it);
    return fired;
  }

  // Serves the set's events until stop() (or a cancel of the calling task).
  coro<void> run() {
    io::detail::poll_desc& desc = io::socket_access::desc(epoll_);
    while (!stopping_.load(std::memory_order_acquire)) {
      serve_events();
      if (stopping_.load(std::memory_order_acquire)) break;
      co_await io::detail::slot_awaiter(desc.read, "http::server: watching for clients that left");
    }
  }

  // Ends run(). Never blocks.
  void stop() noexcept {
    stopping_.store(true, std::memory_order_release);
    const std::uint64_t one = 1;
    (void)!::write(wake_.fd(), &one, sizeof one);
  }

 private:
  static constexpr std::uint64_t wake_id = 0;  // watch ids follow
  static constexpr int batch = 64;             // events taken per epoll_wait

  struct entry {
    int fd;
    cancel_scope* scope;
    bool fired;  // the scope was cancelled
  };

  int fd() const noexcept { return epoll_.native_handle(); }

  void add(int watched, std::uint64_t id, std::uint32_t events) {
    epoll_event e{};
    e.events = events;
    e.data.u64 = id;
    if (::epoll_ctl(fd(), EPOLL_CTL_ADD, watched, &e) != 0) {
      throw_errno("leash::http::server: epoll_ctl", errno);
    }
  }

  // One-shot: a connection fires once, then stays quiet until unwatched.
  void arm(int watched, std::uint64_t id, bool eof_too, int op) {
    epoll_event e{};
    e.events = EPOLLONESHOT | (eof_too ? EPOLLRDHUP : 0u);  // EPOLLHUP, EPOLLERR: always
    e.data.u64 = id;
    (void)::epoll_ctl(fd(), op, watched, &e);
  }

  // Takes every pending event without blocking: the reactor reports the set
  // edge-triggered, so it is emptied before the next wait.
  void serve_events() {
    epoll_event events[batch];
    for (;;) {
      const int n = ::epoll_wait(fd(), events, batch, 0);
      for (int i = 0; i < n; ++i) {
        const std::uint64_t id = events[i].data.u64;
        if (id == wake_id) {
          std::uint64_t count = 0;
          (void)!::read(wake_.fd(), &count, sizeof count);
        } else {
          cancel(id);
        }
      }
      if (n < batch && !(n < 0 && errno == EINTR)) return;
    }
  }

  void cancel(std::uint64_t id) {
    std::lock_guard lock(mutex_);
    const auto it = watched_.find(id);  // gone: the event was for an unwatched connection
    if (it == watched_.end() || it->second.fired) return;
    it->second.fired = true;
    it->second.scope->cancel("client disconnected");
  }

  socket wake_;       // stop() rings it
  io::socket epoll_;  // the set, registered with the reactor
  std::atomic<bool> stopping_{false};
  std::mutex mutex_;  // guards the fields below
  std::uint64_t last_id_ = wake_id;
  std::unordered_map<std::uint64_t, entry> watched_;
};

}  // namespace leash::inline v0::http::detail
