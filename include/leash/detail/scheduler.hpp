// SPDX-License-Identifier: BSL-1.0
// leash/detail/scheduler.hpp: the fixed set of worker threads that run
// coroutine tasks.
//
// A coroutine task owns no thread: while it is ready it sits in a run queue,
// while it runs it borrows a worker, and while it waits (a timer, a stop) it
// is only a suspended frame that whoever completes the wait posts back.
//
// Design, after Go's scheduler (src/runtime/proc.go: runqput, runqget,
// runnext, findRunnable) and tokio's multi-thread worker
// (tokio/src/runtime/scheduler/multi_thread/worker.rs: the LIFO slot and its
// per-tick limit):
//   - N workers (std::thread::hardware_concurrency(), at least 1), started on
//     first use. Each has a local FIFO run queue: a mutex-protected deque. Go
//     and tokio use a lock-free bounded ring plus a global overflow queue; a
//     short critical section per operation is enough here and keeps stealing
//     trivially correct.
//   - A `runnext` slot per worker (Go's runnext, tokio's LIFO slot): an item
//     readied by code running on a worker (a task spawning a task) runs next
//     on that worker, where its data is still in cache; the item it displaces
//     goes to the queue's tail (Go's runqput with next=true).
//   - Fairness: two tasks readying each other through runnext would starve
//     the queue. Like tokio's MAX_LIFO_POLLS_PER_TICK, after
//     `max_runnext_in_row` runnext picks in a row with the queue non-empty
//     the runnext item goes to the queue's tail and the head runs instead.
//     (Go lets runnext inherit the time slice and relies on preemption; a
//     coroutine cannot be preempted, so a count stands in for the slice.)
//   - Items posted from other threads (the timer thread, a stop request, a
//     spawning thread) go round-robin to the workers' queues.
//   - An idle worker steals half of another worker's queue (Go's runqsteal),
//     never its runnext slot: that one runs as soon as its worker's current
//     item suspends. With nothing to steal it parks on a condition variable.
//     A post wakes one parked worker; the wake-up cannot be lost because both
//     sides use sequentially consistent counters (Dekker): a poster
//     increments `queued_` then reads `parked_`, a parker increments
//     `parked_` then reads `queued_`.
//
// Items must not block their worker (no blocking leash call, no sync_wait):
// a blocked worker runs nothing else, and its runnext item waits for it.
//
// Shutdown: the scheduler is immortal (no static-destruction-order hazard);
// at exit its idle workers are woken and leave, waited for at most
// `exit_wait`. An item posted after every worker left runs on the posting
// thread.
#pragma once

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <coroutine>
#include <cstddef>
#include <deque>
#include <memory>
#include <mutex>
#include <string>
#include <system_error>
#include <thread>
#include <vector>

#include "../errors.hpp"

namespace leash::inline v0::detail {

// A unit the scheduler runs. run_slice() must not throw; once it has handed
// the item to someone who may post it again it must not touch it.
class sched_item {
 public:
  virtual void run_slice() noexcept = 0;

 protected:
  ~sched_item() = default;
};

// A suspended coroutine task: an awaitable stores where to continue in
// `resume_at` before it lets anyone post the task.
class resumable : public sched_item {
 public:
  std::coroutine_handle<> resume_at;

 protected:
  ~resumable() = default;  // owned by the task record that derives from it
};

// The coroutine task running on this thread, if any (set for each slice).
inline constinit thread_local resumable* current_resumable = nullptr;

class scheduler {
 public:
  static scheduler& instance() {
    static auto* s = new scheduler;  // immortal: no static-destruction-order crash
    static exit_guard guard{s};
    return *s;
  }

  // Makes `item` ready. From one of this scheduler's workers it goes to that
  // worker's runnext slot, else to a worker's queue. Never blocks on items.
  void post(sched_item* item) { post(item, false); }

  // Makes `item` ready behind everything already queued (a yield).
  void yield(sched_item* item) { post(item, true); }

  std::size_t workers() const noexcept { return count_; }

 private:
  // Runnext picks in a row before the queue's head gets a turn (tokio uses 3).
  static constexpr int max_runnext_in_row = 3;
  // How long exit waits for idle workers to leave (as thread_cache does).
  static constexpr std::chrono::seconds exit_wait{2};

  struct worker {
    std::mutex mutex;
    std::deque<sched_item*> queue;  // guarded by mutex
    sched_item* runnext = nullptr;  // guarded by mutex
    int runnext_streak = 0;         // only the worker's own thread touches it
  };

  struct exit_guard {
    scheduler* s;
    ~exit_guard() { s->shutdown(); }
  };

  scheduler() : count_(std::max(1u, std::thread::hardware_concurrency())) {
    workers_.reserve(count_);
    for (std::size_t i = 0; i < count_; ++i)
      workers_.push_back(std::make_unique<worker>());
    std::size_t started = 0;
    for (std::size_t i = 0; i < count_; ++i) {
      try {
        std::thread([this, i] { work(*workers_[i]); }).detach();
        ++started;
      } catch (const std::system_error&) {
        break;  // fewer workers still run everything: they steal
      }
    }
    if (started == 0) {
      throw resource_exhausted("leash::scheduler: no worker thread could be started");
    }
    std::lock_guard lock(idle_mutex_);
    alive_ = started;
  }

  void post(sched_item* item, bool behind) {
    if (worker* self = current_worker_) {  // one scheduler per process: it is ours
      std::unique_lock lock(self->mutex);
      if (!behind) {
        sched_item* displaced = std::exchange(self->runnext, item);
        if (displaced == nullptr) return;
        item = displaced;
      }
      self->queue.push_back(item);
      lock.unlock();
      queued_and_wake();
      return;
    }
    if (stopped_.load(std::memory_order_acquire)) {
      item->run_slice();  // every worker has left (exit): run it here
      return;
    }
    worker& w = *workers_[next_.fetch_add(1, std::memory_order_relaxed) % count_];
    {
      std::lock_guard lock(w.mutex);
      w.queue.push_back(item);
    }
    queued_and_wake();
  }

  void queued_and_wake() {
    queued_.fetch_add(1, std::memory_order_seq_cst);
    if (parked_.load(std::memory_order_seq_cst) == 0) return;
    std::lock_guard lock(idle_mutex_);
    idle_.notify_one();
  }

  // The next item of `w`'s own queues, with the runnext budget.
  sched_item* take_local(worker& w) {
    std::lock_guard lock(w.mutex);
    if (w.runnext != nullptr && (w.runnext_streak < max_runnext_in_row || w.queue.empty())) {
      // Only turns taken while the queue waits count against the budget.
      w.runnext_streak = w.queue.empty() ? 0 : w.runnext_streak + 1;
      return std::exchange(w.runnext, nullptr);
    }
    w.runnext_streak = 0;
    if (w.runnext != nullptr) {  // the budget is spent: to the tail
      w.queue.push_back(std::exchange(w.runnext, nullptr));
      queued_.fetch_add(1, std::memory_order_seq_cst);
    }
    if (w.queue.empty()) return nullptr;
    sched_item* item = w.queue.front();
    w.queue.pop_front();
    queued_.fetch_sub(1, std::memory_order_relaxed);
    return item;
  }

  // Moves half (rounded up) of a victim's queue to `w` and returns one item.
  sched_item* steal(worker& w, std::size_t self_index) {
    for (std::size_t k = 1; k < count_; ++k) {
      worker& victim = *workers_[(self_index + k) % count_];
      std::vector<sched_item*> taken;
      {
        std::lock_guard lock(victim.mutex);
        const std::size_t n = (victim.queue.size() + 1) / 2;
        taken.assign(victim.queue.begin(), victim.queue.begin() + static_cast<std::ptrdiff_t>(n));
        victim.queue.erase(victim.queue.begin(),
                           victim.queue.begin() + static_cast<std::ptrdiff_t>(n));
        if (n != 0) queued_.fetch_sub(1, std::memory_order_relaxed);  // the one returned
      }
      if (taken.empty()) continue;
      if (taken.size() > 1) {
        std::lock_guard lock(w.mutex);
        w.queue.insert(w.queue.end(), taken.begin() + 1, taken.end());
      }
      return taken.front();
    }
    return nullptr;
  }

  // Parks until something is queued or exit began; false: leave.
  bool park() {
    std::unique_lock lock(idle_mutex_);
    parked_.fetch_add(1, std::memory_order_seq_cst);
    idle_.wait(lock, [&] { return queued_.load(std::memory_order_seq_cst) != 0 || stopping_; });
    parked_.fetch_sub(1, std::memory_order_seq_cst);
    return queued_.load(std::memory_order_seq_cst) != 0 || !stopping_;
  }

  void work(worker& w) {
    const std::size_t index = index_of(w);
    current_worker_ = &w;
    for (;;) {
      sched_item* item = take_local(w);
      if (item == nullptr) item = steal(w, index);
      if (item != nullptr) {
        item->run_slice();
        continue;
      }
      if (queued_.load(std::memory_order_seq_cst) != 0) {
        std::this_thread::yield();  // an item is moving between queues
        continue;
      }
      if (!park()) break;
    }
    current_worker_ = nullptr;
    std::lock_guard lock(idle_mutex_);
    if (--alive_ == 0) stopped_.store(true, std::memory_order_release);
    exited_.notify_all();
  }

  std::size_t index_of(const worker& w) const {
    for (std::size_t i = 0; i < count_; ++i) {
      if (workers_[i].get() == &w) return i;
    }
    return 0;
  }

  void shutdown() {
    std::unique_lock lock(idle_mutex_);
    stopping_ = true;
    idle_.notify_all();
    exited_.wait_for(lock, exit_wait, [&] { return alive_ == 0; });
  }

  const std::size_t count_;
  std::vector<std::unique_ptr<worker>> workers_;  // fixed after construction
  std::atomic<std::size_t> next_{0};              // round-robin target of foreign posts
  std::atomic<std::size_t> queued_{0};            // items in all queues (not runnext slots)
  std::atomic<std::size_t> parked_{0};            // workers in park()
  std::atomic<bool> stopped_{false};              // every worker has left (exit)
  std::mutex idle_mutex_;
  std::condition_variable idle_;    // parked workers wait here
  std::condition_variable exited_;  // shutdown waits here for workers to leave
  std::size_t alive_ = 0;           // guarded by idle_mutex_
  bool stopping_ = false;           // guarded by idle_mutex_
  static inline thread_local worker* current_worker_ = nullptr;
};

}  // namespace leash::inline v0::detail
