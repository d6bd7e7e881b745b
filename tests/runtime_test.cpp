// Tests for leash/runtime.hpp: the elastic thread cache of SPEC section 1.
#include <doctest/doctest.h>

#include <atomic>
#include <chrono>
#include <latch>
#include <leash.hpp>
#include <string>
#include <thread>

#include "support/child_process.hpp"

using namespace std::chrono_literals;

namespace {

// Waits (bounded) for a runtime condition that depends on the keep-alive
// clock: time itself is the subject here, so this polls.
template <class Pred>
bool eventually(Pred pred, std::chrono::seconds bound = 10s) {
  const auto deadline = std::chrono::steady_clock::now() + bound;
  while (!pred()) {
    if (std::chrono::steady_clock::now() > deadline) return false;
    std::this_thread::sleep_for(5ms);
  }
  return true;
}

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
  leash::run_nursery([&](leash::nursery& n) {
    for (int i = 0; i < blocked; ++i) {
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
}

TEST_CASE("idle threads beyond max_idle exit at once") {
  restore_defaults restore;
  leash::runtime::configure({.keep_alive = 60s, .max_idle = 2});
  std::latch all_running(16);
  leash::run_nursery([&](leash::nursery& n) {
    for (int i = 0; i < 16; ++i)
      n.spawn([&] { all_running.arrive_and_wait(); });
  });
  CHECK(eventually([] { return leash::runtime::stats().threads_alive <= 2; }, 5s));
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
