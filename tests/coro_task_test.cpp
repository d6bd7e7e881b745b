// Tests for coroutine tasks: nursery::spawn of a function returning a
// leash::coro runs it on the scheduler's workers instead of a thread, and the
// awaitables async_sleep_for / async_sleep_until / async_checkpoint.
#include <doctest/doctest.h>

#include <atomic>
#include <chrono>
#include <cstddef>
#include <latch>
#include <leash.hpp>
#include <leash/coro.hpp>
#include <stdexcept>
#include <stop_token>
#include <string>

#include "support/eventually.hpp"

using namespace std::chrono_literals;
using leash::coro;
using leash::this_task::async_checkpoint;
using leash::this_task::async_sleep_for;
using leash::this_task::async_sleep_until;

namespace {

struct backend_error : std::runtime_error {
  using std::runtime_error::runtime_error;
};

// A sleep no test waits out: only cancellation ends it.
constexpr auto forever = 1h;

// How many tasks of nursery `n` are suspended in async_sleep (a snapshot).
std::size_t asleep_in(const leash::nursery& n) {
  std::size_t count = 0;
  for (const auto& t : leash::live_tasks()) {
    if (t.nursery == n.name() && t.blocked_in != nullptr &&
        std::string(t.blocked_in) == "this_task::async_sleep") {
      ++count;
    }
  }
  return count;
}

// Sleeps forever; counts how it ended.
coro<void> sleep_until_cancelled(std::atomic<int>& cancelled_count) {
  try {
    co_await async_sleep_for(forever);
  } catch (const leash::cancelled&) {
    cancelled_count.fetch_add(1, std::memory_order_relaxed);
    throw;
  }
}

}  // namespace

TEST_CASE("coroutine tasks return values and void through task::get") {
  leash::nursery n;
  auto value = n.spawn("answer", []() -> coro<int> { co_return 42; });
  std::atomic<bool> ran{false};
  auto nothing = n.spawn([&ran]() -> coro<void> {
    ran = true;
    co_return;
  });
  auto with_token = n.spawn([](std::stop_token st) -> coro<bool> { co_return st.stop_possible(); });
  CHECK(value.get() == 42);
  CHECK(value.name() == "answer");
  nothing.get();
  CHECK(ran.load());
  CHECK(with_token.get());
  n.wait();
}

TEST_CASE("coroutine tasks await other coros and sleep") {
  leash::nursery n;
  auto t = n.spawn([]() -> coro<int> {
    auto inner = []() -> coro<int> { co_return 20; };
    int v = co_await inner();
    co_await async_sleep_for(1ms);
    co_await async_sleep_until(std::chrono::steady_clock::now() + 1ms);
    co_await async_sleep_until(std::chrono::system_clock::now() - 1s);  // already passed
    co_await async_checkpoint();
    co_return v + 1;
  });
  CHECK(t.get() == 21);
  n.wait();
}

TEST_CASE("100 000 trivial coroutine tasks in one nursery are all joined") {
  constexpr int tasks = 100'000;
  std::atomic<int> done{0};
  {
    leash::nursery n;
    for (int i = 0; i < tasks; ++i) {
      n.spawn([&done]() -> coro<void> {
        done.fetch_add(1, std::memory_order_relaxed);
        co_return;
      });
    }
    n.wait();
    CHECK(n.running() == 0);
  }
  CHECK(done.load() == tasks);
}

TEST_CASE("a failing coroutine task cancels a suspended sibling and wait rethrows it") {
  std::atomic<int> cancelled{0};
  leash::nursery n({.name = "fail"});
  n.spawn("sleeper", [&]() -> coro<void> { return sleep_until_cancelled(cancelled); });
  REQUIRE(leash_test::eventually([&] { return asleep_in(n) == 1; }));
  n.spawn("failer", []() -> coro<void> {
    throw backend_error("backend down");
    co_return;
  });
  CHECK_THROWS_WITH_AS(n.wait(), "backend down", backend_error);
  CHECK(cancelled.load() == 1);
}

TEST_CASE("cancel wakes 10 000 coroutine tasks suspended in async_sleep_for") {
  constexpr int tasks = 10'000;
  std::atomic<int> cancelled{0};
  leash::nursery n({.name = "mass"});
  for (int i = 0; i < tasks; ++i) {
    n.spawn([&]() -> coro<void> { return sleep_until_cancelled(cancelled); });
  }
  REQUIRE(leash_test::eventually([&] { return asleep_in(n) == tasks; }));
  n.cancel("shutting down");
  n.wait();
  CHECK(cancelled.load() == tasks);
}

TEST_CASE("a nursery timeout ends a suspended async_sleep with deadline_exceeded") {
  std::atomic<bool> saw_deadline{false};
  leash::nursery n({.timeout = 10ms, .name = "deadline"});
  n.spawn([&]() -> coro<void> {
    try {
      co_await async_sleep_for(forever);
    } catch (const leash::deadline_exceeded&) {
      saw_deadline = true;
      throw;
    }
  });
  CHECK_THROWS_AS(n.wait(), leash::deadline_exceeded);
  CHECK(saw_deadline.load());
}

TEST_CASE("thread tasks and coroutine tasks share a nursery") {
  leash::nursery n;
  std::latch both(2);
  auto thread_task = n.spawn([&] {
    both.arrive_and_wait();
    return 1;
  });
  auto coroutine_task = n.spawn([]() -> coro<int> { co_return 2; });
  auto second_thread = n.spawn([&] {
    both.arrive_and_wait();
    return 3;
  });
  CHECK(thread_task.get() + coroutine_task.get() + second_thread.get() == 6);
  n.wait();
}

TEST_CASE("a thread task's failure cancels a suspended coroutine task") {
  std::atomic<int> cancelled{0};
  leash::nursery n({.name = "mixed-fail"});
  n.spawn([&]() -> coro<void> { return sleep_until_cancelled(cancelled); });
  REQUIRE(leash_test::eventually([&] { return asleep_in(n) == 1; }));
  n.spawn([] { throw backend_error("thread failed"); });
  CHECK_THROWS_AS(n.wait(), backend_error);
  CHECK(cancelled.load() == 1);
}

TEST_CASE("live_tasks shows a suspended coroutine task with its name") {
  std::atomic<int> cancelled{0};
  leash::nursery n({.name = "shown"});
  n.spawn("napper", [&]() -> coro<void> { return sleep_until_cancelled(cancelled); });
  REQUIRE(leash_test::eventually([&] { return asleep_in(n) == 1; }));
  bool found = false;
  for (const auto& t : leash::live_tasks()) {
    found = found || (t.name == "napper" && t.nursery == "shown" && t.blocked_in != nullptr);
  }
  CHECK(found);
  n.cancel();
  n.wait();
}

TEST_CASE("10 000 sleeping coroutine tasks take no runtime threads") {
  constexpr int tasks = 10'000;
  // Far below one thread per task, and above any thread the test runner keeps.
  constexpr std::size_t thread_slack = 16;
  std::atomic<int> cancelled{0};
  const std::size_t before = leash::runtime::stats().threads_alive;
  leash::nursery n({.name = "cheap"});
  for (int i = 0; i < tasks; ++i) {
    n.spawn([&]() -> coro<void> { return sleep_until_cancelled(cancelled); });
  }
  REQUIRE(leash_test::eventually([&] { return asleep_in(n) == tasks; }));
  CHECK(leash::runtime::stats().threads_alive <= before + thread_slack);
  n.cancel();
  n.wait();
}

TEST_CASE("async_checkpoint throws cancelled once the nursery is cancelled") {
  leash::nursery n;
  std::atomic<int> rounds{0};
  auto t = n.spawn([&]() -> coro<void> {
    for (;;) {
      rounds.fetch_add(1, std::memory_order_relaxed);
      co_await async_checkpoint();
    }
  });
  REQUIRE(leash_test::eventually([&] { return rounds.load() > 10; }));
  n.cancel();
  n.wait();
  CHECK_THROWS_AS(t.get(), leash::cancelled);
}

TEST_CASE("a coroutine task that throws before its first suspension fails like a thread task") {
  leash::nursery n({.cancel_on_failure = false});
  auto t = n.spawn([]() -> coro<int> {
    throw backend_error("early");
    co_return 0;
  });
  CHECK_THROWS_WITH_AS(t.get(), "early", backend_error);
  n.wait();
}

TEST_CASE("the async awaitables are usage errors outside a coroutine task") {
  auto sleeper = []() -> coro<void> { co_await async_sleep_for(1ms); };
  CHECK_THROWS_AS(leash::sync_wait(sleeper()), leash::usage_error);
  auto yielder = []() -> coro<void> { co_await async_checkpoint(); };
  CHECK_THROWS_AS(leash::sync_wait(yielder()), leash::usage_error);
}

namespace {
// A result type of this file only (an unnamed namespace), as users write them.
struct local_result {
  int value;
};
}  // namespace

TEST_CASE("a coroutine task may return a type of an unnamed namespace (builds with -Werror)") {
  leash::nursery n;
  auto t = n.spawn([]() -> coro<local_result> { co_return local_result{7}; });
  CHECK(t.get().value == 7);
  n.wait();
}

TEST_CASE("a coroutine task whose callable returns an empty coro fails with usage_error") {
  leash::nursery n;
  auto t = n.spawn([]() { return coro<int>(); });
  CHECK_THROWS_AS(n.wait(), leash::usage_error);
  CHECK_THROWS_AS(t.get(), leash::usage_error);  // done: its outcome, though n is cancelled
}

TEST_CASE("sync_wait in a coroutine task runs its coro outside the task: awaitables there throw") {
  // The coro is not part of the task: were it to suspend as the task, the
  // task would be resumed elsewhere while this thread still waits in it.
  leash::nursery n;
  auto t = n.spawn([]() -> coro<bool> {
    auto inner = []() -> coro<void> { co_await async_sleep_for(1ms); };
    try {
      leash::sync_wait(inner());
    } catch (const leash::usage_error&) {
      co_return true;
    }
    co_return false;
  });
  CHECK(t.get());
  n.wait();
}
