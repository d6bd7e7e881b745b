// bench_ticker: a 1 ms ticker for 2 s; how late each tick's callback starts.
//
//   leash        leash::ticker(1ms), skip policy: lateness = started - scheduled
//                (Go: time.Ticker, tests/bench/go/ticker.go)
//   sleep_until  a plain std::this_thread::sleep_until loop on the same grid: the floor
//
// Prints p50/p99/max lateness in µs and the ticks seen, medians over -runs runs.
// Flags: -ms run length (2000), -period_us (1000), -runs (3).
#include <algorithm>
#include <chrono>
#include <leash/ticker.hpp>
#include <thread>
#include <vector>

#include "bench_util.hpp"

namespace {

struct summary {
  double p50 = 0, p99 = 0, max = 0, ticks = 0;
};

summary summarize(std::vector<double> late_us) {
  summary s;
  if (late_us.empty()) return s;
  std::sort(late_us.begin(), late_us.end());
  auto pct = [&](double p) {
    return late_us[std::min(late_us.size() - 1, static_cast<std::size_t>(p * late_us.size()))];
  };
  s.p50 = pct(0.50);
  s.p99 = pct(0.99);
  s.max = late_us.back();
  s.ticks = static_cast<double>(late_us.size());
  return s;
}

void print(const char* impl, const std::vector<summary>& runs, long period_us, long ms) {
  std::vector<double> p50, p99, max, ticks;
  for (const auto& r : runs) {
    p50.push_back(r.p50);
    p99.push_back(r.p99);
    max.push_back(r.max);
    ticks.push_back(r.ticks);
  }
  std::printf(
      "BENCH ticker %s p50_us=%.1f p99_us=%.1f max_us=%.1f ticks=%.0f expected_ticks=%ld "
      "runs=%zu\n",
      impl, bench::median(p50), bench::median(p99), bench::median(max), bench::median(ticks),
      ms * 1000 / period_us, runs.size());
}

}  // namespace

int main(int argc, char** argv) {
  const long ms = bench::flag(argc, argv, "-ms", 2000);
  const long period_us = bench::flag(argc, argv, "-period_us", 1000);
  const long runs = bench::flag(argc, argv, "-runs", 3);
  const std::chrono::microseconds period(period_us);
  using clock = std::chrono::steady_clock;

  std::vector<summary> leash_runs;
  for (long r = 0; r < runs; ++r) {
    std::vector<double> late;
    late.reserve(static_cast<std::size_t>(ms * 1000 / period_us + 16));
    {
      leash::ticker t(period, [&](const leash::tick_info& tick) {
        late.push_back(
            std::chrono::duration<double, std::micro>(tick.started - tick.scheduled).count());
      });
      std::this_thread::sleep_for(std::chrono::milliseconds(ms));
      t.stop();  // joins: `late` is complete and ours again
    }
    leash_runs.push_back(summarize(std::move(late)));
  }
  print("leash", leash_runs, period_us, ms);

  std::vector<summary> floor_runs;
  for (long r = 0; r < runs; ++r) {
    std::vector<double> late;
    const auto start = clock::now();
    for (auto next = start + period; next < start + std::chrono::milliseconds(ms); next += period) {
      std::this_thread::sleep_until(next);
      late.push_back(std::chrono::duration<double, std::micro>(clock::now() - next).count());
    }
    floor_runs.push_back(summarize(std::move(late)));
  }
  print("sleep_until", floor_runs, period_us, ms);
}
