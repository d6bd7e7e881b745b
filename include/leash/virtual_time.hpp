// SPDX-License-Identifier: BSL-1.0
// leash/virtual_time.hpp: a virtual clock and deadlock detection, for tests.
// Prevents: tests of timeouts that sleep for real (slow, and flaky under load)
// and tests that hang forever on a forgotten close().
//
//   leash::virtual_time vt;
//   vt.run([&](leash::nursery& n) {
//     leash::channel<int> ch;
//     n.spawn([&] { leash::fail_after(1h, [&] { ch.recv(); }); });  // deadline_exceeded...
//   });                                                              // ...after 1 h of vt.now()
//
// Model (Go's testing/synctest bubble). run(body) runs body(nursery&) as the
// first task of a nursery; every task spawned inside it, transitively (thread
// and coroutine tasks, nested nurseries), is a member of the scope and reads
// time from its virtual clock: deadlines, sleeps and timeouts of leash calls,
// tickers and timer channels.
// The clock stands still while any member runs. When every member is blocked
// in a leash call, it jumps to the earliest pending timer and fires it; when
// no timer is pending either, nothing can ever wake them: the scope's tasks
// are cancelled and run() throws leash::deadlock, whose what() lists every
// task, its spawn site and the call it is blocked in.
//
// A member blocked outside leash (a raw read(), a std::mutex, a coroutine
// task waiting on a socket) counts as running: the clock waits for it, and
// it is never part of a deadlock. Mark
// such a wait with this_task::external_wait to name it in live_tasks().
// Tasks outside the scope keep real time; a member woken by one of them is
// woken as usual, but while it waits the scope may see a deadlock.
//
// Guarantees. Blocks: run() until every member ended. Throws: what the body's
// nursery throws (the body's exception first), leash::deadlock as above,
// usage_error for a run() inside a virtual_time scope. Thread-safe: now() from
// any thread; advance() from a member task.
#pragma once

#include "detail/config.hpp"

#include <chrono>
#include <exception>
#include <functional>
#include <mutex>
#include <optional>
#include <utility>

#include "detail/cancel_state.hpp"
#include "detail/task_identity.hpp"
#include "detail/virtual_clock.hpp"
#include "errors.hpp"
#include "nursery.hpp"

namespace leash::inline v0 {

class virtual_time final : private detail::deadlock_sink {
 public:
  using clock = std::chrono::steady_clock;

  [[nodiscard]] virtual_time() = default;
  virtual_time(const virtual_time&) = delete;
  virtual_time& operator=(const virtual_time&) = delete;
  ~virtual_time() = default;

  // Runs body(nursery&) as a task of a new nursery on the virtual clock (a
  // coroutine task if body returns leash::coro) and waits for every task of
  // it. Returns the body's value. Throws leash::deadlock when every task is
  // blocked for good, otherwise what the nursery throws.
  template <class F>
  auto run(F&& body, source_location site = source_location::current()) {
    if (const detail::virtual_clock* vc = detail::current_vclock(); vc && !vc->real_time()) {
      throw usage_error("leash::virtual_time: run() inside a virtual_time scope");
    }
    detail::cancel_state root = open_root();
    detail::ambient_guard installed(&root, "leash::virtual_time");
    clock_.set_sink(this);
    root_guard forget(*this, root);
    std::optional<nursery> n;
    auto first = spawn_body(n, body, site);
    try {
      n->wait();
    } catch (...) {
      n.reset();
      clock_.wait_idle();
      rethrow_deadlock();
      throw;
    }
    n.reset();
    clock_.wait_idle();
    rethrow_deadlock();
    return first.get();
  }

  // The virtual time now: the real time at construction plus every jump.
  clock::time_point now() const { return clock_.now(); }

  // Moves the virtual time forward by d, firing the timers due meanwhile in
  // order, on this thread. For a member task.
  template <class Rep, class Period>
  void advance(std::chrono::duration<Rep, Period> d) {
    clock_.advance(std::chrono::ceil<clock::duration>(d));
  }

 private:
  // The scope's root state: every member's scopes descend from it, so a
  // deadlock stops them all.
  detail::cancel_state open_root() {
    struct opening {
      explicit opening(detail::virtual_clock* vc) noexcept { detail::opening_vclock = vc; }
      ~opening() { detail::opening_vclock = nullptr; }
    } open(&clock_);
    return detail::cancel_state(detail::ambient, {}, clock::time_point::max(), "virtual_time");
  }

  // Makes `root` the state a deadlock stops, until destroyed.
  class root_guard {
   public:
    root_guard(virtual_time& vt, detail::cancel_state& root) : vt_(vt) {
      std::lock_guard lock(vt_.mutex_);
      vt_.root_ = &root;
    }
    ~root_guard() {
      std::lock_guard lock(vt_.mutex_);
      vt_.root_ = nullptr;
    }
    root_guard(const root_guard&) = delete;
    root_guard& operator=(const root_guard&) = delete;

   private:
    virtual_time& vt_;
  };

  // Opens the scope's nursery in `n` and spawns the body into it, both on
  // the virtual clock.
  template <class F>
  auto spawn_body(std::optional<nursery>& n, F& body, source_location site) {
    struct opening {
      explicit opening(detail::virtual_clock* vc) noexcept { detail::opening_vclock = vc; }
      ~opening() { detail::opening_vclock = nullptr; }
    } open(&clock_);
    n.emplace(nursery_options{.name = "virtual_time"}, site);
    nursery& scope = *n;
    return scope.spawn(
        "virtual_time::run", [&body, &scope] { return std::invoke(body, scope); }, site);
  }

  void rethrow_deadlock() {
    std::exception_ptr e;
    {
      std::lock_guard lock(mutex_);
      e = deadlock_;
    }
    if (e) std::rethrow_exception(e);
  }

  // On the clock's driver thread: stops every member with the report as cause.
  void on_deadlock(std::exception_ptr error) noexcept override {
    std::lock_guard lock(mutex_);
    if (deadlock_ == nullptr) deadlock_ = error;
    if (root_ != nullptr) {
      root_->request(stop_reason::cancelled, "leash::virtual_time: deadlock", nullptr, error);
    }
  }

  detail::virtual_clock clock_;  // first: destroyed last, once no member is left
  std::mutex mutex_;             // guards the two below
  detail::cancel_state* root_ = nullptr;
  std::exception_ptr deadlock_;
};

namespace this_task {

// Marks a wait outside leash (a raw read(), a foreign library's blocking call)
// for reports: live_tasks() shows the task as blocked in `what`. Inside a
// virtual_time scope such a wait already counts as running, so the clock does
// not jump and no deadlock is reported while it lasts.
class [[nodiscard]] external_wait {
 public:
  explicit external_wait(const char* what = "this_task::external_wait") noexcept : blocked_(what) {}
  external_wait(const external_wait&) = delete;
  external_wait& operator=(const external_wait&) = delete;
  ~external_wait() = default;

 private:
  detail::blocked_scope blocked_;
};

}  // namespace this_task
}  // namespace leash::inline v0
