// leash/detail/thread_cache.hpp: the elastic cache of OS threads that runs tasks.
//
// A submitted job starts at once: it is handed straight to one idle thread, or
// a new thread is created. There is no queue, so a job never waits behind
// blocked tasks and channel code cannot deadlock a fixed-size pool.
//
// An idle thread first spins briefly on its hand-off slot (a hand-off to a
// spinning thread costs no system call), then parks on its own condition
// variable for `keep_alive`, then exits. At most `max_idle` threads idle at
// once. Threads are detached: an exiting thread touches nothing shared after
// it has unlinked itself under the cache's mutex.
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
#include <thread>

#include "timer.hpp"

namespace leash::inline v0 {

// Settings of the process-wide runtime; see runtime::configure.
struct runtime_options {
  // How long an idle thread waits for new work before it exits.
  std::chrono::milliseconds keep_alive{2000};
  // How many idle threads are kept at most; 0 means 2 x hardware threads.
  std::size_t max_idle = 0;
};

// A snapshot of the runtime's counters; see runtime::stats.
struct runtime_stats {
  std::size_t threads_alive = 0;  // OS threads owned by the runtime (idle or running)
  std::size_t threads_idle = 0;   // of those, waiting for work
  std::size_t tasks_running = 0;  // jobs executing now
  std::size_t peak_threads = 0;   // most threads alive at once since start
  std::uint64_t tasks_started = 0;
  std::size_t pending_timers = 0;  // deadlines registered with the timer thread
};

namespace detail {

// A unit of work. run() must not throw and must not touch the job after it
// signalled completion to whoever owns it.
class job {
 public:
  virtual void run() noexcept = 0;

 protected:
  ~job() = default;
};

inline void cpu_relax() noexcept {
#if defined(__x86_64__) || defined(__i386__)
  __builtin_ia32_pause();
#elif defined(__aarch64__)
  asm volatile("yield");
#endif
}

class thread_cache {
 public:
  static thread_cache& instance() {
    static auto* cache = new thread_cache;  // immortal: no static-destruction-order crash
    static exit_guard guard{cache};
    return *cache;
  }

  // Runs `j` on an idle thread, or on a new one. Throws std::system_error if
  // no thread can be created.
  void submit(job* j) {
    worker* w = nullptr;
    {
      std::lock_guard lock(mutex_);
      ++started_;
      if (idle_ != nullptr) {
        w = idle_;
        unlink_idle_locked(w);
      } else {
        ++alive_;
        peak_ = std::max(peak_, alive_);
      }
    }
    if (w != nullptr) {
      // Under the worker's mutex: the worker cannot return (and free its
      // stack-allocated record) before this hand-off is complete.
      std::lock_guard lock(w->mutex);
      w->slot.store(j, std::memory_order_release);
      if (w->parked) w->wake.notify_one();
      return;
    }
    try {
      std::thread([this, j] { work(j); }).detach();
    } catch (...) {
      std::lock_guard lock(mutex_);
      --alive_;
      throw;
    }
  }

  void configure(const runtime_options& o) {
    std::lock_guard lock(mutex_);
    keep_alive_ = o.keep_alive;
    max_idle_ = o.max_idle != 0 ? o.max_idle : default_max_idle();
  }

  runtime_stats stats() const {
    runtime_stats s;
    {
      std::lock_guard lock(mutex_);
      s.threads_alive = alive_;
      s.threads_idle = idle_count_;
      s.peak_threads = peak_;
      s.tasks_started = started_;
    }
    s.tasks_running = running_.load(std::memory_order_relaxed);
    s.pending_timers = timer_service::instance().pending();
    return s;
  }

 private:
  // A thread's record; lives on that thread's stack.
  struct worker {
    worker* prev = nullptr;  // idle list links, guarded by the cache's mutex
    worker* next = nullptr;
    bool in_idle = false;  // guarded by the cache's mutex
    std::atomic<job*> slot{nullptr};
    std::mutex mutex;  // guards `parked`, orders hand-off against exit
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

  thread_cache() { max_idle_ = default_max_idle(); }

  static std::size_t default_max_idle() {
    return 2 * std::max<std::size_t>(1, std::thread::hardware_concurrency());
  }

  void work(job* j) {
    worker self;
    while (j != nullptr) {
      running_.fetch_add(1, std::memory_order_relaxed);
      j->run();
      running_.fetch_sub(1, std::memory_order_relaxed);
      j = next_job(self);
    }
  }

  // Parks `w` in the idle list until a job arrives; nullptr means exit.
  job* next_job(worker& w) {
    clock::time_point deadline;
    bool spins = false;
    {
      std::lock_guard lock(mutex_);
      if (stopping_ || idle_count_ >= max_idle_) return retire_locked();
      // One idle thread spins at a time, at the front of the list where the
      // next submit finds it; the others park at once, at the back. Many
      // spinners would only take CPU from the thread that submits.
      spins = spinning_ == 0;
      if (spins) {
        ++spinning_;
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
      deadline = clock::now() + keep_alive_;
    }
    if (spins) {
      // Spin phase: 64 pauses (about a microsecond) then up to 64 yields. The
      // yields keep the spinner from stealing a CPU it shares with the thread
      // about to hand it work (two threads pinned to one CPU).
      for (int i = 0; i < 128; ++i) {
        if (w.slot.load(std::memory_order_acquire) != nullptr) break;
        if (i < 64) {
          cpu_relax();
        } else {
          std::this_thread::yield();
        }
      }
      std::lock_guard lock(mutex_);
      --spinning_;
    }
    std::unique_lock lock(w.mutex);
    w.parked = true;
    for (;;) {
      if (job* j = w.slot.exchange(nullptr, std::memory_order_acquire)) {
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

  job* retire_locked() {
    --alive_;
    if (stopping_) exited_.notify_all();
    return nullptr;
  }

  void unlink_idle_locked(worker* w) {
    if (w->prev != nullptr) w->prev->next = w->next;
    if (w->next != nullptr) w->next->prev = w->prev;
    if (idle_ == w) idle_ = w->next;
    if (idle_tail_ == w) idle_tail_ = w->prev;
    w->prev = w->next = nullptr;
    w->in_idle = false;
    --idle_count_;
  }

  // At exit: wakes every idle thread and waits (bounded) until they left, so
  // no runtime thread is alive after static destruction except ones still
  // running user code (a nursery alive during static destruction).
  void shutdown() {
    static noop_job noop;
    std::unique_lock lock(mutex_);
    stopping_ = true;
    const std::size_t busy = alive_ - idle_count_;
    // Claim every idle thread first, then hand each a no-op outside the
    // cache's mutex (the lock order forbids taking a worker's mutex under it).
    worker* claimed = nullptr;
    while (idle_ != nullptr) {
      worker* w = idle_;
      unlink_idle_locked(w);
      w->next = claimed;
      claimed = w;
    }
    lock.unlock();
    while (claimed != nullptr) {
      worker* w = claimed;
      claimed = w->next;  // read before the hand-off: afterwards w may be gone
      std::lock_guard wl(w->mutex);
      w->slot.store(&noop, std::memory_order_release);
      if (w->parked) w->wake.notify_one();
    }
    lock.lock();
    exited_.wait_for(lock, std::chrono::seconds(2), [&] { return alive_ <= busy; });
  }

  using clock = std::chrono::steady_clock;

  mutable std::mutex mutex_;
  std::condition_variable exited_;  // shutdown waits here for idle threads to leave
  worker* idle_ = nullptr;          // the spinning thread first, if any
  worker* idle_tail_ = nullptr;
  std::size_t spinning_ = 0;  // idle threads in their spin phase (at most one)
  std::size_t idle_count_ = 0;
  std::size_t alive_ = 0;
  std::size_t peak_ = 0;
  std::uint64_t started_ = 0;
  std::chrono::milliseconds keep_alive_{2000};
  std::size_t max_idle_ = 0;
  bool stopping_ = false;
  std::atomic<std::size_t> running_{0};
};

}  // namespace detail
}  // namespace leash::inline v0
