// Tests for leash/leak_check.hpp: goleak for leash (tasks, tickers, handles,
// timers and channel waiters left behind are reported, by id baseline).
#include <doctest/doctest.h>

#include <chrono>
#include <latch>
#include <leash.hpp>
#include <leash/ticker.hpp>
#include <memory>
#include <string>
#include <thread>

using namespace std::chrono_literals;

namespace {

// Runs a nursery on a plain thread whose task blocks until released: a task
// "left running" by the code under test.
struct leaked_task {
  std::latch started{1};
  std::latch release{1};
  unsigned line = 0;
  std::thread owner;

  explicit leaked_task(const char* name) {
    owner = std::thread([this, name] {
      leash::nursery n({.name = "leaky-nursery"});
      line = __LINE__ + 1;
      n.spawn(name, [this] {
        started.count_down();
        leash::this_task::sleep_for(1h);  // until its nursery is cancelled
      });
      started.wait();
      release.wait();
      n.cancel();
    });
    started.wait();
  }
  ~leaked_task() {
    release.count_down();
    owner.join();
  }
};

}  // namespace

TEST_CASE("leak_check reports a task left running, with its name and spawn line") {
  leash::leak_check guard;
  std::string report;
  {
    leaked_task leak("fetch");
    report = guard.verify(50ms);
    CHECK(report.find("1 task still running") != std::string::npos);
    CHECK(report.find("1x task \"fetch\" spawned at") != std::string::npos);
    CHECK(report.find("leak_check_test.cpp:" + std::to_string(leak.line)) != std::string::npos);
  }
  CHECK(guard.verify() == "");
}

// Polls verify() without grace until it reports something (the blocked call
// was reached) or 30 s passed.
std::string first_report(const leash::leak_check& guard) {
  const auto give_up = std::chrono::steady_clock::now() + 30s;
  std::string report;
  while ((report = guard.verify(0ms)).empty() && std::chrono::steady_clock::now() < give_up)
    std::this_thread::yield();
  return report;
}

TEST_CASE("leak_check reports a plain thread left blocked on a channel, with the element type") {
  leash::leak_check guard;
  leash::channel<int> ch;
  std::thread stuck([&] { CHECK_FALSE(ch.recv().has_value()); });
  const std::string report = first_report(guard);
  CHECK(report.find("1 thread still blocked") != std::string::npos);
  CHECK(report.find("1x thread (not a leash task) blocked in channel<int>::recv for") !=
        std::string::npos);
  ch.close();
  stuck.join();
  CHECK(guard.verify() == "");
}

TEST_CASE("a task blocked on a channel is reported once, as a task, with the element type") {
  leash::leak_check guard;
  leash::channel<unsigned> ch;  // g++ and clang spell it alike (not so "long")
  std::string report;
  leash::run_nursery([&](leash::nursery& n) {
    n.spawn("consumer", [&] { CHECK_FALSE(ch.recv().has_value()); });
    report = first_report(guard);
    while (report.find("blocked in") == std::string::npos)  // spawned, not yet blocked
      report = first_report(guard);
    ch.close();
  });
  CHECK(report.find("1 task still running") != std::string::npos);
  INFO(report);
  CHECK(report.find("blocked in channel<unsigned int>::recv") != std::string::npos);
  CHECK(report.find("thread") == std::string::npos);  // not also as a blocked thread
  CHECK(guard.verify() == "");
}

TEST_CASE("leak_check is silent for clean code") {
  leash::leak_check guard;
  leash::run_nursery([](leash::nursery& n) {
    // The sleep orders nothing: it is the workload, a call that registers a
    // timer and removes it, which clean code must leave no trace of.
    for (int i = 0; i < 10; ++i)
      n.spawn([] { leash::this_task::sleep_for(1ms); });
  });
  CHECK(guard.verify() == "");
}

TEST_CASE("leak_check waits for tasks that are about to end") {
  leash::leak_check guard;
  std::latch go(1);
  std::thread t(
      [&] { leash::run_nursery([&](leash::nursery& n) { n.spawn([&] { go.wait(); }); }); });
  go.count_down();  // the task ends soon after verify() starts waiting
  CHECK(guard.verify(10s) == "");
  t.join();
}

TEST_CASE("the baseline is by id: a new leak cannot hide behind an old task ending") {
  auto old_task = std::make_unique<leaked_task>("old");
  leash::leak_check guard;     // "old" is in the baseline
  old_task.reset();            // ...and ends
  leaked_task fresh("fresh");  // one new task: the count is unchanged
  const std::string report = guard.verify(50ms);
  CHECK(report.find("task \"fresh\"") != std::string::npos);
  CHECK(report.find("task \"old\"") == std::string::npos);
}

TEST_CASE("leak_check groups by site and honours ignore options") {
  leaked_task a("twin");
  leaked_task b("twin");
  SUBCASE("grouped") {
    leash::leak_check guard;
    CHECK(guard.verify(10ms) == "");  // both are baseline
  }
  SUBCASE("ignore by name and by site") {
    leash::leak_check by_name({.ignore_names = {"twin"}});
    leash::leak_check by_site({.ignore_sites = {"leak_check_test.cpp"}});
    leaked_task c("twin");
    CHECK(by_name.verify(10ms) == "");
    CHECK(by_site.verify(10ms) == "");
    leash::leak_check strict;
    CHECK(strict.verify(10ms) == "");
  }
  SUBCASE("same site twice reads 2x") {
    leash::leak_check guard;
    leaked_task c("twin");
    leaked_task d("twin");
    CHECK(guard.verify(10ms).find("2x task \"twin\"") != std::string::npos);
  }
}

TEST_CASE("live_tasks is empty when nothing runs") {
  CHECK(leash::live_tasks().empty());
  CHECK(leash::to_string(leash::live_tasks()).empty());
}

TEST_CASE("leak_check reports a pending timer: a deadline scope still alive") {
  leash::leak_check guard;
  {
    leash::cancel_scope far(1h);
    const std::string report = guard.verify(10ms);
    CHECK(report.find("1 timer still pending") != std::string::npos);
    CHECK(report.find("pending timer due in") != std::string::npos);
    leash::leak_check without_timers({.report_timers = false});
    leash::cancel_scope another(1h);
    CHECK(without_timers.verify(10ms) == "");
  }
  CHECK(guard.verify(10ms) == "");  // destroying the scopes removed their entries
}

TEST_CASE("tickers are baselined by id too: a new one cannot hide behind an old one ending") {
  auto old = std::make_unique<leash::ticker>(
      1h, [] {}, leash::ticker_options{.name = "old"});
  leash::leak_check guard;  // "old" is in the baseline
  old.reset();
  leash::ticker fresh(1h, [] {}, {.name = "fresh"});  // the count is unchanged
  const std::string report = guard.verify(10ms);
  CHECK(report.find("ticker \"fresh\"") != std::string::npos);
  CHECK(report.find("ticker \"old\"") == std::string::npos);
}

TEST_CASE("leak_check's wait ends as soon as a ticker is stopped on another thread") {
  auto t = std::make_unique<leash::ticker>(1h, [] {});
  leash::leak_check guard;
  leash::ticker mine(1h, [] {}, {.name = "mine"});
  std::thread stopper([&] { mine.stop(); });
  CHECK(guard.verify(10s) == "");  // woken by the ticker's end, not by the grace period
  stopper.join();
}
