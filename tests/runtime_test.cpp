// Tests for leash/runtime.hpp: the elastic thread cache (tasks start at
// once, idle threads leave after keep_alive, the thread cap).
#include <doctest/doctest.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <fstream>
#include <latch>
#include <leash.hpp>
#include <memory>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "support/child_process.hpp"
#include "support/eventually.hpp"

using namespace std::chrono_literals;
using leash_test::eventually;  // thread counts: no event announces a thread exiting

namespace {

struct restore_defaults {
  ~restore_defaults() { leash::runtime::configure({}); }
};

}  // namespace

TEST_CASE("after a burst of 2000 concurrent tasks and the keep-alive, the threads are gone") {
  restore_defaults restore;
  leash::runtime::configure({.keep_alive = 100ms});
  constexpr int burst = 2000;
  std::latch all_running(burst);
  leash::run_nursery([&](leash::nursery& n) {
    for (int i = 0; i < burst; ++i)
      n.spawn([&] { all_running.arrive_and_wait(); });
  });
  const auto after_burst = leash::runtime::stats();
  CHECK(after_burst.peak_threads >= burst);
  CHECK(after_burst.tasks_started >= burst);
  CHECK(eventually([] { return leash::runtime::stats().threads_alive == 0; }));
  CHECK(leash::runtime::stats().threads_idle == 0);
}

TEST_CASE("a task spawned while all others block still starts") {
  constexpr int blocked = 64;
  std::latch gate(1);
  std::atomic<int> waiting{0};
  std::atomic<int> trivial{0};
  leash::run_nursery([&](leash::nursery& n) {
    for (int i = 0; i < blocked; ++i) {
      // Trivial tasks in between keep threads returning from finished tasks,
      // so the blocking tasks (and the last one) go through every kind of
      // hand-off, the early one to a returning thread included.
      for (int k = 0; k < 20; ++k)
        n.spawn([&] { ++trivial; });
      n.spawn([&] {
        ++waiting;
        gate.wait();
      });
    }
    // Only this last task can open the gate: a queue behind the blocked ones
    // would deadlock here.
    n.spawn([&] { gate.count_down(); });
  });
  CHECK(waiting == blocked);
  CHECK(trivial == blocked * 20);
}

TEST_CASE("a spawn is never handed to a thread still releasing a finished task's result") {
  // The result's destructor waits for a task spawned after it. Had the
  // thread that ran the first task counted as returning before releasing the
  // result, the second task could be handed to it and wait forever.
  struct waits_when_destroyed {
    explicit waits_when_destroyed(std::shared_ptr<std::latch> g) : gate(std::move(g)) {}
    waits_when_destroyed(waits_when_destroyed&&) noexcept = default;  // leaves gate empty
    ~waits_when_destroyed() {
      if (gate != nullptr) gate->wait();
    }
    std::shared_ptr<std::latch> gate;
  };
  for (int i = 0; i < 200; ++i) {
    auto gate = std::make_shared<std::latch>(1);
    std::latch handle_dropped(1);
    leash::run_nursery([&](leash::nursery& n) {
      auto first = n.spawn([&handle_dropped, gate] {
        handle_dropped.wait();  // so that this task's thread releases the result
        return waits_when_destroyed(gate);
      });
      first = {};
      handle_dropped.count_down();
      n.spawn([gate] { gate->count_down(); });
    });
  }
}

TEST_CASE("idle threads beyond max_idle exit after a short linger") {
  restore_defaults restore;
  leash::runtime::configure({.keep_alive = 60s, .max_idle = 2});
  std::latch all_running(16);
  leash::run_nursery([&](leash::nursery& n) {
    for (int i = 0; i < 16; ++i)
      n.spawn([&] { all_running.arrive_and_wait(); });
  });
  CHECK(eventually([] { return leash::runtime::stats().threads_alive <= 2; }));
  CHECK(leash::runtime::stats().threads_idle <= 2);
}

TEST_CASE("idle threads are reused instead of created") {
  leash::run_nursery([](leash::nursery& n) { n.spawn([] {}); });
  const auto before = leash::runtime::stats();
  for (int i = 0; i < 200; ++i) {
    leash::run_nursery([](leash::nursery& n) { n.spawn([] {}); });
  }
  const auto after = leash::runtime::stats();
  CHECK(after.tasks_started - before.tasks_started == 200);
  // Sequential one-task nurseries need a couple of threads (one may still be
  // on its way back to the idle list when the next spawn comes); generous
  // under a loaded machine, far below one thread per task.
  CHECK(after.peak_threads <= before.peak_threads + 20);
}

TEST_CASE("bursts of trivial spawns from several threads at once run every task exactly once") {
  // A stress test for the hand-offs (to returning, spinning, parked and new
  // threads), meant for TSan and ASan: bounded, and its outcome is counted.
  constexpr int rounds = 4;
  constexpr int spawners = 3;
  constexpr int per_spawner = 6000;
  for (int round = 0; round < rounds; ++round) {
    std::atomic<long> ran{0};
    std::atomic<long> values{0};
    leash::run_nursery([&](leash::nursery& shared) {
      std::vector<std::thread> threads;
      for (int t = 0; t < spawners; ++t) {
        threads.emplace_back([&, t] {
          leash::run_nursery([&](leash::nursery& own) {
            for (int i = 0; i < per_spawner; ++i) {
              // Three shapes: no value, a value without a destructor, and one
              // with a destructor (that thread returns only after the record
              // is released). Some go to the nursery shared by all spawners.
              leash::nursery& n = i % 4 == 0 ? shared : own;
              switch (i % 3) {
                case 0:
                  n.spawn([&] { ran.fetch_add(1, std::memory_order_relaxed); });
                  break;
                case 1:
                  n.spawn([&] {
                    ran.fetch_add(1, std::memory_order_relaxed);
                    return 1;
                  });
                  break;
                default: {
                  auto handle = n.spawn([&, t] {
                    ran.fetch_add(1, std::memory_order_relaxed);
                    return std::string(40, static_cast<char>('a' + t));
                  });
                  if (i % 300 == 2) values += static_cast<long>(handle.get().size());
                }
              }
            }
          });
        });
      }
      for (auto& th : threads)
        th.join();
    });
    CHECK(ran == spawners * per_spawner);
    CHECK(values == spawners * 40 * ((per_spawner + 297) / 300));
  }
}

TEST_CASE("stats count running tasks") {
  std::latch running(3);
  std::latch release(1);
  leash::nursery n;
  for (int i = 0; i < 3; ++i) {
    n.spawn([&] {
      running.count_down();
      release.wait();
    });
  }
  running.wait();
  const auto s = leash::runtime::stats();
  CHECK(s.tasks_running >= 3);
  CHECK(s.threads_alive >= 3);
  release.count_down();
  n.wait();
}

TEST_CASE("the runtime shuts down cleanly at exit, even when used in a static destructor") {
  const auto t0 = std::chrono::steady_clock::now();
  const auto r = leash_test::run_child(std::string(LEASH_DEATH_CASES) + " static_exit");
  INFO(r.output);
  CHECK_FALSE(r.signalled);
  CHECK(r.code == 0);
  CHECK(r.output.find("main returns with") != std::string::npos);
  CHECK(r.output.find("static destructor ran a nursery: 7") != std::string::npos);
  // Idle threads were woken, not waited out (their keep-alive is a minute).
  CHECK(std::chrono::steady_clock::now() - t0 < 30s);
}

namespace {

// Spawns past the usable threads: idle threads left by earlier cases are
// reused, so a fixed count could all start and never meet the cap.
constexpr int beyond_cap = 50;

// Spawns blocking tasks into `n` until the runtime refuses one; returns how
// many started. Each task waits for the nursery's cancel.
int spawn_until_refused(leash::nursery& n, int attempts, std::string& refusal) {
  for (int started = 0; started < attempts; ++started) {
    try {
      n.spawn("blocker", [] { leash::this_task::sleep_for(1h); });
    } catch (const leash::resource_exhausted& e) {
      refusal = e.what();
      return started;
    }
  }
  return attempts;
}

}  // namespace

TEST_CASE("at max_threads, spawn throws resource_exhausted and the tasks already running go on") {
  restore_defaults restore;
  constexpr std::size_t cap = 64;
  leash::runtime::configure({.max_threads = cap});
  CHECK(leash::runtime::stats().max_threads == cap);
  // Threads left idle by earlier cases in this process are reused, not capped.
  const std::size_t usable = std::max(cap, leash::runtime::stats().threads_alive);
  std::string refusal;
  int started = 0;
  {
    leash::nursery n;
    // More attempts than can start, however many idle threads are reused.
    started = spawn_until_refused(n, static_cast<int>(usable) + beyond_cap, refusal);
    CHECK(leash::runtime::stats().threads_alive <= usable);
    CHECK(n.running() == static_cast<std::size_t>(started));
    n.cancel();
    n.wait();
  }
  CHECK(started >= 1);
  CHECK(started <= static_cast<int>(usable));
  CHECK(refusal.find("could not start a thread for task \"blocker\"") != std::string::npos);
  CHECK(refusal.find("threads alive") != std::string::npos);
  CHECK(refusal.find("max_threads = 64") != std::string::npos);
  CHECK(leash::runtime::stats().spawns_refused >= 1);
}

TEST_CASE("at max_threads, try_spawn returns an empty task instead of throwing") {
  restore_defaults restore;
  constexpr std::size_t cap = 64;
  leash::runtime::configure({.max_threads = cap});
  const std::size_t usable = std::max(cap, leash::runtime::stats().threads_alive);
  leash::nursery n;
  int empty = 0;
  for (int i = 0; i < static_cast<int>(usable) + beyond_cap; ++i) {
    auto t = n.try_spawn([] { leash::this_task::sleep_for(1h); });
    empty += !t.has_value();
  }
  CHECK(empty >= beyond_cap);
  n.cancel();
  n.wait();
}

TEST_CASE("a thread freed by a finished task is reused below the cap") {
  restore_defaults restore;
  leash::runtime::configure({.max_threads = 4});
  // Many more tasks than the cap, one after another: each finds a thread.
  int ran = 0;
  leash::run_nursery([&](leash::nursery& n) {
    for (int i = 0; i < 100; ++i)
      n.spawn([&] { ++ran; }).get();
  });
  CHECK(ran == 100);
}

TEST_CASE("the derived max_threads default is below every OS limit it reads") {
  const std::size_t derived = leash::runtime::stats().max_threads;
  CHECK(derived > 0);
  std::ifstream pid_max("/proc/sys/kernel/pid_max");
  std::size_t value = 0;
  if (pid_max >> value) CHECK(derived < value);
}
