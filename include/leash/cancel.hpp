// SPDX-License-Identifier: BSL-1.0
// leash/cancel.hpp: cancel scopes, deadlines and stop-aware sleeping.
// Prevents: context.WithTimeout without `defer cancel()`, which leaks a timer
// until the deadline. A deadline here is an RAII scope: nothing to forget.
//
//   leash::cancel_scope scope(250ms);       // ambient for this thread until it dies
//   leash::this_task::sleep_for(1s);         // throws leash::deadline_exceeded at 250ms
//
//   bool finished = leash::move_on_after(100ms, [] { slow(); });   // false: gave up
//   int v = leash::fail_after(100ms, [] { return compute(); });     // throws on timeout
//   bool done = co_await leash::move_on_after(100ms, [&]() -> leash::coro<> {...});
//
// A scope is a child of the thread's ambient scope (or of an explicit token,
// or of nothing when `shielded`), and while alive it is the ambient scope that
// every blocking leash call on this thread honours. Its reason is the first of
// cancelled / deadline_exceeded / parent and never changes afterwards.
//
// Guarantees. Blocks: sleep_for/sleep_until only. Cancelled: every blocking
// call here throws leash::cancelled (leash::deadline_exceeded when a deadline
// caused it) as soon as its token is stopped, within microseconds. Thread-safe:
// cancel(), token(), reason() from any thread; a scope must be destroyed on the
// thread that created it, innermost first (checked: std::terminate otherwise).
#pragma once

#include "detail/config.hpp"

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <coroutine>
#include <functional>
#include <mutex>
#include <optional>
#include <stop_token>
#include <string>
#include <type_traits>

#include "coro.hpp"
#include "detail/cancel_state.hpp"
#include "detail/registry.hpp"
#include "detail/scheduler.hpp"
#include "detail/task_identity.hpp"
#include "detail/virtual_clock.hpp"
#include "detail/wait.hpp"
#include "errors.hpp"

namespace leash::inline v0 {

// Tag: a scope that ignores every enclosing scope (Trio's shield, Go's
// context.WithoutCancel) but keeps its own deadline. For cleanup that must
// still be allowed to block.
struct shielded_t {
  explicit shielded_t() = default;
};
inline constexpr shielded_t shielded{};

class cancel_scope {
 public:
  using clock = std::chrono::steady_clock;

  // A child of the ambient scope, without a deadline of its own.
  [[nodiscard]] cancel_scope() : cancel_scope(detail::ambient, {}, clock::time_point::max()) {}

  // A child of the ambient scope that stops itself after `timeout`. A zero or
  // negative timeout is already expired: the first blocking call throws.
  template <class Rep, class Period>
  [[nodiscard]] explicit cancel_scope(std::chrono::duration<Rep, Period> timeout)
      : cancel_scope(detail::ambient, {}, detail::deadline_after(timeout)) {}

  // A child of the ambient scope that stops itself at `deadline`.
  [[nodiscard]] explicit cancel_scope(clock::time_point deadline)
      : cancel_scope(detail::ambient, {}, deadline) {}

  // A child of the ambient scope that also stops when `token` does (a
  // request's token handed in from elsewhere). Only `shielded` ignores the
  // enclosing scopes.
  [[nodiscard]] explicit cancel_scope(std::stop_token token)
      : cancel_scope(detail::ambient, unless_ambient(std::move(token)), clock::time_point::max()) {}
  template <class Rep, class Period>
  [[nodiscard]] cancel_scope(std::stop_token token, std::chrono::duration<Rep, Period> timeout)
      : cancel_scope(detail::ambient, unless_ambient(std::move(token)),
                     detail::deadline_after(timeout)) {}

  // A scope with no parent at all.
  [[nodiscard]] explicit cancel_scope(shielded_t)
      : cancel_scope(nullptr, {}, clock::time_point::max()) {}
  template <class Rep, class Period>
  [[nodiscard]] cancel_scope(shielded_t, std::chrono::duration<Rep, Period> timeout)
      : cancel_scope(nullptr, {}, detail::deadline_after(timeout)) {}

  cancel_scope(const cancel_scope&) = delete;
  cancel_scope& operator=(const cancel_scope&) = delete;

  // Unregisters the deadline and the parent link; restores the previous
  // ambient scope. There is no cancel() to forget.
  ~cancel_scope() = default;

  std::stop_token token() const noexcept { return state_.token(); }
  bool stop_requested() const noexcept { return state_.stop_requested(); }

  // Requests stop with reason `cancelled`; false if the scope was already
  // stopped (the first reason is kept). Never blocks.
  bool cancel(std::string message = {}) { return state_.request(stop_reason::cancelled, message); }

  // Why the scope stopped: none, cancelled, deadline_exceeded or parent.
  stop_reason reason() const noexcept { return state_.reason(); }
  // When reason() is parent: what stopped the ancestor (cancelled or deadline_exceeded).
  stop_reason origin_reason() const noexcept { return state_.origin_reason(); }
  // The effective deadline (the earlier of its own and its ancestors'), or
  // time_point::max().
  clock::time_point deadline() const noexcept { return state_.deadline(); }

  // Throws the exception a blocking call would throw, if stopped.
  void throw_if_stopped() const {
    if (state_.stop_requested()) state_.throw_cancelled();
  }

  // Two-phase cancellation: asks the code inside the scope to finish (a
  // soft stop, see this_task::soft_stop_requested) and cancels it hard once
  // `grace` passed, with reason cancelled and the message
  // "leash::cancel_scope: grace of <grace> elapsed", unless the scope
  // stopped before. A second call can only shorten the grace; a zero or
  // negative grace cancels at once. Never blocks; from any thread.
  template <class Rep, class Period>
  void cancel_after_grace(std::chrono::duration<Rep, Period> grace) {
    state_.stop_after_grace(detail::grace_duration(grace), "leash::cancel_scope", "grace");
  }

  // Whether a soft stop reached the scope (its own, an enclosing scope's or
  // nursery's, or a hard stop).
  bool soft_stop_requested() const noexcept { return state_.soft_stop_requested(); }
  // A token that stops when soft_stop_requested() becomes true. Valid while
  // the scope lives.
  std::stop_token soft_stop_token() { return state_.soft_stop_token(); }

 private:
  cancel_scope(detail::cancel_state* parent, std::stop_token extra, clock::time_point deadline)
      : state_(parent, std::move(extra), deadline), installed_(&state_, "leash::cancel_scope") {}

  // An enclosing scope's own token adds nothing to the parent link, and
  // linking it twice would hide why the scope stopped.
  static std::stop_token unless_ambient(std::stop_token token) {
    for (detail::cancel_state* s = detail::ambient; s != nullptr; s = s->parent()) {
      if (s->token() == token) return {};
    }
    return token;
  }

  detail::cancel_state state_;
  detail::ambient_guard installed_;  // declared last: uninstalled first
};

namespace this_task {

// The ambient stop token: the innermost scope's or nursery's on this thread,
// or a token that never stops outside any scope. Directly in a task's body it
// is the nursery's token, which task<T>::cancel() does not stop; the blocking
// calls and checkpoint() below without a token see that cancel too.
inline std::stop_token stop_token() noexcept {
  return detail::ambient_token();
}

// Whether the code running here was asked to finish: a soft stop
// (nursery::shutdown, cancel_scope::cancel_after_grace) of its innermost
// scope or of any enclosing one up to a shielded scope, or a hard stop.
// Leash's blocking calls ignore a soft stop; poll this (or wait for
// soft_stop_token()) to wind down before the grace ends. False outside any
// scope. Never blocks, never allocates.
inline bool soft_stop_requested() noexcept {
  return detail::ambient != nullptr && detail::ambient->soft_stop_requested();
}

// A token that stops when soft_stop_requested() becomes true, to pass to
// one's own waits or stop callbacks. Valid while the innermost scope lives;
// a token that never stops outside any scope. Allocates on its first use in
// a scope.
inline std::stop_token soft_stop_token() {
  return detail::ambient != nullptr ? detail::ambient->soft_stop_token() : std::stop_token{};
}

// Throws leash::cancelled if `token` is stopped.
inline void checkpoint(const std::stop_token& token) {
  detail::throw_if_stopped(token);
}
// Throws leash::cancelled if the ambient scope is stopped (including by
// task<T>::cancel() of the running task).
inline void checkpoint() {
  checkpoint(detail::ambient_token_ref());
}

// Clock::now(), on the virtual clock for steady_clock in a virtual_time scope.
template <class Clock>
typename Clock::time_point clock_now() {
  if constexpr (std::is_same_v<Clock, std::chrono::steady_clock>) {
    return detail::now_for_current_task();
  } else {
    return Clock::now();
  }
}

// Sleeps until `deadline`. Blocks; cancellable; throws cancelled.
template <class Clock, class Duration>
void sleep_until(const std::chrono::time_point<Clock, Duration>& deadline,
                 const std::stop_token& token) {
  detail::throw_if_stopped(token);
  detail::blocked_scope blocked("this_task::sleep");
  std::mutex mutex;
  std::condition_variable cv;
  std::unique_lock lock(mutex);
  for (;;) {
    // Compare before subtracting (time_point::min() would overflow); convert
    // per round: a non-steady clock may be adjusted while we sleep.
    const auto now = clock_now<Clock>();
    if (deadline <= now) return;
    const auto left = deadline - now;
    const auto status =
        detail::wait_until(lock, cv, token, detail::deadline_after(left), [] { return false; });
    if (status == detail::wait_status::stopped) detail::throw_cancelled(token);
  }
}
template <class Clock, class Duration>
void sleep_until(const std::chrono::time_point<Clock, Duration>& deadline) {
  sleep_until(deadline, detail::ambient_token_ref());
}

// Sleeps for `d`. Blocks; cancellable; throws cancelled.
template <class Rep, class Period>
void sleep_for(std::chrono::duration<Rep, Period> d, const std::stop_token& token) {
  sleep_until(detail::deadline_after(d), token);
}
template <class Rep, class Period>
void sleep_for(std::chrono::duration<Rep, Period> d) {
  sleep_for(d, detail::ambient_token_ref());
}

}  // namespace this_task

// ---------------------------------------------------------------------------
// Awaitables for coroutine tasks (nursery::spawn of a function returning a
// leash::coro). Each suspends the task, not its worker thread. Used anywhere
// else (sync_wait, a plain thread) they throw usage_error.

namespace detail {

inline resumable& current_coroutine_task(const char* what) {
  if (current_resumable == nullptr) {
    throw usage_error(std::string("leash::this_task::") + what +
                      ": only inside a coroutine task (nursery::spawn of a function returning "
                      "leash::coro)");
  }
  return *current_resumable;
}

// Suspends the task until `when` or until the ambient state stops, whichever
// comes first. The timer thread and the stopping thread race for the
// wake-up (wakeup_gate) and only post the task.
class sleep_awaiter final : private timer_client, private stop_hook_node {
 public:
  explicit sleep_awaiter(std::chrono::steady_clock::time_point when) noexcept : when_(when) {}
  sleep_awaiter(const sleep_awaiter&) = delete;
  sleep_awaiter& operator=(const sleep_awaiter&) = delete;
  ~sleep_awaiter() = default;

  bool await_ready() {
    task_ = &current_coroutine_task("async_sleep");
    state_ = ambient;
    vclock_ = current_vclock();
    return stopped() || when_ <= now_for(vclock_);
  }

  void await_suspend(std::coroutine_handle<> h) {
    task_->resume_at = h;
    // Both registrations happen before this side arrives: whichever event
    // fires first claims, and only the last arrival posts the task.
    timer_ = schedule_timer(vclock_, when_, this);
    identity_ = current_task;
    if (identity_ != nullptr) identity_->note_blocked("this_task::async_sleep");
    if (state_ != nullptr) state_->add_hook(*this);
    wakeup_.arrive(task_);
  }

  void await_resume() {
    if (timer_.id != 0) {
      if (identity_ != nullptr) identity_->note_blocked(nullptr);
      cancel_timer(vclock_, timer_);
      if (state_ != nullptr) state_->remove_hook(*this);
      if (wakeup_.claimed_by() != by_stop) return;
    } else if (!stopped()) {
      return;  // the deadline had passed already
    }
    state_->throw_cancelled();
  }

 private:
  static constexpr int by_timer = 1;
  static constexpr int by_stop = 2;

  bool stopped() const noexcept { return state_ != nullptr && state_->stop_requested(); }

  void on_timer() noexcept override {
    if (wakeup_.claim(by_timer)) wakeup_.arrive(task_);
  }

  // fired() early: the owner's remove_hook waits for it, but the owner cannot
  // run before the task is posted, so a winning claim keeps this alive until
  // its arrival.
  void on_stop() noexcept override {
    const bool won = wakeup_.claim(by_stop);
    fired();
    if (won) wakeup_.arrive(task_);
  }

  std::chrono::steady_clock::time_point when_;
  resumable* task_ = nullptr;
  cancel_state* state_ = nullptr;
  virtual_clock* vclock_ = nullptr;  // the timer's clock (null: real time)
  task_identity* identity_ = nullptr;
  timer_handle timer_;
  wakeup_gate wakeup_;
};

// Throws cancelled if the ambient state is stopped, else lets the queue run.
class checkpoint_awaiter {
 public:
  bool await_ready() {
    task_ = &current_coroutine_task("async_checkpoint");
    return ambient != nullptr && ambient->stop_requested();
  }
  void await_suspend(std::coroutine_handle<> h) {
    task_->resume_at = h;
    if (task_->post_hook != nullptr) task_->post_hook->on_post();
    scheduler::instance().yield(task_);
  }
  void await_resume() const { throw_if_stopped(ambient_token_ref()); }

 private:
  resumable* task_ = nullptr;
};

}  // namespace detail

namespace this_task {

// co_await async_sleep_until(tp): suspends the coroutine task (not its
// thread) until `tp`, or throws cancelled / deadline_exceeded as soon as the
// ambient token stops, like sleep_until. Throws usage_error outside a
// coroutine task.
template <class Clock, class Duration>
detail::sleep_awaiter async_sleep_until(const std::chrono::time_point<Clock, Duration>& tp) {
  if constexpr (std::is_same_v<Clock, std::chrono::steady_clock>) {
    return detail::sleep_awaiter(std::chrono::time_point_cast<detail::clock::duration>(tp));
  } else {
    return detail::sleep_awaiter(detail::deadline_after(tp - this_task::clock_now<Clock>()));
  }
}

// co_await async_sleep_for(d): async_sleep_until(now + d).
template <class Rep, class Period>
detail::sleep_awaiter async_sleep_for(std::chrono::duration<Rep, Period> d) {
  return detail::sleep_awaiter(detail::deadline_after(d));
}

// co_await async_checkpoint(): throws cancelled if the ambient token is
// stopped; otherwise lets the other ready tasks run first (a yield), then
// checks again.
inline detail::checkpoint_awaiter async_checkpoint() noexcept {
  return {};
}

}  // namespace this_task

namespace detail {

template <class R>
inline constexpr bool is_coro_v = false;
template <class T>
inline constexpr bool is_coro_v<coro<T>> = true;

// A callable f() that returns a leash::coro: move_on / fail_after then return
// a coro to co_await.
template <class F>
concept coro_callable = std::is_invocable_v<F&> && is_coro_v<std::invoke_result_t<F&>>;

template <class F>
using coro_callable_value = typename std::invoke_result_t<F&>::value_type;

// The coroutine forms below. F is a reference type for a callable passed as
// an lvalue (the caller keeps it alive while awaiting), else the callable
// itself, moved into the frame (a lambda coroutine reads its captures from
// the lambda object). The scope opens when the coro is awaited, as a child of
// the awaiting task's ambient scope.
template <class F>
LEASH_DETAIL_CORO_NO_FUNCTION_SANITIZER coro<bool> move_on_at_coro(
    std::chrono::steady_clock::time_point deadline, F fn) {
  cancel_scope scope(deadline);
  bool finished = true;
  try {
    co_await std::invoke(fn);
  } catch (const cancelled&) {
    const stop_reason r = scope.reason();
    if (r != stop_reason::cancelled && r != stop_reason::deadline_exceeded) throw;
    finished = false;
  }
  co_return finished;
}

template <class T, class F>
LEASH_DETAIL_CORO_NO_FUNCTION_SANITIZER coro<T> fail_at_coro(
    std::chrono::steady_clock::time_point deadline, F fn) {
  cancel_scope scope(deadline);
  std::optional<std::conditional_t<std::is_void_v<T>, bool, T>> value;
  try {
    if constexpr (std::is_void_v<T>) {
      co_await std::invoke(fn);
      value.emplace(true);
    } else {
      value.emplace(co_await std::invoke(fn));
    }
  } catch (const cancelled&) {
    if (scope.reason() == stop_reason::deadline_exceeded) scope.throw_if_stopped();
    throw;
  }
  if constexpr (!std::is_void_v<T>) co_return std::move(*value);
}

}  // namespace detail

// Runs fn() under a new scope stopped at `deadline`. Returns true if fn
// returned (even after the deadline passed), false if it was cancelled by this
// scope; a cancellation from an enclosing scope propagates.
template <class F>
requires(!detail::coro_callable<F>) bool move_on_at(std::chrono::steady_clock::time_point deadline,
                                                    F&& fn) {
  cancel_scope scope(deadline);
  try {
    std::invoke(std::forward<F>(fn));
    return true;
  } catch (const cancelled&) {
    const stop_reason r = scope.reason();
    if (r == stop_reason::cancelled || r == stop_reason::deadline_exceeded) return false;
    throw;
  }
}

// move_on_at(now + d, fn).
template <class Rep, class Period, class F>
requires(!detail::coro_callable<F>) bool move_on_after(std::chrono::duration<Rep, Period> d,
                                                       F&& fn) {
  return move_on_at(detail::deadline_after(d), std::forward<F>(fn));
}

// Runs fn() under a new scope stopped at `deadline` and returns its value, even
// if the deadline passed while it finished. Throws leash::deadline_exceeded only
// if this scope's deadline is what stopped fn; any other cancellation (outer
// scopes, explicit tokens) passes through unchanged.
template <class F>
requires(!detail::coro_callable<F>) std::invoke_result_t<F> fail_at(
    std::chrono::steady_clock::time_point deadline, F&& fn) {
  cancel_scope scope(deadline);
  try {
    return std::invoke(std::forward<F>(fn));
  } catch (const cancelled&) {
    if (scope.reason() == stop_reason::deadline_exceeded) scope.throw_if_stopped();
    throw;
  }
}

// fail_at(now + d, fn).
template <class Rep, class Period, class F>
requires(!detail::coro_callable<F>) std::invoke_result_t<F> fail_after(
    std::chrono::duration<Rep, Period> d, F&& fn) {
  return fail_at(detail::deadline_after(d), std::forward<F>(fn));
}

// The same four with an fn() that returns coro<T>: each returns a coro to
// co_await (coro<bool> for move_on, coro<T> for fail), with the same
// semantics. The deadline is computed at the call; the scope opens when the
// coro is awaited, in the awaiting coroutine's ambient scope.
template <detail::coro_callable F>
coro<bool> move_on_at(std::chrono::steady_clock::time_point deadline, F&& fn) {
  return detail::move_on_at_coro<F>(deadline, std::forward<F>(fn));
}
template <class Rep, class Period, detail::coro_callable F>
coro<bool> move_on_after(std::chrono::duration<Rep, Period> d, F&& fn) {
  return detail::move_on_at_coro<F>(detail::deadline_after(d), std::forward<F>(fn));
}
template <detail::coro_callable F>
coro<detail::coro_callable_value<F>> fail_at(std::chrono::steady_clock::time_point deadline,
                                             F&& fn) {
  return detail::fail_at_coro<detail::coro_callable_value<F>, F>(deadline, std::forward<F>(fn));
}
template <class Rep, class Period, detail::coro_callable F>
coro<detail::coro_callable_value<F>> fail_after(std::chrono::duration<Rep, Period> d, F&& fn) {
  return detail::fail_at_coro<detail::coro_callable_value<F>, F>(detail::deadline_after(d),
                                                                 std::forward<F>(fn));
}

}  // namespace leash::inline v0
