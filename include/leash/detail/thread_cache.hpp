// SPDX-License-Identifier: BSL-1.0
// leash/detail/thread_cache.hpp: the elastic cache of OS threads that runs tasks.
//
// A submitted job starts at once, on a thread that runs nothing else first:
//   1. a returning thread: one that has finished its job's user code and is
//      on its way back (it runs only leash bookkeeping until it checks the
//      hand-off list, so the job waits behind no task); or
//   2. the spinning idle thread (no system call); or, after a short bounded
//      spin of the submitter for 1. or 2. while other jobs run,
//   3. a parked idle thread (a futex wake), or a new thread.
// A job is put on the hand-off list only while more threads are returning
// than jobs wait there, so each listed job has a thread bound to take it.
// There is no other queue: a job never waits behind blocked tasks and channel
// code cannot deadlock a fixed-size pool.
//
// One idle thread at a time spins on its slot (idle_spin), the others park at
// once on their own condition variable; a parked thread exits after
// `keep_alive`. At most `max_idle` threads idle for that long; threads beyond
// it linger briefly (a burst's next spawns reuse them instead of creating
// threads), then exit. Threads are detached:
// an exiting thread touches nothing shared after it has unlinked itself under
// the cache's mutex.
//
// Lock order: a worker may take the cache's mutex while holding its own
// mutex; a submitter never holds the cache's mutex while taking a worker's.
#pragma once

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <mutex>
#include <string>
#include <string_view>
#include <system_error>
#include <thread>

#include "../errors.hpp"
#include "../runtime_options.hpp"
#include "spin.hpp"
#include "thread_census.hpp"
#include "thread_limits.hpp"
#include "timer.hpp"

namespace leash::inline v0 {

namespace detail {

// A unit of work. run() must not throw and must not touch the job after it
// signalled completion to whoever owns it.
class job {
 public:
  virtual void run() noexcept = 0;

 protected:
  // Virtual as well as protected: the friend below can reach it, so even a
  // destruction through this base must run the derived destructor.
  virtual ~job() = default;

 private:
  friend class thread_cache;
  job* next_ = nullptr;  // the cache's hand-off list, guarded by its mutex
};

class thread_cache {
 public:
  static thread_cache& instance() {
    static auto* cache = new thread_cache;  // immortal: no static-destruction-order crash
    static exit_guard guard{cache};
    return *cache;
  }

  // Runs `j` on a returning, idle or new thread (see the top of this file).
  // Throws resource_exhausted, naming `what` (the task), when it needs a new
  // thread and max_threads are alive or the OS refuses one.
  void submit(job* j, std::string_view what) {
    worker* w = nullptr;
    bool was_spinning = false;
    for (bool waited = false;; waited = true) {
      {
        std::lock_guard lock(mutex_);
        if (!waited) ++started_;
        if (returning_.load(std::memory_order_relaxed) > queued_.load(std::memory_order_relaxed)) {
          j->next_ = handoff_;
          handoff_ = j;
          queued_.store(queued_.load(std::memory_order_relaxed) + 1, std::memory_order_relaxed);
          note_wait_pays(true);
          return;
        }
        // Wait for a returning thread only while jobs run (one may finish)
        // and such waits paid off lately.
        const bool may_wait = !waited && wait_pays_.load(std::memory_order_relaxed) &&
                              running_.load(std::memory_order_relaxed) != 0;
        if (idle_ != nullptr && (idle_->spinning || !may_wait)) {
          w = idle_;
          was_spinning = claim_locked(w);
          if (was_spinning) note_wait_pays(true);
          break;
        }
        if (!may_wait) {
          if (alive_ >= max_threads_) refuse_locked(what, "");
          ++alive_;
          peak_ = std::max(peak_, alive_);
          if (alive_ == many_threads) prepare_for_many_threads();
          break;
        }
      }
      if (!await_free_thread()) note_wait_pays(false);
    }
    if (w != nullptr) {
      hand_off(w, was_spinning, j);
      return;
    }
    try {
      std::thread([this, j] {
        const thread_census::member counted;
        work(j);
      }).detach();
    } catch (const std::system_error& e) {
      std::lock_guard lock(mutex_);
      --alive_;
      refuse_locked(what, e.what());
    } catch (...) {  // std::bad_alloc: the count stays exact, the error is the caller's
      std::lock_guard lock(mutex_);
      --alive_;
      --started_;
      throw;
    }
  }

  // Called by a job on its runtime thread once it will run no more user code
  // (nor destroy anything whose destructor is user code): from then on the
  // thread counts as returning and may be handed the next job.
  static void mark_returning() noexcept {
    worker* w = current_worker_;
    if (w == nullptr || w->returning) return;
    w->returning = true;
    instance().returning_.fetch_add(1, std::memory_order_relaxed);
  }

  void configure(const runtime_options& o) {
    std::lock_guard lock(mutex_);
    keep_alive_ = o.keep_alive;
    max_idle_ = o.max_idle != 0 ? o.max_idle : default_max_idle();
    set_max_threads_locked(o.max_threads);
  }

  runtime_stats stats() const {
    runtime_stats s;
    {
      std::lock_guard lock(mutex_);
      s.threads_alive = alive_;
      s.threads_idle = idle_count_;
      s.peak_threads = peak_;
      s.tasks_started = started_;
      s.max_threads = max_threads_;
      s.spawns_refused = refused_;
    }
    s.tasks_running = running_.load(std::memory_order_relaxed);
    s.pending_timers = timer_service::instance().pending();
    return s;
  }

 private:
  using clock = std::chrono::steady_clock;

  // How long a thread beyond max_idle stays idle (at most keep_alive): long
  // enough to serve the rest of a spawn burst, short enough that the burst's
  // stacks are soon unmapped.
  static constexpr std::chrono::milliseconds surplus_linger{50};
  // How long the spinning idle thread polls before it parks. A spawn loop's
  // submitter is often held up for tens of microseconds (a preempted VM CPU,
  // an allocation); a spinner that is still there spares it a futex wake.
  // Measured on the 2-core VM: 64 pauses (3 us there) gave 4-7 us per
  // spawn+join, 50 us gave 1-2 us. Costs one CPU for that long after the
  // last task ends.
  static constexpr std::chrono::microseconds idle_spin{50};
  // How long a submitter waits at most for a thread to start returning (or
  // spinning) before it wakes a parked thread or creates one. Far below the
  // cost of a thread creation (~50 us) and of the order of a futex wake.
  static constexpr std::chrono::microseconds submit_spin{10};

  // A thread's record; lives on that thread's stack.
  struct worker {
    worker* prev = nullptr;  // idle list links, guarded by the cache's mutex
    worker* next = nullptr;
    bool in_idle = false;   // guarded by the cache's mutex
    bool spinning = false;  // in the spin phase, not yet claimed; guarded by the cache's mutex
    bool claimed_spinning = false;  // shutdown's note for hand_off; guarded by the cache's mutex
    bool returning = false;         // counted in returning_; only this thread touches it
    std::atomic<job*> slot{nullptr};
    std::mutex mutex;  // guards `parked`, orders a hand-off to a parked thread against its exit
    std::condition_variable wake;
    bool parked = false;
  };

  struct exit_guard {
    thread_cache* cache;
    ~exit_guard() { cache->shutdown(); }
  };

  // Does nothing: handed to idle threads at exit so they wake and leave.
  struct noop_job final : job {
    void run() noexcept override {}
  };

  thread_cache() {
    max_idle_ = default_max_idle();
    set_max_threads_locked(0);  // no other thread can see the cache yet
  }

  void set_max_threads_locked(std::size_t configured) {
    if (configured != 0) {
      max_threads_ = configured;
      limit_source_ = "runtime_options::max_threads = " + std::to_string(configured);
      return;
    }
    const thread_limit derived = derived_thread_limit();
    max_threads_ = derived.value;
    limit_source_ = "runtime_options::max_threads = " + std::to_string(derived.value) +
                    ", derived from " + derived.source;
  }

  // Counts and reports a spawn that found no thread. `os_error` is the OS's
  // refusal, or empty when the cap refused it.
  [[noreturn]] void refuse_locked(std::string_view what, std::string_view os_error) {
    ++refused_;
    --started_;
    std::string m = "leash::runtime: could not start a thread for task \"";
    m.append(what);
    m += "\": " + std::to_string(alive_) + " threads alive";
    if (os_error.empty()) {
      m += ", at the cap (" + limit_source_ + ")";
    } else {
      m += ", and the OS refused another (";
      m.append(os_error);
      m += "; " + limit_source_ + ")";
    }
    throw resource_exhausted(m);
  }

  static std::size_t default_max_idle() {
    return 2 * std::max<std::size_t>(1, std::thread::hardware_concurrency());
  }

  void work(job* j) {
    worker self;
    current_worker_ = &self;
    while (j != nullptr) {
      running_.fetch_add(1, std::memory_order_relaxed);
      j->run();
      running_.fetch_sub(1, std::memory_order_relaxed);
      j = next_job(self);
    }
  }

  void note_wait_pays(bool pays) noexcept {
    if (wait_pays_.load(std::memory_order_relaxed) != pays) {
      wait_pays_.store(pays, std::memory_order_relaxed);
    }
  }

  // The submitter's bounded wait for a returning or spinning thread: a few
  // pauses, then yields (a submitter sharing one CPU with the thread it waits
  // for gives it the CPU). True when one appeared.
  bool await_free_thread() const {
    const auto until = clock::now() + submit_spin;
    for (int i = 0;; ++i) {
      if (returning_.load(std::memory_order_relaxed) > queued_.load(std::memory_order_relaxed) ||
          spinning_.load(std::memory_order_relaxed) != 0) {
        return true;
      }
      if (i < 32) {
        cpu_relax();
      } else if (clock::now() > until) {
        return false;
      } else {
        std::this_thread::yield();
      }
    }
  }

  // The next job for `w`: from the hand-off list, else after idling in the
  // idle list; nullptr means exit.
  job* next_job(worker& w) {
    std::chrono::milliseconds idle_for;
    bool spins = false;
    {
      std::lock_guard lock(mutex_);
      if (w.returning) {
        w.returning = false;
        returning_.fetch_sub(1, std::memory_order_relaxed);
      }
      if (handoff_ != nullptr) {
        job* j = handoff_;
        handoff_ = j->next_;
        queued_.store(queued_.load(std::memory_order_relaxed) - 1, std::memory_order_relaxed);
        return j;
      }
      if (stopping_) return retire_locked();
      const bool surplus = idle_count_ >= max_idle_;
      idle_for = surplus ? std::min(keep_alive_, surplus_linger) : keep_alive_;
      // One idle thread spins at a time, at the front of the list where the
      // next submit finds it; the others park at once, at the back. Many
      // spinners would only take CPU from the thread that submits, and so
      // would one on a single usable CPU.
      spins = spinning_.load(std::memory_order_relaxed) == 0 && usable_cpus() > 1;
      if (spins) {
        spinning_.store(1, std::memory_order_relaxed);
        w.spinning = true;
        w.next = idle_;
        if (idle_ != nullptr) idle_->prev = &w;
        idle_ = &w;
        if (idle_tail_ == nullptr) idle_tail_ = &w;
      } else {
        w.prev = idle_tail_;
        if (idle_tail_ != nullptr) idle_tail_->next = &w;
        idle_tail_ = &w;
        if (idle_ == nullptr) idle_ = &w;
      }
      w.in_idle = true;
      ++idle_count_;
    }
    if (spins) {
      // Spin phase: pauses for idle_spin, then up to 64 yields. The yields
      // keep a spinner that shares one CPU with the thread about to hand it
      // work (both pinned to one CPU) from holding that CPU for long. Yields
      // among the pauses cost more than they give: on a loaded machine each
      // one may hand the CPU to another process.
      const auto until = clock::now() + idle_spin;
      for (int i = 1;; ++i) {
        if (job* j = take(w)) return j;
        if (i % 16 == 0 && clock::now() > until) break;
        cpu_relax();
      }
      for (int i = 0; i < 64; ++i) {
        if (job* j = take(w)) return j;
        std::this_thread::yield();
      }
      bool claimed = false;
      {
        std::lock_guard lock(mutex_);
        claimed = !w.spinning;
        if (!claimed) {
          w.spinning = false;
          spinning_.store(0, std::memory_order_relaxed);
        }
      }
      // Claimed while spinning: the submitter stores the job right after its
      // unlock, without a wake-up.
      while (claimed) {
        if (job* j = take(w)) return j;
        std::this_thread::yield();
      }
    }
    auto deadline = clock::now() + idle_for;
    std::unique_lock lock(w.mutex);
    w.parked = true;
    for (;;) {
      if (job* j = take(w)) {
        w.parked = false;
        return j;
      }
      if (w.wake.wait_until(lock, deadline) == std::cv_status::timeout) {
        std::lock_guard cache_lock(mutex_);
        if (w.in_idle) {
          unlink_idle_locked(&w);
          return retire_locked();
        }
        // A submitter claimed this thread; its job is on the way.
        deadline = clock::time_point::max();
      }
    }
  }

  // The job in w's slot, if any. Only w empties its slot; only the one
  // submitter that claimed w fills it.
  static job* take(worker& w) noexcept {
    job* j = w.slot.load(std::memory_order_acquire);
    if (j != nullptr) w.slot.store(nullptr, std::memory_order_relaxed);
    return j;
  }

  job* retire_locked() {
    --alive_;
    if (stopping_) exited_.notify_all();
    return nullptr;
  }

  // Takes `w` off the idle list for a hand-off; true if it was still spinning
  // (it polls its slot and needs no wake-up).
  bool claim_locked(worker* w) {
    const bool was_spinning = w->spinning;
    unlink_idle_locked(w);
    return was_spinning;
  }

  // Gives `j` to the claimed thread `w`. A parked thread is woken under its
  // own mutex, so that it cannot time out and leave (freeing its record)
  // while the submitter still touches it; a spinning thread only polls.
  static void hand_off(worker* w, bool was_spinning, job* j) {
    if (was_spinning) {
      w->slot.store(j, std::memory_order_release);  // w may be gone right after
      return;
    }
    std::lock_guard lock(w->mutex);
    w->slot.store(j, std::memory_order_release);
    if (w->parked) w->wake.notify_one();
  }

  void unlink_idle_locked(worker* w) {
    if (w->prev != nullptr) w->prev->next = w->next;
    if (w->next != nullptr) w->next->prev = w->prev;
    if (idle_ == w) idle_ = w->next;
    if (idle_tail_ == w) idle_tail_ = w->prev;
    w->prev = w->next = nullptr;
    w->in_idle = false;
    if (w->spinning) {
      w->spinning = false;
      spinning_.store(0, std::memory_order_relaxed);
    }
    --idle_count_;
  }

  // At exit: wakes every idle thread and waits (bounded) until they left, so
  // no runtime thread is alive after static destruction except ones still
  // running user code (a nursery alive during static destruction).
  void shutdown() {
    static noop_job& noop = *new noop_job;  // immortal: a woken thread may run it after exit
    std::unique_lock lock(mutex_);
    stopping_ = true;
    const std::size_t busy = alive_ - idle_count_;
    // Claim every idle thread first, then hand each a no-op outside the
    // cache's mutex (the lock order forbids taking a worker's mutex under it).
    worker* claimed = nullptr;
    while (idle_ != nullptr) {
      worker* w = idle_;
      w->claimed_spinning = claim_locked(w);
      w->next = claimed;
      claimed = w;
    }
    lock.unlock();
    while (claimed != nullptr) {
      worker* w = claimed;
      claimed = w->next;  // read before the hand-off: afterwards w may be gone
      hand_off(w, w->claimed_spinning, &noop);
    }
    lock.lock();
    exited_.wait_for(lock, std::chrono::seconds(2), [&] { return alive_ <= busy; });
  }

  mutable std::mutex mutex_;
  std::condition_variable exited_;  // shutdown waits here for idle threads to leave
  worker* idle_ = nullptr;          // the spinning thread first, if any
  worker* idle_tail_ = nullptr;
  std::size_t idle_count_ = 0;
  std::size_t alive_ = 0;
  std::size_t peak_ = 0;
  std::uint64_t started_ = 0;
  std::chrono::milliseconds keep_alive_{2000};
  std::size_t max_idle_ = 0;
  std::size_t max_threads_ = 0;  // alive_ never exceeds it
  std::string limit_source_;     // where max_threads_ comes from, for messages
  std::uint64_t refused_ = 0;
  bool stopping_ = false;
  job* handoff_ = nullptr;  // jobs bound for returning threads (a stack)
  // Written under mutex_ only, read without it by a waiting submitter.
  std::atomic<std::size_t> queued_{0};    // jobs in handoff_; never more than returning_
  std::atomic<std::size_t> spinning_{0};  // idle threads in their spin phase (0 or 1)
  // Threads between mark_returning() and their next look at handoff_.
  // Incremented without the mutex (it only grows there), decremented under it.
  std::atomic<std::size_t> returning_{0};
  std::atomic<std::size_t> running_{0};
  // Whether a submitter lately found a returning or spinning thread. When a
  // wait for one times out, submitters stop waiting until one is found again,
  // so a burst of blocking tasks does not pay submit_spin per spawn.
  std::atomic<bool> wait_pays_{true};
  static inline thread_local worker* current_worker_ = nullptr;
};

}  // namespace detail
}  // namespace leash::inline v0
