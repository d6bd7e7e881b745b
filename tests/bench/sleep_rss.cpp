// bench_sleep_rss: 10 000 tasks that each sleep 1 s; RSS before, at peak, and
// 3 s after the burst (the runtime's keep-alive is 2 s, so its threads are
// gone by then).
//
//   leash       one nursery of 10 000 sleeping tasks
//   std_thread  10 000 std::threads, each sleeping 1 s, then joined
//
// Flags: -g tasks (10000), -settle seconds after the burst (3). Each
// implementation runs in its own process: pass "leash" or "std_thread" to run
// only one (run.sh runs both, one after the other).
#include <chrono>
#include <cstring>
#include <leash.hpp>
#include <thread>
#include <vector>

#include "bench_util.hpp"

using namespace std::chrono_literals;

namespace {

void report(const char* impl, long baseline, long after_burst, long settle) {
  std::this_thread::sleep_for(std::chrono::seconds(settle));
  std::printf(
      "BENCH sleep_rss %s rss_baseline_kb=%ld rss_peak_kb=%ld rss_after_burst_kb=%ld "
      "rss_after_3s_kb=%ld\n",
      impl, baseline, bench::status_kb("VmHWM"), after_burst, bench::status_kb("VmRSS"));
}

}  // namespace

int main(int argc, char** argv) {
  const long tasks = bench::flag(argc, argv, "-g", 10'000);
  const long settle = bench::flag(argc, argv, "-settle", 3);
  const bool only_leash = argc > 1 && std::strcmp(argv[argc - 1], "leash") == 0;
  const bool only_thread = argc > 1 && std::strcmp(argv[argc - 1], "std_thread") == 0;
  if (!only_leash && !only_thread) {
    // Separate processes, so one implementation's peak cannot hide the other's.
    const std::string self = argv[0];
    const std::string args = " -g " + std::to_string(tasks) + " -settle " + std::to_string(settle);
    const int a = std::system((self + args + " leash").c_str());
    const int b = std::system((self + args + " std_thread").c_str());
    return a == 0 && b == 0 ? 0 : 1;
  }
  const long baseline = bench::status_kb("VmRSS");
  if (only_leash) {
    leash::run_nursery([&](leash::nursery& n) {
      for (long i = 0; i < tasks; ++i)
        n.spawn([] { leash::this_task::sleep_for(1s); });
    });
    report("leash", baseline, bench::status_kb("VmRSS"), settle);
  } else {
    std::vector<std::thread> threads;
    for (long i = 0; i < tasks; ++i)
      threads.emplace_back([] { std::this_thread::sleep_for(1s); });
    for (auto& t : threads)
      t.join();
    report("std_thread", baseline, bench::status_kb("VmRSS"), settle);
  }
}
