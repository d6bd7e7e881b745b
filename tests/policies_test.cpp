// SPDX-License-Identifier: BSL-1.0
// Completion policies: race, first_n, all_settled, and their awaitable forms.
#include <doctest/doctest.h>

#include <atomic>
#include <latch>
#include <leash.hpp>
#include <stdexcept>
#include <string>
#include <vector>

using leash::coro;

namespace {

// Counts live instances, so a test sees which values are still alive.
struct counted {
  static inline std::atomic<int> live{0};
  int v = 0;
  explicit counted(int x) : v(x) { ++live; }
  counted(counted&& o) noexcept : v(o.v) { ++live; }
  counted(const counted&) = delete;
  counted& operator=(const counted&) = delete;
  ~counted() { --live; }
};

// The task that loses: it says it started, blocks in recv until cancelled,
// and records that it was. The winners wait for `started`, so the policy
// cannot be over before the loser's body runs.
struct loser {
  leash::channel<int> never{0};
  leash::event started;
  std::atomic<bool> saw_cancelled{false};

  int blocked_until_cancelled() {
    started.set();
    try {
      (void)never.recv();
    } catch (const leash::cancelled&) {
      saw_cancelled = true;
      throw;
    }
    return -1;
  }

  coro<int> async_blocked_until_cancelled() {
    started.set();
    try {
      (void)co_await never.async_recv();
    } catch (const leash::cancelled&) {
      saw_cancelled = true;
      throw;
    }
    co_return -1;
  }

  int after_start(int v) {
    started.wait();
    return v;
  }

  coro<int> async_after_start(int v) {
    co_await started.async_wait();
    co_return v;
  }
};

int fails(const char* what) {
  throw std::runtime_error(what);
}

// Runs body as a coroutine task and returns its value.
template <class F>
auto in_coroutine_task(F body) {
  leash::nursery n;
  auto t = n.spawn(std::move(body));
  n.wait();
  return std::move(t.get());
}

}  // namespace

TEST_CASE("race: the first value wins and the other task sees cancelled") {
  loser l;
  const int v =
      leash::race([&] { return l.blocked_until_cancelled(); }, [&] { return l.after_start(7); });
  CHECK(v == 7);
  CHECK(l.saw_cancelled.load());
}

TEST_CASE("race: two values at once, exactly one survives the race") {
  counted::live = 0;
  std::latch both(2);
  {
    counted c = leash::race(
        [&] {
          both.arrive_and_wait();
          return counted(1);
        },
        [&] {
          both.arrive_and_wait();
          return counted(2);
        });
    CHECK((c.v == 1 || c.v == 2));
    CHECK(counted::live.load() == 1);
  }
  CHECK(counted::live.load() == 0);
}

TEST_CASE("race: every task failed, failures lists each one") {
  try {
    (void)leash::race([] { return fails("first broke"); }, [] { return fails("second broke"); });
    FAIL("race returned");
  } catch (const leash::failures& e) {
    CHECK(e.size() == 2);
    const std::string what = e.what();
    CHECK(what.find("leash::race: 2 tasks failed") != std::string::npos);
    CHECK(what.find("first broke") != std::string::npos);
    CHECK(what.find("second broke") != std::string::npos);
    CHECK(what.find("leash::race[0]") != std::string::npos);
  }
}

TEST_CASE("race: a failure does not end it while another task can still win") {
  std::latch failed(1);
  const int v = leash::race(
      [&]() -> int {
        failed.count_down();
        throw std::runtime_error("lost");
      },
      [&] {
        failed.wait();
        return 3;
      });
  CHECK(v == 3);
}

TEST_CASE("all_settled: every outcome, in argument order, nothing cancelled") {
  std::latch failed(1);
  auto out = leash::all_settled(
      [&]() -> int {
        failed.count_down();
        throw std::runtime_error("bad");
      },
      [&] {
        failed.wait();  // runs on after its sibling failed
        return 2;
      },
      [] { return 3; });
  REQUIRE(out.size() == 3);
  CHECK_FALSE(out[0].has_value());
  CHECK(out[0].error() != nullptr);
  CHECK_THROWS_WITH_AS(out[0].value(), "bad", std::runtime_error);
  CHECK(out[1].value() == 2);
  CHECK(out[2].value() == 3);
  CHECK(out[1].task_name() == "leash::all_settled[1]");
  CHECK_THROWS_AS(leash::rethrow_failures(out), leash::failures);
  out.erase(out.begin());
  CHECK_NOTHROW(leash::rethrow_failures(out));
}

TEST_CASE("first_n: the first two of three, the third cancelled") {
  loser l;
  auto v = leash::first_n(
      2, [&] { return l.after_start(1); }, [&] { return l.blocked_until_cancelled(); },
      [&] { return l.after_start(3); });
  REQUIRE(v.size() == 2);
  CHECK(v[0] + v[1] == 4);
  CHECK(l.saw_cancelled.load());
}

TEST_CASE("first_n: too few can succeed, failures at once and the rest cancelled") {
  loser l;
  try {
    (void)leash::first_n(
        2,
        [&] {
          l.started.wait();
          return fails("one");
        },
        [&] {
          l.started.wait();
          return fails("two");
        },
        [&] { return l.blocked_until_cancelled(); });
    FAIL("first_n returned");
  } catch (const leash::failures& e) {
    CHECK(e.size() == 2);
  }
  CHECK(l.saw_cancelled.load());
}

TEST_CASE("first_n: a count of 0 or above the callables is a usage_error") {
  CHECK_THROWS_AS((void)leash::first_n(0, [] { return 1; }), leash::usage_error);
  CHECK_THROWS_AS((void)leash::first_n(2, [] { return 1; }), leash::usage_error);
}

TEST_CASE("race: an enclosing cancel ends it with cancelled") {
  loser l;
  leash::nursery outer;
  auto t = outer.spawn([&] { return leash::race([&] { return l.blocked_until_cancelled(); }); });
  l.started.wait();  // recv throws cancelled whether the stop comes before it or during it
  outer.cancel();
  outer.wait();
  CHECK_THROWS_AS(t.get(), leash::cancelled);
  CHECK(l.saw_cancelled.load());
}

TEST_CASE("async_race: the first value wins and the other coroutine task sees cancelled") {
  loser l;
  const int v = in_coroutine_task([&]() -> coro<int> {
    co_return co_await leash::async_race([&] { return l.async_blocked_until_cancelled(); },
                                         [&] { return l.async_after_start(7); });
  });
  CHECK(v == 7);
  CHECK(l.saw_cancelled.load());
}

TEST_CASE("async_race: two values at once, exactly one survives the race") {
  counted::live = 0;
  leash::channel<int> gate(2);
  {
    counted c = in_coroutine_task([&]() -> coro<counted> {
      co_return co_await leash::async_race(
          [&]() -> coro<counted> {
            co_await gate.async_send(1);
            co_return counted(1);
          },
          [&]() -> coro<counted> {
            co_await gate.async_send(2);
            co_return counted(2);
          });
    });
    CHECK((c.v == 1 || c.v == 2));
    CHECK(counted::live.load() == 1);
  }
  CHECK(counted::live.load() == 0);
}

TEST_CASE("async_race: every coroutine task failed, failures lists each one") {
  auto run = [] {
    return in_coroutine_task([]() -> coro<int> {
      co_return co_await leash::async_race([]() -> coro<int> { co_return fails("a"); },
                                           []() -> coro<int> { co_return fails("b"); });
    });
  };
  try {
    (void)run();
    FAIL("async_race returned");
  } catch (const leash::failures& e) {
    CHECK(e.size() == 2);
  }
}

TEST_CASE("async_first_n and async_all_settled in a coroutine task") {
  loser l;
  auto v = in_coroutine_task([&]() -> coro<std::vector<int>> {
    co_return co_await leash::async_first_n(
        2, [&] { return l.async_after_start(1); },
        [&] { return l.async_blocked_until_cancelled(); }, [&] { return l.async_after_start(3); });
  });
  REQUIRE(v.size() == 2);
  CHECK(v[0] + v[1] == 4);
  CHECK(l.saw_cancelled.load());

  auto out = in_coroutine_task([]() -> coro<std::vector<leash::outcome<int>>> {
    co_return co_await leash::async_all_settled([]() -> coro<int> { co_return fails("x"); },
                                                []() -> coro<int> { co_return 2; });
  });
  REQUIRE(out.size() == 2);
  CHECK_FALSE(out[0].has_value());
  CHECK(out[1].value() == 2);
}

TEST_CASE(
    "async policies: a callable that throws before it returns its coro is that task's failure") {
  auto out = in_coroutine_task([]() -> coro<std::vector<leash::outcome<int>>> {
    co_return co_await leash::async_all_settled(
        []() -> coro<int> { throw std::runtime_error("before the coro"); },
        []() -> coro<int> { co_return 2; });
  });
  REQUIRE(out.size() == 2);
  REQUIRE_FALSE(out[0].has_value());
  CHECK_THROWS_WITH_AS(std::rethrow_exception(out[0].error()), "before the coro",
                       std::runtime_error);
  CHECK(out[1].value() == 2);

  const int v = in_coroutine_task([]() -> coro<int> {
    co_return co_await leash::async_race(
        []() -> coro<int> { throw std::runtime_error("before the coro"); },
        []() -> coro<int> { co_return 5; });
  });
  CHECK(v == 5);
}
