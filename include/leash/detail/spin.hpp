// SPDX-License-Identifier: BSL-1.0
// leash/detail/spin.hpp: the two facts every spin loop in leash needs, and
// the spinlock built on them.
//
// cpu_relax() is the CPU's spin-wait hint. usable_cpus() is how many CPUs this
// process may run on: spinning only pays while the thread it waits for runs
// on another CPU, so with one usable CPU (`taskset -c 0`, a one-CPU
// container) leash does not spin at all, as Go's scheduler does not.
#pragma once

#if defined(__linux__)
#include <sched.h>
#endif

#include <algorithm>
#include <atomic>
#include <thread>

namespace leash::inline v0::detail {

inline void cpu_relax() noexcept {
#if defined(__x86_64__) || defined(__i386__)
  __builtin_ia32_pause();
#elif defined(__aarch64__)
  asm volatile("yield");
#endif
}

// Read once: the affinity mask on Linux (so `taskset -c 0` counts as one CPU),
// else the hardware's count.
inline int usable_cpus() noexcept {
  static const int cpus = [] {
#if defined(__linux__)
    cpu_set_t set;
    if (sched_getaffinity(0, sizeof set, &set) == 0) return std::max(1, CPU_COUNT(&set));
#endif
    return static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
  }();
  return cpus;
}

// A test-and-test-and-set lock for tiny critical sections (a channel's few
// pointer updates and one move of an element; a stop-hook list's link and
// unlink, taken twice per coroutine suspension). It yields after a short
// spin: on an oversubscribed machine the holder may be preempted, and yielding
// lets it run instead of burning the CPU it needs.
class spinlock {
 public:
  void lock() noexcept {
    while (locked_.exchange(true, std::memory_order_acquire)) {
      for (int spins = 0; locked_.load(std::memory_order_relaxed); ++spins) {
        if (spins < pauses_before_yield) {
          cpu_relax();
        } else {
          std::this_thread::yield();
        }
      }
    }
  }
  void unlock() noexcept { locked_.store(false, std::memory_order_release); }

 private:
  // A running holder leaves a critical section this short within these pauses.
  static constexpr int pauses_before_yield = 64;
  std::atomic<bool> locked_{false};
};

}  // namespace leash::inline v0::detail
