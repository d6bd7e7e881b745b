// SPDX-License-Identifier: BSL-1.0
// leash/detail/cancel_reporter.hpp: a nursery's stop, told to the observer
// as a cancel event of each of its running tasks.
//
// The reporter is a lead hook on the nursery's scope (it runs before the
// hooks that wake the tasks' waits, so no task can finish first) and walks
// the running tasks under the nursery's lock, which a task's spawn and finish
// also take: each cancel event falls between the task's spawn and finish
// events. It is linked at the first spawn made while an observer is set, so
// a nursery pays nothing without one.
#pragma once

#include <atomic>
#include <mutex>

#include "../errors.hpp"
#include "../observer.hpp"
#include "cancel_state.hpp"
#include "task_record.hpp"

namespace leash::inline v0::detail {

// Cancel events for the tasks on the list starting at `live` (linked through
// task_record::next), with the reason `state` stopped for. Under the lock
// that guards the list.
inline void report_cancels(const task_record* live, const cancel_state& state) noexcept {
  if (live == nullptr || !observing()) return;
  try {
    const cancel_info why = state.info();
    for (const task_record* r = live; r != nullptr; r = r->next)
      r->report_cancel(why);
  } catch (...) {
    // Out of memory copying the reason: the cancel events are lost, not the stop.
  }
}

// A task spawned into a stopped nursery: spawned, cancelled and finished,
// never started.
inline void report_stillborn(const task_record& r, const cancel_state& state) noexcept {
  if (!observing()) return;
  r.report(event_kind::spawn);
  try {
    r.report_cancel(state.info());
  } catch (...) {
    // Out of memory copying the reason: only the cancel event is lost.
  }
  r.report_finish(r.error);
}

class cancel_reporter final : private stop_hook_node {
 public:
  // The nursery's lock, its list of running tasks and its scope.
  cancel_reporter(std::mutex& lock, task_record* const& live, cancel_state& state) noexcept
      : lock_(lock), live_(live), state_(state) {}
  ~cancel_reporter() override = default;
  cancel_reporter(const cancel_reporter&) = delete;
  cancel_reporter& operator=(const cancel_reporter&) = delete;

  // Once per nursery. May run on_stop at once (the scope stopped already):
  // call without the nursery's lock.
  void link() noexcept {
    if (!linked_.exchange(true, std::memory_order_relaxed)) state_.add_hook(*this, true);
  }

  // Before the nursery's members die: waits for an on_stop in progress, then
  // for its release of the nursery's lock.
  void unlink() noexcept {
    if (!linked_.load(std::memory_order_relaxed)) return;
    state_.remove_hook(*this);
    const std::lock_guard wait_for_release(lock_);
  }

 private:
  void on_stop() noexcept override {
    const std::lock_guard lock(lock_);
    report_cancels(live_, state_);
    fired();  // inside the lock: unlink() takes it after seeing this
  }

  std::mutex& lock_;
  task_record* const& live_;  // guarded by lock_
  cancel_state& state_;
  std::atomic<bool> linked_{false};
};

}  // namespace leash::inline v0::detail
