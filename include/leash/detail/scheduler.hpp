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
//   - N workers (runtime_options::coro_workers, by default the CPUs this
//     process may run on, at least 1), started on first
//     use. Each has a local FIFO run queue: a mutex-protected deque. Go and
//     tokio use a lock-free bounded ring plus a global overflow queue; a
//     short critical section per operation is enough here and keeps
//     stealing trivially correct.
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
//   - An I/O driver (the reactor) has no thread of its own: one idle worker
//     at a time parks in it instead of on the condition variable (tokio's
//     park on the driver, Go's blocking netpoll in findRunnable), so the
//     thread that sees a socket ready runs the task it readies, with no
//     second wake-up. A post wakes that worker through the driver when no
//     other one is parked. Busy workers poll it without blocking every
//     `driver_poll_interval` slices (tokio's event_interval), and a worker
//     that leaves the driver wakes a parked one to take it over, so a long
//     slice never keeps readiness from an idle worker.
//
//
// A worker is a slot (queue, runnext) owned by one thread at a time. A
// blocking call made inside a slice (a blocking leash call, sync_wait,
// offload) opens a blocking_region right before its thread really blocks;
// on a worker's thread that hands the slot, queue and runnext included, to
// another thread: a spare of the scheduler, else a new one (Go's handoffp on
// entersyscall). The blocked thread then owns no slot: its posts go the
// foreign way. When it unblocks, it finishes its slice (the coroutine's frame
// runs on its stack until it suspends) and becomes a spare, which waits
// `spare_keep_alive` for a slot to take over, then leaves. If no thread can
// be had, the caller keeps its slot and simply blocks. So blocking calls in
// coroutine tasks cost threads, never stall the other tasks.
//
// A call that may block where leash cannot see it (a plain HTTP handler that
// takes a std::mutex or queries a database) runs through call_may_block: the
// thread keeps its slot lent, not handed off, so a call that does not block
// costs no thread switch. The slot goes to another thread when the call
// opens a blocking_region, or when a monitor thread finds the same call
// still running one to two `retake_tick`s later (Go's sysmon retaking a P
// from a goroutine in a system call). While lent, the slot's runnext waits;
// its queue can be stolen.
//
// Shutdown: the scheduler is immortal (no static-destruction-order hazard);
// at exit its idle workers and spares are woken and leave, waited for at
// most `exit_wait`. An item posted after every thread left runs on the
// posting thread.
#pragma once

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <coroutine>
#include <cstddef>
#include <cstdint>
#include <deque>
#include <exception>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#if defined(__GLIBC__)
#include <malloc.h>
#endif

#include "../errors.hpp"
#include "frame_allocator.hpp"
#include "spin.hpp"
#include "thread_census.hpp"

namespace leash::inline v0::detail {

// Returns free memory to the OS: the frame depot's blocks, then whatever the
// allocator keeps (glibc: malloc_trim, over every arena).
inline void release_free_memory() noexcept {
  frame_depot::instance().release_all();
#if defined(__GLIBC__)
  ::malloc_trim(0);
#endif
}

// A unit the scheduler runs. run_slice() must not throw; once it has handed
// the item to someone who may post it again it must not touch it.
class sched_item {
 public:
  virtual void run_slice() noexcept = 0;

 protected:
  ~sched_item() = default;
};

// Told before a coroutine task of a virtual_time scope is posted, so its
// clock counts it as running before anyone can see the wake.
class post_listener {
 public:
  virtual void on_post() noexcept = 0;

 protected:
  ~post_listener() = default;
};

// A suspended coroutine task: an awaitable stores where to continue in
// `resume_at` before it lets anyone post the task.
class resumable : public sched_item {
 public:
  std::coroutine_handle<> resume_at;
  post_listener* post_hook = nullptr;  // set for the tasks of a virtual_time scope

 protected:
  ~resumable() = default;  // owned by the task record that derives from it
};

// The coroutine task running on this thread, if any (set for each slice).
inline constinit thread_local resumable* current_resumable = nullptr;

// The scheduler's counters, for runtime::stats().
struct scheduler_figures {
  std::size_t workers = 0;        // worker slots (0: not started yet)
  std::size_t spare_threads = 0;  // threads parked in the spare pool
  std::uint64_t handoffs = 0;     // slots handed to another thread so far
};

// An event source that idle workers wait in (the reactor). Only one worker
// at a time calls wait() and dispatch(); wake() may come from any thread.
class io_driver {
 public:
  // Collects the events that are ready: blocks until there is one or wake()
  // was called when `block`, else returns at once.
  virtual void wait(bool block) noexcept = 0;
  // Makes the tasks the collected events wait for ready (posts them).
  virtual void dispatch() noexcept = 0;
  // Makes a blocking wait() in progress, or the next one, return.
  virtual void wake() noexcept = 0;

 protected:
  ~io_driver() = default;
};

class scheduler {
 public:
  static scheduler& instance() {
    static auto* s = make();  // immortal: no static-destruction-order crash
    static exit_guard guard{s};
    return *s;
  }

  // How many workers the scheduler starts with; 0: the usable CPUs. Takes
  // effect only before the first coroutine task starts the scheduler.
  static void configure(std::size_t workers) noexcept {
    requested_workers_.store(workers, std::memory_order_relaxed);
  }

  // A snapshot; all zero while the scheduler has not started.
  static scheduler_figures figures() {
    scheduler_figures f;
    const scheduler* s = started_.load(std::memory_order_acquire);
    if (s == nullptr) return f;
    f.workers = s->count_;
    f.handoffs = s->handoffs_.load(std::memory_order_relaxed);
    std::lock_guard lock(s->idle_mutex_);
    f.spare_threads = s->spares_.size();
    return f;
  }

  // Makes `item` ready. From one of this scheduler's workers it goes to that
  // worker's runnext slot, else to a worker's queue. Never blocks on items.
  void post(sched_item* item) { post(item, false); }

  // Makes `item` ready behind everything already queued (a yield).
  void yield(sched_item* item) { post(item, true); }

  std::size_t workers() const noexcept { return count_; }

  // Calls f(), which may block in calls leash cannot see. On a worker the
  // slot is lent meanwhile (see the top of this file); anywhere else it is a
  // plain call. f's exception propagates.
  template <class F>
  void call_may_block(F&& f) {
    worker* const w = current_worker_;
    if (w == nullptr) {
      f();
      return;
    }
    struct lend_guard {
      scheduler& s;
      worker& w;
      std::uint64_t word;
      ~lend_guard() { s.end_lend(w, word); }
    } guard{*this, *w, lend(*w)};
    f();
  }

  // Makes idle workers wait in `d` from now on; once, for the process's
  // immortal driver.
  void attach(io_driver* d) {
    driver_.store(d, std::memory_order_seq_cst);
    std::lock_guard lock(idle_mutex_);
    idle_.notify_one();  // a parked worker takes it
  }

 private:
  friend class blocking_region;

  // Runnext picks in a row before the queue's head gets a turn (tokio uses 3).
  static constexpr int max_runnext_in_row = 3;
  // An idle slot owner's spin before it parks: rounds of a look at the
  // queues and a few pauses, some tens of microseconds in all, about what
  // parking and being woken again costs.
  static constexpr int idle_spin_rounds = 128;
  static constexpr int idle_spin_pauses = 16;
  // How long exit waits for idle workers to leave (as thread_cache does).
  static constexpr std::chrono::seconds exit_wait{2};
  // How long a spare waits for a slot before it leaves: the thread cache's
  // default keep-alive, so a run of blocking calls reuses its spares while a
  // burst's threads go back to the OS soon after.
  static constexpr std::chrono::seconds spare_keep_alive{2};
  // Slices that make a burst worth giving memory back after: tens of MB of
  // frames and records at least, so that trimming (about 0.15 s per GB freed,
  // on an idle worker) stays rare.
  static constexpr std::uint64_t burst_slices = 100'000;
  // How often the monitor looks at lent slots: a call lent for two looks in
  // a row (one to two ticks) has its slot retaken. Short enough that tasks
  // behind a blocked call wait about as long as a scheduling quantum; long
  // enough that a call that merely computes for a while is rarely taken.
  static constexpr std::chrono::milliseconds retake_tick{1};
  // Idle looks after which the monitor sleeps until the next lend.
  static constexpr int monitor_idle_ticks = 100;
  // Slices a busy worker runs between looks at the I/O driver (tokio's
  // event_interval): a readiness waits at most this many slices while every
  // worker is busy, and the look (one epoll_wait) stays a small share.
  static constexpr std::uint32_t driver_poll_interval = 61;

  // The slot's runnext is touched only by the thread that owns the slot (a
  // hand-off passes it under idle_mutex_), so readying a partner there takes
  // no lock; the queue is shared with stealers and foreign posters.
  struct worker {
    std::mutex mutex;
    std::deque<sched_item*> queue;       // guarded by mutex
    std::atomic<std::size_t> queued{0};  // queue.size(), for the owner's lock-free look
    sched_item* runnext = nullptr;       // owner only
    int runnext_streak = 0;              // owner only
    std::uint64_t slices = 0;            // owner only: run since the owner last went idle
    std::uint32_t until_driver_poll = driver_poll_interval;  // owner only
    // The lend of the slot: (epoch << 2) | lend_state. The epoch tells a
    // late return from a lend that was retaken from one of a later lend.
    std::atomic<std::uint64_t> lend_word{0};
  };

  enum lend_state : std::uint64_t { not_lent = 0, lent = 1, retaken = 2 };
  static constexpr std::uint64_t lend_state_mask = 3;

  // A thread in the spare pool; lives on its stack.
  struct spare {
    std::condition_variable wake;
    worker* slot = nullptr;  // handed over; guarded by idle_mutex_
  };

  struct exit_guard {
    scheduler* s;
    ~exit_guard() { s->shutdown(); }
  };

  static scheduler* make() {
    const std::size_t requested = requested_workers_.load(std::memory_order_relaxed);
    // The CPUs this process may run on (taskset counts), as Go's GOMAXPROCS.
    auto* s = new scheduler(requested != 0 ? requested : static_cast<std::size_t>(usable_cpus()));
    started_.store(s, std::memory_order_release);
    return s;
  }

  explicit scheduler(std::size_t count) : count_(count) {
    workers_.reserve(count_);
    for (std::size_t i = 0; i < count_; ++i)
      workers_.push_back(std::make_unique<worker>());
    std::size_t started = 0;
    for (std::size_t i = 0; i < count_ && start_thread(workers_[i].get()); ++i)
      ++started;  // fewer workers still run everything: they steal
    if (started == 0) {
      throw resource_exhausted("leash::scheduler: no worker thread could be started");
    }
  }

  // Starts a thread that owns `w`, counted in alive_; false if none could be
  // started.
  bool start_thread(worker* w) noexcept {
    {
      std::lock_guard lock(idle_mutex_);
      ++alive_;
    }
    try {
      std::thread([this, w] {
        const thread_census::member counted;
        thread_main(w);
      }).detach();
      return true;
    } catch (...) {  // std::system_error, std::bad_alloc
      std::lock_guard lock(idle_mutex_);
      --alive_;
      return false;
    }
  }

  void post(sched_item* item, bool behind) {
    if (worker* self = current_worker_) {  // one scheduler per process: it is ours
      if (!behind) {
        item = std::exchange(self->runnext, item);  // the displaced one goes to the queue
        if (item == nullptr) return;
      }
      push(*self, item);
      queued_and_wake();
      return;
    }
    if (stopped_.load(std::memory_order_acquire)) {
      item->run_slice();  // every worker has left (exit): run it here
      return;
    }
    push(*workers_[next_.fetch_add(1, std::memory_order_relaxed) % count_], item);
    queued_and_wake();
  }

  static void push(worker& w, sched_item* item) {
    std::lock_guard lock(w.mutex);
    w.queue.push_back(item);
    w.queued.store(w.queue.size(), std::memory_order_release);
  }

  // After queuing an item: wakes a parked slot owner unless one is spinning
  // (it will find the item). The wake-up cannot be lost: a spinner stops
  // spinning, then counts itself parked, then looks at queued_ (all
  // sequentially consistent), so a poster that saw it spinning has queued
  // before the spinner's last look.
  void queued_and_wake() {
    queued_.fetch_add(1, std::memory_order_seq_cst);
    if (spinning_.load(std::memory_order_seq_cst) != 0) return;
    wake_one();
  }

  // A worker parked on the condition variable if there is one, else the one
  // waiting in the driver. The driver's waiter counts itself in parked_ only
  // after it set in_driver_, so a poster that sees it parked sees it there.
  void wake_one() {
    if (parked_.load(std::memory_order_seq_cst) == 0) return;
    {
      std::lock_guard lock(idle_mutex_);
      if (cv_parked_ != 0) {
        idle_.notify_one();
        return;
      }
    }
    if (in_driver_.load(std::memory_order_seq_cst)) driver_.load(std::memory_order_acquire)->wake();
  }

  // An idle slot owner looks for work a while before it parks (Go's spinning
  // M): a burst of posts (a spawn loop, a fan-out) then finds it awake instead
  // of paying a futex wake per item. At most half the slots spin, and none
  // when the process has one CPU (the spinner would only delay the poster).
  // Returns an item, or null: park.
  sched_item* spin_for_work(worker& w, std::size_t index) {
    if (usable_cpus() < 2) return nullptr;
    const std::size_t max_spinning = std::max<std::size_t>(1, count_ / 2);
    if (spinning_.fetch_add(1, std::memory_order_seq_cst) >= max_spinning) {
      spinning_.fetch_sub(1, std::memory_order_seq_cst);
      return nullptr;
    }
    sched_item* item = nullptr;
    for (int round = 0; round < idle_spin_rounds && item == nullptr; ++round) {
      if (queued_.load(std::memory_order_relaxed) != 0) item = find_work(w, index);
      for (int i = 0; item == nullptr && i < idle_spin_pauses; ++i)
        cpu_relax();
    }
    const bool last = spinning_.fetch_sub(1, std::memory_order_seq_cst) == 1;
    // The last spinner found work: another owner should look for more (Go's
    // resetspinning), or a burst would run on this slot alone.
    if (item != nullptr && last && queued_.load(std::memory_order_seq_cst) != 0) wake_one();
    return item;
  }

  sched_item* find_work(worker& w, std::size_t index) {
    sched_item* item = take_local(w);
    return item != nullptr ? item : steal(w, index);
  }

  // The next item of `w`'s own queues, with the runnext budget.
  sched_item* take_local(worker& w) {
    const bool queue_waits = w.queued.load(std::memory_order_acquire) != 0;
    if (w.runnext != nullptr && (!queue_waits || w.runnext_streak < max_runnext_in_row)) {
      // Only turns taken while the queue waits count against the budget.
      w.runnext_streak = queue_waits ? w.runnext_streak + 1 : 0;
      return std::exchange(w.runnext, nullptr);
    }
    w.runnext_streak = 0;
    if (w.runnext != nullptr) {  // the budget is spent: to the tail
      push(w, std::exchange(w.runnext, nullptr));
      queued_.fetch_add(1, std::memory_order_seq_cst);
    } else if (!queue_waits) {
      return nullptr;
    }
    std::lock_guard lock(w.mutex);
    if (w.queue.empty()) return nullptr;
    sched_item* item = w.queue.front();
    w.queue.pop_front();
    w.queued.store(w.queue.size(), std::memory_order_relaxed);
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
        victim.queued.store(victim.queue.size(), std::memory_order_relaxed);
        if (n != 0) queued_.fetch_sub(1, std::memory_order_relaxed);  // the one returned
      }
      if (taken.empty()) continue;
      if (taken.size() > 1) {
        std::lock_guard lock(w.mutex);
        w.queue.insert(w.queue.end(), taken.begin() + 1, taken.end());
        w.queued.store(w.queue.size(), std::memory_order_release);
      }
      return taken.front();
    }
    return nullptr;
  }

  // Parks until something is queued or exit began: in the I/O driver when
  // nobody else waits there, else on the condition variable until the
  // driver is free again. False: leave.
  bool park() {
    if (!exiting_.load(std::memory_order_seq_cst) && wait_in_driver(true)) return true;
    std::unique_lock lock(idle_mutex_);
    ++cv_parked_;
    parked_.fetch_add(1, std::memory_order_seq_cst);
    idle_.wait(lock, [&] {
      return queued_.load(std::memory_order_seq_cst) != 0 || stopping_ ||
             (driver_free() && !exiting_.load(std::memory_order_seq_cst));
    });
    parked_.fetch_sub(1, std::memory_order_seq_cst);
    --cv_parked_;
    return queued_.load(std::memory_order_seq_cst) != 0 || !stopping_;
  }

  bool driver_free() const noexcept {
    return driver_.load(std::memory_order_seq_cst) != nullptr &&
           !driver_held_.load(std::memory_order_seq_cst);
  }

  // Takes the driver if nobody holds it, collects its events (blocking only
  // when `block` and nothing is queued), gives it back, and posts the tasks
  // they ready, which land in this worker's runnext and queue. False: held
  // by another worker (or none attached).
  bool wait_in_driver(bool block) {
    io_driver* const d = driver_.load(std::memory_order_acquire);
    if (d == nullptr || driver_held_.load(std::memory_order_relaxed) ||
        driver_held_.exchange(true, std::memory_order_seq_cst)) {
      return false;
    }
    if (block) {
      in_driver_.store(true, std::memory_order_seq_cst);
      parked_.fetch_add(1, std::memory_order_seq_cst);  // then look: see wake_one
      block =
          queued_.load(std::memory_order_seq_cst) == 0 && !exiting_.load(std::memory_order_seq_cst);
    }
    d->wait(block);
    if (in_driver_.load(std::memory_order_relaxed)) {
      in_driver_.store(false, std::memory_order_seq_cst);
      parked_.fetch_sub(1, std::memory_order_seq_cst);
    }
    d->dispatch();
    release_driver();
    return true;
  }

  // Gives the driver back; a worker parked meanwhile takes it over, so
  // readiness is still seen while this one runs a long slice.
  void release_driver() {
    driver_held_.store(false, std::memory_order_seq_cst);
    if (parked_.load(std::memory_order_seq_cst) == 0) return;  // then see driver_free()
    std::lock_guard lock(idle_mutex_);
    if (cv_parked_ != 0) idle_.notify_one();
  }

  // Between slices: every driver_poll_interval slices, a look at the driver
  // that does not block, unless another worker waits in it.
  void poll_driver_between_slices(worker& w) {
    if (--w.until_driver_poll != 0) return;
    w.until_driver_poll = driver_poll_interval;
    wait_in_driver(false);
  }

  // The life of every scheduler thread: owns a slot, runs it until it hands
  // the slot away in a blocking call, then waits as a spare for another.
  void thread_main(worker* w) {
    while (w != nullptr && run_slot(*w))
      w = wait_as_spare();
    std::lock_guard lock(idle_mutex_);
    if (--alive_ == 0) stopped_.store(true, std::memory_order_release);
    exited_.notify_all();
  }

  // Runs `w`'s items. True: the slot was handed to another thread during a
  // slice (this thread is a spare now); false: exit began, leave.
  bool run_slot(worker& w) {
    const std::size_t index = index_of(w);
    current_worker_ = &w;
    for (;;) {
      sched_item* item = find_work(w, index);
      if (item == nullptr) item = spin_for_work(w, index);
      if (item != nullptr) {
        ++w.slices;
        item->run_slice();
        if (current_worker_ != &w) return true;  // handed off while blocked in the slice
        poll_driver_between_slices(w);
        continue;
      }
      if (queued_.load(std::memory_order_seq_cst) != 0) {
        std::this_thread::yield();  // an item is moving between queues
        continue;
      }
      release_memory_after_burst(w);
      if (!park()) break;
    }
    current_worker_ = nullptr;
    return false;
  }

  // Called by a slot owner about to park. When every other owner is parked
  // too and a burst ran since the last time (a million tasks that ended),
  // gives the allocator's free memory back to the OS: glibc keeps freed small
  // blocks in its arenas, so without this a burst's peak stays resident.
  void release_memory_after_burst(worker& w) noexcept {
    const std::uint64_t slices = std::exchange(w.slices, 0);
    const std::uint64_t total =
        slices_since_release_.fetch_add(slices, std::memory_order_relaxed) + slices;
    if (total < burst_slices || parked_.load(std::memory_order_seq_cst) + 1 < count_) return;
    if (slices_since_release_.exchange(0, std::memory_order_relaxed) < burst_slices) return;
    release_free_memory();
  }

  // Waits in the spare pool for a slot to take over; null: the keep-alive
  // passed or exit began, leave.
  worker* wait_as_spare() {
    spare self;
    std::unique_lock lock(idle_mutex_);
    if (stopping_) return nullptr;
    spares_.push_back(&self);
    self.wake.wait_for(lock, spare_keep_alive, [&] { return self.slot != nullptr || stopping_; });
    if (self.slot == nullptr) std::erase(spares_, &self);
    return self.slot;  // a slot handed over counts even at exit: its items run
  }

  // The calling worker's thread is about to block: gives its slot to a spare
  // or a new thread. Keeps it when exit began or no thread can be started.
  void hand_off() noexcept {
    worker* const w = current_worker_;
    current_worker_ = nullptr;               // before the slot's new owner may run
    if (!give_slot(w)) current_worker_ = w;  // block holding the slot
  }

  // Gives `w` to a spare or a new thread; false when exit began or no
  // thread can be started.
  bool give_slot(worker* w) noexcept {
    {
      std::lock_guard lock(idle_mutex_);
      if (stopping_) return false;
      if (spare* s = take_spare_locked()) {
        s->slot = w;
        s->wake.notify_one();  // under the lock: the spare is still waiting
        handoffs_.fetch_add(1, std::memory_order_relaxed);
        return true;
      }
    }
    if (!start_thread(w)) return false;
    handoffs_.fetch_add(1, std::memory_order_relaxed);
    return true;
  }

  spare* take_spare_locked() noexcept {
    if (spares_.empty()) return nullptr;
    spare* s = spares_.back();
    spares_.pop_back();
    return s;
  }

  // Lends this thread's slot for a call_may_block; returns the lend's word.
  std::uint64_t lend(worker& w) {
    const std::uint64_t word =
        (((w.lend_word.load(std::memory_order_relaxed) >> 2) + 1) << 2) | lent;
    w.lend_word.store(word, std::memory_order_seq_cst);  // then look: see monitor_main
    current_worker_ = nullptr;                           // posts from the call go the foreign way
    lent_slot_ = &w;
    if (monitor_asleep_.load(std::memory_order_seq_cst)) wake_monitor();
    return word;
  }

  // The lent call returned: the slot is this thread's again unless it was
  // retaken (then this thread finishes its slice and becomes a spare).
  void end_lend(worker& w, std::uint64_t word) noexcept {
    lent_slot_ = nullptr;
    const std::uint64_t back = (word & ~lend_state_mask) | not_lent;
    if (w.lend_word.compare_exchange_strong(word, back, std::memory_order_acq_rel)) {
      current_worker_ = &w;
    }
  }

  // A lent call is about to block in a leash call: its slot goes to another
  // thread now, unless the monitor took it already.
  void retake_own_lend() noexcept {
    worker* const w = lent_slot_;
    std::uint64_t word = w->lend_word.load(std::memory_order_acquire);
    if ((word & lend_state_mask) != lent) return;
    const std::uint64_t taken = (word & ~lend_state_mask) | retaken;
    if (!w->lend_word.compare_exchange_strong(word, taken, std::memory_order_acq_rel)) return;
    // Only this thread could end the lend, so the slot waits for the taker.
    if (!give_slot(w)) w->lend_word.store(word, std::memory_order_release);
  }

  void wake_monitor() {
    std::lock_guard lock(idle_mutex_);
    if (!monitor_started_) {
      monitor_started_ = true;
      try {
        std::thread([this] {
          const thread_census::member counted;
          monitor_main();
        }).detach();
      } catch (...) {  // no thread: lent calls keep their slots, as before a hand-off
        monitor_started_ = false;
      }
      return;
    }
    monitor_wake_.notify_one();
  }

  // The monitor: every retake_tick, retakes the slot of each call lent
  // since its last look; sleeps after monitor_idle_ticks looks with none.
  void monitor_main() {
    std::vector<std::uint64_t> seen(count_, 0);
    std::unique_lock lock(idle_mutex_);
    monitor_asleep_.store(false, std::memory_order_seq_cst);
    int idle = 0;
    while (!stopping_) {
      if (idle >= monitor_idle_ticks) {
        monitor_asleep_.store(true, std::memory_order_seq_cst);  // then look: see lend()
        if (!any_lent()) monitor_wake_.wait(lock);
        monitor_asleep_.store(false, std::memory_order_seq_cst);
        idle = 0;
        continue;
      }
      monitor_wake_.wait_for(lock, retake_tick);
      idle = retake_long_lends(seen, lock) ? 0 : idle + 1;
    }
  }

  bool any_lent() const noexcept {
    for (const auto& w : workers_) {
      if ((w->lend_word.load(std::memory_order_seq_cst) & lend_state_mask) == lent) return true;
    }
    return false;
  }

  // One look of the monitor (idle_mutex_ held); true when a call was lent.
  bool retake_long_lends(std::vector<std::uint64_t>& seen, std::unique_lock<std::mutex>& lock) {
    bool any = false;
    for (std::size_t i = 0; i < count_ && !stopping_; ++i) {
      worker& w = *workers_[i];
      std::uint64_t word = w.lend_word.load(std::memory_order_acquire);
      if ((word & lend_state_mask) != lent) continue;
      any = true;
      if (std::exchange(seen[i], word) != word) continue;  // lent since the last look
      if (spares_.empty()) {  // a thread to take it first; retaken at a later look
        lock.unlock();
        start_spare();
        lock.lock();
        continue;
      }
      const std::uint64_t taken = (word & ~lend_state_mask) | retaken;
      if (!w.lend_word.compare_exchange_strong(word, taken, std::memory_order_acq_rel)) continue;
      spare* s = take_spare_locked();
      s->slot = &w;
      s->wake.notify_one();
      handoffs_.fetch_add(1, std::memory_order_relaxed);
    }
    return any;
  }

  // Starts a thread that waits as a spare before it owns anything.
  void start_spare() noexcept {
    {
      std::lock_guard lock(idle_mutex_);
      ++alive_;
    }
    try {
      std::thread([this] {
        const thread_census::member counted;
        thread_main(wait_as_spare());
      }).detach();
    } catch (...) {  // no thread now: the monitor tries again at its next look
      std::lock_guard lock(idle_mutex_);
      --alive_;
    }
  }

  // True on a thread that owns a worker slot (a thread-local read).
  static bool on_worker() noexcept { return current_worker_ != nullptr; }
  // True on a thread in a call_may_block on a worker.
  static bool lending() noexcept { return lent_slot_ != nullptr; }

  std::size_t index_of(const worker& w) const {
    for (std::size_t i = 0; i < count_; ++i) {
      if (workers_[i].get() == &w) return i;
    }
    return 0;
  }

  void shutdown() {
    exiting_.store(true, std::memory_order_seq_cst);  // then wake: see wait_in_driver
    if (io_driver* d = driver_.load(std::memory_order_acquire)) d->wake();
    std::unique_lock lock(idle_mutex_);
    stopping_ = true;
    idle_.notify_all();
    monitor_wake_.notify_all();
    for (spare* s : spares_)
      s->wake.notify_one();
    exited_.wait_for(lock, exit_wait, [&] { return alive_ == 0; });
  }

  const std::size_t count_;
  std::vector<std::unique_ptr<worker>> workers_;        // fixed after construction
  std::atomic<std::size_t> next_{0};                    // round-robin target of foreign posts
  std::atomic<std::size_t> queued_{0};                  // items in all queues (not runnext slots)
  std::atomic<std::size_t> parked_{0};                  // slot owners in park()
  std::atomic<std::size_t> spinning_{0};                // slot owners in spin_for_work()
  std::atomic<std::uint64_t> slices_since_release_{0};  // see release_memory_after_burst
  std::atomic<std::uint64_t> handoffs_{0};              // for figures()
  std::atomic<bool> stopped_{false};                    // every thread has left (exit)
  std::atomic<bool> exiting_{false};                    // stopping_, readable without the lock
  std::atomic<io_driver*> driver_{nullptr};             // see attach()
  std::atomic<bool> driver_held_{false};                // a worker waits in or polls the driver
  std::atomic<bool> in_driver_{false};                  // ... and may block there (counted parked)
  mutable std::mutex idle_mutex_;
  std::condition_variable idle_;    // parked slot owners wait here
  std::condition_variable exited_;  // shutdown waits here for threads to leave
  std::condition_variable monitor_wake_;
  bool monitor_started_ = false;            // guarded by idle_mutex_
  std::atomic<bool> monitor_asleep_{true};  // until started: the first lend starts it
  std::vector<spare*> spares_;              // the spare pool, guarded by idle_mutex_
  std::size_t alive_ = 0;                   // threads of the scheduler; guarded by idle_mutex_
  std::size_t cv_parked_ = 0;               // slot owners waiting on idle_; guarded by idle_mutex_
  bool stopping_ = false;                   // guarded by idle_mutex_
  static inline constinit thread_local worker* current_worker_ = nullptr;
  static inline constinit thread_local worker* lent_slot_ = nullptr;  // see call_may_block
  static inline std::atomic<std::size_t> requested_workers_{0};       // see configure()
  static inline std::atomic<scheduler*> started_{nullptr};            // for figures()
};

// Marks where a blocking call really blocks (parks on a condition variable):
// on a worker's thread it first hands the worker's slot to another thread,
// so the other coroutine tasks keep running while this thread is blocked.
// After the region the thread finishes its slice and becomes a spare. On any
// other thread it costs one thread-local read. Nested regions are free: the
// first one gave the slot away.
class blocking_region {
 public:
  // will_block: false when the caller found it need not block after all.
  explicit blocking_region(bool will_block = true) noexcept {
    if (!will_block) return;
    if (scheduler::on_worker()) {
      scheduler::instance().hand_off();
    } else if (scheduler::lending()) {
      scheduler::instance().retake_own_lend();
    }
  }
  blocking_region(const blocking_region&) = delete;
  blocking_region& operator=(const blocking_region&) = delete;
  ~blocking_region() = default;
};

// Makes a suspended coroutine task ready. Posting needs memory only in the
// scheduler's queues; a wake-up that cannot be recorded would strand the
// task, so running out of memory there terminates.
inline void post_resumable(resumable* task) noexcept {
  if (task->post_hook != nullptr) task->post_hook->on_post();
  try {
    scheduler::instance().post(task);
  } catch (...) {
    std::terminate();
  }
}

// The wake-up of a suspended coroutine task that several events race for (a
// timer, a stop, the end of a task): the first claim wins, and the task is
// posted by the last of two arrivals, the winning claim's and the end of its
// await_suspend, so no event races with the registrations await_suspend
// makes. The awaiter that owns it may be gone right after the last arrival.
class wakeup_gate {
 public:
  static constexpr int unclaimed = 0;

  // True for the first caller only; `by` (not unclaimed) names the event.
  bool claim(int by) noexcept {
    int expected = unclaimed;
    return claimed_.compare_exchange_strong(expected, by, std::memory_order_acq_rel);
  }
  int claimed_by() const noexcept { return claimed_.load(std::memory_order_acquire); }

  void arrive(resumable* task) noexcept {
    if (gate_.fetch_sub(1, std::memory_order_acq_rel) == 1) post_resumable(task);
  }

 private:
  std::atomic<int> claimed_{unclaimed};
  std::atomic<int> gate_{2};
};

}  // namespace leash::inline v0::detail
