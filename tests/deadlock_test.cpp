// Tests for runtime_options::detect_deadlocks: deadlock detection outside
// virtual time, its report, and the cases it must leave alone.
#include <doctest/doctest.h>
#include <unistd.h>

#include <atomic>
#include <cstdint>
#include <latch>
#include <leash.hpp>
#include <leash/ticker.hpp>
#include <optional>
#include <string>
#include <thread>

#include "support/deadlock_report.hpp"

using namespace std::chrono_literals;
using leash_test::contains;
using leash_test::deadlock_of;
using leash_test::hang_guard;

namespace {

// ThreadSanitizer's runtime runs a thread of its own, one leash cannot
// account for, so detection never fires under it: the cases that expect a
// report are skipped there (the others still run).
#if defined(__SANITIZE_THREAD__)
constexpr bool under_tsan = true;
#elif defined(__has_feature)
#if __has_feature(thread_sanitizer)
constexpr bool under_tsan = true;
#else
constexpr bool under_tsan = false;
#endif
#else
constexpr bool under_tsan = false;
#endif

// Turns detection on (or off) for one test case; runtime::configure is
// process-wide, so the destructor turns it off again.
class detection {
 public:
  explicit detection(bool on) { leash::runtime::configure(options(on)); }
  ~detection() { leash::runtime::configure(options(false)); }
  detection(const detection&) = delete;
  detection& operator=(const detection&) = delete;

 private:
  static leash::runtime_options options(bool on) {
    leash::runtime_options o;
    o.detect_deadlocks = on;
    return o;
  }
};

// `task "name" spawned at <this file>:line blocked in what`, as the report
// spells a line.
std::string line_of(const std::string& name, int line, const std::string& what) {
  return "task \"" + name + "\" spawned at " + __FILE__ + ":" + std::to_string(line) +
         " blocked in " + what;
}

// Checks that found something outside a watch that could still end a
// standstill, so far.
std::uint64_t gave_up() {
  return leash::detail::deadlock_watch::gave_up();
}

// Waits until a watch's check has given up since `before`: the watch saw
// the standstill and declined to report it.
void await_check_gave_up(std::uint64_t before) {
  while (gave_up() == before)
    std::this_thread::yield();
}

// True once live_tasks() shows a task named `name` blocked in a call.
bool blocked(const std::string& name) {
  for (const auto& t : leash::live_tasks()) {
    if (t.name == name && t.blocked_in != nullptr) return true;
  }
  return false;
}

}  // namespace

TEST_CASE("detect_deadlocks: a forgotten close() before a range-for, thread tasks" *
          doctest::skip(under_tsan)) {
  const hang_guard guard;
  const detection on(true);
  leash::channel<int> ch;  // outlives the tasks
  int owner_line = 0, consumer_line = 0;
  const std::string report = deadlock_of([&] {
    owner_line = __LINE__ + 1;
    leash::run_nursery([&](leash::nursery& n) {
      n.spawn("producer", [&] {
        for (int i = 0; i < 3; ++i)
          ch.send(i);
        // ch.close() forgotten
      });
      consumer_line = __LINE__ + 1;
      n.spawn("consumer", [&] {
        int sum = 0;
        for (int v : ch)
          sum += v;
        (void)sum;
      });
    });
  });
  REQUIRE_FALSE(report.empty());
  CHECK(contains(report, "leash::nursery: deadlock"));
  CHECK(contains(report, line_of("consumer", consumer_line, "channel<int>::recv")));
  CHECK(contains(report, line_of("nursery owner", owner_line, "nursery::wait")));
  CHECK_FALSE(contains(report, "\"producer\""));
}

TEST_CASE("detect_deadlocks: a forgotten close() before an async_recv loop, coroutine tasks" *
          doctest::skip(under_tsan)) {
  const hang_guard guard;
  const detection on(true);
  leash::channel<int> ch;
  int owner_line = 0, consumer_line = 0;
  const std::string report = deadlock_of([&] {
    owner_line = __LINE__ + 1;
    leash::run_nursery([&](leash::nursery& n) {
      n.spawn("producer", [&]() -> leash::coro<void> {
        for (int i = 0; i < 3; ++i)
          co_await ch.async_send(i);
        // ch.close() forgotten
      });
      consumer_line = __LINE__ + 1;
      n.spawn("consumer", [&]() -> leash::coro<void> {
        while (auto v = co_await ch.async_recv())
          (void)*v;
      });
    });
  });
  REQUIRE_FALSE(report.empty());
  CHECK(contains(report, line_of("consumer", consumer_line, "channel<int>::async_recv")));
  CHECK(contains(report, line_of("nursery owner", owner_line, "nursery::wait")));
  CHECK_FALSE(contains(report, "\"producer\""));
}

TEST_CASE("detect_deadlocks: a two-task channel cycle, thread tasks" * doctest::skip(under_tsan)) {
  const hang_guard guard;
  const detection on(true);
  leash::channel<int> ab, ba;
  int a_line = 0, b_line = 0;
  const std::string report = deadlock_of([&] {
    leash::run_nursery([&](leash::nursery& n) {
      a_line = __LINE__ + 1;
      n.spawn("a", [&] { ab.send(ba.recv().value_or(0)); });
      b_line = __LINE__ + 1;
      n.spawn("b", [&] { ba.send(ab.recv().value_or(0)); });
    });
  });
  CHECK(contains(report, line_of("a", a_line, "channel<int>::recv")));
  CHECK(contains(report, line_of("b", b_line, "channel<int>::recv")));
}

TEST_CASE("detect_deadlocks: a two-task channel cycle, coroutine tasks" *
          doctest::skip(under_tsan)) {
  const hang_guard guard;
  const detection on(true);
  leash::channel<int> ab, ba;
  int a_line = 0, b_line = 0;
  const std::string report = deadlock_of([&] {
    leash::run_nursery([&](leash::nursery& n) {
      a_line = __LINE__ + 1;
      n.spawn("a", [&]() -> leash::coro<void> {
        co_await ab.async_send((co_await ba.async_recv()).value_or(0));
      });
      b_line = __LINE__ + 1;
      n.spawn("b", [&]() -> leash::coro<void> {
        co_await ba.async_send((co_await ab.async_recv()).value_or(0));
      });
    });
  });
  CHECK(contains(report, line_of("a", a_line, "channel<int>::async_recv")));
  CHECK(contains(report, line_of("b", b_line, "channel<int>::async_recv")));
}

TEST_CASE("detect_deadlocks: a select with only disabled cases, thread and coroutine tasks" *
          doctest::skip(under_tsan)) {
  const hang_guard guard;
  const detection on(true);
  leash::channel<int> a, b;
  int thread_line = 0, coro_line = 0;
  const std::string report = deadlock_of([&] {
    leash::run_nursery([&](leash::nursery& n) {
      thread_line = __LINE__ + 1;
      n.spawn("thread", [&] {
        leash::select(leash::on_recv(a, [](std::optional<int>) {}).when(false),
                      leash::on_recv(b, [](std::optional<int>) {}).when(false));
      });
      coro_line = __LINE__ + 1;
      n.spawn("coroutine", [&]() -> leash::coro<void> {
        co_await leash::async_select(leash::on_recv(a, [](std::optional<int>) {}).when(false));
      });
    });
  });
  CHECK(contains(report, line_of("thread", thread_line, "select")));
  CHECK(contains(report, line_of("coroutine", coro_line, "async_select")));
}

TEST_CASE(
    "detect_deadlocks: a deadlock found as the destructor joins goes to the unobserved handler" *
    doctest::skip(under_tsan)) {
  const hang_guard guard;
  const detection on(true);
  std::string report;
  auto previous = leash::set_unobserved_failure_handler([&](const leash::unobserved_failure& f) {
    try {
      std::rethrow_exception(f.error);
    } catch (const leash::deadlock& e) {
      report = e.what();
    } catch (...) {
    }
  });
  leash::channel<int> ch;
  int consumer_line = 0;
  {
    leash::nursery n;
    consumer_line = __LINE__ + 1;
    n.spawn("consumer", [&] { (void)ch.recv(); });
  }  // no wait(): the destructor joins
  leash::set_unobserved_failure_handler(std::move(previous));
  MESSAGE(report);
  CHECK(contains(report, line_of("consumer", consumer_line, "channel<int>::recv")));
}

TEST_CASE("detect_deadlocks: pending sleeps and deadlines are no deadlock, and fire in real time") {
  const detection on(true);
  leash::channel<int> ch, never;
  int got = 0;
  bool moved_on = false;
  CHECK_NOTHROW(leash::run_nursery([&](leash::nursery& n) {
    n.spawn("sleeper", [&] {
      leash::this_task::sleep_for(5ms);
      ch.send(1);
    });
    n.spawn("receiver", [&] { got = ch.recv().value_or(0); });
    n.spawn("deadline", [&] {
      leash::move_on_after(5ms, [&] { (void)never.recv(); });
      moved_on = true;
    });
  }));
  CHECK(got == 1);
  CHECK(moved_on);
}

TEST_CASE("detect_deadlocks: a channel a plain thread sends on later is no deadlock") {
  const detection on(true);
  leash::channel<int> ch;
  const std::uint64_t before = gave_up();
  std::thread sender([&] {
    await_check_gave_up(before);  // the watch saw the standstill, and this thread
    ch.send(42);
  });
  int got = 0;
  CHECK_NOTHROW(leash::run_nursery(
      [&](leash::nursery& n) { n.spawn("receiver", [&] { got = ch.recv().value_or(0); }); }));
  sender.join();
  CHECK(got == 42);
}

TEST_CASE("detect_deadlocks: a channel fed by a ticker is no deadlock") {
  const detection on(true);
  leash::channel<int> ch;
  leash::ticker feeder(1ms, [&] { (void)ch.try_send(1); });
  int got = 0;
  CHECK_NOTHROW(leash::run_nursery([&](leash::nursery& n) {
    n.spawn("receiver", [&] {
      for (int i = 0; i < 3; ++i)
        got += ch.recv().value_or(0);
    });
  }));
  CHECK(got == 3);
}

TEST_CASE("detect_deadlocks: a channel fed by a task of another nursery is no deadlock") {
  const detection on(true);
  leash::channel<int> ch;
  const std::uint64_t before = gave_up();
  std::thread other([&] {
    leash::run_nursery([&](leash::nursery& m) {
      m.spawn("feeder", [&] {
        await_check_gave_up(before);
        ch.send(7);
      });
    });
  });
  int got = 0;
  CHECK_NOTHROW(leash::run_nursery(
      [&](leash::nursery& n) { n.spawn("receiver", [&] { got = ch.recv().value_or(0); }); }));
  other.join();
  CHECK(got == 7);
}

TEST_CASE("detect_deadlocks: a task in a raw read() is never part of a deadlock") {
  const detection on(true);
  leash::channel<int> ch;
  int fds[2];
  REQUIRE(::pipe(fds) == 0);
  std::thread writer([&] {
    while (!blocked("reader") || !blocked("receiver"))
      std::this_thread::yield();
    const char c = 'x';
    CHECK(::write(fds[1], &c, 1) == 1);
  });
  int got = 0;
  CHECK_NOTHROW(leash::run_nursery([&](leash::nursery& n) {
    n.spawn("reader", [&] {
      char c = 0;
      {
        leash::this_task::external_wait outside("read(pipe)");
        CHECK(::read(fds[0], &c, 1) == 1);
      }
      ch.send(c);
    });
    n.spawn("receiver", [&] { got = ch.recv().value_or(0); });
  }));
  writer.join();
  ::close(fds[0]);
  ::close(fds[1]);
  CHECK(got == 'x');
}

TEST_CASE("detect_deadlocks off: no nursery is watched") {
  const detection off(false);
  const std::uint64_t opened = leash::detail::deadlock_watch::opened();
  leash::channel<int> ch;
  std::thread closer([&] {
    while (!blocked("consumer"))
      std::this_thread::yield();
    ch.close();
  });
  CHECK_NOTHROW(leash::run_nursery([&](leash::nursery& n) {
    n.spawn("consumer", [&] {
      for (int v : ch)
        (void)v;
    });
  }));
  closer.join();
  CHECK(leash::detail::deadlock_watch::opened() == opened);
}

TEST_CASE("detect_deadlocks on: a nursery opened inside a task shares its parent's watch") {
  const detection on(true);
  const std::uint64_t opened = leash::detail::deadlock_watch::opened();
  leash::run_nursery(
      [&](leash::nursery& n) { n.spawn([&] { leash::run_nursery([](leash::nursery&) {}); }); });
  CHECK(leash::detail::deadlock_watch::opened() == opened + 1);
}

// A closed nursery (nursery_options::detect_deadlocks): the opener vouches
// that nothing outside wakes its tasks, so the count of its own members
// decides, whatever else the process runs. No OS thread count is involved,
// so these cases run under TSan too.

TEST_CASE("closed nursery: a forgotten close() is reported while the rest of the process runs") {
  const hang_guard guard;
  // Activity the process-wide rule can never see past: a plain thread, a
  // ticker, and a task of another nursery, all alive until the report.
  std::atomic<bool> done{false};
  std::thread busy([&] {
    while (!done.load())
      std::this_thread::yield();
  });
  leash::ticker unrelated(1ms, [] {});
  leash::channel<int> other;
  leash::nursery elsewhere;
  elsewhere.spawn("elsewhere", [&] { (void)other.recv(); });

  leash::channel<int> ch;
  int owner_line = 0, consumer_line = 0;
  const std::string report = deadlock_of([&] {
    owner_line = __LINE__ + 1;
    leash::run_nursery({.name = "pipeline", .detect_deadlocks = true}, [&](leash::nursery& n) {
      n.spawn("producer", [&] {
        for (int i = 0; i < 3; ++i)
          ch.send(i);
        // ch.close() forgotten
      });
      consumer_line = __LINE__ + 1;
      n.spawn("consumer", [&] {
        for (int v : ch)
          (void)v;
      });
    });
  });
  done.store(true);
  busy.join();
  other.close();
  elsewhere.wait();
  REQUIRE_FALSE(report.empty());
  CHECK(contains(report,
                 "leash::nursery: deadlock: every task is blocked in a leash call that "
                 "no timer and no task of the nursery can wake (a closed nursery"));
  CHECK(contains(report, line_of("consumer", consumer_line, "channel<int>::recv")));
  CHECK(contains(report, line_of("pipeline owner", owner_line, "nursery::wait")));
  CHECK_FALSE(contains(report, "elsewhere"));
}

TEST_CASE("closed nursery: a two-task cycle of coroutine tasks, opened inside a thread task") {
  const hang_guard guard;
  leash::channel<int> ab, ba;
  int a_line = 0, b_line = 0;
  std::string report;
  leash::run_nursery([&](leash::nursery& outer) {  // an ordinary, unwatched nursery
    outer.spawn("opener", [&] {
      report = deadlock_of([&] {
        leash::run_nursery({.detect_deadlocks = true}, [&](leash::nursery& n) {
          a_line = __LINE__ + 1;
          n.spawn("a", [&]() -> leash::coro<void> {
            co_await ab.async_send((co_await ba.async_recv()).value_or(0));
          });
          b_line = __LINE__ + 1;
          n.spawn("b", [&]() -> leash::coro<void> {
            co_await ba.async_send((co_await ab.async_recv()).value_or(0));
          });
        });
      });
    });
  });
  CHECK(contains(report, line_of("a", a_line, "channel<int>::async_recv")));
  CHECK(contains(report, line_of("b", b_line, "channel<int>::async_recv")));
}

TEST_CASE("closed nursery: a pending timer and a task that ends the wait are no deadlock") {
  leash::channel<int> ch;
  int sum = 0;
  CHECK_NOTHROW(leash::run_nursery({.detect_deadlocks = true}, [&](leash::nursery& n) {
    n.spawn("consumer", [&] {
      for (int v : ch)
        sum += v;
    });
    n.spawn("late closer", [&] {
      leash::this_task::sleep_for(20ms);  // the subject: a pending timer is no standstill
      ch.send(1);
      ch.close();
    });
  }));
  CHECK(sum == 1);
}

TEST_CASE("closed nursery: opened by a coroutine task is a usage_error") {
  std::string what;
  leash::run_nursery([&](leash::nursery& n) {
    n.spawn([&]() -> leash::coro<void> {
      try {
        leash::nursery inner({.name = "inner", .detect_deadlocks = true});
      } catch (const leash::usage_error& e) {
        what = e.what();
      }
      co_return;
    });
  });
  CHECK(what ==
        "leash::nursery \"inner\": detect_deadlocks needs a nursery opened by a thread, not by a "
        "coroutine task");
}

TEST_CASE("closed nursery: inside virtual time, the scope's own detection reports") {
  leash::virtual_time vt;
  leash::channel<int> ch;
  const std::uint64_t opened = leash::detail::deadlock_watch::opened();
  const std::string report = deadlock_of([&] {
    vt.run([&](leash::nursery&) {
      leash::run_nursery({.detect_deadlocks = true},
                         [&](leash::nursery& n) { n.spawn([&] { (void)ch.recv(); }); });
    });
  });
  CHECK(contains(report, "leash::virtual_time: deadlock"));
  CHECK(leash::detail::deadlock_watch::opened() == opened);
}
