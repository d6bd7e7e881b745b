// bench_sleep_rss: many tasks that each wait, then end; RSS before, at peak,
// and 3 s after the burst (the runtime's keep-alive is 2 s, so its threads
// are gone by then), and the time until every task was joined.
//
//   sleep_rss     10 000 tasks that each sleep 1 s:
//     leash           one nursery of thread tasks in this_task::sleep_for
//     std_thread      10 000 std::threads, each sleeping 1 s, then joined
//   sleep_rss_1m  1 000 000 coroutine tasks (leash_coro) in one nursery, each
//                 in co_await this_task::async_sleep_for(1s); join_ms runs from
//                 the first spawn until the nursery joined the last task
//   recv_rss_1m   1 000 000 coroutine tasks (leash_coro) in one nursery, each
//                 in co_await ch.async_recv() on one unbuffered channel<int>;
//                 once all of them wait, the channel is closed; join_ms runs
//                 from the close until the nursery joined the last task
// Go's tests/bench/go/sleep_rss.go runs the same three with goroutines.
//
// Each row runs in its own process, so one row's peak cannot hide another's:
// pass "leash", "std_thread", "coro_sleep" or "coro_recv" to run only that
// one; with none, all four run one after the other, and with -pinned 1 (run.sh
// runs the binary under `taskset -c 0` for that) only the coroutine rows, their
// scenario names tagged "_pinned".
// Flags: -g thread tasks (10000), -m coroutine tasks (1000000), -settle
// seconds after the burst (3).
#include <atomic>
#include <chrono>
#include <cstring>
#include <leash.hpp>
#include <string>
#include <thread>
#include <vector>

#include "bench_util.hpp"

using namespace std::chrono_literals;

namespace {

struct burst {
  long baseline_kb = 0;
  long after_burst_kb = 0;
  double spawn_ms = 0;
  double join_ms = 0;
  double cpu_ms = 0;
};

// Prints the row `settle` seconds after the burst.
void report(const std::string& scenario, const char* impl, const burst& b, long tasks,
            long settle) {
  std::this_thread::sleep_for(std::chrono::seconds(settle));
  std::printf(
      "BENCH %s %s rss_baseline_kb=%ld rss_peak_kb=%ld rss_after_burst_kb=%ld "
      "rss_after_3s_kb=%ld spawn_ms=%.1f join_ms=%.1f cpu_ms=%.1f tasks=%ld\n",
      scenario.c_str(), impl, b.baseline_kb, bench::status_kb("VmHWM"), b.after_burst_kb,
      bench::status_kb("VmRSS"), b.spawn_ms, b.join_ms, b.cpu_ms, tasks);
}

double ms_since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
}

burst thread_tasks(long tasks) {
  burst b;
  b.baseline_kb = bench::status_kb("VmRSS");
  const double c0 = bench::cpu_seconds();
  const auto t0 = std::chrono::steady_clock::now();
  leash::run_nursery([&](leash::nursery& n) {
    for (long i = 0; i < tasks; ++i)
      n.spawn([] { leash::this_task::sleep_for(1s); });
    b.spawn_ms = ms_since(t0);
  });
  b.join_ms = ms_since(t0);
  b.cpu_ms = (bench::cpu_seconds() - c0) * 1e3;
  b.after_burst_kb = bench::status_kb("VmRSS");
  return b;
}

burst std_threads(long tasks) {
  burst b;
  b.baseline_kb = bench::status_kb("VmRSS");
  const double c0 = bench::cpu_seconds();
  const auto t0 = std::chrono::steady_clock::now();
  std::vector<std::thread> threads;
  for (long i = 0; i < tasks; ++i)
    threads.emplace_back([] { std::this_thread::sleep_for(1s); });
  b.spawn_ms = ms_since(t0);
  for (auto& t : threads)
    t.join();
  b.join_ms = ms_since(t0);
  b.cpu_ms = (bench::cpu_seconds() - c0) * 1e3;
  b.after_burst_kb = bench::status_kb("VmRSS");
  return b;
}

burst coro_sleepers(long tasks) {
  burst b;
  b.baseline_kb = bench::status_kb("VmRSS");
  const double c0 = bench::cpu_seconds();
  const auto t0 = std::chrono::steady_clock::now();
  {
    leash::nursery n;
    for (long i = 0; i < tasks; ++i) {
      n.spawn([]() -> leash::coro<void> { co_await leash::this_task::async_sleep_for(1s); });
    }
    b.spawn_ms = ms_since(t0);
    n.wait();
  }
  b.join_ms = ms_since(t0);
  b.cpu_ms = (bench::cpu_seconds() - c0) * 1e3;
  b.after_burst_kb = bench::status_kb("VmRSS");
  return b;
}

burst coro_receivers(long tasks) {
  burst b;
  b.baseline_kb = bench::status_kb("VmRSS");
  const double c0 = bench::cpu_seconds();
  {
    leash::channel<int> ch(0);
    std::atomic<long> entered{0};
    leash::nursery n;
    const auto t0 = std::chrono::steady_clock::now();
    for (long i = 0; i < tasks; ++i) {
      n.spawn([&ch, &entered]() -> leash::coro<void> {
        entered.fetch_add(1, std::memory_order_relaxed);
        (void)co_await ch.async_recv();
      });
    }
    b.spawn_ms = ms_since(t0);
    while (entered.load() < tasks)
      std::this_thread::sleep_for(1ms);
    std::this_thread::sleep_for(100ms);  // the last ones reach their co_await (as Go does)
    const auto t1 = std::chrono::steady_clock::now();
    ch.close();
    n.wait();
    b.join_ms = ms_since(t1);
  }
  b.cpu_ms = (bench::cpu_seconds() - c0) * 1e3;
  b.after_burst_kb = bench::status_kb("VmRSS");
  return b;
}

}  // namespace

int main(int argc, char** argv) {
  const long tasks = bench::flag(argc, argv, "-g", 10'000);
  const long coro_tasks = bench::flag(argc, argv, "-m", 1'000'000);
  const long settle = bench::flag(argc, argv, "-settle", 3);
  const bool pinned = bench::flag(argc, argv, "-pinned", 0) != 0;
  const std::string tag = pinned ? "_pinned" : "";
  // The mode, if any, is the last argument (a flag's value never names a mode).
  std::string mode = argc > 1 ? argv[argc - 1] : "";
  if (mode != "leash" && mode != "std_thread" && mode != "coro_sleep" && mode != "coro_recv") {
    mode.clear();
  }
  if (mode.empty()) {
    // Separate processes, so one row's peak cannot hide another's.
    const std::string self = argv[0];
    const std::string args = " -g " + std::to_string(tasks) + " -m " + std::to_string(coro_tasks) +
                             " -settle " + std::to_string(settle) + " -pinned " +
                             (pinned ? "1" : "0");
    std::vector<std::string> modes = {"coro_sleep", "coro_recv"};
    if (!pinned) modes.insert(modes.begin(), {"leash", "std_thread"});
    int failed = 0;
    for (const std::string& m : modes)
      failed += std::system((self + args + " " + m).c_str()) != 0;
    return failed == 0 ? 0 : 1;
  }
  if (mode == "leash") {
    report("sleep_rss" + tag, "leash", thread_tasks(tasks), tasks, settle);
  } else if (mode == "std_thread") {
    report("sleep_rss" + tag, "std_thread", std_threads(tasks), tasks, settle);
  } else if (mode == "coro_sleep") {
    report("sleep_rss_1m" + tag, "leash_coro", coro_sleepers(coro_tasks), coro_tasks, settle);
  } else {
    report("recv_rss_1m" + tag, "leash_coro", coro_receivers(coro_tasks), coro_tasks, settle);
  }
  return 0;
}
