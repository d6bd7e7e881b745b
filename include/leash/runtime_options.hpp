// SPDX-License-Identifier: BSL-1.0
// leash/runtime_options.hpp: the settings and counters of leash's runtime.
//
// runtime::configure() takes a runtime_options; runtime::stats() returns a
// runtime_stats (both in runtime.hpp). Fields are in declaration order, so
// designated initializers follow it:
//
//   leash::runtime::configure({.keep_alive = 500ms, .max_threads = 2000});
#pragma once

#include "detail/config.hpp"

#include <chrono>
#include <cstddef>
#include <cstdint>

namespace leash::inline v0 {

// Settings of the process-wide runtime; see runtime::configure.
struct runtime_options {
  // How long an idle thread waits for new work before it exits.
  std::chrono::milliseconds keep_alive{2000};
  // How many idle threads are kept at most; 0 means 2 x hardware threads.
  std::size_t max_idle = 0;
  // How many threads the runtime may own at once. A spawn that needs a new
  // thread beyond it throws resource_exhausted (try_spawn returns empty).
  // 0 means derived from the OS: the smallest of RLIMIT_NPROC,
  // kernel.threads-max, kernel.pid_max and vm.max_map_count / 2 (each thread
  // maps its stack and a guard page), less 10 % for threads leash does not
  // own and for other processes.
  std::size_t max_threads = 0;
  // How many worker threads run coroutine tasks; 0 means the CPUs this
  // process may run on (its affinity mask: taskset counts).
  // Read when the first coroutine task starts them: set it before that.
  std::size_t coro_workers = 0;
  // Deadlock detection outside virtual time, for tests: a nursery opened on
  // a plain thread fails with leash::deadlock when it and every task in it
  // are blocked in leash calls that nothing can wake. Since anyone may hold a
  // reference to a channel, it is reported only when the whole process is
  // idle: every nursery is this one or nested in it, no timer or ticker is
  // pending, and no thread exists but leash's and the nursery's owner. Never
  // a false report; a deadlock beside other activity goes unseen. Read when
  // a nursery opens.
  bool detect_deadlocks = false;
};

// A snapshot of the runtime's counters; see runtime::stats.
struct runtime_stats {
  std::size_t threads_alive = 0;  // OS threads owned by the runtime (idle or running)
  std::size_t threads_idle = 0;   // of those, waiting for work
  std::size_t tasks_running = 0;  // jobs executing now
  std::size_t peak_threads = 0;   // most threads alive at once since start
  std::uint64_t tasks_started = 0;
  std::size_t pending_timers = 0;    // deadlines registered with the timer thread
  std::size_t max_threads = 0;       // the cap in force (configured or derived)
  std::uint64_t spawns_refused = 0;  // spawns that found no thread (resource_exhausted)
  // Coroutine tasks: worker slots (0 until the first coroutine task), spare
  // threads waiting to take over a slot, and slots handed to another thread
  // so far because a coroutine task blocked its worker's thread.
  std::size_t coro_workers = 0;
  std::size_t coro_spare_threads = 0;
  std::uint64_t coro_handoffs = 0;
};

}  // namespace leash::inline v0
