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

#include <chrono>
#include <condition_variable>
#include <functional>
#include <mutex>
#include <stop_token>
#include <string>
#include <type_traits>

#include "detail/cancel_state.hpp"
#include "detail/registry.hpp"
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
// or a token that never stops outside any scope.
inline std::stop_token stop_token() noexcept {
  return detail::ambient_token();
}

// Throws leash::cancelled if `token` is stopped.
inline void checkpoint(const std::stop_token& token) {
  detail::throw_if_stopped(token);
}
// Throws leash::cancelled if the ambient token is stopped.
inline void checkpoint() {
  checkpoint(stop_token());
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
    const auto now = Clock::now();
    if (deadline <= now) return;
    const auto left = deadline - now;
    const auto status =
        detail::wait_until(lock, cv, token, detail::deadline_after(left), [] { return false; });
    if (status == detail::wait_status::stopped) detail::throw_cancelled(token);
  }
}
template <class Clock, class Duration>
void sleep_until(const std::chrono::time_point<Clock, Duration>& deadline) {
  sleep_until(deadline, stop_token());
}

// Sleeps for `d`. Blocks; cancellable; throws cancelled.
template <class Rep, class Period>
void sleep_for(std::chrono::duration<Rep, Period> d, const std::stop_token& token) {
  sleep_until(detail::deadline_after(d), token);
}
template <class Rep, class Period>
void sleep_for(std::chrono::duration<Rep, Period> d) {
  sleep_for(d, stop_token());
}

}  // namespace this_task

// Runs fn() under a new scope stopped at `deadline`. Returns true if fn
// returned (even after the deadline passed), false if it was cancelled by this
// scope; a cancellation from an enclosing scope propagates.
template <class F>
bool move_on_at(std::chrono::steady_clock::time_point deadline, F&& fn) {
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
bool move_on_after(std::chrono::duration<Rep, Period> d, F&& fn) {
  return move_on_at(detail::deadline_after(d), std::forward<F>(fn));
}

// Runs fn() under a new scope stopped at `deadline` and returns its value, even
// if the deadline passed while it finished. Throws leash::deadline_exceeded only
// if this scope's deadline is what stopped fn; any other cancellation (outer
// scopes, explicit tokens) passes through unchanged.
template <class F>
std::invoke_result_t<F> fail_at(std::chrono::steady_clock::time_point deadline, F&& fn) {
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
std::invoke_result_t<F> fail_after(std::chrono::duration<Rep, Period> d, F&& fn) {
  return fail_at(detail::deadline_after(d), std::forward<F>(fn));
}

}  // namespace leash::inline v0
