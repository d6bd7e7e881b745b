// leash/detail/thread_limits.hpp: how many threads the OS lets this process have.
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

}  // namespace leash::inline v0::detail
