// SPDX-License-Identifier: BSL-1.0
// leash/timer_channel.hpp: time as a channel, Go's time.After and time.Tick.
// Prevents: time.Tick's ticker that can never be stopped, and time.After in a
// loop keeping a timer alive per iteration until it fires. Here both are scope
// objects: the timer is removed when the object dies.
//
//   auto tick = leash::tick(100ms);
//   auto give_up = leash::after(2s);
//   for (bool done = false; !done;) {
//     leash::select(leash::on_recv(tick, [&] { poll(); }),
//                   leash::on_recv(give_up, [&] { done = true; }));
//   }  // ~timer_channel: no timer left behind
//
// after(d) delivers one time point, d from now. tick(p) delivers one every p,
// on the grid start + k*p; the channel holds one value, so a slow reader drops
// ticks instead of queuing them (Go's behaviour). Neither is ever closed.
//
// Inside a virtual_time scope the timer runs on the scope's clock (the one of
// the task that created the channel): it fires when the clock reaches it, and
// delivers that virtual time point.
//
// Guarantees. Blocks: recv (cancellable; throws cancelled). The timer callback
// runs on leash's shared timer thread (a virtual clock's driver inside a
// virtual_time scope) and never blocks. Thread-safe: recv and
// try_recv from any thread; construct and destroy on one. After the destructor
// returns, the timer thread no longer touches the object.
#pragma once

#include "detail/config.hpp"

#include <chrono>
#include <mutex>
#include <optional>
#include <stop_token>

#include "cancel.hpp"
#include "channel.hpp"
#include "detail/cancel_state.hpp"
#include "detail/timer.hpp"
#include "detail/virtual_clock.hpp"
#include "errors.hpp"
#include "select.hpp"

namespace leash::inline v0 {

class timer_channel final : detail::timer_client {
 public:
  using clock = std::chrono::steady_clock;

  ~timer_channel() {
    detail::timer_handle h;
    {
      std::lock_guard lock(mutex_);
      stopped_ = true;  // a callback running now will not re-arm
      h = handle_;
    }
    detail::cancel_timer(vclock_, h);  // waits for a running callback
  }
  timer_channel(const timer_channel&) = delete;
  timer_channel& operator=(const timer_channel&) = delete;

  // Receives the next time point (when the timer fired). Blocks; cancellable;
  // throws cancelled.
  clock::time_point recv() { return recv(detail::ambient_token_ref()); }
  clock::time_point recv(const std::stop_token& token) { return *channel_.recv(token); }
  // The time point if one is ready. Never blocks.
  recv_result<clock::time_point> try_recv() { return channel_.try_recv(); }

  // The underlying channel, for select (on_recv accepts the timer_channel too).
  leash::channel<clock::time_point>& channel() noexcept { return channel_; }

 private:
  friend timer_channel after_until(clock::time_point);
  template <class Rep, class Period>
  friend timer_channel tick(std::chrono::duration<Rep, Period>);

  timer_channel(clock::time_point first, clock::duration period)
      : period_(period), vclock_(detail::current_vclock()) {
    std::lock_guard lock(mutex_);
    handle_ = detail::schedule_timer(vclock_, first, this);
  }

  // A virtual clock's firing is recorded as a wake of the receiver by the
  // channel, before the clock can see every task blocked again.
  void on_timer() noexcept override {
    const clock::time_point now = detail::now_for(vclock_);
    channel_.try_send(now);  // full: the reader is slow, the tick is dropped
    if (period_ == clock::duration::zero()) return;
    std::lock_guard lock(mutex_);
    if (stopped_) return;
    // Skip missed ticks: the next one lands on the grid, after now.
    clock::time_point next = handle_.when + period_;
    if (next <= now) next += ((now - next) / period_ + 1) * period_;
    handle_ = detail::schedule_timer(vclock_, next, this);
  }

  const clock::duration period_;         // zero: one-shot
  detail::virtual_clock* const vclock_;  // the creating task's clock (null: real time)
  leash::channel<clock::time_point> channel_{1};
  std::mutex mutex_;  // guards handle_ and stopped_ against the timer thread
  detail::timer_handle handle_;
  bool stopped_ = false;
};

// A channel that receives one time point at `deadline`.
[[nodiscard]] inline timer_channel after_until(timer_channel::clock::time_point deadline) {
  return timer_channel(deadline, timer_channel::clock::duration::zero());
}

// A channel that receives one time point `d` from now (Go's time.After).
template <class Rep, class Period>
[[nodiscard]] timer_channel after(std::chrono::duration<Rep, Period> d) {
  return after_until(detail::deadline_after(d));
}

// A channel that receives a time point every `period` until destroyed (Go's
// time.Tick, but stoppable). Throws usage_error if period is not positive.
template <class Rep, class Period>
[[nodiscard]] timer_channel tick(std::chrono::duration<Rep, Period> period) {
  const auto p = std::chrono::ceil<timer_channel::clock::duration>(period);
  if (p <= p.zero()) throw usage_error("leash::tick: the period must be positive");
  return timer_channel(detail::deadline_after(p), p);
}

// A select case receiving from a timer channel.
template <class F>
auto on_recv(timer_channel& t, F fn) {
  return on_recv(t.channel(), std::move(fn));
}

}  // namespace leash::inline v0
