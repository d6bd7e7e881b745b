// Tests for async_select / async_select_biased: select for coroutine tasks,
// with parties that are threads or coroutine tasks, and its cancellation.
#include <doctest/doctest.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstddef>
#include <leash.hpp>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "support/eventually.hpp"

using namespace std::chrono_literals;
using leash::coro;
using leash_test::eventually;

namespace {

std::size_t suspended_in(const leash::nursery& n, std::string_view what) {
  std::size_t count = 0;
  for (const auto& t : leash::live_tasks()) {
    if (t.nursery == n.name() && t.blocked_in != nullptr &&
        std::string_view(t.blocked_in) == what) {
      ++count;
    }
  }
  return count;
}

}  // namespace

TEST_CASE("async_select receives every value from a thread and a coroutine producer") {
  for (std::size_t capacity : {0u, 1u, 32u}) {
    CAPTURE(capacity);
    constexpr int count = 5000;
    leash::channel<int> a(capacity), b(capacity);
    leash::nursery n;
    n.spawn([&] {
      for (int i = 0; i < count; ++i)
        a.send(i);
      a.close();
    });
    n.spawn([&]() -> coro<void> {
      for (int i = 0; i < count; ++i)
        co_await b.async_send(i);
      b.close();
    });
    auto sums = n.spawn([&]() -> coro<long> {
      long sum = 0;
      bool a_open = true, b_open = true;
      while (a_open || b_open) {
        co_await leash::async_select(
            leash::on_recv(
                a, [&](std::optional<int> v) { v ? void(sum += *v) : void(a_open = false); })
                .when(a_open),
            leash::on_recv(b, [&](std::optional<int> v) {
              v ? void(sum += *v) : void(b_open = false);
            }).when(b_open));
      }
      co_return sum;
    });
    CHECK(sums.get() == 2L * count * (count - 1) / 2);
    n.wait();
  }
}

TEST_CASE("async_select's on_after fires when nothing else does") {
  leash::channel<int> never;
  leash::nursery n;
  auto which = n.spawn([&]() -> coro<std::size_t> {
    bool timed_out = false;
    const std::size_t k = co_await leash::async_select(
        leash::on_recv(never, [](int) {}), leash::on_after(5ms, [&] { timed_out = true; }));
    co_return timed_out ? k : 99;
  });
  CHECK(which.get() == 1);
  n.wait();
  CHECK(never.try_send(1) == leash::channel_status::full);  // no node left behind
}

TEST_CASE("n.cancel() reaches a coroutine task suspended in async_select") {
  leash::channel<int> a, b;
  std::atomic<int> cancelled{0};
  leash::nursery n;
  for (int i = 0; i < 10; ++i) {
    n.spawn([&]() -> coro<void> {
      try {
        co_await leash::async_select(leash::on_recv(a, [](int) {}), leash::on_recv(b, [](int) {}),
                                     leash::on_after(1h, [] {}));
      } catch (const leash::cancelled&) {
        cancelled.fetch_add(1);
        throw;
      }
    });
  }
  REQUIRE(eventually([&] { return suspended_in(n, "async_select") == 10; }));
  n.cancel();
  n.wait();
  CHECK(cancelled.load() == 10);
  CHECK(a.try_send(1) == leash::channel_status::full);
  CHECK(b.try_send(1) == leash::channel_status::full);
}

TEST_CASE("async_select_biased takes the first ready case in argument order") {
  leash::channel<int> first(1), second(1);
  first.send(1);
  second.send(2);
  leash::nursery n;
  auto k = n.spawn([&]() -> coro<std::size_t> {
    co_return co_await leash::async_select_biased(leash::on_recv(second, [](int) {}).when(false),
                                                  leash::on_recv(first, [](int) {}),
                                                  leash::on_recv(second, [](int) {}));
  });
  CHECK(k.get() == 1);
  n.wait();
}

TEST_CASE("an async_select send case delivers to a blocked thread; a losing one keeps its value") {
  leash::channel<std::string> out, idle;
  leash::nursery n;
  auto got = n.spawn([&] { return out.recv(); });
  auto kept = n.spawn([&]() -> coro<std::string> {
    std::string a = "delivered", b = "kept";
    co_await leash::async_select(leash::on_send(out, std::move(a), [] {}),
                                 leash::on_send(idle, std::move(b), [] {}));
    co_return b;
  });
  CHECK(got.get() == std::optional<std::string>("delivered"));
  CHECK(kept.get() == "kept");
  n.wait();
}

TEST_CASE("a thread's select and a coroutine's async_select serve each other both ways") {
  // Go's doubleselect, with both kinds of task: every value sent once, received once.
  constexpr int count = 3000;
  leash::channel<int> c1, c2, c3;
  leash::channel<int> received(count * 2);
  leash::nursery n;
  n.spawn([&]() -> coro<void> {  // coroutine sender over three channels
    for (int i = 0; i < count; ++i) {
      co_await leash::async_select(leash::on_send(c1, i, [] {}), leash::on_send(c2, i, [] {}),
                                   leash::on_send(c3, i, [] {}));
    }
  });
  n.spawn([&] {  // thread sender over the same three
    for (int i = count; i < 2 * count; ++i) {
      leash::select(leash::on_send(c1, i, [] {}), leash::on_send(c2, i, [] {}),
                    leash::on_send(c3, i, [] {}));
    }
  });
  auto recv_coro = [&]() -> coro<void> {
    for (;;) {
      co_await leash::async_select(leash::on_recv(c1, [&](int v) { received.send(v); }),
                                   leash::on_recv(c2, [&](int v) { received.send(v); }));
    }
  };
  n.spawn(recv_coro);
  n.spawn([&] {
    for (;;) {
      leash::select(leash::on_recv(c2, [&](int v) { received.send(v); }),
                    leash::on_recv(c3, [&](int v) { received.send(v); }));
    }
  });
  std::vector<bool> seen(2 * count, false);
  int duplicates = 0;
  for (int i = 0; i < 2 * count; ++i) {
    const int v = *received.recv();
    if (seen[static_cast<std::size_t>(v)]) ++duplicates;
    seen[static_cast<std::size_t>(v)] = true;
  }
  n.cancel();
  n.wait();
  CHECK(duplicates == 0);
  CHECK(std::count(seen.begin(), seen.end(), true) == 2 * count);
}
