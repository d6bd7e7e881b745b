// bench_spawn_join: spawn and join N trivial tasks; median ns per task.
//
//   leash       one nursery, N spawns, wait()            (Go: goroutines + WaitGroup)
//   std_thread  create + join, in batches of 1000 threads
//
// Flags: -n tasks (100000), -runs (5), -threads std::thread count (10000).
#include <atomic>
#include <leash.hpp>
#include <thread>
#include <vector>

#include "bench_util.hpp"

int main(int argc, char** argv) {
  const long n = bench::flag(argc, argv, "-n", 100'000);
  const long runs = bench::flag(argc, argv, "-runs", 5);
  const long threads = bench::flag(argc, argv, "-threads", 10'000);
  std::atomic<long> sum{0};

  auto leash_run = [&] {
    leash::run_nursery([&](leash::nursery& nursery) {
      for (long i = 0; i < n; ++i)
        nursery.spawn([&sum] { sum.fetch_add(1, std::memory_order_relaxed); });
    });
  };
  leash_run();  // warm-up: the thread cache fills
  std::vector<double> per_task;
  double cpu = 0;
  for (long r = 0; r < runs; ++r) {
    const double c0 = bench::cpu_seconds();
    per_task.push_back(bench::seconds(leash_run) * 1e9 / n);
    cpu += bench::cpu_seconds() - c0;
  }
  const auto s = leash::runtime::stats();
  std::printf(
      "BENCH spawn_join leash ns_per_task=%.1f cpu_ns_per_task=%.1f runs=%ld peak_threads=%zu\n",
      bench::median(per_task), cpu * 1e9 / (n * runs), runs, s.peak_threads);

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
  std::printf("BENCH spawn_join std_thread ns_per_task=%.1f runs=%ld\n", bench::median(thread_task),
              runs);
  return sum.load() > 0 ? 0 : 1;
}
