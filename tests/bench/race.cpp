// bench_race: leash::race of two callables beside Go's hand-written race of
// two goroutines (tests/bench/go/race.go: a buffered channel, the first
// receive wins, cancel the context, wait for both).
//
//   race2_both_ready     both callables return at once            ns per race
//   race2_loser_blocked  one returns, the other waits until it is
//                        cancelled (leash: a channel recv; Go: <-ctx.Done())
//
// Every race joins its losers before it returns, as leash::race does. Row
// "leash" runs the two callables as thread tasks (leash::race from a plain
// thread); "leash_coro" runs them as coroutine tasks (co_await
// leash::async_race inside one coroutine task, each race a fresh inner
// nursery). Prints wall ns and CPU (user+sys of the process) ns per race,
// median of -runs runs. Flags: -n races (20000), -runs (5).
#include <leash.hpp>
#include <string>
#include <vector>

#include "bench_util.hpp"

namespace {

using bench::report;
using bench::result;

constexpr long warm_races = 200;  // before the clock starts: threads and frames cached

// Times body(n) after body(warm_races); per race.
template <class Body>
result timed(long n, Body body) {
  body(warm_races);
  const double c0 = bench::cpu_seconds();
  const auto t0 = std::chrono::steady_clock::now();
  body(n);
  const double wall = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  return {wall * 1e9 / static_cast<double>(n), (bench::cpu_seconds() - c0) * 1e9 / n};
}

long thread_races(long k, bool loser_blocked) {
  leash::channel<int> never(0);
  long sum = 0;
  for (long i = 0; i < k; ++i) {
    sum += leash::race([] { return 1; },
                       [&]() -> int { return loser_blocked ? never.recv().value_or(0) : 2; });
  }
  return sum;
}

leash::coro<int> ready_value(int v) {
  co_return v;
}

leash::coro<int> blocked_value(leash::channel<int>& never) {
  co_return (co_await never.async_recv()).value_or(0);
}

leash::coro<long> coro_races(long k, bool loser_blocked) {
  leash::channel<int> never(0);
  long sum = 0;
  for (long i = 0; i < k; ++i) {
    sum += co_await leash::async_race(
        [] { return ready_value(1); },
        [&] { return loser_blocked ? blocked_value(never) : ready_value(2); });
  }
  co_return sum;
}

// Runs coro_races(k) as one coroutine task and waits for it.
long coro_task_races(long k, bool loser_blocked) {
  leash::nursery n;
  auto t = n.spawn([=] { return coro_races(k, loser_blocked); });
  n.wait();
  return t.get();
}

}  // namespace

int main(int argc, char** argv) {
  const long n = bench::flag(argc, argv, "-n", 20'000);
  const long runs = bench::flag(argc, argv, "-runs", 5);
  for (const bool blocked : {false, true}) {
    const std::string scenario = blocked ? "race2_loser_blocked" : "race2_both_ready";
    report(scenario, "leash", runs,
           [&] { return timed(n, [&](long k) { thread_races(k, blocked); }); });
    report(scenario, "leash_coro", runs,
           [&] { return timed(n, [&](long k) { coro_task_races(k, blocked); }); });
  }
  return 0;
}
