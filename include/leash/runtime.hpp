// SPDX-License-Identifier: BSL-1.0
// leash/runtime.hpp: where leash tasks run, and what that costs.
// Prevents: 10 000 sleeping goroutines leaving tens of MB that Go never
// returns to the OS.
//
// Every task runs on an OS thread from one process-wide elastic cache. A
// spawned task starts at once on an idle thread or on a new one: it never
// queues behind blocked tasks. Idle threads wait `keep_alive` for work, then
// exit, so a burst's stacks go back to the OS. The cache is created on first
// use; at exit its idle threads are woken and leave before static destruction
// ends.
//
//   leash::runtime::configure({.keep_alive = std::chrono::milliseconds(500)});
//   ... a burst of tasks ...
//   auto s = leash::runtime::stats();  // threads_alive, threads_idle, peak_threads, ...
//
// Guarantees. Blocks: no call blocks on tasks; set_observer waits for the
// previous observer's callbacks in progress. Thread-safe: each may be called
// from any thread at any time (set_observer: not from inside a callback);
// stats() is a snapshot.
#pragma once

#include "detail/config.hpp"

#include "detail/scheduler.hpp"
#include "detail/thread_cache.hpp"
#include "detail/thread_census.hpp"
#include "observer.hpp"
#include "runtime_options.hpp"

namespace leash::inline v0::runtime {

// Applies new settings. Threads already idle keep the keep-alive they started
// with; max_idle applies to the next thread that becomes idle; coro_workers
// only before the first coroutine task starts the workers.
inline void configure(const runtime_options& options) {
  detail::detect_deadlocks_enabled.store(options.detect_deadlocks, std::memory_order_relaxed);
  detail::thread_cache::instance().configure(options);
  detail::scheduler::configure(options.coro_workers);
}

// A consistent-enough snapshot of the runtime's counters (each one is exact at
// some instant during the call).
inline runtime_stats stats() {
  runtime_stats s = detail::thread_cache::instance().stats();
  const detail::scheduler_figures f = detail::scheduler::figures();
  s.coro_workers = f.workers;
  s.coro_spare_threads = f.spare_threads;
  s.coro_handoffs = f.handoffs;
  return s;
}

// Installs `next` (nullptr: none) as the process's task observer and returns
// the previous one. Returns only once no callback of the previous observer
// runs or can still start: the caller may destroy it then. Blocks: until the
// callbacks in progress return. Throws usage_error from inside a callback.
// See observer.hpp for the events and the callbacks' contract.
inline observer* set_observer(observer* next) {
  return detail::observers.replace(next);
}

}  // namespace leash::inline v0::runtime
