// Tests for task<T>::cancel(): cancelling one task of a nursery stops that
// task's blocking calls and the scopes and nurseries opened inside it, and
// leaves the nursery and the task's siblings alone.
#include <doctest/doctest.h>

#include <atomic>
#include <chrono>
#include <latch>
#include <leash.hpp>
#include <leash/coro.hpp>
#include <optional>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "support/blocked.hpp"

using namespace std::chrono_literals;
using leash::coro;

namespace {

// A sleep no test waits out: only cancellation ends it.
constexpr auto forever = 1h;

// Checks what get() of a task ended by cancel("stop it") throws.
template <class T>
void check_cancelled_by_handle(leash::task<T>& t) {
  try {
    t.get();
    FAIL("get() of a cancelled task returned");
  } catch (const leash::cancelled& e) {
    CHECK(e.reason() == leash::stop_reason::cancelled);
    CHECK(e.origin() == leash::stop_reason::cancelled);
    CHECK(e.message() == "stop it");
  }
}

// Spawns a task blocked in `block` (a leash call named with suffix `what`)
// beside a sibling blocked on a channel, cancels the first one once it is
// blocked, and checks that only it ended, quietly.
template <class Block>
void cancel_one_blocked(const char* what, Block block) {
  leash::nursery n({.name = "one"});
  leash::channel<int> sibling_in;
  auto t = n.spawn("victim", block);
  auto sibling = n.spawn("sibling", [&] { return *sibling_in.recv() + 1; });
  leash_test::wait_blocked(what);
  t.cancel("stop it");
  check_cancelled_by_handle(t);
  CHECK_FALSE(n.stop_requested());
  CHECK_FALSE(sibling.done());
  sibling_in.send(41);
  CHECK(sibling.get() == 42);
  CHECK_NOTHROW(n.wait());
  CHECK(n.failures().empty());
}

}  // namespace

// ---------------------------------------------------------------------------
// Thread tasks: each kind of blocking call wakes with cancelled.

TEST_CASE("cancel() wakes a thread task blocked in sleep_for") {
  cancel_one_blocked("this_task::sleep", [] { leash::this_task::sleep_for(forever); });
}

TEST_CASE("cancel() wakes a thread task blocked in channel recv and send") {
  leash::channel<int> never;
  cancel_one_blocked("channel<int>::recv", [&] { (void)never.recv(); });
  cancel_one_blocked("channel<int>::send", [&] { never.send(1); });
}

TEST_CASE("cancel() wakes a thread task blocked in select") {
  leash::channel<int> a;
  leash::channel<int> b;
  cancel_one_blocked("select", [&] {
    leash::select(leash::on_recv(a, [](std::optional<int>) {}),
                  leash::on_recv(b, [](std::optional<int>) {}));
  });
}

TEST_CASE("cancel() wakes a thread task blocked in semaphore acquire and event wait") {
  leash::semaphore sem(1);
  auto held = sem.acquire();
  cancel_one_blocked("semaphore_token>::recv", [&] { (void)sem.acquire(); });
  leash::event ev;
  cancel_one_blocked("::recv", [&] { ev.wait(); });
}

TEST_CASE("cancel() wakes a thread task blocked in get() of another task") {
  leash::nursery outer;
  leash::channel<int> release;
  auto other = outer.spawn([&] { return *release.recv(); });
  cancel_one_blocked("task::get", [&] { return other.get(); });
  release.send(3);
  CHECK(other.get() == 3);
  outer.wait();
}

TEST_CASE("cancel() reaches a nursery nested in the task and its tasks") {
  std::atomic<int> nested_cancelled{0};
  cancel_one_blocked("nursery::wait", [&] {
    leash::nursery inner({.name = "inner"});
    for (int i = 0; i < 2; ++i) {
      inner.spawn([&] {
        try {
          leash::this_task::sleep_for(forever);
        } catch (const leash::cancelled& e) {
          if (e.reason() == leash::stop_reason::parent &&
              e.origin() == leash::stop_reason::cancelled && e.message() == "stop it") {
            nested_cancelled.fetch_add(1);
          }
          throw;
        }
      });
    }
    leash_test::wait_blocked("this_task::sleep", 2);
    inner.wait();
  });
  CHECK(nested_cancelled.load() == 2);
}

TEST_CASE("cancel() reaches a cancel_scope opened inside the task") {
  std::atomic<bool> scope_saw_parent{false};
  cancel_one_blocked("this_task::sleep", [&] {
    leash::cancel_scope scope;
    try {
      leash::this_task::sleep_for(forever);
    } catch (const leash::cancelled&) {
      scope_saw_parent = scope.reason() == leash::stop_reason::parent &&
                         scope.origin_reason() == leash::stop_reason::cancelled;
      throw;
    }
  });
  CHECK(scope_saw_parent.load());
}

TEST_CASE("a task cancelled while running checkpoints into cancelled") {
  std::latch running(1);
  std::latch cancelled_now(1);
  leash::nursery n;
  auto t = n.spawn([&] {
    running.count_down();
    cancelled_now.wait();
    leash::this_task::checkpoint();
    return 1;
  });
  running.wait();
  t.cancel("stop it");
  cancelled_now.count_down();
  check_cancelled_by_handle(t);
  n.wait();
}

// ---------------------------------------------------------------------------
// Coroutine tasks: co_await points wake with cancelled.

TEST_CASE("cancel() wakes a coroutine task at its co_await points") {
  leash::channel<int> never;
  cancel_one_blocked("this_task::async_sleep",
                     []() -> coro<void> { co_await leash::this_task::async_sleep_for(forever); });
  cancel_one_blocked("async_recv", [&]() -> coro<void> { (void)co_await never.async_recv(); });
  cancel_one_blocked("async_send", [&]() -> coro<void> { co_await never.async_send(1); });
  leash::semaphore sem(1);
  auto held = sem.acquire();
  cancel_one_blocked("semaphore_token>::async_recv",
                     [&]() -> coro<void> { (void)co_await sem.async_acquire(); });
}

TEST_CASE("cancel() wakes a coroutine task awaiting another task") {
  leash::nursery outer;
  leash::channel<int> release;
  auto other = outer.spawn([&] { return *release.recv(); });
  cancel_one_blocked("task::co_await", [&]() -> coro<int> { co_return co_await other; });
  release.send(3);
  CHECK(other.get() == 3);
  outer.wait();
}

TEST_CASE("cancel() reaches a nursery nested in a coroutine task") {
  std::atomic<int> nested_cancelled{0};
  cancel_one_blocked("nursery::async_wait", [&]() -> coro<void> {
    co_await leash::run_nursery({.name = "inner"}, [&](leash::nursery& inner) -> coro<void> {
      inner.spawn([&]() -> coro<void> {
        try {
          co_await leash::this_task::async_sleep_for(forever);
        } catch (const leash::cancelled& e) {
          if (e.origin() == leash::stop_reason::cancelled && e.message() == "stop it") {
            nested_cancelled.fetch_add(1);
          }
          throw;
        }
      });
      co_return;
    });
  });
  CHECK(nested_cancelled.load() == 1);
}

// ---------------------------------------------------------------------------
// Outcomes.

TEST_CASE("co_await on a cancelled task throws cancelled with the message") {
  leash::nursery n;
  auto victim = n.spawn([]() -> coro<int> {
    co_await leash::this_task::async_sleep_for(forever);
    co_return 1;
  });
  leash_test::wait_blocked("this_task::async_sleep");
  victim.cancel("stop it");
  auto reader = n.spawn([&]() -> coro<std::string> {
    try {
      co_await victim;
    } catch (const leash::cancelled& e) {
      co_return e.reason() == leash::stop_reason::cancelled ? e.message() : "other reason";
    }
    co_return "returned";
  });
  CHECK(reader.get() == "stop it");
  n.wait();
}

TEST_CASE("cancel() of a finished task is a no-op: its value stays") {
  leash::nursery n;
  auto t = n.spawn([] { return 5; });
  CHECK(t.get() == 5);
  t.cancel("too late");
  CHECK(t.get() == 5);
  auto c = n.spawn([]() -> coro<int> { co_return 6; });
  CHECK(c.get() == 6);
  c.cancel();
  CHECK(c.get() == 6);
  n.wait();
}

TEST_CASE("a task that catches cancelled and returns a value gives that value") {
  leash::nursery n;
  auto t = n.spawn([] {
    try {
      leash::this_task::sleep_for(forever);
    } catch (const leash::cancelled&) {
      return -1;
    }
    return 1;
  });
  leash_test::wait_blocked("this_task::sleep");
  t.cancel();
  CHECK(t.get() == -1);
  n.wait();
}

TEST_CASE("a task failing after its cancel is a failure of the nursery") {
  struct cleanup_error : std::runtime_error {
    using std::runtime_error::runtime_error;
  };
  leash::nursery n;
  auto t = n.spawn([] {
    try {
      leash::this_task::sleep_for(forever);
    } catch (const leash::cancelled&) {
      throw cleanup_error("cleanup failed");
    }
  });
  leash_test::wait_blocked("this_task::sleep");
  t.cancel();
  CHECK_THROWS_AS(n.wait(), cleanup_error);
}

TEST_CASE("cancel() after the nursery was cancelled keeps the nursery's reason") {
  leash::nursery n;
  auto t = n.spawn([] { leash::this_task::sleep_for(forever); });
  leash_test::wait_blocked("this_task::sleep");
  n.cancel("nursery first");
  t.cancel("task second");
  try {
    t.get(std::stop_token{});
    FAIL("get() returned");
  } catch (const leash::cancelled& e) {
    CHECK(e.reason() == leash::stop_reason::cancelled);
    CHECK(e.message() == "nursery first");
  }
  n.wait();
}

TEST_CASE("a nursery cancel reaching co_await on a task has reason cancelled") {
  leash::nursery n;
  leash::channel<int> never;
  auto other = n.spawn([&] { return *never.recv(); });
  auto waiter = n.spawn([&]() -> coro<leash::stop_reason> {
    try {
      co_await other;
    } catch (const leash::cancelled& e) {
      co_return e.reason();
    }
    co_return leash::stop_reason::none;
  });
  leash_test::wait_blocked("task::co_await");
  n.cancel();
  // Not the main thread's ambient token: the nursery installed here is stopped.
  CHECK(waiter.get(std::stop_token{}) == leash::stop_reason::cancelled);
  n.wait();
}

// ---------------------------------------------------------------------------
// Tasks that have not started: the body does not run.

TEST_CASE("tasks cancelled right after spawn end cancelled, whether their body ran or not") {
  constexpr int tasks = 50;
  std::atomic<int> bodies{0};
  leash::nursery n;
  std::vector<leash::task<void>> spawned;
  for (int i = 0; i < tasks; ++i) {
    // A body that ran before its cancel sleeps until the cancel reaches it.
    if (i % 2 == 0) {
      spawned.push_back(n.spawn([&]() -> coro<void> {
        bodies.fetch_add(1);
        co_await leash::this_task::async_sleep_for(forever);
      }));
    } else {
      spawned.push_back(n.spawn([&] {
        bodies.fetch_add(1);
        leash::this_task::sleep_for(forever);
      }));
    }
    spawned.back().cancel("stop it");
  }
  for (auto& t : spawned)
    check_cancelled_by_handle(t);
  CHECK_NOTHROW(n.wait());
  CHECK(bodies.load() <= tasks);
}

TEST_CASE("a coroutine task cancelled before its first slice does not run its body") {
  std::atomic<bool> ran{false};
  leash::nursery n;
  auto outer = n.spawn([&]() -> coro<bool> {
    // Spawned and cancelled within this slice: the child is at best queued.
    auto child = n.spawn([&]() -> coro<void> {
      ran = true;
      co_return;
    });
    child.cancel("stop it");
    try {
      co_await child;
    } catch (const leash::cancelled& e) {
      co_return e.message() == "stop it";
    }
    co_return false;
  });
  // The child may have been taken by another worker before its cancel: then
  // it returned normally; otherwise its body never ran.
  const bool cancelled = outer.get();
  CHECK(cancelled != ran.load());
  n.wait();
}

TEST_CASE("a task cancelled and its handle dropped before it starts still does not finish") {
  // With no handle left at its start a task opens no scope of its own; the
  // cancel made before must still hold. A body that began before the cancel
  // meets it at its checkpoint.
  constexpr int rounds = 200;
  std::atomic<int> finished{0};
  leash::nursery n;
  auto outer = n.spawn([&]() -> coro<void> {
    for (int i = 0; i < rounds; ++i) {
      {
        auto child = n.spawn([&]() -> coro<void> {
          co_await leash::this_task::async_checkpoint();
          finished.fetch_add(1);
        });
        child.cancel("dropped");
      }
      co_await leash::this_task::async_checkpoint();  // lets the child start
    }
  });
  CHECK_NOTHROW(n.wait());
  CHECK(finished.load() == 0);
}

// ---------------------------------------------------------------------------
// Concurrency.

TEST_CASE("cancel() from several threads at once is idempotent") {
  constexpr int cancellers = 4;
  leash::nursery n;
  auto t = n.spawn([] { leash::this_task::sleep_for(forever); });
  leash_test::wait_blocked("this_task::sleep");
  std::latch go(cancellers);
  std::vector<std::thread> threads;
  for (int i = 0; i < cancellers; ++i) {
    threads.emplace_back([&] {
      go.arrive_and_wait();
      t.cancel("stop it");
    });
  }
  for (auto& th : threads)
    th.join();
  check_cancelled_by_handle(t);
  CHECK_NOTHROW(n.wait());
}

TEST_CASE("cancel() racing the task's own end: the value or cancelled, never lost") {
  constexpr int rounds = 300;
  int values = 0;
  int cancels = 0;
  leash::nursery n;
  for (int i = 0; i < rounds; ++i) {
    std::latch go(2);
    auto t = (i % 2 == 0) ? n.spawn([&go, i] {
      go.arrive_and_wait();
      leash::this_task::checkpoint();
      return i;
    })
                          : n.spawn([&go, i]() -> coro<int> {
                              go.arrive_and_wait();
                              co_await leash::this_task::async_checkpoint();
                              co_return i;
                            });
    go.arrive_and_wait();
    t.cancel("stop it");
    try {
      const int v = t.get();
      CHECK(v == i);
      ++values;
    } catch (const leash::cancelled& e) {
      CHECK(e.message() == "stop it");
      ++cancels;
    }
  }
  CHECK_NOTHROW(n.wait());
  CHECK(values + cancels == rounds);
}

TEST_CASE("cancel() on an empty handle is a usage_error") {
  leash::task<int> t;
  CHECK_THROWS_AS(t.cancel(), leash::usage_error);
}
