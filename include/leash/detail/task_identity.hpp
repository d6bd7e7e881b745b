// SPDX-License-Identifier: BSL-1.0
// leash/detail/task_identity.hpp: who a running task is, and what it blocks in.
//
// A task_identity names a task (id, name, spawn site, nursery) for reports,
// leak checks and observers, and records the leash call it is blocked in.
// Only the task itself writes blocked_in (note_blocked / end_blocked, or a
// blocked_scope around the wait); any thread may read it for a report. The
// vt_ fields belong to the task's virtual clock (virtual_clock.hpp) and are
// guarded by that clock's mutex.
//
// current_task is the task whose body runs on this thread, or null on a
// plain thread.
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <ctime>
#include <exception>
#include <string>

#include "../errors.hpp"
#include "../observer.hpp"
#include "source_location.hpp"

namespace leash::inline v0::detail {

// Now on steady_clock's scale, for "blocked for 1.2s" in reports: the
// kernel's coarse monotonic clock where there is one (a few ns per read
// against ~25 for a precise one, paid by every call that waits; it lags by at
// most a scheduler tick, so a report's duration is never negative).
inline std::chrono::steady_clock::rep blocked_clock_now() noexcept {
#if defined(__linux__) && defined(CLOCK_MONOTONIC_COARSE)
  timespec ts;
  if (clock_gettime(CLOCK_MONOTONIC_COARSE, &ts) == 0) {
    return std::chrono::duration_cast<std::chrono::steady_clock::duration>(
               std::chrono::seconds(ts.tv_sec) + std::chrono::nanoseconds(ts.tv_nsec))
        .count();
  }
#endif
  return std::chrono::steady_clock::now().time_since_epoch().count();
}

class virtual_clock;

// Identity of a running task, shared by the nursery's records and the leak
// check. Blocking calls note what they block in, for reports.
struct task_identity {
  std::uint64_t id = 0;
  std::string name;
  source_location site;
  const void* owner_nursery = nullptr;  // the nursery that runs it
  std::chrono::steady_clock::time_point started{};
  std::atomic<const char*> blocked_in{nullptr};
  std::atomic<std::chrono::steady_clock::rep> blocked_since{0};
  // The virtual_time scope the task runs in, or null (real time). The fields
  // after it are guarded by that clock's mutex.
  virtual_clock* vclock = nullptr;
  bool vt_coroutine = false;            // counted by posts and slices, not by thread waits
  bool vt_blocked = false;              // counted in the clock's blocked tasks
  bool vt_wake_pending = false;         // a waker committed to waking its current thread wait
  const void* vt_waiting_on = nullptr;  // the condition variable of its thread wait
  int vt_runnable = 0;                  // coroutine task: posts whose slice has not ended
  int vt_external = 0;  // coroutine task: waits outside leash (a socket): it counts as running
  // For observers (see observer.hpp).
  std::uint64_t parent_id = 0;   // the task that spawned it, 0 from a plain thread
  std::uint64_t nursery_id = 0;  // the nursery that runs it
  bool coroutine = false;

  // Notes that the task waits in `what` from now on (nullptr: no longer).
  void note_blocked(const char* what) noexcept {
    if (what != nullptr) blocked_since.store(blocked_clock_now(), std::memory_order_relaxed);
    publish_blocked(what, what != nullptr);
  }

  // The end of a blocking call that began with note_blocked: back to
  // `previous`, the enclosing call still blocking (nullptr: none).
  void end_blocked(const char* previous) noexcept { publish_blocked(previous, false); }

  task_event event() const noexcept {
    task_event e;
    e.id = id;
    e.name = name;
    e.site = site;
    e.parent_id = parent_id;
    e.nursery_id = nursery_id;
    e.coroutine = coroutine;
    return e;
  }

  // Tells the observer, if one is set, of an event with nothing more to say.
  void report(event_kind k) const noexcept {
    if (observing()) [[unlikely]]
      report_event(k, event());
  }
  void report_cancel(const cancel_info& why) const noexcept {
    task_event e = event();
    e.cancel = &why;
    report_event(event_kind::cancel, e);
  }
  void report_finish(const std::exception_ptr& error) const noexcept {
    if (!observing()) [[likely]]
      return;
    task_event e = event();
    e.outcome = outcome_of(error);
    e.error = error;
    report_event(event_kind::finish, e);
  }

 private:
  // The only writer of blocked_in is the task itself, so the exchange below
  // reads its own last store.
  void publish_blocked(const char* now, bool entering) noexcept {
    if (!observing()) [[likely]] {
      blocked_in.store(now, std::memory_order_release);  // publishes the text too
      return;
    }
    const char* const was = blocked_in.exchange(now, std::memory_order_acq_rel);
    if (!entering && was == nullptr) return;  // not blocked: nothing ends
    task_event e = event();
    e.blocked_in = entering ? now : was;
    report_event(entering ? event_kind::block : event_kind::unblock, e);
  }

  // Tasks only: a ticker's loop borrows an identity without an id.
  void report_event(event_kind k, const task_event& e) const noexcept {
    if (id != 0) emit(k, e);
  }
};

// The task whose body runs on this thread, if any.
inline thread_local task_identity* current_task = nullptr;

// Marks the current task as blocked in `what` for the scope's lifetime.
class blocked_scope {
 public:
  explicit blocked_scope(const char* what) noexcept : task_(current_task) {
    if (task_ == nullptr) return;
    previous_ = task_->blocked_in.load(std::memory_order_relaxed);
    task_->note_blocked(what);
  }
  ~blocked_scope() {
    if (task_ != nullptr) task_->end_blocked(previous_);
  }
  blocked_scope(const blocked_scope&) = delete;
  blocked_scope& operator=(const blocked_scope&) = delete;

 private:
  task_identity* task_;
  const char* previous_ = nullptr;
};

}  // namespace leash::inline v0::detail
