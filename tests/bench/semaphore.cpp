// bench_semaphore: leash::semaphore beside Go's buffered-channel semaphore
// (tests/bench/go/semaphore.go) and C++20's std::counting_semaphore.
//
//   sem_uncontended   one task, 4 permits: acquire + release        ns per pair
//   sem_contended_8   8 tasks share 4 permits: acquire + release    ns per pair
//
// Rows "leash" and "std_counting" run each task on its own thread; "leash_coro"
// runs them as coroutine tasks of one nursery (co_await async_acquire), on the
// scheduler's workers. std::counting_semaphore is the floor a plain counter
// gives: it cannot be cancelled, has no RAII permit and no select.
//
// Every task has done a few pairs before the clock starts. Prints wall ns and
// CPU (user+sys of the process) ns per pair, median of -runs runs. Flags:
// -n pairs (400000), -runs (5).
#include <atomic>
#include <functional>
#include <latch>
#include <leash.hpp>
#include <semaphore>
#include <string>
#include <thread>
#include <vector>

#include "bench_util.hpp"

namespace {

using bench::report;
using bench::result;

constexpr std::size_t permits = 4;      // fewer than the contended tasks: they wait for each other
constexpr int contended_tasks = 8;      // the "8-way" of the scenario's name
constexpr long warm_pairs = 1000;       // per task, before the clock starts
constexpr std::ptrdiff_t std_max = 64;  // std::counting_semaphore's compile-time bound

// Runs `tasks` copies of body(k) on their own threads: body(warm_pairs) first,
// then all wait for the start; the clock runs until every body(per_task) returned.
result timed_threads(int tasks, long per_task, const std::function<void(long)>& body) {
  std::latch ready(tasks + 1);
  std::latch go(1);
  std::vector<std::thread> threads;
  for (int i = 0; i < tasks; ++i) {
    threads.emplace_back([&] {
      body(warm_pairs);
      ready.count_down();
      go.wait();
      body(per_task);
    });
  }
  ready.arrive_and_wait();
  const double c0 = bench::cpu_seconds();
  const auto t0 = std::chrono::steady_clock::now();
  go.count_down();
  for (auto& t : threads)
    t.join();
  const double wall = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  const double ops = static_cast<double>(per_task) * tasks;
  return {wall * 1e9 / ops, (bench::cpu_seconds() - c0) * 1e9 / ops};
}

leash::coro<void> coro_pairs(leash::semaphore& sem, long k, std::atomic<long>& sink) {
  for (long i = 0; i < k; ++i) {
    leash::semaphore::permit p = co_await sem.async_acquire();
    sink.fetch_add(1, std::memory_order_relaxed);
  }
}

leash::coro<void> coro_task(leash::semaphore& sem, long per_task, std::atomic<long>& ready,
                            leash::event& start, std::atomic<long>& sink) {
  co_await coro_pairs(sem, warm_pairs, sink);
  ready.fetch_add(1);
  co_await start.async_wait();
  co_await coro_pairs(sem, per_task, sink);
}

// The coroutine form: `tasks` coroutine tasks of one nursery.
result timed_coro(int tasks, long per_task) {
  leash::semaphore sem(permits);
  leash::event start;
  std::atomic<long> ready{0}, sink{0};
  leash::nursery nursery;
  for (int i = 0; i < tasks; ++i)
    nursery.spawn([&, per_task] { return coro_task(sem, per_task, ready, start, sink); });
  while (ready.load() < tasks)
    std::this_thread::yield();
  const double c0 = bench::cpu_seconds();
  const auto t0 = std::chrono::steady_clock::now();
  start.set();
  nursery.wait();
  const double wall = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  const double ops = static_cast<double>(per_task) * tasks;
  return {wall * 1e9 / ops, (bench::cpu_seconds() - c0) * 1e9 / ops};
}

result leash_threads(int tasks, long per_task) {
  leash::semaphore sem(permits);
  std::atomic<long> sink{0};
  return timed_threads(tasks, per_task, [&](long k) {
    for (long i = 0; i < k; ++i) {
      leash::semaphore::permit p = sem.acquire();
      sink.fetch_add(1, std::memory_order_relaxed);
    }
  });
}

result std_threads(int tasks, long per_task) {
  std::counting_semaphore<std_max> sem(static_cast<std::ptrdiff_t>(permits));
  std::atomic<long> sink{0};
  return timed_threads(tasks, per_task, [&](long k) {
    for (long i = 0; i < k; ++i) {
      sem.acquire();
      sink.fetch_add(1, std::memory_order_relaxed);
      sem.release();
    }
  });
}

}  // namespace

int main(int argc, char** argv) {
  const long n = bench::flag(argc, argv, "-n", 400'000);
  const long runs = bench::flag(argc, argv, "-runs", 5);
  const long per_task = n / contended_tasks;

  report("sem_uncontended", "leash", runs, [&] { return leash_threads(1, n); });
  report("sem_uncontended", "leash_coro", runs, [&] { return timed_coro(1, n); });
  report("sem_uncontended", "std_counting", runs, [&] { return std_threads(1, n); });
  report("sem_contended_8", "leash", runs,
         [&] { return leash_threads(contended_tasks, per_task); });
  report("sem_contended_8", "leash_coro", runs,
         [&] { return timed_coro(contended_tasks, per_task); });
  report("sem_contended_8", "std_counting", runs,
         [&] { return std_threads(contended_tasks, per_task); });
  return 0;
}
