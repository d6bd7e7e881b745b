// bench_spawn_join: spawn and join N trivial tasks; median ns per task.
//
//   leash       one nursery, N thread-task spawns, wait() (Go: goroutines + WaitGroup)
//   leash_coro  one nursery, N coroutine-task spawns (a callable returning
//               leash::coro<void>), wait(): no thread per task
//   std_thread  create + join, in batches of 1000 threads
//
// Prints wall and CPU (user+sys of the process) ns per task.
// Flags: -n tasks (100000), -runs (5), -threads std::thread count (10000),
// -pinned 1 (only tags the scenario name: run.sh runs the binary under
// `taskset -c 0` for that).
#include <atomic>
#include <leash.hpp>
#include <string>
#include <thread>
#include <vector>

#include "bench_util.hpp"

namespace {

struct timing {
  double wall_ns_per_task, cpu_ns_per_task;
};

// One untimed warm-up run (thread cache, frame caches, scheduler start),
// then the median wall and mean CPU ns per task of `runs` runs of n tasks.
template <class Run>
timing measure(long n, long runs, Run run) {
  run();
  std::vector<double> per_task;
  double cpu = 0;
  for (long r = 0; r < runs; ++r) {
    const double c0 = bench::cpu_seconds();
    per_task.push_back(bench::seconds(run) * 1e9 / static_cast<double>(n));
    cpu += bench::cpu_seconds() - c0;
  }
  return {bench::median(per_task), cpu * 1e9 / static_cast<double>(n * runs)};
}

}  // namespace

int main(int argc, char** argv) {
  const long n = bench::flag(argc, argv, "-n", 100'000);
  const long runs = bench::flag(argc, argv, "-runs", 5);
  const long threads = bench::flag(argc, argv, "-threads", 10'000);
  const std::string scenario =
      std::string("spawn_join") + (bench::flag(argc, argv, "-pinned", 0) != 0 ? "_pinned" : "");
  std::atomic<long> sum{0};

  const timing thread_tasks = measure(n, runs, [&] {
    leash::run_nursery([&](leash::nursery& nursery) {
      for (long i = 0; i < n; ++i)
        nursery.spawn([&sum] { sum.fetch_add(1, std::memory_order_relaxed); });
    });
  });
  const auto s = leash::runtime::stats();
  std::printf("BENCH %s leash ns_per_task=%.1f cpu_ns_per_task=%.1f runs=%ld peak_threads=%zu\n",
              scenario.c_str(), thread_tasks.wall_ns_per_task, thread_tasks.cpu_ns_per_task, runs,
              s.peak_threads);
  std::fflush(stdout);

  const timing coro_tasks = measure(n, runs, [&] {
    leash::run_nursery([&](leash::nursery& nursery) {
      for (long i = 0; i < n; ++i) {
        nursery.spawn([&sum]() -> leash::coro<void> {
          sum.fetch_add(1, std::memory_order_relaxed);
          co_return;
        });
      }
    });
  });
  std::printf("BENCH %s leash_coro ns_per_task=%.1f cpu_ns_per_task=%.1f runs=%ld\n",
              scenario.c_str(), coro_tasks.wall_ns_per_task, coro_tasks.cpu_ns_per_task, runs);
  std::fflush(stdout);

  std::vector<double> thread_task;
  for (long r = 0; r < runs; ++r) {
    thread_task.push_back(bench::seconds([&] {
                            std::vector<std::thread> batch;
                            for (long done = 0; done < threads; done += 1000) {
                              for (long i = 0; i < 1000; ++i)
                                batch.emplace_back([&sum] { sum.fetch_add(1); });
                              for (auto& t : batch)
                                t.join();
                              batch.clear();
                            }
                          }) *
                          1e9 / threads);
  }
  std::printf("BENCH %s std_thread ns_per_task=%.1f runs=%ld\n", scenario.c_str(),
              bench::median(thread_task), runs);
  return sum.load() > 0 ? 0 : 1;
}
