// Tests for leash/ticker.hpp: scoped periodic work, missed-tick policies,
// stop/reset, failures and joins.
#include <doctest/doctest.h>

#include <atomic>
#include <chrono>
#include <latch>
#include <leash.hpp>
#include <leash/ticker.hpp>
#include <memory>
#include <mutex>
#include <optional>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "support/captures.hpp"
#include "support/child_process.hpp"
#include "support/eventually.hpp"

using namespace std::chrono_literals;
using leash::missed_tick;
using clock_type = std::chrono::steady_clock;

using leash_test::eventually;  // tick counts and thread counts: time is the subject
using leash_test::handler_capture;

namespace {

// A fake clock: milliseconds since an arbitrary epoch.
constexpr clock_type::time_point at(long ms) {
  return clock_type::time_point{} + std::chrono::milliseconds(ms);
}
long ms_of(clock_type::time_point t) {
  return static_cast<long>(
      std::chrono::duration_cast<std::chrono::milliseconds>(t.time_since_epoch()).count());
}

// Drives the ticker's own schedule (detail::tick_schedule, which uses
// next_deadline) through ticker.md's stall scenario on the fake clock: period 300,
// start 0; the loop looks at the clock at 100 and 200 (nothing due), then does
// not run again until 650; the callback of the tick it runs then returns at
// 950; every later callback returns at once. Returns the scheduled times of
// the first `n` ticks, and where each callback started.
struct sim_tick {
  long scheduled;
  long started;
  std::uint64_t missed;
};
std::vector<sim_tick> simulate(missed_tick policy, std::size_t n) {
  leash::detail::tick_schedule s(policy, 300ms, at(0), leash::first_tick::after_period);
  std::vector<sim_tick> out;
  for (long now : {100L, 200L})
    REQUIRE(s.deadline() > at(now));  // nothing due
  long now = 650;
  bool overslept = true;  // it was waiting for the deadline 300 when it stalled
  while (out.size() < n) {
    if (at(now) < s.deadline()) {  // wait for the deadline
      now = ms_of(s.deadline());
      overslept = true;  // woke exactly on time: a zero oversleep
      continue;
    }
    const leash::tick_info t = s.fire(at(now), overslept);
    overslept = false;
    out.push_back({ms_of(t.scheduled), ms_of(t.started), t.missed});
    if (out.size() == 1) now = 950;  // the first callback is slow
    s.done(at(now));
  }
  return out;
}

std::vector<long> scheduled_of(const std::vector<sim_tick>& ticks) {
  std::vector<long> out;
  for (const auto& t : ticks)
    out.push_back(t.scheduled);
  return out;
}

}  // namespace

TEST_CASE("next_deadline is pure policy math on a fake clock") {
  // On time: every policy's next tick is one period on.
  static_assert(leash::next_deadline(missed_tick::skip, at(300), at(310), 300ms) == at(600));
  static_assert(leash::next_deadline(missed_tick::burst, at(300), at(310), 300ms) == at(600));
  static_assert(leash::next_deadline(missed_tick::delay, at(300), at(310), 300ms) == at(610));
  // A callback of the 600 tick that returned at 950.
  CHECK(leash::next_deadline(missed_tick::skip, at(600), at(950), 300ms) == at(1200));
  CHECK(leash::next_deadline(missed_tick::burst, at(600), at(950), 300ms) == at(900));
  CHECK(leash::next_deadline(missed_tick::delay, at(600), at(950), 300ms) == at(1250));
  // Returned exactly on a grid point: that tick is due now, not missed.
  CHECK(leash::next_deadline(missed_tick::skip, at(600), at(1200), 300ms) == at(1200));
  CHECK(leash::next_deadline(missed_tick::skip, at(600), at(1201), 300ms) == at(1500));
}

TEST_CASE("policies on a fake clock: period 300, stalled from 200 to 650, a slow first callback") {
  SUBCASE("skip fires 600, then 1200, 1500, 1800") {
    const auto ticks = simulate(missed_tick::skip, 4);
    CHECK(scheduled_of(ticks) == std::vector<long>{600, 1200, 1500, 1800});
    CHECK(ticks[0].started == 650);
    CHECK(ticks[0].missed == 1);  // 300, slept through
    CHECK(ticks[1].missed == 1);  // 900, dropped after the slow callback
    CHECK(ticks[2].missed == 0);
  }
  SUBCASE("burst fires 600 and 900 back to back, then 1200, 1500, 1800") {
    const auto ticks = simulate(missed_tick::burst, 5);
    CHECK(scheduled_of(ticks) == std::vector<long>{600, 900, 1200, 1500, 1800});
    CHECK(ticks[1].started == 950);  // at once when the slow callback returned
    CHECK(ticks[1].missed == 0);
    CHECK(ticks[2].started == 1200);
  }
  SUBCASE("delay fires 600, then one period after each callback returns") {
    const auto ticks = simulate(missed_tick::delay, 4);
    CHECK(scheduled_of(ticks) == std::vector<long>{600, 1250, 1550, 1850});
  }
}

TEST_CASE("first_tick::immediately fires at once, the default waits one period") {
  std::latch fired(1);
  const auto t0 = clock_type::now();
  clock_type::time_point first{};
  {
    leash::ticker t(1h,
                    [&](const leash::tick_info& info) {
                      if (first == clock_type::time_point{}) {
                        first = info.scheduled;
                        fired.count_down();
                      }
                    },
                    {.first = leash::first_tick::immediately});
    fired.wait();
  }
  CHECK(first - t0 < 1s);

  std::atomic<int> calls{0};
  {
    leash::ticker t(1h, [&] { ++calls; });
  }
  CHECK(calls == 0);
}

TEST_CASE("a ticker ticks on the grid and never runs two callbacks at once") {
  std::atomic<int> inside{0};
  std::atomic<int> overlap{0};
  std::atomic<int> calls{0};
  std::latch ten(10);
  std::vector<leash::tick_info> ticks;
  std::mutex mutex;
  {
    leash::ticker t(1ms,
                    [&](const leash::tick_info& info) {
                      if (inside.fetch_add(1) != 0) ++overlap;
                      {
                        std::lock_guard lock(mutex);
                        ticks.push_back(info);
                      }
                      std::this_thread::sleep_for(2ms);  // slower than the period: ticks are missed
                      inside.fetch_sub(1);
                      if (++calls <= 10) ten.count_down();
                    },
                    {.policy = missed_tick::burst});
    ten.wait();
  }
  CHECK(overlap == 0);
  std::lock_guard lock(mutex);
  for (std::size_t i = 1; i < ticks.size(); ++i) {
    CHECK(ticks[i].scheduled - ticks[i - 1].scheduled == 1ms);  // burst: every grid point
    CHECK(ticks[i].started >= ticks[i].scheduled);
  }
}

TEST_CASE("skip: a slow callback drops ticks, and the next one lands on the grid") {
  std::vector<leash::tick_info> ticks;
  std::latch three(3);
  {
    leash::ticker t(20ms, [&](const leash::tick_info& info) {
      if (ticks.size() >= 3) return;
      ticks.push_back(info);
      if (ticks.size() == 1) std::this_thread::sleep_for(75ms);  // misses at least 2 ticks
      three.count_down();
    });
    three.wait();
  }
  REQUIRE(ticks.size() == 3);
  CHECK(ticks[1].missed >= 2);
  CHECK((ticks[1].scheduled - ticks[0].scheduled) % 20ms == clock_type::duration::zero());
  CHECK(ticks[1].scheduled - ticks[0].scheduled >= 80ms);
}

TEST_CASE("delay: the next tick is one period after the callback returned") {
  std::vector<leash::tick_info> ticks;
  std::latch three(3);
  {
    leash::ticker t(10ms,
                    [&](const leash::tick_info& info) {
                      if (ticks.size() >= 3) return;
                      ticks.push_back(info);
                      std::this_thread::sleep_for(15ms);
                      three.count_down();
                    },
                    {.policy = missed_tick::delay});
    three.wait();
  }
  REQUIRE(ticks.size() == 3);
  CHECK(ticks[1].scheduled - ticks[0].started >= 25ms);
  CHECK(ticks[2].scheduled - ticks[1].started >= 25ms);
}

TEST_CASE("the callback never runs after stop() or the destructor returned (many times)") {
  for (int i = 0; i < 300; ++i) {
    auto touched = std::make_unique<std::atomic<int>>(0);  // destroyed right after the ticker
    std::atomic<int>* p = touched.get();
    {
      leash::ticker t(50us, [p] { p->fetch_add(1); }, {.first = leash::first_tick::immediately});
      if (i % 2 == 0) {
        while (p->load() == 0)
          std::this_thread::yield();
        t.stop();
        const int after_stop = p->load();
        std::this_thread::sleep_for(200us);
        REQUIRE(p->load() == after_stop);
      }
    }
    touched.reset();  // ASan: a late callback would touch freed memory
  }
}

TEST_CASE("stop() from inside the callback: no further callback starts") {
  std::atomic<int> calls{0};
  std::optional<leash::ticker> t;
  std::latch stopped(1);
  t.emplace(1ms, [&] {
    if (++calls == 3) {
      t->stop();  // allowed; does not wait for itself
      stopped.count_down();
    }
  });
  stopped.wait();
  t->stop();  // joins the loop
  CHECK(calls == 3);
  CHECK_FALSE(t->running());
  t.reset();
}

TEST_CASE("stop() cancels a callback blocked in a leash call, quietly") {
  std::latch blocked(1);
  leash::ticker t(1ms, [&] {
    blocked.count_down();
    leash::this_task::sleep_for(1h);
  });
  blocked.wait();
  t.stop();  // returns promptly, does not throw
  CHECK_FALSE(t.running());
}

TEST_CASE("reset moves the schedule: nothing fires on the old one after it returns") {
  std::atomic<int> calls{0};
  leash::ticker t(1h, [&] { ++calls; });
  t.reset(1ms);
  CHECK(eventually([&] { return calls >= 3; }));
  t.reset(1h);
  const int at_reset = calls;
  std::this_thread::sleep_for(50ms);  // the old 1ms schedule would have fired ~50 times
  CHECK(calls <= at_reset + 1);       // a callback already running at reset may still count
  CHECK(t.period() == 1h);
  CHECK_THROWS_AS(t.reset(0ms), leash::usage_error);
}

TEST_CASE("reset restarts a stopped ticker") {
  std::atomic<int> calls{0};
  leash::ticker t(1ms, [&] { ++calls; });
  t.stop();
  const int stopped_at = calls;
  CHECK_FALSE(t.running());
  t.reset(1ms);
  CHECK(t.running());
  CHECK(eventually([&] { return calls > stopped_at + 2; }));
}

TEST_CASE("a non-positive period is a usage error") {
  auto make = [](auto period) { leash::ticker t(period, [] {}); };
  CHECK_THROWS_AS(make(0ms), leash::usage_error);
  CHECK_THROWS_AS(make(-1s), leash::usage_error);
}

TEST_CASE("a ticker stops when the ambient scope is cancelled") {
  std::atomic<int> calls{0};
  leash::cancel_scope scope;
  leash::ticker t(1ms, [&] { ++calls; });
  CHECK(eventually([&] { return calls > 0; }));
  scope.cancel();
  CHECK(eventually([&] { return !t.running(); }));
  const int after = calls;
  t.stop();
  CHECK(calls == after);
}

TEST_CASE("a ticker in a nursery stops when the nursery is cancelled") {
  std::atomic<int> calls{0};
  leash::run_nursery([&](leash::nursery& n) {
    leash::ticker t(n, 1ms, [&] { ++calls; });
    CHECK(eventually([&] { return calls > 0; }));
    n.cancel();
    CHECK(eventually([&] { return !t.running(); }));
  });
  SUBCASE("born in a cancelled nursery: never runs") {
    std::atomic<int> late{0};
    leash::run_nursery([&](leash::nursery& n) {
      n.cancel();
      leash::ticker t(n, 1ms, [&] { ++late; });
      CHECK_FALSE(t.running());
    });
    CHECK(late == 0);
  }
}

TEST_CASE("a throwing callback stops the ticker and stop() rethrows it, once") {
  std::atomic<int> calls{0};
  leash::ticker t(1ms, [&] {
    ++calls;
    throw std::runtime_error("flush failed");
  });
  CHECK(eventually([&] { return !t.running(); }));
  CHECK_THROWS_WITH_AS(t.stop(), "flush failed", std::runtime_error);
  t.stop();  // observed: not again
  CHECK(calls == 1);
}

TEST_CASE("a throwing callback in a nursery is the nursery's failure") {
  CHECK_THROWS_WITH_AS(leash::run_nursery([](leash::nursery& n) {
                         leash::ticker t(n, 1ms, [] { throw std::runtime_error("flush failed"); });
                         leash::this_task::sleep_for(1h);  // cancelled by the failure
                       }),
                       "flush failed", std::runtime_error);
}

TEST_CASE("a callback failure nobody observed reaches the unobserved-failure handler") {
  handler_capture capture;
  {
    leash::ticker t(1ms, [] { throw std::runtime_error("lost?"); }, {.name = "flusher"});
    CHECK(eventually([&] { return !t.running(); }));
  }
  REQUIRE(capture.seen.size() == 1);
  CHECK(capture.seen[0].task_name == "ticker \"flusher\"");
  CHECK_THROWS_WITH(std::rethrow_exception(capture.seen[0].error), "lost?");
}

TEST_CASE("leak_check lists a live ticker with its name and line") {
  leash::leak_check guard;
  {
    const unsigned line = __LINE__ + 1;
    leash::ticker t(1h, [] {}, {.name = "reaper"});
    const std::string report = guard.verify(10ms);
    CHECK(report.find("1 ticker still running") != std::string::npos);
    CHECK(report.find("ticker \"reaper\" started at") != std::string::npos);
    CHECK(report.find("ticker_test.cpp:" + std::to_string(line)) != std::string::npos);
  }
  CHECK(guard.verify(10ms) == "");
}

namespace {
// The ReverseProxy flush-loop bug: a writer that knows when it is finished.
struct response_writer {
  std::atomic<bool> finished{false};
  std::atomic<int> flushes{0};
  std::atomic<int> flushes_after_finish{0};
  void flush() {
    if (finished) ++flushes_after_finish;  // Go: panic, flush of a finished ResponseWriter
    ++flushes;
  }
};
}  // namespace

TEST_CASE("ReverseProxy flush loop: no flush after the response finished, threads return") {
  leash::runtime::configure({.keep_alive = 20ms});
  int late = 0;
  int flushes = 0;
  for (int request = 0; request < 200; ++request) {
    auto w = std::make_unique<response_writer>();
    {
      leash::ticker flusher(100us, [&w] { w->flush(); }, {.first = leash::first_tick::immediately});
      while (w->flushes == 0)
        std::this_thread::yield();  // "copying the body" while it flushes
    }                               // stopped and joined: before the writer finishes
    w->finished = true;
    late += w->flushes_after_finish;
    flushes += w->flushes;
    w.reset();  // ASan: a flush after this would be a use after free
  }
  CHECK(late == 0);
  CHECK(flushes >= 200);
  CHECK(eventually([] { return leash::runtime::stats().threads_alive == 0; }));
  leash::runtime::configure({});
}

TEST_CASE("10 000 tickers created and destroyed leave no threads and no timers") {
  leash::runtime::configure({.keep_alive = 20ms});
  std::atomic<int> calls{0};
  for (int i = 0; i < 10'000; ++i) {
    leash::ticker t(
        1ms, [&] { ++calls; },
        {.first = i % 2 == 0 ? leash::first_tick::immediately : leash::first_tick::after_period});
  }
  CHECK(leash::runtime::stats().pending_timers == 0);
  CHECK(eventually([] { return leash::runtime::stats().threads_alive == 0; }));
  leash::runtime::configure({});
}

TEST_CASE("destroying a ticker from its own callback is a checked error (child process)") {
  const auto r = leash_test::run_child(std::string(LEASH_DEATH_CASES) + " ticker_self_destroy");
  CHECK(r.signalled);
  CHECK(r.output.find("leash::ticker: \"self\" destroyed from its own callback") !=
        std::string::npos);
}

TEST_CASE("reset of a failed ticker rethrows the failure once, then starts it again") {
  std::atomic<int> calls{0};
  leash::ticker t(1ms, [&] {
    if (++calls == 1) throw std::runtime_error("first tick failed");
  });
  CHECK(eventually([&] { return !t.running(); }));
  CHECK_THROWS_WITH_AS(t.reset(1ms), "first tick failed", std::runtime_error);
  CHECK_FALSE(t.running());
  t.reset(1ms);
  CHECK(t.running());
  CHECK(eventually([&] { return calls >= 3; }));
}

TEST_CASE("a stopped ticker may be destroyed from another ticker's callback on a reused thread") {
  // The runtime hands the thread that ran a's loop to b (the most recently
  // idle thread is reused first): a must not mistake it for its own loop.
  for (int i = 0; i < 20; ++i) {
    std::optional<leash::ticker> a;
    a.emplace(1ms, [] {});
    a->stop();
    std::latch destroyed(1);
    leash::ticker b(1ms, [&] {
      if (a) {
        a.reset();
        destroyed.count_down();
      }
    });
    destroyed.wait();
  }
}
