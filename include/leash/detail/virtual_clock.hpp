// SPDX-License-Identifier: BSL-1.0
// leash/detail/virtual_clock.hpp: the clock of a virtual_time scope or of a
// deadlock watch, and the time and timer calls that pick it or real time.
//
// A virtual_clock counts its member tasks and those blocked in leash calls.
// In virtual mode (a virtual_time scope) its time stands still while any
// member runs; once every member is blocked it jumps to the earliest pending
// timer and fires it. In real-time mode (a deadlock watch) timers fire when
// due. A standstill with no timer pending is told to its deadlock_sink:
// once per standstill in virtual mode; in real time at most once, and only
// after the sink confirms that nothing outside the members can end it.
// Code reaches the clock of the task it runs in through current_vclock()
// (null: real time); now_for, schedule_timer and cancel_timer fall back to
// steady_clock and the shared timer thread (timer.hpp) when there is no
// clock.
//
// Contract for callers: a member's wake is recorded (wake(), notify(), a
// coroutine's post) before it can be seen, and a thread wait counts itself
// blocked (block()) only after checking, under its wakers' lock, that it must
// wait. The clock's destructor waits until every member has left.
#pragma once

#include <chrono>
#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <exception>
#include <map>
#include <mutex>
#include <string>
#include <thread>
#include <tuple>
#include <utility>
#include <vector>

#include "../errors.hpp"
#include "source_location.hpp"
#include "task_identity.hpp"
#include "thread_census.hpp"
#include "timer.hpp"

namespace leash::inline v0::detail {

// The clock a virtual_time scope or a deadlock watch being opened on this
// thread hands to the scope's root state and body (see virtual_time::run,
// watch_opening); set only while they are built.
inline thread_local virtual_clock* opening_vclock = nullptr;

// The virtual clock of the code running on this thread, or null (real time).
// A scope being opened wins over the task that opens it: a virtual_time
// scope or a closed nursery opened inside a real-time task has a clock of
// its own.
inline virtual_clock* current_vclock() noexcept {
  if (opening_vclock != nullptr) return opening_vclock;
  if (current_task != nullptr) return current_task->vclock;
  return nullptr;
}

// The task running on this thread if it belongs to a virtual_time scope.
inline task_identity* vt_member() noexcept {
  task_identity* t = current_task;
  return t != nullptr && t->vclock != nullptr ? t : nullptr;
}

// Told when every member of a clock (a virtual_time scope's, a deadlock
// watch's) is blocked and no timer is pending.
class deadlock_sink {
 public:
  virtual void on_deadlock(std::exception_ptr error) noexcept = 0;
  // A real-time clock's standstill is a deadlock only if nothing outside
  // its members can end it: asked unlocked, before on_deadlock.
  virtual bool nothing_outside() noexcept { return true; }
  // The report's first line: what could not wake the tasks listed under it.
  virtual std::string headline() const {
    return "leash::virtual_time: deadlock: every task is blocked in a leash call that no timer "
           "and no task of the scope can wake:";
  }

 protected:
  ~deadlock_sink() = default;
};

// The clock of a virtual_time scope: its own time, its own timer queue, and
// the count of its member tasks and of those blocked in leash calls. When
// every member is blocked, its driver thread jumps the time to the earliest
// timer and fires it; with no timer pending it reports a deadlock.
//
// Exactness rests on one rule: whoever wakes a member records the wake
// (wake(), notify(), a coroutine's post) before the wake can be seen, so a
// woken member never counts as blocked while its waker goes on to block. A
// thread wait counts itself blocked only under the clock's mutex and only if
// no wake is pending, checked against the state it waits for.
class virtual_clock {
 public:
  using clock = std::chrono::steady_clock;

  // real_time: a deadlock watch outside virtual time (deadlock_watch.hpp):
  // now() is steady_clock's, timers fire when due, and a standstill with no
  // timer pending is reported only once the sink confirms nothing_outside().
  explicit virtual_clock(bool real_time = false) : now_(clock::now()), real_time_(real_time) {
    driver_ = std::thread([this] {
      const thread_census::member counted;
      drive();
    });
  }

  // Waits until no member task is left, then stops the driver.
  ~virtual_clock() {
    {
      std::unique_lock lock(mutex_);
      changed_.wait(lock, [&] { return members_ == 0; });
      stopping_ = true;
      changed_.notify_all();
    }
    driver_.join();
  }
  virtual_clock(const virtual_clock&) = delete;
  virtual_clock& operator=(const virtual_clock&) = delete;

  clock::time_point now() const {
    if (real_time_) return clock::now();
    std::lock_guard lock(mutex_);
    return now_;
  }

  // Waits until every member task has left (after its nursery joined it).
  void wait_idle() {
    std::unique_lock lock(mutex_);
    changed_.wait(lock, [&] { return members_ == 0; });
  }

  // A deadlock watch's clock (real time), not a virtual_time scope's.
  bool real_time() const noexcept { return real_time_; }

  void set_sink(deadlock_sink* sink) noexcept {
    std::lock_guard lock(mutex_);
    sink_ = sink;
  }

  timer_handle schedule(clock::time_point when, timer_client* client) {
    std::lock_guard lock(mutex_);
    const timer_handle h{when, next_id_++};
    timers_.emplace(std::pair{when, h.id}, client);
    if (real_time_) changed_.notify_all();  // the driver may sleep until a later one
    return h;
  }

  // As timer_service::cancel: waits for a callback that runs now.
  void cancel(timer_handle& h) noexcept {
    if (h.id == 0) return;
    std::unique_lock lock(mutex_);
    if (timers_.erase(std::pair{h.when, h.id}) == 0 &&
        firing_thread_ != std::this_thread::get_id()) {
      changed_.wait(lock, [&] { return firing_ != h.id; });
    }
    h.id = 0;
  }

  // Moves the time forward by d, firing the timers due meanwhile in order.
  void advance(clock::duration d) {
    std::unique_lock lock(mutex_);
    const clock::time_point target = now_ + d;
    while (!timers_.empty() && timers_.begin()->first.first <= target)
      fire_first(lock);
    if (target > now_) now_ = target;
  }

  // A task starts as a member (a coroutine task: posted once already).
  void join(task_identity* t, bool coroutine) {
    std::lock_guard lock(mutex_);
    t->vt_coroutine = coroutine;
    t->vt_runnable = coroutine ? 1 : 0;
    t->vt_blocked = false;
    t->vt_wake_pending = false;
    members_list_.push_back(t);
    ++members_;
  }

  // The task `t` is ending (it is not blocked): it leaves the list of
  // members reports and wakes look at, while it still lives.
  void retire(const task_identity* t) noexcept {
    std::lock_guard lock(mutex_);
    for (auto it = members_list_.begin(); it != members_list_.end(); ++it) {
      if (*it == t) {
        members_list_.erase(it);
        break;
      }
    }
  }

  // A retired task ended: the last touch of the clock by its thread.
  void leave() noexcept {
    std::lock_guard lock(mutex_);
    --members_;
    changed_.notify_all();
  }

  // A thread wait of `t` on `on` counts as blocked unless a wake is pending.
  // The caller checked, under the lock its wakers change the state under,
  // that it must wait.
  void block(task_identity* t, const void* on) {
    std::lock_guard lock(mutex_);
    if (std::exchange(t->vt_wake_pending, false) || t->vt_blocked) return;
    t->vt_blocked = true;
    t->vt_waiting_on = on;
    ++blocked_;
    if (all_blocked_locked()) changed_.notify_all();
  }

  // The end of a thread wait of `t`, by the task itself.
  void end_wait(task_identity* t) noexcept {
    std::lock_guard lock(mutex_);
    t->vt_wake_pending = false;
    unblock_locked(t);
  }

  // A waker's record, before its wake of `t`'s current thread wait can be seen.
  void wake(task_identity* t) noexcept {
    std::lock_guard lock(mutex_);
    if (!unblock_locked(t)) t->vt_wake_pending = true;
  }

  // Records the wake of every member thread blocked on `on` (a notify_all).
  void notify(const void* on) noexcept {
    std::lock_guard lock(mutex_);
    for (task_identity* t : members_list_) {
      if (t->vt_blocked && t->vt_waiting_on == on) unblock_locked(t);
    }
  }

  // A coroutine member starts / ends a wait outside leash (a socket's
  // readiness), in a slice: while it lasts the member counts as running even
  // when suspended, as a thread blocked in a raw read() does, since only the
  // outside world can end it.
  void external_begin(task_identity* t) noexcept {
    std::lock_guard lock(mutex_);
    ++t->vt_external;
  }
  void external_end(task_identity* t) noexcept {
    std::lock_guard lock(mutex_);
    --t->vt_external;
  }

  // A coroutine member was posted to run / one of its slices ended suspended.
  void coro_posted(task_identity* t) noexcept {
    std::lock_guard lock(mutex_);
    if (t->vt_runnable++ == 0 && t->vt_blocked) {
      ++wakes_;
      t->vt_blocked = false;
      --blocked_;
    }
  }
  void coro_suspended(task_identity* t) noexcept {
    std::lock_guard lock(mutex_);
    if (--t->vt_runnable == 0 && !t->vt_blocked && t->vt_external == 0) {
      t->vt_blocked = true;
      t->vt_waiting_on = nullptr;
      ++blocked_;
      if (all_blocked_locked()) changed_.notify_all();
    }
  }

 private:
  bool all_blocked_locked() const noexcept { return members_ != 0 && blocked_ == members_; }

  bool unblock_locked(task_identity* t) noexcept {
    if (!t->vt_blocked || t->vt_coroutine) return false;
    ++wakes_;
    t->vt_blocked = false;
    t->vt_waiting_on = nullptr;
    --blocked_;
    return true;
  }

  // Fires the earliest timer, unlocked, at its time.
  void fire_first(std::unique_lock<std::mutex>& lock) {
    auto first = timers_.begin();
    if (first->first.first > now_) now_ = first->first.first;
    timer_client* client = first->second;
    firing_ = first->first.second;
    firing_thread_ = std::this_thread::get_id();
    timers_.erase(first);
    lock.unlock();
    client->on_timer();
    lock.lock();
    firing_ = 0;
    firing_thread_ = {};
    changed_.notify_all();
  }

  // The driver: the jumps, and the deadlock report.
  void drive() {
    if (real_time_) return drive_real_time();
    std::unique_lock lock(mutex_);
    for (;;) {
      changed_.wait(lock, [&] { return stopping_ || all_blocked_locked(); });
      if (stopping_) return;
      if (!timers_.empty()) {
        fire_first(lock);
        continue;
      }
      deadlock_sink* sink = sink_;
      std::exception_ptr error = std::make_exception_ptr(deadlock(describe_locked()));
      lock.unlock();
      if (sink != nullptr) sink->on_deadlock(error);
      lock.lock();
      // Reported once per standstill: wait until a task moves again.
      changed_.wait(lock, [&] { return stopping_ || !all_blocked_locked() || !timers_.empty(); });
    }
  }

  // A watch's check that failed because something outside was still
  // settling (a finished task's thread going idle, a plain thread exiting)
  // is repeated this often while the standstill lasts.
  static constexpr std::chrono::milliseconds recheck_interval{10};

  // What changes when a member wakes, blocks, joins or leaves, or a timer
  // is added or fired: equal readings mean nothing moved in between.
  using progress = std::tuple<std::uint64_t, std::size_t, std::size_t, std::size_t>;
  progress progress_locked() const noexcept { return {wakes_, members_, blocked_, timers_.size()}; }

  // The real-time driver: fires timers when due; at a standstill with none
  // pending, reports a deadlock once nothing outside can end it either.
  void drive_real_time() {
    std::unique_lock lock(mutex_);
    while (!stopping_) {
      if (!timers_.empty() && timers_.begin()->first.first <= clock::now()) {
        fire_first(lock);
        continue;
      }
      const bool standstill = !reported_ && sink_ != nullptr && all_blocked_locked();
      if (standstill && timers_.empty() && confirm_deadlock(lock)) continue;
      clock::time_point until =
          timers_.empty() ? clock::time_point::max() : timers_.begin()->first.first;
      if (standstill && timers_.empty()) until = clock::now() + recheck_interval;
      const progress seen = progress_locked();
      auto moved = [&] { return stopping_ || progress_locked() != seen; };
      if (until == clock::time_point::max()) {
        changed_.wait(lock, moved);
      } else {
        changed_.wait_until(lock, until, moved);
      }
    }
  }

  // Asks the sink, unlocked, whether anything outside can end the
  // standstill; reports the deadlock if not and no member moved meanwhile.
  bool confirm_deadlock(std::unique_lock<std::mutex>& lock) {
    const progress seen = progress_locked();
    deadlock_sink* sink = sink_;
    lock.unlock();
    const bool nothing_outside = sink->nothing_outside();
    lock.lock();
    if (!nothing_outside || stopping_ || progress_locked() != seen) return false;
    reported_ = true;
    std::exception_ptr error = std::make_exception_ptr(deadlock(describe_locked()));
    lock.unlock();
    sink->on_deadlock(error);
    lock.lock();
    return true;
  }

  std::string describe_locked() const {
    std::string s = sink_ != nullptr ? sink_->headline() : std::string("leash: deadlock:");
    for (const task_identity* t : members_list_) {
      const char* what = t->blocked_in.load(std::memory_order_acquire);
      s += "\n  task \"" + t->name + "\" spawned at " + to_string(t->site) + " blocked in " +
           (what != nullptr ? what : "(unknown)");
    }
    return s;
  }

  mutable std::mutex mutex_;
  std::condition_variable changed_;  // members, blocked tasks or a firing changed
  clock::time_point now_;
  std::map<std::pair<clock::time_point, std::uint64_t>, timer_client*> timers_;
  std::uint64_t next_id_ = 1;
  std::uint64_t firing_ = 0;  // id whose callback runs now, 0 if none
  std::thread::id firing_thread_;
  std::vector<task_identity*> members_list_;
  std::size_t members_ = 0;
  std::size_t blocked_ = 0;
  deadlock_sink* sink_ = nullptr;
  bool stopping_ = false;
  const bool real_time_;
  std::uint64_t wakes_ = 0;  // member wakes so far: an unchanged count means none moved
  bool reported_ = false;    // real time: the deadlock was reported (once)
  std::thread driver_;
};

// Now on the clock of the code running on this thread: virtual inside a
// virtual_time scope, steady_clock's otherwise.
inline std::chrono::steady_clock::time_point now_for(virtual_clock* vc) {
  return vc != nullptr ? vc->now() : std::chrono::steady_clock::now();
}
inline std::chrono::steady_clock::time_point now_for_current_task() {
  return now_for(current_vclock());
}

// Registers a timer on `vc`, or on the shared timer thread when null.
inline timer_handle schedule_timer(virtual_clock* vc, std::chrono::steady_clock::time_point when,
                                   timer_client* client) {
  return vc != nullptr ? vc->schedule(when, client)
                       : timer_service::instance().schedule(when, client);
}
inline void cancel_timer(virtual_clock* vc, timer_handle& h) noexcept {
  if (vc != nullptr) {
    vc->cancel(h);
  } else {
    timer_service::instance().cancel(h);
  }
}

}  // namespace leash::inline v0::detail
