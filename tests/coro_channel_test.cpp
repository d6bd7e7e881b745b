// Tests for the coroutine forms of channel operations (async_send,
// async_recv): coroutine tasks meet each other and thread tasks on one
// channel, in every role, buffered or not, and cancellation reaches a
// suspended operation.
#include <doctest/doctest.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstddef>
#include <leash.hpp>
#include <numeric>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

#include "support/eventually.hpp"

using namespace std::chrono_literals;
using leash::coro;
using leash_test::eventually;

namespace {

// How many tasks of nursery `n` are suspended in an operation whose name ends
// with `what` (a snapshot).
std::size_t suspended_in(const leash::nursery& n, const std::string& what) {
  std::size_t count = 0;
  for (const auto& t : leash::live_tasks()) {
    if (t.nursery == n.name() && t.blocked_in != nullptr &&
        std::string_view(t.blocked_in).ends_with(what)) {
      ++count;
    }
  }
  return count;
}

// Sends 0..count-1 from a coroutine task.
coro<void> send_range(leash::channel<int>& ch, int count) {
  for (int i = 0; i < count; ++i)
    co_await ch.async_send(i);
}

// Receives until the channel is closed and drained; returns the sum.
coro<long> sum_all(leash::channel<int>& ch) {
  long sum = 0;
  while (auto v = co_await ch.async_recv())
    sum += *v;
  co_return sum;
}

constexpr long sum_below(int n) {
  return static_cast<long>(n) * (n - 1) / 2;
}

}  // namespace

TEST_CASE("async_send and async_recv hand every value over between coroutine tasks") {
  for (std::size_t capacity : {0u, 1u, 16u}) {
    CAPTURE(capacity);
    constexpr int count = 20000;
    leash::channel<int> ch(capacity);
    leash::nursery n;
    auto total = n.spawn([&]() -> coro<long> { co_return co_await sum_all(ch); });
    n.spawn([&]() -> coro<void> {
      co_await send_range(ch, count);
      ch.close();
    });
    CHECK(total.get() == sum_below(count));
    n.wait();
  }
}

TEST_CASE("unbuffered ping-pong between two coroutine tasks keeps the order") {
  leash::channel<int> ping, pong;
  constexpr int rounds = 10000;
  leash::nursery n;
  n.spawn([&]() -> coro<void> {
    while (auto v = co_await ping.async_recv())
      co_await pong.async_send(*v + 1);
    pong.close();
  });
  auto checked = n.spawn([&]() -> coro<int> {
    int ok = 0;
    for (int i = 0; i < rounds; ++i) {
      co_await ping.async_send(i);
      auto back = co_await pong.async_recv();
      if (back && *back == i + 1) ++ok;
    }
    ping.close();
    co_return ok;
  });
  CHECK(checked.get() == rounds);
  n.wait();
}

TEST_CASE("a thread task and a coroutine task meet on one channel in either role") {
  for (std::size_t capacity : {0u, 1u, 64u}) {
    CAPTURE(capacity);
    constexpr int count = 5000;
    leash::channel<int> to_coro(capacity), to_thread(capacity);
    leash::nursery n;
    auto coro_sum = n.spawn([&]() -> coro<long> { co_return co_await sum_all(to_coro); });
    auto thread_sum = n.spawn([&] {
      long sum = 0;
      for (int v : to_thread)
        sum += v;
      return sum;
    });
    n.spawn([&] {  // a thread sends to the coroutine task
      for (int i = 0; i < count; ++i)
        to_coro.send(i);
      to_coro.close();
    });
    n.spawn([&]() -> coro<void> {  // a coroutine task sends to the thread
      co_await send_range(to_thread, count);
      to_thread.close();
    });
    CHECK(coro_sum.get() == sum_below(count));
    CHECK(thread_sum.get() == sum_below(count));
    n.wait();
  }
}

TEST_CASE("close() resumes suspended receivers with nullopt and senders with channel_closed") {
  leash::channel<std::string> ch;
  leash::nursery n;
  std::atomic<int> saw_end{0};
  for (int i = 0; i < 3; ++i) {
    n.spawn([&]() -> coro<void> {
      auto v = co_await ch.async_recv();
      if (!v) saw_end.fetch_add(1);
    });
  }
  REQUIRE(eventually([&] { return suspended_in(n, "::async_recv") == 3; }));
  ch.close();
  n.wait();
  CHECK(saw_end.load() == 3);

  leash::channel<std::string> full(1);
  full.send("first");
  leash::nursery senders;
  auto kept = senders.spawn([&]() -> coro<std::string> {
    std::string mine = "mine";
    try {
      co_await full.async_send(std::move(mine));
    } catch (const leash::channel_closed&) {
      co_return mine;  // not delivered: untouched
    }
    co_return "delivered";
  });
  REQUIRE(eventually([&] { return suspended_in(senders, "::async_send") == 1; }));
  full.close();
  CHECK(kept.get() == "mine");
  senders.wait();
  CHECK(full.recv() == std::optional<std::string>("first"));
}

TEST_CASE("async_send on a closed channel throws channel_closed and keeps the value") {
  leash::channel<std::string> ch(4);
  ch.close();
  leash::nursery n;
  auto t = n.spawn([&]() -> coro<std::string> {
    std::string v = "kept";
    try {
      co_await ch.async_send(std::move(v));
    } catch (const leash::channel_closed&) {
      co_return v;
    }
    co_return "sent";
  });
  CHECK(t.get() == "kept");
  n.wait();
}

TEST_CASE("n.cancel() reaches a coroutine task suspended in async_recv at once") {
  leash::channel<int> ch;
  std::atomic<int> cancelled{0};
  leash::nursery n;
  for (int i = 0; i < 50; ++i) {
    n.spawn([&]() -> coro<void> {
      try {
        co_await ch.async_recv();
      } catch (const leash::cancelled&) {
        cancelled.fetch_add(1);
        throw;
      }
    });
  }
  REQUIRE(eventually([&] { return suspended_in(n, "channel<int>::async_recv") == 50; }));
  n.cancel();
  n.wait();
  CHECK(cancelled.load() == 50);
  // Nothing is left queued: a send now finds no receiver.
  CHECK(ch.try_send(1) == leash::channel_status::full);
}

TEST_CASE("a sibling's failure cancels coroutine tasks suspended in async_send") {
  leash::channel<int> ch;
  std::atomic<bool> send_cancelled{false};
  leash::nursery n;
  n.spawn([&]() -> coro<void> {
    try {
      co_await ch.async_send(1);
    } catch (const leash::cancelled&) {
      send_cancelled = true;
      throw;
    }
  });
  REQUIRE(eventually([&] { return suspended_in(n, "channel<int>::async_send") == 1; }));
  n.spawn([]() -> coro<void> {
    throw std::runtime_error("backend down");
    co_return;
  });
  CHECK_THROWS_WITH_AS(n.wait(), "backend down", std::runtime_error);
  CHECK(send_cancelled.load());
}

TEST_CASE("a nursery deadline cancels a suspended async_recv with deadline_exceeded") {
  leash::channel<int> ch;
  leash::nursery_options o;
  o.timeout = 20ms;
  std::optional<leash::task<int>> t;
  {
    leash::nursery n(o);
    t = n.spawn([&]() -> coro<int> {
      auto v = co_await ch.async_recv();
      co_return v.value_or(-1);
    });
    CHECK_THROWS_AS(n.wait(), leash::deadline_exceeded);
  }
  CHECK_THROWS_AS(t->get(), leash::deadline_exceeded);
}

TEST_CASE("a stopped coroutine task still takes a ready value, and cannot wait for one") {
  leash::channel<int> ready(1), empty;
  ready.send(7);
  std::optional<leash::task<int>> t;
  {
    leash::nursery n;  // installed on this thread: cancelling it would cancel t->get() here
    t = n.spawn([&]() -> coro<int> {
      try {
        co_await leash::this_task::async_sleep_for(1h);
      } catch (const leash::cancelled&) {
      }
      auto v = co_await ready.async_recv();  // stopped, but a value is ready: taken
      try {
        co_await empty.async_recv();  // stopped and nothing to take: cancelled at once
      } catch (const leash::cancelled&) {
        co_return v.value_or(-1);
      }
      co_return -2;
    });
    REQUIRE(eventually([&] { return suspended_in(n, "this_task::async_sleep") == 1; }));
    n.cancel();
    n.wait();
  }
  CHECK(t->get() == 7);
}

TEST_CASE("async operations outside a coroutine task throw usage_error") {
  leash::channel<int> ch(1);
  auto body = [&]() -> coro<void> { co_await ch.async_send(1); };
  CHECK_THROWS_AS(leash::sync_wait(body()), leash::usage_error);
  CHECK(ch.size() == 0);
}
