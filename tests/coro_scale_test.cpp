// Scale: a million coroutine tasks waiting at once in one nursery, asleep or
// suspended on a channel, cost no thread each and all end cleanly.
#include <doctest/doctest.h>

#include <atomic>
#include <chrono>
#include <leash.hpp>

#include "support/sanitizer.hpp"

using namespace std::chrono_literals;
using leash::coro;

namespace {

// A million; a sanitizer's shadow memory and slowdown make a tenth enough.
constexpr long task_count = leash_test::under_any_sanitizer ? 100000 : 1000000;

}  // namespace

TEST_CASE("a million coroutine tasks sleep one second at once in one nursery") {
  std::atomic<long> woke{0};
  const auto t0 = std::chrono::steady_clock::now();
  leash::run_nursery([&](leash::nursery& n) {
    for (long i = 0; i < task_count; ++i) {
      n.spawn([&]() -> coro<void> {
        co_await leash::this_task::async_sleep_for(1s);
        woke.fetch_add(1, std::memory_order_relaxed);
      });
    }
  });
  CHECK(woke.load() == task_count);
  CHECK(std::chrono::steady_clock::now() - t0 >= 1s);
}

TEST_CASE("a million coroutine tasks suspended in async_recv are all released by values") {
  leash::channel<long> ch;
  std::atomic<long> sum{0};
  leash::run_nursery([&](leash::nursery& n) {
    for (long i = 0; i < task_count; ++i) {
      n.spawn([&]() -> coro<void> {
        auto v = co_await ch.async_recv();
        sum.fetch_add(*v, std::memory_order_relaxed);
      });
    }
    for (long i = 1; i <= task_count; ++i)
      ch.send(i);
  });
  CHECK(sum.load() == task_count * (task_count + 1) / 2);
}

TEST_CASE("a million coroutine tasks suspended in async_recv are all released by close") {
  leash::channel<int> ch;
  std::atomic<long> ended{0};
  leash::run_nursery([&](leash::nursery& n) {
    for (long i = 0; i < task_count; ++i) {
      n.spawn([&]() -> coro<void> {
        if (!co_await ch.async_recv()) ended.fetch_add(1, std::memory_order_relaxed);
      });
    }
    ch.close();
  });
  CHECK(ended.load() == task_count);
}

TEST_CASE("a million suspended coroutine tasks are cancelled and joined") {
  leash::channel<int> never;
  std::atomic<long> cancelled{0};
  leash::run_nursery([&](leash::nursery& n) {
    for (long i = 0; i < task_count; ++i) {
      n.spawn([&]() -> coro<void> {
        try {
          co_await never.async_recv();
        } catch (const leash::cancelled&) {
          cancelled.fetch_add(1, std::memory_order_relaxed);
          throw;
        }
      });
    }
    n.cancel();
  });
  CHECK(cancelled.load() == task_count);
}
