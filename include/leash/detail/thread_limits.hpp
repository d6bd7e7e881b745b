// SPDX-License-Identifier: BSL-1.0
// leash/detail/thread_limits.hpp: how many threads the OS lets this process
// have, and what it needs to serve many of them.
//
// The runtime's default max_threads. Each source is read where the platform
// has it and skipped where it does not; with none, there is no cap beyond the
// OS refusing a thread (which leash reports the same way).
#pragma once

#include <cstddef>
#include <cstdio>
#include <limits>
#include <string>
#include <utility>

#if __has_include(<sys/resource.h>)
#include <sys/resource.h>
#endif
#if defined(__linux__)
#include <sys/prctl.h>
#endif

namespace leash::inline v0::detail {

struct thread_limit {
  std::size_t value = std::numeric_limits<std::size_t>::max();
  std::string source = "no OS limit found";  // which limit it comes from, for messages
};

// The part of the smallest OS limit left to leash: the rest is headroom for
// the process's other threads and for other processes of the same user.
inline constexpr std::size_t thread_limit_share_percent = 90;

// One number from a /proc file, or 0 when there is none.
inline std::size_t read_proc_number(const char* path) {
  std::FILE* f = std::fopen(path, "r");
  if (f == nullptr) return 0;
  unsigned long long v = 0;
  const bool ok = std::fscanf(f, "%llu", &v) == 1;
  std::fclose(f);
  return ok ? static_cast<std::size_t>(v) : 0;
}

inline void consider_limit(thread_limit& smallest, std::size_t value, std::string source) {
  if (value != 0 && value < smallest.value) smallest = {value, std::move(source)};
}

// The smallest of the OS's thread limits, unscaled.
inline thread_limit os_thread_limit() {
  thread_limit smallest;
#if __has_include(<sys/resource.h>) && defined(RLIMIT_NPROC)
  rlimit nproc{};
  if (getrlimit(RLIMIT_NPROC, &nproc) == 0 && nproc.rlim_cur != RLIM_INFINITY) {
    consider_limit(smallest, static_cast<std::size_t>(nproc.rlim_cur), "RLIMIT_NPROC");
  }
#endif
  consider_limit(smallest, read_proc_number("/proc/sys/kernel/threads-max"), "kernel.threads-max");
  consider_limit(smallest, read_proc_number("/proc/sys/kernel/pid_max"), "kernel.pid_max");
  consider_limit(smallest, read_proc_number("/proc/sys/vm/max_map_count") / 2,
                 "vm.max_map_count / 2");
  return smallest;
}

// The default max_threads: the smallest OS limit, less the headroom.
inline thread_limit derived_thread_limit() {
  thread_limit l = os_thread_limit();
  if (l.value == std::numeric_limits<std::size_t>::max()) return l;
  l.source = std::to_string(thread_limit_share_percent) + " % of " + l.source + " (" +
             std::to_string(l.value) + ")";
  l.value -= l.value / 100 * (100 - thread_limit_share_percent);
  return l;
}

// How many runtime threads make the process "many-threaded" (see below).
inline constexpr std::size_t many_threads = 512;

// Called once, when the runtime first has many_threads threads. Linux 6.16+
// gives a process a private futex hash sized by its CPUs, not its threads
// (16 buckets on 2 CPUs): with thousands of threads parked on their own
// futexes, every futex call scans hundreds of unrelated waiters, and waking
// N blocked tasks costs O(N^2). Switching the process to the global hash
// (PR_FUTEX_HASH_SET_SLOTS 0) keeps it linear. Other kernels refuse the call;
// nothing else changes.
inline void prepare_for_many_threads() noexcept {
#if defined(__linux__)
  constexpr int pr_futex_hash = 78;           // PR_FUTEX_HASH, <linux/prctl.h> of 6.16
  constexpr int pr_futex_hash_set_slots = 1;  // PR_FUTEX_HASH_SET_SLOTS
  constexpr unsigned long global_hash = 0;    // 0 slots: use the global hash
  (void)::prctl(pr_futex_hash, pr_futex_hash_set_slots, global_hash, 0UL, 0UL);
#endif
}

}  // namespace leash::inline v0::detail
