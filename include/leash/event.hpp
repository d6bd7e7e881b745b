// SPDX-License-Identifier: BSL-1.0
// leash/event.hpp: a one-time signal many tasks can wait for, Go's
// close(done) on a chan struct{}.
// Prevents: a waiter that cannot be cancelled, and a hand-rolled flag plus
// condition variable that misses the wake-up.
//
//   leash::event ready;
//   leash::run_nursery([&](leash::nursery& n) {
//     for (int i = 0; i < 4; ++i) n.spawn([&] { ready.wait(); work(); });
//     load_config();
//     ready.set();                              // releases every waiter at once
//   });
//
// Built on an unbuffered channel that set() closes: wait is a receive that
// ends when the channel is closed, so a select can wait for it (on_set).
//
// Guarantees. Blocks: wait, wait_for. Cancelled: by the ambient token or an
// explicit one; a wait on an event already set returns even when stopped.
// Throws: cancelled / deadline_exceeded, usage_error (async_wait outside a
// coroutine task). Thread-safe: every member, from any number of threads and
// coroutine tasks. Ordering: set() happens-before every wait that returns
// because of it. Never allocates.
#pragma once

#include "detail/config.hpp"

#include <chrono>
#include <functional>
#include <optional>
#include <stop_token>
#include <type_traits>
#include <utility>

#include "channel.hpp"
#include "detail/recv_adapter.hpp"
#include "select.hpp"

namespace leash::inline v0 {
namespace detail {
// The element type of an event's channel; no value is ever sent.
struct event_signal {};
}  // namespace detail

class event {
 public:
  event() = default;
  event(const event&) = delete;
  event& operator=(const event&) = delete;

  // Sets the event and wakes every waiter. Idempotent: true only for the call
  // that set it. Never blocks.
  bool set() noexcept { return signal_.close(); }

  // Snapshot: whether set() was called.
  bool is_set() const noexcept { return signal_.closed(); }

  // Waits until the event is set. Blocks; cancellable; throws cancelled.
  void wait() { wait(detail::ambient_token_ref()); }
  void wait(const std::stop_token& token) { (void)signal_.recv(token); }

  // wait, giving up after `timeout`: true if the event is set. Blocks;
  // cancellable; throws cancelled.
  template <class Rep, class Period>
  bool wait_for(std::chrono::duration<Rep, Period> timeout) {
    return wait_for(timeout, detail::ambient_token_ref());
  }
  template <class Rep, class Period>
  bool wait_for(std::chrono::duration<Rep, Period> timeout, const std::stop_token& token) {
    return signal_.try_recv_for(timeout, token).status == channel_status::closed;
  }

  // co_await ev.async_wait(), in a coroutine task: wait() that suspends the
  // task, not its thread; cancelled by the task's ambient scope. Throws
  // usage_error outside a coroutine task.
  auto async_wait() noexcept {
    return detail::recv_adapter(signal_, "event::async_wait", ignore_result{});
  }

 private:
  template <class F>
  friend auto on_set(event& ev, F fn);

  struct ignore_result {
    void operator()(std::optional<detail::event_signal>&&) const noexcept {}
  };

  channel<detail::event_signal> signal_;  // unbuffered, never sent on: closed means set
};

namespace detail {
// on_set's callback as a receive case sees it: called with no value.
template <class F>
struct set_callback {
  F fn;
  void operator()() { std::invoke(fn); }
};
}  // namespace detail

// A select case that fires once `ev` is set: fn() runs if it is chosen. Any
// select form accepts it; an event already set is a ready case.
template <class F>
auto on_set(event& ev, F fn) {
  static_assert(std::is_invocable_v<F&>, "leash::on_set: the callback must be callable as f()");
  return recv_case<detail::event_signal, detail::set_callback<F>>(
      ev.signal_, detail::set_callback<F>{std::move(fn)});
}

}  // namespace leash::inline v0
