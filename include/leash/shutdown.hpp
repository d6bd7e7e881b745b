// SPDX-License-Identifier: BSL-1.0
// leash/shutdown.hpp: waiting for a soft stop, the first phase of a
// two-phase cancellation (nursery::shutdown, cancel_scope::cancel_after_grace).
// Prevents: a graceful shutdown that is either a flag nobody can wait on, or
// a cancel that cuts in-flight work short with no chance to finish it.
//
//   leash::run_nursery([&](leash::nursery& n) {
//     n.spawn([&] {
//       for (;;) {
//         leash::select(leash::on_recv(jobs, [&](job j) { run(j); }),
//                       leash::on_soft_stop([] {}));    // asked to finish: stop taking jobs
//         if (leash::this_task::soft_stop_requested()) return;
//       }
//     });
//     ...
//     n.shutdown(2s);   // polite now, cancelled hard in 2 s if still running
//   });
//
// Model. A soft stop is a request, not a cancellation: leash's blocking calls
// ignore it and go on. Code sees it by polling this_task::soft_stop_requested(),
// through this_task::soft_stop_token() (a std::stop_token for its own waits),
// by waiting for it here, or in a select. It reaches every task of the scope
// that requested it and of every scope and nursery nested in it, up to a
// shielded scope. A hard stop counts as a soft stop too.
//
// Guarantees. Blocks: wait_for_soft_stop. Cancelled: by the hard stop of the
// ambient scope, which may also end the wait normally (it implies a soft
// stop). Throws: cancelled, usage_error (async form outside a coroutine
// task), std::bad_alloc on the first use in a scope. Thread-safe: from any
// task of the scope. Outside every scope a soft stop never comes.
#pragma once

#include "detail/config.hpp"

#include <memory>
#include <mutex>
#include <stop_token>
#include <utility>

#include "cancel.hpp"
#include "detail/cancel_state.hpp"
#include "event.hpp"
#include "select.hpp"

namespace leash::inline v0 {
namespace detail {

// The event set by a state's soft stop: the only extension of a soft_stop block.
class soft_stop_signal final : public soft_stop_extension {
 public:
  explicit soft_stop_signal(std::stop_token soft) : link_(std::move(soft), setter{&event_}) {}
  event& get() noexcept { return event_; }

 private:
  struct setter {
    event* ev;
    void operator()() const noexcept { ev->set(); }
  };
  event event_;
  std::stop_callback<setter> link_;  // after event_: a stopped token sets it at once
};

// The soft stop event of the ambient scope (one that is never set outside
// every scope).
inline event& soft_stop_event() {
  if (ambient == nullptr) {
    static event& never = *new event;  // immortal: waits during static destruction
    return never;
  }
  soft_stop& block = ambient->soft_stop_block();
  if (soft_stop_extension* made = block.extension()) {
    return static_cast<soft_stop_signal&>(*made).get();
  }
  std::lock_guard lock(soft_stop_creation());
  auto& ext = block.extension_locked(
      [](std::stop_token soft) { return std::make_unique<soft_stop_signal>(std::move(soft)); });
  return static_cast<soft_stop_signal&>(ext).get();
}

}  // namespace detail

namespace this_task {

// Waits until soft_stop_requested() is true. Blocks; a hard stop either
// ends it normally or throws cancelled.
inline void wait_for_soft_stop() {
  detail::soft_stop_event().wait();
}

// co_await async_wait_for_soft_stop(): wait_for_soft_stop() that suspends
// the coroutine task, not its thread. Throws usage_error outside a
// coroutine task.
inline auto async_wait_for_soft_stop() {
  return detail::soft_stop_event().async_wait();
}

}  // namespace this_task

// A select case that fires once the ambient scope was asked to stop softly:
// fn() runs if it is chosen. Ready at once if the soft stop came already.
template <class F>
auto on_soft_stop(F fn) {
  return on_set(detail::soft_stop_event(), std::move(fn));
}

}  // namespace leash::inline v0
