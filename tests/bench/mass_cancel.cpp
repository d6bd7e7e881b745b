// bench_mass_cancel: N tasks blocked in a leash call, then one cancel of their
// nursery; the time from cancel() until wait() returned (every task joined).
//
//   sleep  each task in this_task::sleep_for(1h)     (Go: select on ctx.Done and a 1 h timer)
//   recv   each task in recv() on its own channel    (Go: select on ctx.Done and a channel)
//
// Flags: -n tasks (10000), -runs (3). The tasks are counted in before the
// cancel: each bumps a counter right before it blocks, and the cancel waits
// until every task is blocked (leash::live_tasks() reports each one's call).
#include <atomic>
#include <leash.hpp>
#include <memory>
#include <thread>
#include <vector>

#include "bench_util.hpp"

namespace {

// Waits until `n` tasks of the nursery are blocked in a leash call.
void await_blocked(const std::atomic<long>& entered, long n) {
  while (entered.load() < n)
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  for (;;) {
    long blocked = 0;
    for (const leash::live_task& t : leash::live_tasks())
      blocked += t.blocked_in != nullptr;
    if (blocked >= n) return;
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
}

// Seconds from cancel() to the end of wait(), for n tasks blocked by `block`.
template <class Block>
double cancel_seconds(long n, Block block) {
  std::atomic<long> entered{0};
  leash::nursery nursery;
  for (long i = 0; i < n; ++i) {
    nursery.spawn([&entered, &block, i] {
      entered.fetch_add(1);
      block(i);
    });
  }
  await_blocked(entered, n);
  return bench::seconds([&] {
    nursery.cancel();
    nursery.wait();
  });
}

template <class Block>
void report(const char* scenario, long n, long runs, Block block) {
  std::vector<double> took;
  double cpu = 0;
  long peak_threads = 0;
  for (long r = 0; r < runs; ++r) {
    const double c0 = bench::cpu_seconds();
    took.push_back(cancel_seconds(n, block));
    cpu += bench::cpu_seconds() - c0;
    peak_threads = static_cast<long>(leash::runtime::stats().peak_threads);
  }
  std::printf("BENCH %s leash ms=%.1f cpu_ms_per_run=%.1f tasks=%ld runs=%ld peak_threads=%ld\n",
              scenario, bench::median(took) * 1e3, cpu * 1e3 / runs, n, runs, peak_threads);
}

}  // namespace

int main(int argc, char** argv) {
  const long n = bench::flag(argc, argv, "-n", 10'000);
  const long runs = bench::flag(argc, argv, "-runs", 3);
  char sleep_name[64], recv_name[64];
  std::snprintf(sleep_name, sizeof sleep_name, "mass_cancel_sleep_%ldk", n / 1000);
  std::snprintf(recv_name, sizeof recv_name, "mass_cancel_recv_%ldk", n / 1000);
  report(sleep_name, n, runs, [](long) { leash::this_task::sleep_for(std::chrono::hours(1)); });
  std::vector<std::unique_ptr<leash::channel<int>>> channels;
  for (long i = 0; i < n; ++i)
    channels.push_back(std::make_unique<leash::channel<int>>(0));
  report(recv_name, n, runs, [&](long i) { (void)channels[i]->recv(); });
  return 0;
}
