// SPDX-License-Identifier: BSL-1.0
// leash/detail/spin.hpp: the two facts every spin loop in leash needs.
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

}  // namespace leash::inline v0::detail
