// SPDX-License-Identifier: BSL-1.0
// leash/detail/deadlock_watch.hpp: deadlock detection outside virtual time
// (runtime_options::detect_deadlocks).
//
// A nursery opened on a plain thread (not inside a task) while the option is
// on gets a watch: a virtual_clock in real-time mode that its tasks, the
// tasks nested in them and their timers join, exactly as the members of a
// virtual_time scope do, plus the thread that opened the nursery, which
// counts as blocked while it waits in the nursery's wait() or destructor.
// So the clock knows, exactly, when every member is blocked in a leash call
// and no timer of theirs is pending.
//
// That alone proves nothing: a channel is shared by reference, so anyone may
// hold it. Nothing else can end the standstill only if nothing else can run
// leash-visible code at all (Go's "all goroutines are asleep", for the whole
// process, checked per scope). nothing_outside() confirms that:
//   - every nursery of the process is on this watch's clock (so every leash
//     task, thread or coroutine, is a member, blocked);
//   - no ticker lives and no timer of the shared timer thread is pending or
//     firing (a deadline of an outer scope, a timer channel);
//   - the OS lists no thread besides leash's own (thread_census) and the
//     watch's owner: no plain thread that could send later;
// with the creation counters of nurseries, tickers, timers and leash threads
// unchanged from before the first look to after the last, so nothing could
// appear between two looks, and the clock checks afterwards that no member
// was woken meanwhile. Anything it cannot see makes it give up, so a
// deadlock may be missed, but one is never reported falsely.
//
// A closed nursery (nursery_options::detect_deadlocks) gets a watch that
// skips nothing_outside(): its owner vouches that nothing outside the
// nursery wakes its tasks, as a virtual_time scope's body does, so the
// member counting alone decides, per nursery, whatever else runs.
#pragma once

#include <atomic>
#include <cstdint>
#include <exception>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <utility>

#include "../errors.hpp"
#include "cancel_state.hpp"
#include "registry.hpp"
#include "source_location.hpp"
#include "task_identity.hpp"
#include "thread_census.hpp"
#include "timer.hpp"
#include "virtual_clock.hpp"

namespace leash::inline v0::detail {

// The clock a nursery opened here joins instead of opening a watch: the
// current task's (virtual time, a watched nursery's task), or, in the body
// of a watched nursery (its owner thread, where that nursery is the ambient
// scope), that nursery's, so its tasks are members there too.
inline virtual_clock* joined_clock() noexcept {
  if (virtual_clock* vc = current_vclock()) return vc;
  return current_task == nullptr && ambient != nullptr ? ambient->vclock() : nullptr;
}

class deadlock_watch final : private deadlock_sink {
 public:
  // A watch for a nursery opened here: a closed one's (`closed`), or the
  // process-wide rule's if the runtime option is on and this is a plain
  // thread. Null inside virtual time or a watched nursery, whose clock
  // counts the new nursery's tasks already. The option's whole cost when
  // off is the first branch. Throws usage_error for a closed nursery opened
  // by a coroutine task (its wait has no thread the watch could count).
  static std::unique_ptr<deadlock_watch> open_if_enabled(const std::string& nursery_name,
                                                         source_location site, bool closed) {
    if (!closed && !detect_deadlocks_enabled.load(std::memory_order_relaxed)) return nullptr;
    if (joined_clock() != nullptr) return nullptr;
    if (!closed && current_task != nullptr) return nullptr;
    if (closed && current_task != nullptr && current_task->coroutine) {
      throw usage_error("leash::nursery \"" + nursery_name +
                        "\": detect_deadlocks needs a nursery opened by a thread, not by a "
                        "coroutine task");
    }
    return std::make_unique<deadlock_watch>(nursery_name, site, closed);
  }

  deadlock_watch(const std::string& nursery_name, source_location site, bool closed)
      : owner_thread_(std::this_thread::get_id()),
        owner_counted_(thread_census::counted()),
        closed_(closed) {
    owner_.id = next_id();
    owner_.name = (nursery_name.empty() ? std::string("nursery") : nursery_name) + " owner";
    owner_.site = site;
    owner_.vclock = &clock_;
    owner_.blocked_in.store("nursery::wait", std::memory_order_relaxed);
    clock_.join(&owner_, false);
    clock_.set_sink(this);
    opened_.fetch_add(1, std::memory_order_relaxed);
  }

  // After the nursery joined every task: the owner leaves last.
  ~deadlock_watch() {
    clock_.retire(&owner_);
    clock_.leave();
  }
  deadlock_watch(const deadlock_watch&) = delete;
  deadlock_watch& operator=(const deadlock_watch&) = delete;

  virtual_clock& clock() noexcept { return clock_; }

  // The owner's identity when called by the thread that opened the nursery
  // (it counts as blocked in the nursery's join), else null.
  task_identity* owner_here() noexcept {
    return std::this_thread::get_id() == owner_thread_ ? &owner_ : nullptr;
  }

  // The state a deadlock stops: the nursery's, until detach().
  void attach(cancel_state& s) {
    std::lock_guard lock(mutex_);
    target_ = &s;
  }
  void detach() noexcept {
    std::lock_guard lock(mutex_);
    target_ = nullptr;
  }

  // The deadlock found, or null.
  std::exception_ptr found() const {
    std::lock_guard lock(mutex_);
    return error_;
  }

  // For tests: watches opened so far, and checks that found something
  // outside the watch that could still end a standstill.
  static std::uint64_t opened() noexcept { return opened_.load(std::memory_order_relaxed); }
  static std::uint64_t gave_up() noexcept { return gave_up_.load(std::memory_order_relaxed); }

 private:
  // What nothing_outside() reads twice; equal readings mean nothing of
  // these kinds was created between them.
  struct counters {
    thread_census::reading threads;
    std::uint64_t nurseries = 0, objects = 0, timers = 0;
    bool quiet = false;  // every nursery on this clock, no ticker, no timer
    bool operator==(const counters&) const = default;
  };

  counters read_counters() const {
    counters c;
    c.threads = thread_census::instance().read();
    const auto [all_ours, nurseries] = registry::instance().all_on(&clock_);
    const auto [no_tickers, objects] = object_registry::instance().no_tickers();
    const auto [no_timers, timers] = timer_service::instance().quiet();
    c.nurseries = nurseries;
    c.objects = objects;
    c.timers = timers;
    c.quiet = all_ours && no_tickers && no_timers;
    return c;
  }

  bool nothing_outside() noexcept override {
    if (closed_) return true;  // vouched for by the nursery's owner
    try {
      const counters before = read_counters();
      const std::size_t os_threads = os_thread_count();
      const counters after = read_counters();
      const std::size_t expected = after.threads.threads + (owner_counted_ ? 0 : 1);
      const bool ok = before.quiet && before == after && os_threads == expected;
      if (!ok) gave_up_.fetch_add(1, std::memory_order_relaxed);
      return ok;
    } catch (...) {  // out of memory: give up
      return false;
    }
  }

  std::string headline() const override {
    return closed_ ? "leash::nursery: deadlock: every task is blocked in a leash call that no "
                     "timer and no task of the nursery can wake (a closed nursery: "
                     "nursery_options::detect_deadlocks):"
                   : "leash::nursery: deadlock: every task is blocked in a leash call that no "
                     "timer, no task and no other thread can wake:";
  }

  void on_deadlock(std::exception_ptr error) noexcept override {
    std::lock_guard lock(mutex_);
    error_ = error;
    if (target_ != nullptr) {
      target_->request(stop_reason::cancelled, "leash::nursery: deadlock", nullptr, error);
    }
  }

  static inline std::atomic<std::uint64_t> opened_{0};
  static inline std::atomic<std::uint64_t> gave_up_{0};

  const std::thread::id owner_thread_;
  const bool owner_counted_;  // the owner is itself a leash thread
  const bool closed_;         // nursery_options::detect_deadlocks: nothing outside can wake
  task_identity owner_;
  mutable std::mutex mutex_;  // guards the two below
  cancel_state* target_ = nullptr;
  std::exception_ptr error_;
  virtual_clock clock_{true};  // last: its driver stops before the rest goes
};

// Makes current_vclock() the clock of a nursery being opened on this
// thread while its state is built: its watch's, or the clock it joins
// (joined_clock). A temporary in the state's initializer, so it lasts
// exactly that long. parent() is the ambient state, the state's parent.
class watch_opening {
 public:
  explicit watch_opening(deadlock_watch* w) noexcept : previous_(opening_vclock) {
    opening_vclock = w != nullptr ? &w->clock() : joined_clock();
  }
  ~watch_opening() { opening_vclock = previous_; }
  watch_opening(const watch_opening&) = delete;
  watch_opening& operator=(const watch_opening&) = delete;

  cancel_state* parent() const noexcept { return ambient; }

 private:
  virtual_clock* previous_;
};

}  // namespace leash::inline v0::detail
