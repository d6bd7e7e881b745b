// SPDX-License-Identifier: BSL-1.0
// leash/observer.hpp: instrumentation hooks, one callback per task event.
// Prevents: tracing bolted on with a side table of task ids that drifts from
// what live_tasks() reports.
//
//   struct spans final : leash::observer {
//     void on_start(const leash::task_event& e) override { begin_span(e.id, e.name); }
//     void on_finish(const leash::task_event& e) override { end_span(e.id, e.outcome); }
//   } tracer;
//   leash::runtime::set_observer(&tracer);
//   ... tasks run ...
//   leash::runtime::set_observer(nullptr);  // tracer may be destroyed now
//
// Events, per task: spawn, start, then block / unblock pairs, then finish;
// cancel at any point between spawn and finish. Thread tasks and coroutine
// tasks alike: a coroutine task starts at its first slice and blocks when it
// suspends in a leash wait. A task spawned into a cancelled nursery gets
// spawn, cancel and finish (outcome cancelled), never start. Blocks nest when
// a blocking call waits inside another (each block has its own unblock).
// The ids, names, sites and blocked_in strings are the ones live_tasks()
// reports: the task is listed from before on_spawn runs until before
// on_finish runs, and while on_block runs its blocked_in is the event's.
//
// Contract. Callbacks run synchronously on the thread where the event
// happens (cancel: the thread that cancels; finish: the task's), so they
// must be short. on_spawn and on_cancel run under the nursery's lock: a
// callback must not spawn, cancel, wait, call live_tasks() or block in any
// leash call (that may deadlock); leash calls a callback makes anyway raise
// no events of their own. A callback that throws ends the process with a
// message naming the callback (std::terminate): an observer never changes
// what the tasks do. An observer set while tasks run sees their events from
// then on (a task may start or finish without a spawn seen).
//
// Cost. With no observer set, each event site pays one relaxed atomic load.
// With one, each event pays two atomic read-modify-writes on a counter the
// emitting threads share, plus the callback.
//
// Removal. set_observer(next) returns only once no callback of the previous
// observer runs or can still start, so the caller may destroy it then. It
// throws usage_error when called from inside a callback (it would wait for
// itself).
#pragma once

#include "detail/config.hpp"

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <exception>
#include <mutex>
#include <string_view>
#include <thread>

#include "detail/source_location.hpp"
#include "errors.hpp"

namespace leash::inline v0 {

// How a task ended.
enum class task_outcome {
  value,      // the callable returned
  exception,  // it threw something other than cancelled
  cancelled,  // it ended with cancelled (or never ran: spawned into a cancelled nursery)
};

constexpr const char* to_string(task_outcome o) noexcept {
  switch (o) {
    case task_outcome::value:
      return "value";
    case task_outcome::exception:
      return "exception";
    case task_outcome::cancelled:
      return "cancelled";
  }
  return "?";
}

// One event of one task. Valid for the duration of the callback only: copy
// what you keep (the name's characters die with the task).
struct task_event {
  std::uint64_t id = 0;  // as in live_tasks()
  std::string_view name;
  source_location site;          // where it was spawned
  std::uint64_t parent_id = 0;   // the task that spawned it; 0 from a plain thread
  std::uint64_t nursery_id = 0;  // as live_task::nursery_id
  bool coroutine = false;        // a coroutine task (runs on the scheduler's workers)
  // on_block / on_unblock: the call it blocks in (a literal, lives forever),
  // the string live_tasks() shows as blocked_in.
  const char* blocked_in = nullptr;
  const cancel_info* cancel = nullptr;         // on_cancel: why
  task_outcome outcome = task_outcome::value;  // on_finish
  std::exception_ptr error;                    // on_finish: what it threw, if anything
};

// Receives task events; override what you need (the defaults do nothing).
// See the contract above: no throwing, no blocking, no leash calls.
class observer {
 public:
  virtual ~observer() = default;
  virtual void on_spawn(const task_event&) {}
  virtual void on_start(const task_event&) {}
  virtual void on_block(const task_event&) {}
  virtual void on_unblock(const task_event&) {}
  virtual void on_cancel(const task_event&) {}
  virtual void on_finish(const task_event&) {}
};

namespace detail {

enum class event_kind { spawn, start, block, unblock, cancel, finish };

constexpr const char* callback_name(event_kind k) noexcept {
  constexpr const char* names[] = {"on_spawn",   "on_start",  "on_block",
                                   "on_unblock", "on_cancel", "on_finish"};
  return names[static_cast<int>(k)];
}

// Set while a callback runs on this thread: its own leash calls raise no
// events, and set_observer refuses.
inline thread_local bool in_observer_callback = false;

[[noreturn]] inline void observer_threw(event_kind k, const char* what) noexcept {
  std::fprintf(stderr, "leash::observer: %s threw (%s); observer callbacks must not throw\n",
               callback_name(k), what);
  std::terminate();
}

inline void call_observer(observer& o, event_kind k, const task_event& e) noexcept {
  in_observer_callback = true;
  try {
    switch (k) {
      case event_kind::spawn:
        o.on_spawn(e);
        break;
      case event_kind::start:
        o.on_start(e);
        break;
      case event_kind::block:
        o.on_block(e);
        break;
      case event_kind::unblock:
        o.on_unblock(e);
        break;
      case event_kind::cancel:
        o.on_cancel(e);
        break;
      case event_kind::finish:
        o.on_finish(e);
        break;
    }
  } catch (const std::exception& x) {
    observer_threw(k, x.what());
  } catch (...) {
    observer_threw(k, "an exception not derived from std::exception");
  }
  in_observer_callback = false;
}

// The process-wide observer. Delivery counts itself in one of two reader
// counters, chosen by the parity of an epoch; replacing flips the epoch
// twice and waits for each side to drain. A reader that loaded the old
// observer counted itself before loading it, on whichever side its epoch
// read chose, so one of the two waits covers it; new readers always join
// the other side, so neither wait can be starved.
class observer_slot {
 public:
  constexpr observer_slot() noexcept = default;

  // The check every event site makes: one relaxed load.
  bool armed() const noexcept { return current_.load(std::memory_order_relaxed) != nullptr; }

  void deliver(event_kind k, const task_event& e) noexcept {
    if (in_observer_callback) return;
    const std::size_t side = epoch_.load(std::memory_order_seq_cst) & 1;
    readers_[side].count.fetch_add(1, std::memory_order_seq_cst);
    if (observer* o = current_.load(std::memory_order_seq_cst)) call_observer(*o, k, e);
    readers_[side].count.fetch_sub(1, std::memory_order_release);
  }

  // Installs `next` and returns the previous observer once none of its
  // callbacks runs any more.
  observer* replace(observer* next) {
    if (in_observer_callback) {
      throw usage_error(
          "leash::runtime::set_observer: called from inside an observer callback, which would "
          "wait for itself to return");
    }
    std::lock_guard lock(replacing_);
    observer* const previous = current_.exchange(next, std::memory_order_seq_cst);
    for (int flip = 0; flip < flips_to_drain; ++flip)
      drain(epoch_.fetch_add(1, std::memory_order_seq_cst) & 1);
    return previous;
  }

 private:
  // Two flips: one for readers that read the epoch before the first, one
  // for readers that read it before an earlier replacement's last flip.
  static constexpr int flips_to_drain = 2;
  // Counters on separate cache lines, so the two sides do not contend.
  static constexpr std::size_t cache_line = 64;

  struct alignas(cache_line) reader_count {
    std::atomic<std::size_t> count{0};
  };

  void drain(std::size_t side) const noexcept {
    while (readers_[side].count.load(std::memory_order_acquire) != 0)
      std::this_thread::yield();
  }

  std::atomic<observer*> current_{nullptr};
  std::atomic<std::size_t> epoch_{0};
  reader_count readers_[2];
  std::mutex replacing_;  // one replacement at a time
};

inline constinit observer_slot observers{};

// True when an observer is set (a hint: delivery checks again).
inline bool observing() noexcept {
  return observers.armed();
}

inline void emit(event_kind k, const task_event& e) noexcept {
  observers.deliver(k, e);
}

// What a finished task's exception (or none) means as an outcome.
inline task_outcome outcome_of(const std::exception_ptr& error) noexcept {
  if (error == nullptr) return task_outcome::value;
  try {
    std::rethrow_exception(error);
  } catch (const cancelled&) {
    return task_outcome::cancelled;
  } catch (...) {
    return task_outcome::exception;
  }
}

}  // namespace detail
}  // namespace leash::inline v0
