// SPDX-License-Identifier: BSL-1.0
// leash/io/reactor.hpp: the readiness reactor behind leash's event-driven
// sockets (Linux, epoll). Nothing in leash's core depends on it.
//
// A socket that a coroutine task waits on costs no thread: the task tries the
// system call, and when it would block it suspends on the socket's readiness
// for that direction. The reactor has no thread of its own: it is the
// scheduler's I/O driver, and an idle worker blocks in the backend
// (epoll_wait); when the kernel reports a socket ready, that worker posts the
// waiting task to itself and runs it, which retries the call. Busy workers
// look at it between slices. Design after Go's netpoller (runtime/netpoll.go,
// pollDesc rg/wg; findRunnable) and tokio's I/O driver
// (runtime/io/scheduled_io.rs; the worker's park on the driver):
// docs/design.md#event-driven-io.
//
//   - Each fd is registered once, edge-triggered, for in|out|rdhup, when its
//     socket is made, and deregistered when it is closed.
//   - Per fd and direction a ready_slot: one atomic word that is idle, ready
//     (a readiness not consumed yet) or the address of the one waiting task's
//     awaiter. A readiness that arrives before the task suspends leaves the
//     slot ready, and the task's attempt to suspend then finds it and retries
//     instead (Go's pdReady): nothing is lost between EAGAIN and the suspend.
//   - Whoever takes the awaiter out of the slot (the driver with a readiness,
//     the stop hook of the task's ambient scope with a cancel, close() with
//     an error) is the only one to resume it. The task is posted by the last
//     of that wake-up and the end of its own await_suspend (a gate of two),
//     so neither races with the registration and the task is posted once.
//   - Deadlines are the ambient scope's: a deadline stops the scope, whose
//     stop hook cancels the wait. No per-operation timer.
//   - Poll descriptors are recycled, never freed: an event the driver read
//     just before its fd was closed may mark a reused descriptor ready, which
//     costs its next waiter one retried system call and nothing else.
//
// The backend is a class with five operations (add, remove, wait, dispatch,
// wake); an io_uring or kqueue backend would implement the same (docs/io.md).
//
// Guarantees. Thread-safe: every function here. The reactor starts on first
// use and adds no thread.
#pragma once

#include "../detail/config.hpp"

#if !defined(__linux__)
#error "leash/io: only Linux (epoll) is supported so far"
#endif

#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <coroutine>
#include <cstdint>
#include <mutex>
#include <string>
#include <system_error>
#include <utility>
#include <vector>

#include "../detail/cancel_state.hpp"
#include "../detail/scheduler.hpp"
#include "../detail/task_identity.hpp"
#include "../detail/waiter.hpp"
#include "../errors.hpp"

namespace leash::inline v0::io {

// A socket system call failed. code() is the errno value; the message names
// the operation and, where there is one, the address.
class io_error : public leash::error {
 public:
  io_error(const std::string& what, int err)
      : error("leash::io: " + what + ": " + std::generic_category().message(err)),
        code_(err, std::generic_category()) {}
  // A failure that several attempts make up (each named in `what`).
  io_error(const std::string& what, std::error_code code)
      : error("leash::io: " + what), code_(code) {}

  std::error_code code() const noexcept { return code_; }

 private:
  std::error_code code_;
};

namespace detail {

using leash::detail::cancel_state;
using leash::detail::resumable;

// Throws usage_error unless the caller runs in a coroutine task.
inline resumable& require_coroutine_task(const char* what) {
  if (leash::detail::current_resumable == nullptr) {
    throw usage_error(std::string("leash::") + what +
                      ": only inside a coroutine task (nursery::spawn of a function returning "
                      "leash::coro)");
  }
  return *leash::detail::current_resumable;
}

// How a wait on a ready_slot ended.
enum class wake_reason { ready, closed, stopped };

class slot_awaiter;

// One direction of one fd (or one completion): idle, ready, or the one
// awaiter waiting for it. See the top of this file.
class ready_slot {
 public:
  enum class arm_result { armed, was_ready, busy };

  // A readiness or completion arrived: wakes the waiter, or leaves the slot
  // ready for the next one. The woken waiter takes the readiness with it.
  void set_ready() noexcept {
    std::uintptr_t old = word_.load(std::memory_order_acquire);
    for (;;) {
      if (old == ready) return;
      const std::uintptr_t next = old == idle ? ready : idle;
      if (word_.compare_exchange_weak(old, next, std::memory_order_acq_rel,
                                      std::memory_order_acquire)) {
        break;
      }
    }
    if (old != idle) wake(old, wake_reason::ready);
  }

  // The fd is being closed: wakes a waiter with closed and forgets readiness.
  void close() noexcept {
    const std::uintptr_t old = word_.exchange(idle, std::memory_order_acq_rel);
    if (old != idle && old != ready) wake(old, wake_reason::closed);
  }

  // Consumes a pending readiness; true if there was one.
  bool try_consume() noexcept {
    std::uintptr_t expected = ready;
    return word_.compare_exchange_strong(expected, idle, std::memory_order_acq_rel,
                                         std::memory_order_acquire);
  }

  // Installs `w` as the waiter. A pending readiness is consumed instead
  // (was_ready); another waiter already there is a misuse (busy).
  arm_result arm(slot_awaiter* w) noexcept {
    std::uintptr_t expected = idle;
    if (word_.compare_exchange_strong(expected, address(w), std::memory_order_acq_rel,
                                      std::memory_order_acquire)) {
      return arm_result::armed;
    }
    if (expected == ready && try_consume()) return arm_result::was_ready;
    return expected == ready ? arm(w) : arm_result::busy;
  }

  // Takes `w` out again if nobody took it first; true if this call did.
  bool disarm(slot_awaiter* w) noexcept {
    std::uintptr_t expected = address(w);
    return word_.compare_exchange_strong(expected, idle, std::memory_order_acq_rel,
                                         std::memory_order_acquire);
  }

 private:
  static constexpr std::uintptr_t idle = 0;
  static constexpr std::uintptr_t ready = 1;  // never an awaiter's address (aligned)

  static std::uintptr_t address(slot_awaiter* w) noexcept {
    return reinterpret_cast<std::uintptr_t>(w);
  }
  static void wake(std::uintptr_t w, wake_reason why) noexcept;

  std::atomic<std::uintptr_t> word_{idle};
};

// co_await slot_awaiter(slot, what): suspends the coroutine task until the
// slot is ready, it is closed, or the task's ambient scope stops. Returns
// ready or closed; throws cancelled (deadline_exceeded) when stopped. A
// pending readiness is consumed without suspending. `what` (a literal) is
// what live_tasks() shows the task blocked in.
class slot_awaiter final : private leash::detail::stop_hook_node {
 public:
  slot_awaiter(ready_slot& slot, const char* what) noexcept : slot_(slot), what_(what) {}
  slot_awaiter(const slot_awaiter&) = delete;
  slot_awaiter& operator=(const slot_awaiter&) = delete;
  ~slot_awaiter() override = default;

  bool await_ready() {
    task_ = &require_coroutine_task(what_);
    state_ = leash::detail::ambient;
    return slot_.try_consume();
  }

  bool await_suspend(std::coroutine_handle<> h) {
    task_->resume_at = h;
    switch (slot_.arm(this)) {
      case ready_slot::arm_result::was_ready:
        return false;
      case ready_slot::arm_result::busy:
        throw usage_error(std::string("leash::") + what_ +
                          ": another task already waits in the same direction of this socket");
      case ready_slot::arm_result::armed:
        break;
    }
    armed_ = true;
    identity_ = leash::detail::current_task;
    if (identity_ != nullptr) identity_->note_blocked(what_);
    if (identity_ != nullptr && identity_->vclock != nullptr) {
      identity_->vclock->external_begin(identity_);  // before the task can be posted
    }
    if (state_ != nullptr) state_->add_hook(*this);  // runs on_stop at once if stopped
    return gate_.fetch_sub(1, std::memory_order_acq_rel) != 1;
  }

  wake_reason await_resume() {
    if (!armed_) return wake_reason::ready;
    if (identity_ != nullptr) identity_->note_blocked(nullptr);
    if (identity_ != nullptr && identity_->vclock != nullptr) {
      identity_->vclock->external_end(identity_);
    }
    if (state_ != nullptr) state_->remove_hook(*this);
    if (result_ == wake_reason::stopped) state_->throw_cancelled();
    return result_;
  }

 private:
  friend class ready_slot;

  // Called by whoever took this awaiter out of the slot, once.
  void woken(wake_reason why) noexcept {
    result_ = why;
    arrive();
  }

  // The last of the wake-up and the end of await_suspend posts the task;
  // this object may be gone right after the other arrival.
  void arrive() noexcept {
    resumable* task = task_;
    if (gate_.fetch_sub(1, std::memory_order_acq_rel) == 1) leash::detail::post_resumable(task);
  }

  // fired() before arrive(): the owner cannot run before the last arrival,
  // and its remove_hook waits for fired().
  void on_stop() noexcept override {
    const bool won = slot_.disarm(this);
    if (won) result_ = wake_reason::stopped;
    fired();
    if (won) arrive();
  }

  ready_slot& slot_;
  const char* what_;
  resumable* task_ = nullptr;
  cancel_state* state_ = nullptr;
  leash::detail::task_identity* identity_ = nullptr;
  wake_reason result_ = wake_reason::ready;  // written by the one who woke it
  bool armed_ = false;
  std::atomic<int> gate_{2};  // the wake-up and the end of await_suspend
};

inline void ready_slot::wake(std::uintptr_t w, wake_reason why) noexcept {
  reinterpret_cast<slot_awaiter*>(w)->woken(why);
}

// The readiness state of one registered fd.
struct poll_desc {
  ready_slot read;
  ready_slot write;
  poll_desc* next_free = nullptr;  // the reactor's free list, guarded by its mutex
};

// The epoll backend. Another backend (io_uring's poll operations, kqueue)
// provides the same five operations with the same contracts.
class epoll_backend {
 public:
  epoll_backend() {
    epoll_fd_ = ::epoll_create1(EPOLL_CLOEXEC);
    if (epoll_fd_ < 0) throw io_error("epoll_create1", errno);
    wake_fd_ = ::eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (wake_fd_ < 0) {
      const int err = errno;
      ::close(epoll_fd_);
      throw io_error("eventfd", err);
    }
    epoll_event ev{};
    ev.events = EPOLLIN;  // level-triggered: drained by each poll
    ev.data.ptr = nullptr;
    ::epoll_ctl(epoll_fd_, EPOLL_CTL_ADD, wake_fd_, &ev);
  }
  ~epoll_backend() {
    ::close(wake_fd_);
    ::close(epoll_fd_);
  }
  epoll_backend(const epoll_backend&) = delete;
  epoll_backend& operator=(const epoll_backend&) = delete;

  // Reports `fd`'s readiness changes for `d` from now on (edge-triggered,
  // both directions). Throws io_error.
  void add(int fd, poll_desc* d) {
    epoll_event ev{};
    ev.events = EPOLLIN | EPOLLOUT | EPOLLRDHUP | EPOLLET;
    ev.data.ptr = d;
    if (::epoll_ctl(epoll_fd_, EPOLL_CTL_ADD, fd, &ev) != 0) throw io_error("epoll_ctl", errno);
  }

  // Stops reporting `fd` (still open). Events already collected by a poll in
  // progress may still be delivered for its descriptor.
  void remove(int fd) noexcept {
    epoll_event ev{};  // non-null for kernels before 2.6.9
    ::epoll_ctl(epoll_fd_, EPOLL_CTL_DEL, fd, &ev);
  }

  // Collects the fds that are ready: blocks until there is one or wake() was
  // called when `block`, else returns at once. One caller at a time (it owns
  // the collected events until dispatch()).
  void wait(bool block) noexcept {
    collected_ = ::epoll_wait(epoll_fd_, events_, batch, block ? -1 : 0);
  }

  // Calls on_ready(desc, readable, writable) for each fd the last wait()
  // collected.
  template <class F>
  void dispatch(F&& on_ready) {
    const int n = std::exchange(collected_, 0);
    for (int i = 0; i < n; ++i) {
      auto* d = static_cast<poll_desc*>(events_[i].data.ptr);
      if (d == nullptr) {
        drain_wake();
        continue;
      }
      const std::uint32_t e = events_[i].events;
      const bool failed = (e & (EPOLLERR | EPOLLHUP)) != 0;
      on_ready(d, failed || (e & (EPOLLIN | EPOLLRDHUP)) != 0, failed || (e & EPOLLOUT) != 0);
    }
  }

  // Makes a blocking wait() in progress (or the next one) return.
  void wake() noexcept {
    const std::uint64_t one = 1;
    [[maybe_unused]] const auto n = ::write(wake_fd_, &one, sizeof one);
  }

 private:
  // Events taken per epoll_wait: enough that a burst needs few calls.
  static constexpr int batch = 256;

  void drain_wake() noexcept {
    std::uint64_t count = 0;
    [[maybe_unused]] const auto n = ::read(wake_fd_, &count, sizeof count);
  }

  int epoll_fd_ = -1;
  int wake_fd_ = -1;
  epoll_event events_[batch] = {};  // what the last wait() collected
  int collected_ = 0;               // how many (negative: the wait failed, EINTR)
};

using backend = epoll_backend;

// The process's reactor: a backend and the poll descriptors, attached to the
// scheduler as the driver its idle workers wait in. Immortal.
class reactor final : public leash::detail::io_driver {
 public:
  static reactor& instance() {
    static auto* r = make();  // immortal: no static-destruction-order crash
    return *r;
  }

  // Registers `fd` (non-blocking, open) and returns its descriptor.
  poll_desc* open(int fd) {
    poll_desc* d = take_desc();
    try {
      backend_.add(fd, d);
    } catch (...) {
      give_back(d);
      throw;
    }
    registered_.fetch_add(1, std::memory_order_relaxed);
    return d;
  }

  // Deregisters `fd` (still open; the caller closes it after), wakes its
  // waiters with closed, and recycles `d`.
  void close(int fd, poll_desc* d) noexcept {
    backend_.remove(fd);
    d->read.close();
    d->write.close();
    registered_.fetch_sub(1, std::memory_order_relaxed);
    give_back(d);
  }

  // Fds registered now.
  std::size_t registered() const noexcept { return registered_.load(std::memory_order_relaxed); }

  // The scheduler's side (io_driver): called by one worker at a time.
  void wait(bool block) noexcept override { backend_.wait(block); }
  void dispatch() noexcept override {
    backend_.dispatch([](poll_desc* d, bool readable, bool writable) {
      if (readable) d->read.set_ready();
      if (writable) d->write.set_ready();
    });
  }
  void wake() noexcept override { backend_.wake(); }

 private:
  static reactor* make() {
    auto* r = new reactor;
    leash::detail::scheduler::instance().attach(r);
    return r;
  }

  reactor() = default;
  ~reactor() = default;

  poll_desc* take_desc() {
    {
      std::lock_guard lock(mutex_);
      if (poll_desc* d = free_) {
        free_ = d->next_free;
        return d;
      }
    }
    return new poll_desc;  // never freed: see the top of this file
  }

  void give_back(poll_desc* d) noexcept {
    std::lock_guard lock(mutex_);
    d->next_free = free_;
    free_ = d;
  }

  backend backend_;
  std::atomic<std::size_t> registered_{0};
  std::mutex mutex_;
  poll_desc* free_ = nullptr;  // guarded by mutex_
};

}  // namespace detail

}  // namespace leash::inline v0::io
