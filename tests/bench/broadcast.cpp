// bench_broadcast: leash::broadcast to 8 receivers beside Go's fan-out
// goroutine forwarding to 8 buffered channels (tests/bench/go/broadcast.go).
//
//   bcast_8   one sender, 8 receivers, a ring of 1024: ns per value sent,
//             from the first send until every receiver saw the close
//
// Row "leash" runs each receiver on its own thread, "leash_coro" as coroutine
// tasks of one nursery (co_await async_recv). A broadcast's sender never
// waits, so a receiver that falls more than 1024 values behind skips values
// (lagged); missed_pct says what share of the values the receivers skipped.
// Go's fan-out waits for the slowest receiver instead and skips nothing.
//
// Prints wall ns and CPU (user+sys of the process) ns per value, median of
// -runs runs. Flags: -n values (400000), -runs (5).
#include <atomic>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <leash.hpp>
#include <string>
#include <thread>
#include <vector>

#include "bench_util.hpp"

namespace {

constexpr int receivers = 8;            // the "8" of the scenario's name
constexpr std::size_t capacity = 1024;  // the ring, and Go's channel buffers

struct result {
  double wall_ns, cpu_ns, missed_pct;
};

// What one receiver counts until the close.
struct tally {
  std::uint64_t received = 0, missed = 0;
  void add(const leash::broadcast_result<long>& r) {
    if (r.ok()) ++received;
    if (r.lagged()) missed += r.missed;
  }
};

result timed(bool coroutines, long n) {
  leash::broadcast<long> b(capacity);
  std::vector<leash::broadcast<long>::receiver> rxs;
  for (int i = 0; i < receivers; ++i)
    rxs.push_back(b.subscribe());
  std::vector<tally> tallies(receivers);
  std::atomic<int> ready{0};
  const double c0 = bench::cpu_seconds();
  const auto t0 = std::chrono::steady_clock::now();
  leash::run_nursery([&](leash::nursery& nursery) {
    for (int i = 0; i < receivers; ++i) {
      if (coroutines) {
        nursery.spawn([&, i]() -> leash::coro<void> {
          ready.fetch_add(1);
          for (auto r = co_await rxs[i].async_recv(); !r.closed(); r = co_await rxs[i].async_recv())
            tallies[i].add(r);
        });
      } else {
        nursery.spawn([&, i] {
          ready.fetch_add(1);
          for (auto r = rxs[i].recv(); !r.closed(); r = rxs[i].recv())
            tallies[i].add(r);
        });
      }
    }
    while (ready.load() < receivers)
      std::this_thread::yield();
    for (long v = 0; v < n; ++v)
      b.send(v);
    b.close();
  });
  const double wall = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  std::uint64_t missed = 0;
  for (const tally& t : tallies)
    missed += t.missed;
  const double values = static_cast<double>(n);
  return {wall * 1e9 / values, (bench::cpu_seconds() - c0) * 1e9 / values,
          100.0 * static_cast<double>(missed) / (values * receivers)};
}

void report(const char* impl, bool coroutines, long n, long runs) {
  std::vector<double> wall, cpu, missed;
  for (long r = 0; r < runs; ++r) {
    const result x = timed(coroutines, n);
    wall.push_back(x.wall_ns);
    cpu.push_back(x.cpu_ns);
    missed.push_back(x.missed_pct);
  }
  std::printf("BENCH bcast_8 %s ns_per_value=%.1f cpu_ns_per_value=%.1f missed_pct=%.1f runs=%ld\n",
              impl, bench::median(wall), bench::median(cpu), bench::median(missed), runs);
  std::fflush(stdout);
}

}  // namespace

int main(int argc, char** argv) {
  const long n = bench::flag(argc, argv, "-n", 400'000);
  const long runs = bench::flag(argc, argv, "-runs", 5);
  report("leash", false, n, runs);
  report("leash_coro", true, n, runs);
  return 0;
}
