// Tests for coroutine tasks that use scopes and nurseries: a cancel_scope kept
// across a suspension, `co_await t` for a task handle, `co_await run_nursery`
// with a coroutine body, co_await n.async_wait(), and move_on_after /
// fail_after with a coroutine.
#include <doctest/doctest.h>

#include <atomic>
#include <chrono>
#include <cstddef>
#include <latch>
#include <leash.hpp>
#include <leash/coro.hpp>
#include <stdexcept>
#include <string>
#include <thread>

#include "support/captures.hpp"
#include "support/eventually.hpp"

using namespace std::chrono_literals;
using leash::coro;
using leash::this_task::async_checkpoint;
using leash::this_task::async_sleep_for;

namespace {

struct backend_error : std::runtime_error {
  using std::runtime_error::runtime_error;
};

// A sleep no test waits out: only cancellation ends it.
constexpr auto forever = 1h;
// A deadline that fires soon; only cancellation by it ends the sleeps above.
constexpr auto soon = 10ms;

// How many live tasks of the nursery named `nursery` are suspended in `what`.
std::size_t blocked_in(const std::string& nursery, const std::string& what) {
  std::size_t count = 0;
  for (const auto& t : leash::live_tasks()) {
    if (t.nursery == nursery && t.blocked_in != nullptr && what == t.blocked_in) ++count;
  }
  return count;
}

std::size_t asleep_in(const std::string& nursery) {
  return blocked_in(nursery, "this_task::async_sleep");
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

// Runs `f` (returning coro<T>) as a coroutine task and returns its value.
template <class F>
auto in_coroutine_task(F f) {
  leash::nursery n({.name = "driver"});
  auto t = n.spawn(std::move(f));
  n.wait();
  return t.get();
}

}  // namespace

// ---------------------------------------------------------------------------
// The ambient scope chain belongs to the coroutine task.

TEST_CASE("a cancel_scope deadline inside a coroutine task ends only its own co_await") {
  std::atomic<bool> saw_deadline{false};
  std::atomic<bool> scope_ambient_after_resume{false};
  std::atomic<bool> nursery_ambient_after_scope{false};
  leash::nursery n({.name = "scoped"});
  auto t = n.spawn([&]() -> coro<int> {
    {
      leash::cancel_scope scope(soon);
      try {
        co_await async_sleep_for(forever);
      } catch (const leash::deadline_exceeded&) {
        saw_deadline = scope.reason() == leash::stop_reason::deadline_exceeded;
      }
      scope_ambient_after_resume = leash::this_task::stop_token() == scope.token();
    }
    nursery_ambient_after_scope = leash::this_task::stop_token() == n.token();
    co_await async_sleep_for(1ms);  // the nursery itself was not stopped
    co_return 7;
  });
  CHECK(t.get() == 7);
  n.wait();
  CHECK(saw_deadline.load());
  CHECK(scope_ambient_after_resume.load());
  CHECK(nursery_ambient_after_scope.load());
  CHECK_FALSE(n.stop_requested());
}

TEST_CASE("a sibling cancels a scope held by a suspended coroutine task") {
  std::atomic<leash::cancel_scope*> published{nullptr};
  std::atomic<bool> only_scope_stopped{false};
  leash::nursery n({.name = "sibling-cancel"});
  n.spawn("holder", [&]() -> coro<void> {
    {
      leash::cancel_scope scope;
      published = &scope;
      try {
        co_await async_sleep_for(forever);
      } catch (const leash::cancelled& e) {
        only_scope_stopped = scope.reason() == leash::stop_reason::cancelled &&
                             !n.stop_requested() && e.reason() == leash::stop_reason::cancelled;
      }
    }
    co_await async_checkpoint();  // the nursery is not stopped: no throw
  });
  REQUIRE(leash_test::eventually([&] { return asleep_in("sibling-cancel") == 1; }));
  n.spawn("canceller", [&]() -> coro<void> {
    published.load()->cancel("from a sibling");
    co_return;
  });
  n.wait();
  CHECK(only_scope_stopped.load());
}

TEST_CASE("nested scopes in a coroutine task unwind one at a time across suspensions") {
  std::atomic<leash::cancel_scope*> inner_scope{nullptr};
  std::atomic<leash::cancel_scope*> outer_scope{nullptr};
  std::atomic<int> stage{0};
  std::atomic<bool> outer_ambient_after_inner{false};
  std::atomic<bool> outer_alive_after_inner{false};
  leash::nursery n({.name = "nested"});
  n.spawn([&]() -> coro<void> {
    leash::cancel_scope outer;
    outer_scope = &outer;
    {
      leash::cancel_scope inner;
      inner_scope = &inner;
      try {
        co_await async_sleep_for(forever);
      } catch (const leash::cancelled&) {
        stage = 1;
      }
      inner_scope = nullptr;
    }
    outer_ambient_after_inner = leash::this_task::stop_token() == outer.token();
    outer_alive_after_inner = !outer.stop_requested();
    try {
      co_await async_sleep_for(forever);
    } catch (const leash::cancelled&) {
      stage = 2;
    }
  });
  REQUIRE(
      leash_test::eventually([&] { return asleep_in("nested") == 1 && inner_scope != nullptr; }));
  inner_scope.load()->cancel();
  REQUIRE(leash_test::eventually([&] { return asleep_in("nested") == 1 && stage == 1; }));
  outer_scope.load()->cancel();
  n.wait();
  CHECK(stage.load() == 2);
  CHECK(outer_ambient_after_inner.load());
  CHECK(outer_alive_after_inner.load());
}

TEST_CASE("a suspended task's scope is not the ambient scope of other tasks or threads") {
  constexpr int others = 64;
  std::atomic<leash::cancel_scope*> held{nullptr};
  std::atomic<int> saw_nursery_token{0};
  leash::nursery n({.name = "isolated"});
  n.spawn([&]() -> coro<void> {
    leash::cancel_scope scope;
    held = &scope;
    try {
      co_await async_sleep_for(forever);
    } catch (const leash::cancelled&) {
    }
  });
  REQUIRE(leash_test::eventually([&] { return asleep_in("isolated") == 1; }));
  for (int i = 0; i < others; ++i) {
    n.spawn([&]() -> coro<void> {
      co_await async_checkpoint();  // a second slice, maybe on the holder's last worker
      if (leash::this_task::stop_token() == n.token()) saw_nursery_token.fetch_add(1);
    });
  }
  n.spawn([&] {  // a thread task
    if (leash::this_task::stop_token() == n.token()) saw_nursery_token.fetch_add(1);
  });
  REQUIRE(leash_test::eventually([&] { return saw_nursery_token.load() == others + 1; }));
  CHECK(leash::this_task::stop_token() == n.token());  // this thread's own ambient
  held.load()->cancel();
  n.wait();
}

// ---------------------------------------------------------------------------
// co_await t

TEST_CASE("co_await t gives a thread task's and a coroutine task's value, like get()") {
  leash::nursery n({.name = "await-values"});
  std::latch release(1);
  auto from_thread = n.spawn([&] {
    release.wait();
    return std::string(64, 't');
  });
  auto from_coro = n.spawn([]() -> coro<int> {
    co_await async_sleep_for(1ms);
    co_return 5;
  });
  auto nothing = n.spawn([]() -> coro<void> { co_return; });
  auto awaiting = n.spawn([&]() -> coro<std::size_t> {
    std::string& s = co_await from_thread;
    const int v = co_await from_coro;
    co_await nothing;
    std::string& again = co_await from_thread;  // a finished task: the same object
    co_return s.size() + static_cast<std::size_t>(v) + (&s == &again ? 1 : 0);
  });
  REQUIRE(
      leash_test::eventually([&] { return blocked_in("await-values", "task::co_await") == 1; }));
  release.count_down();
  CHECK(awaiting.get() == 64 + 5 + 1);
  CHECK(&from_thread.get() == &from_thread.get());
  n.wait();
}

TEST_CASE("co_await t suspends the task, not its worker") {
  // More awaiting tasks than workers: each would hold a worker if it blocked.
  const int awaiting = static_cast<int>(std::thread::hardware_concurrency()) + 4;
  leash::nursery n({.name = "await-many"});
  std::latch release(1);
  auto gate = n.spawn([&] {
    release.wait();
    return 1;
  });
  std::atomic<int> sum{0};
  for (int i = 0; i < awaiting; ++i) {
    n.spawn([&]() -> coro<void> { sum.fetch_add(co_await gate); });
  }
  REQUIRE(leash_test::eventually([&] {
    return blocked_in("await-many", "task::co_await") == static_cast<std::size_t>(awaiting);
  }));
  auto meanwhile = n.spawn([]() -> coro<int> { co_return 3; });
  CHECK(meanwhile.get() == 3);  // a worker was free while all of them waited
  release.count_down();
  n.wait();
  CHECK(sum.load() == awaiting);
}

TEST_CASE("co_await t rethrows the task's failure and marks it observed") {
  leash_test::handler_capture capture;
  std::atomic<bool> same_object{false};
  {
    leash::nursery n({.cancel_on_failure = false, .name = "await-fail"});
    auto failing = n.spawn("read", []() -> coro<int> {
      co_await async_sleep_for(1ms);
      throw backend_error("read failure");
    });
    n.spawn("unread", [] { throw backend_error("nobody reads this"); });
    n.spawn([&]() -> coro<void> {
      try {
        co_await failing;
      } catch (const backend_error& e) {
        try {
          failing.get();
        } catch (const backend_error& again) {
          same_object = &e == &again;
        }
      }
    });
    n.wait();
  }
  CHECK(same_object.load());
  REQUIRE(capture.seen.size() == 1);
  CHECK(capture.seen[0].task_name == "unread");
}

TEST_CASE("a cancel reaches a coroutine task suspended in co_await t at once") {
  std::latch release(1);
  leash::nursery other({.name = "await-other"});
  auto never = other.spawn([&] {
    release.wait();
    return 1;
  });
  std::atomic<bool> saw_cancelled{false};
  {
    leash::nursery n({.name = "await-cancel"});
    n.spawn([&]() -> coro<void> {
      try {
        co_await never;
      } catch (const leash::cancelled& e) {
        saw_cancelled = e.reason() == leash::stop_reason::cancelled;
        throw;
      }
    });
    REQUIRE(
        leash_test::eventually([&] { return blocked_in("await-cancel", "task::co_await") == 1; }));
    n.cancel("stop waiting");
    n.wait();
  }
  CHECK(saw_cancelled.load());
  CHECK_FALSE(never.done());
  release.count_down();
  other.wait();
}

TEST_CASE("co_await t is a usage_error outside a coroutine task and on the task itself") {
  leash::nursery n;
  auto t = n.spawn([]() -> coro<int> { co_return 1; });
  auto outside = [&]() -> coro<int> { co_return co_await t; };
  CHECK_THROWS_AS(leash::sync_wait(outside()), leash::usage_error);
  leash::task<void> self;
  std::latch assigned(1);
  std::atomic<bool> refused{false};
  self = n.spawn([&]() -> coro<void> {
    while (!assigned.try_wait())
      co_await async_checkpoint();
    try {
      co_await self;
    } catch (const leash::usage_error&) {
      refused = true;
    }
  });
  assigned.count_down();
  n.wait();
  CHECK(refused.load());
}

// ---------------------------------------------------------------------------
// co_await run_nursery with a coroutine body

TEST_CASE("co_await run_nursery returns the body's value after joining every task") {
  std::atomic<int> finished{0};
  const int v = in_coroutine_task([&]() -> coro<int> {
    co_return co_await leash::run_nursery([&](leash::nursery& n) -> coro<int> {
      for (int i = 0; i < 10; ++i) {
        n.spawn([&]() -> coro<void> {
          co_await async_sleep_for(1ms);
          finished.fetch_add(1);
        });
      }
      n.spawn([&] { finished.fetch_add(1); });
      auto t = n.spawn([]() -> coro<int> { co_return 30; });
      co_return 12 + co_await t;
    });
  });
  CHECK(v == 42);
  CHECK(finished.load() == 11);
}

TEST_CASE("co_await run_nursery joins without blocking its worker") {
  // More nurseries joining at once than workers; their tasks can only end
  // once every body has run, which needs a worker while the others join.
  const int nurseries = static_cast<int>(std::thread::hardware_concurrency()) + 4;
  std::latch all_bodies_ran(nurseries);
  leash::nursery outer({.name = "joiners"});
  auto gate = outer.spawn([&] { all_bodies_ran.wait(); });
  for (int i = 0; i < nurseries; ++i) {
    outer.spawn([&]() -> coro<void> {
      co_await leash::run_nursery([&](leash::nursery& n) -> coro<void> {
        n.spawn([&]() -> coro<void> { co_await gate; });
        all_bodies_ran.count_down();
        co_return;
      });
    });
  }
  outer.wait();
  CHECK(gate.done());
}

TEST_CASE("co_await run_nursery: a failure cancels siblings suspended in async_sleep_for") {
  std::atomic<int> cancelled{0};
  std::atomic<int> started{0};
  std::atomic<bool> caught{false};
  in_coroutine_task([&]() -> coro<void> {
    try {
      co_await leash::run_nursery([&](leash::nursery& n) -> coro<void> {
        for (int i = 0; i < 5; ++i) {
          n.spawn([&]() -> coro<void> {
            started.fetch_add(1);
            return sleep_until_cancelled(cancelled);
          });
        }
        n.spawn([&]() -> coro<void> {
          while (started.load() < 5)  // every sibling has begun: each will see the cancel
            co_await leash::this_task::async_checkpoint();
          throw backend_error("backend down");
        });
        co_await async_sleep_for(forever);  // the body is cancelled too; absorbed
      });
    } catch (const backend_error& e) {
      caught = std::string(e.what()) == "backend down";
    }
  });
  CHECK(caught.load());
  CHECK(cancelled.load() == 5);
}

TEST_CASE("co_await run_nursery: n.cancel() reaches suspended tasks and the body ends quietly") {
  std::atomic<int> cancelled{0};
  std::atomic<leash::nursery*> inner{nullptr};
  std::atomic<bool> returned{false};
  leash::nursery outer({.name = "outer"});
  outer.spawn([&]() -> coro<void> {
    co_await leash::run_nursery({.name = "inner"}, [&](leash::nursery& n) -> coro<void> {
      for (int i = 0; i < 3; ++i) {
        n.spawn([&]() -> coro<void> { return sleep_until_cancelled(cancelled); });
      }
      inner = &n;
      co_await async_sleep_for(forever);
    });
    returned = true;
  });
  REQUIRE(leash_test::eventually([&] { return asleep_in("inner") == 3 && inner != nullptr; }));
  REQUIRE(leash_test::eventually([&] { return asleep_in("outer") == 1; }));
  inner.load()->cancel("done here");
  outer.wait();
  CHECK(returned.load());
  CHECK(cancelled.load() == 3);
}

TEST_CASE("co_await run_nursery: the nursery's timeout cancels suspended coroutine tasks") {
  std::atomic<int> cancelled{0};
  std::atomic<bool> deadline{false};
  in_coroutine_task([&]() -> coro<void> {
    try {
      co_await leash::run_nursery(
          {.timeout = soon, .name = "a nursery with a deadline"},
          [&](leash::nursery& n) -> coro<void> {
            for (int i = 0; i < 4; ++i) {
              n.spawn([&]() -> coro<void> { return sleep_until_cancelled(cancelled); });
            }
            co_return;
          });
    } catch (const leash::deadline_exceeded&) {
      deadline = true;
    }
  });
  CHECK(deadline.load());
  CHECK(cancelled.load() == 4);
}

TEST_CASE("co_await run_nursery: a body that throws cancels and joins its tasks, then rethrows") {
  leash_test::handler_capture capture;
  std::atomic<int> cancelled{0};
  std::atomic<int> started{0};
  std::atomic<bool> caught{false};
  in_coroutine_task([&]() -> coro<void> {
    try {
      co_await leash::run_nursery([&](leash::nursery& n) -> coro<void> {
        n.spawn([&]() -> coro<void> {
          started.fetch_add(1);
          return sleep_until_cancelled(cancelled);
        });
        while (started.load() < 1)  // the task has begun: it will see the cancel
          co_await leash::this_task::async_checkpoint();
        throw std::logic_error("body failed");
      });
    } catch (const std::logic_error&) {
      caught = true;
    }
  });
  CHECK(caught.load());
  CHECK(cancelled.load() == 1);
  CHECK(capture.seen.empty());
}

TEST_CASE("co_await run_nursery: an unread supervisor failure reaches the handler") {
  leash_test::handler_capture capture;
  in_coroutine_task([&]() -> coro<void> {
    co_await leash::run_nursery({.cancel_on_failure = false, .name = "supervisor"},
                                [&](leash::nursery& n) -> coro<void> {
                                  n.spawn("unread", []() -> coro<void> {
                                    co_await async_sleep_for(1ms);
                                    throw backend_error("lost?");
                                  });
                                  co_return;
                                });
  });
  REQUIRE(capture.seen.size() == 1);
  CHECK(capture.seen[0].task_name == "unread");
  CHECK(capture.seen[0].nursery_name == "supervisor");
}

TEST_CASE("co_await run_nursery accepts named options and named bodies") {
  leash::nursery_options options{.limit = 4, .name = std::string(40, 'n')};
  auto body = [](leash::nursery& n) -> coro<std::string> { co_return n.name(); };
  const std::string name = in_coroutine_task(
      [&]() -> coro<std::string> { co_return co_await leash::run_nursery(options, body); });
  CHECK(name == std::string(40, 'n'));
}

TEST_CASE("co_await run_nursery with braced options reads a long name once, at the call") {
  const std::string long_name(64, 'x');
  const std::string name = in_coroutine_task([&]() -> coro<std::string> {
    co_return co_await leash::run_nursery(
        {.limit = 2, .timeout = 1h, .name = long_name},
        [&](leash::nursery& n) -> coro<std::string> { co_return n.name(); });
  });
  CHECK(name == long_name);
}

TEST_CASE("co_await run_nursery is a usage_error outside a coroutine task") {
  auto outside = []() -> coro<void> {
    co_await leash::run_nursery([](leash::nursery&) -> coro<void> { co_return; });
  };
  CHECK_THROWS_AS(leash::sync_wait(outside()), leash::usage_error);
}

TEST_CASE("co_await n.async_wait() joins and reports like wait()") {
  std::atomic<bool> caught{false};
  in_coroutine_task([&]() -> coro<void> {
    leash::nursery n({.name = "async-wait"});
    n.spawn([]() -> coro<void> {
      co_await async_sleep_for(1ms);
      throw backend_error("joined");
    });
    try {
      co_await n.async_wait();
    } catch (const backend_error&) {
      caught = true;
    }
  });
  CHECK(caught.load());
}

// ---------------------------------------------------------------------------
// move_on_after / fail_after with a coroutine

TEST_CASE("co_await move_on_after with a coroutine gives up at its deadline only") {
  const int result = in_coroutine_task([&]() -> coro<int> {
    const bool cut = co_await leash::move_on_after(
        soon, [&]() -> coro<void> { co_await async_sleep_for(forever); });
    const bool whole =
        co_await leash::move_on_at(std::chrono::steady_clock::now() + 1h,
                                   []() -> coro<void> { co_await async_sleep_for(1ms); });
    co_return (cut ? 10 : 0) + (whole ? 1 : 0);
  });
  CHECK(result == 1);
}

TEST_CASE("co_await move_on_after lets an outer cancellation through") {
  std::atomic<bool> propagated{false};
  leash::nursery n({.name = "move-on-outer"});
  n.spawn([&]() -> coro<void> {
    try {
      co_await leash::move_on_after(1h, []() -> coro<void> { co_await async_sleep_for(forever); });
    } catch (const leash::cancelled&) {
      propagated = true;
      throw;
    }
  });
  REQUIRE(leash_test::eventually([&] { return asleep_in("move-on-outer") == 1; }));
  n.cancel();
  n.wait();
  CHECK(propagated.load());
}

TEST_CASE("co_await fail_after with a coroutine returns the value or throws deadline_exceeded") {
  const int result = in_coroutine_task([&]() -> coro<int> {
    int v = co_await leash::fail_after(1h, []() -> coro<int> {
      co_await async_sleep_for(1ms);
      co_return 20;
    });
    try {
      co_await leash::fail_at(std::chrono::steady_clock::now() + soon, []() -> coro<int> {
        co_await async_sleep_for(forever);
        co_return 0;
      });
    } catch (const leash::deadline_exceeded&) {
      v += 1;
    }
    co_return v;
  });
  CHECK(result == 21);
}

TEST_CASE("co_await fail_after passes an outer cancellation through as cancelled") {
  std::atomic<bool> plain_cancel{false};
  leash::nursery n({.name = "fail-after-outer"});
  n.spawn([&]() -> coro<void> {
    try {
      co_await leash::fail_after(1h, []() -> coro<void> { co_await async_sleep_for(forever); });
    } catch (const leash::deadline_exceeded&) {
    } catch (const leash::cancelled&) {
      plain_cancel = true;
      throw;
    }
  });
  REQUIRE(leash_test::eventually([&] { return asleep_in("fail-after-outer") == 1; }));
  n.cancel();
  n.wait();
  CHECK(plain_cancel.load());
}
