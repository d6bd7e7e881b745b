// Tests for leash/broadcast.hpp and leash/watch.hpp: delivery and order to
// thread and coroutine receivers, lag accounting, close, late subscribers,
// cancellation by the ambient scope, select cases, and a broadcast stress run.
#include <doctest/doctest.h>

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <leash.hpp>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "support/blocked.hpp"
#include "support/sanitizer.hpp"

using leash::coro;
using leash_test::scaled;
using leash_test::wait_blocked;

namespace {

// The blocked-in names of the receivers' waits: their doorbell channels.
const std::string bcast_recv = "broadcast_bell>::recv";
const std::string bcast_async = "broadcast_bell>::async_recv";
const std::string watch_recv = "watch_bell>::recv";
const std::string watch_async = "watch_bell>::async_recv";

// What one receiver saw: values in order, lags, and whether it saw closed.
struct seen_log {
  std::vector<int> values;
  std::uint64_t missed = 0;
  int lags = 0;
  bool closed = false;

  void add(leash::broadcast_result<int>&& r) {
    if (r.lagged()) {
      missed += r.missed;
      ++lags;
    } else if (r.closed()) {
      closed = true;
    } else {
      values.push_back(*r.value);
    }
  }
};

std::vector<int> iota(int n) {
  std::vector<int> v;
  for (int i = 0; i < n; ++i)
    v.push_back(i);
  return v;
}

}  // namespace

// ---- broadcast

TEST_CASE("broadcast: every receiver, thread or coroutine, gets every value in order") {
  constexpr int values = 200;
  leash::broadcast<int> b(values);  // room for all: nobody lags
  std::vector<leash::broadcast<int>::receiver> rxs;
  for (int i = 0; i < 4; ++i)
    rxs.push_back(b.subscribe());
  CHECK(b.receiver_count() == 4);
  std::vector<seen_log> logs(4);
  leash::run_nursery([&](leash::nursery& n) {
    for (int i = 0; i < 2; ++i) {
      n.spawn([&, i] {
        while (!logs[i].closed)
          logs[i].add(rxs[i].recv());
      });
      n.spawn([&, i]() -> coro<void> {
        while (!logs[2 + i].closed)
          logs[2 + i].add(co_await rxs[2 + i].async_recv());
      });
    }
    for (int v = 0; v < values; ++v)
      CHECK(b.send(v) == 4);
    b.close();
  });
  for (const seen_log& log : logs) {
    CHECK(log.values == iota(values));
    CHECK(log.lags == 0);
    CHECK(log.closed);
  }
}

TEST_CASE("broadcast: a slow receiver gets lagged with the exact count, then the oldest kept") {
  leash::broadcast<int> b(4);
  auto slow = b.subscribe();
  auto fast = b.subscribe();
  for (int v = 0; v < 10; ++v) {
    b.send(v);
    auto r = fast.try_recv();
    REQUIRE(r.ok());
    CHECK(*r.value == v);
  }
  auto lag = slow.recv();
  CHECK(lag.lagged());
  CHECK(lag.missed == 6);  // 10 sent, the last 4 kept
  CHECK_FALSE(lag.value.has_value());
  for (int v = 6; v < 10; ++v) {
    auto r = slow.recv();
    REQUIRE(r.ok());
    CHECK(*r.value == v);
  }
  CHECK(slow.try_recv().empty());
  CHECK(fast.try_recv().empty());
  // A coroutine receiver lags the same way.
  auto slow_coro = b.subscribe();
  for (int v = 10; v < 17; ++v)
    b.send(v);
  std::vector<std::pair<leash::broadcast_status, std::uint64_t>> got;
  leash::run_nursery([&](leash::nursery& n) {
    n.spawn([&]() -> coro<void> {
      for (int i = 0; i < 5; ++i) {
        auto r = co_await slow_coro.async_recv();
        got.emplace_back(r.status, r.ok() ? static_cast<std::uint64_t>(*r.value) : r.missed);
      }
    });
  });
  using s = leash::broadcast_status;
  CHECK(got == std::vector<std::pair<s, std::uint64_t>>{
                   {s::lagged, 3}, {s::ok, 13}, {s::ok, 14}, {s::ok, 15}, {s::ok, 16}});
}

TEST_CASE("broadcast: after close receivers drain the values they have not read, then end") {
  leash::broadcast<int> b(8);
  auto rx = b.subscribe();
  auto rx_coro = b.subscribe();
  for (int v = 0; v < 3; ++v)
    b.send(v);
  CHECK(b.close());
  CHECK_FALSE(b.close());
  CHECK(b.closed());
  CHECK_THROWS_AS(b.send(3), leash::channel_closed);
  for (int v = 0; v < 3; ++v)
    CHECK(*rx.recv().value == v);
  CHECK(rx.recv().closed());
  CHECK(rx.try_recv().closed());
  std::vector<int> got;
  bool ended = false;
  leash::run_nursery([&](leash::nursery& n) {
    n.spawn([&]() -> coro<void> {
      for (;;) {
        auto r = co_await rx_coro.async_recv();
        if (r.closed()) break;
        got.push_back(*r.value);
      }
      ended = (co_await rx_coro.async_recv()).closed();
    });
  });
  CHECK(got == iota(3));
  CHECK(ended);
  CHECK(b.subscribe().recv().closed());  // subscribed after close
}

TEST_CASE("broadcast: close wakes receivers blocked in recv, thread and coroutine") {
  leash::broadcast<int> b(2);
  auto rx = b.subscribe();
  auto rx_coro = b.subscribe();
  bool thread_closed = false, coro_closed = false;
  leash::run_nursery([&](leash::nursery& n) {
    n.spawn([&] { thread_closed = rx.recv().closed(); });
    n.spawn([&]() -> coro<void> { coro_closed = (co_await rx_coro.async_recv()).closed(); });
    wait_blocked(bcast_recv);
    wait_blocked(bcast_async);
    b.close();
  });
  CHECK(thread_closed);
  CHECK(coro_closed);
}

TEST_CASE("broadcast: a receiver subscribed late sees only later values") {
  leash::broadcast<int> b(8);
  auto early = b.subscribe();
  b.send(1);
  b.send(2);
  auto late = b.subscribe();
  CHECK(late.try_recv().empty());
  b.send(3);
  auto r = late.try_recv();
  REQUIRE(r.ok());
  CHECK(*r.value == 3);
  CHECK(late.try_recv().empty());
  CHECK(*early.recv().value == 1);
}

TEST_CASE("broadcast: a dropped receiver unsubscribes; a moved one keeps its place") {
  leash::broadcast<int> b(4);
  {
    auto rx = b.subscribe();
    CHECK(b.receiver_count() == 1);
  }
  CHECK(b.receiver_count() == 0);
  CHECK(b.send(1) == 0);
  auto rx = b.subscribe();
  b.send(2);
  auto moved = std::move(rx);
  CHECK(b.receiver_count() == 1);
  CHECK(*moved.recv().value == 2);
  CHECK_THROWS_AS((void)rx.try_recv(), leash::usage_error);  // NOLINT(bugprone-use-after-move)
  CHECK_THROWS_AS(leash::broadcast<int>(0), leash::usage_error);
}

TEST_CASE("broadcast: cancelling the scope ends blocked recvs and loses no value") {
  leash::broadcast<int> b(4);
  auto rx = b.subscribe();
  auto rx_coro = b.subscribe();
  std::atomic<int> cancelled{0};
  leash::nursery n;
  n.spawn([&] {
    try {
      (void)rx.recv();
    } catch (const leash::cancelled&) {
      cancelled.fetch_add(1);
      throw;
    }
  });
  n.spawn([&]() -> coro<void> {
    try {
      (void)co_await rx_coro.async_recv();
    } catch (const leash::cancelled&) {
      cancelled.fetch_add(1);
      throw;
    }
  });
  wait_blocked(bcast_recv);
  wait_blocked(bcast_async);
  n.cancel();
  n.wait();
  CHECK(cancelled.load() == 2);
  b.send(7);
  CHECK(*rx.try_recv().value == 7);
  CHECK(*rx_coro.try_recv().value == 7);
}

TEST_CASE("broadcast: on_recv is a select case beside a channel, thread and coroutine") {
  leash::broadcast<int> b(4);
  auto rx = b.subscribe();
  leash::channel<int> ch;
  // A value read by try_recv leaves no stale wake-up behind: nothing is ready.
  b.send(1);
  CHECK(*rx.try_recv().value == 1);
  CHECK_FALSE(leash::try_select(leash::on_recv(rx, [](leash::broadcast_result<int>) {}),
                                leash::on_recv(ch, [](int) {}))
                  .has_value());
  // Ready: the broadcast value.
  b.send(2);
  int got = 0;
  CHECK(leash::select(leash::on_recv(rx, [&](leash::broadcast_result<int> r) { got = *r.value; }),
                      leash::on_recv(ch, [](int) {})) == 0);
  CHECK(got == 2);
  // A waiting select woken by a send on the broadcast, then one by the channel.
  leash::run_nursery([&](leash::nursery& n) {
    n.spawn([&] {
      got = 0;
      CHECK(leash::select(
                leash::on_recv(ch, [](int) {}),
                leash::on_recv(rx, [&](leash::broadcast_result<int> r) { got = *r.value; })) == 1);
    });
    wait_blocked("select");
    b.send(3);
  });
  CHECK(got == 3);
  int from_channel = 0;
  leash::run_nursery([&](leash::nursery& n) {
    n.spawn([&]() -> coro<void> {
      CHECK(co_await leash::async_select(leash::on_recv(rx, [](leash::broadcast_result<int>) {}),
                                         leash::on_recv(ch, [&](int v) { from_channel = v; })) ==
            1);
      // Then the broadcast's close, through the select case.
      bool closed = false;
      CHECK(co_await leash::async_select(leash::on_recv(ch, [](int) {}),
                                         leash::on_recv(rx, [&](leash::broadcast_result<int> r) {
                                           closed = r.closed();
                                         })) == 1);
      CHECK(closed);
    });
    wait_blocked("async_select");
    ch.send(9);
    wait_blocked("async_select");
    b.close();
  });
  CHECK(from_channel == 9);
}

TEST_CASE("broadcast: a select case stays ready while values are unread, after a lag too") {
  leash::broadcast<int> b(2);
  auto rx = b.subscribe();
  for (int v = 0; v < 5; ++v)
    b.send(v);
  std::vector<leash::broadcast_result<int>> got;
  auto take = [&](leash::broadcast_result<int> r) { got.push_back(std::move(r)); };
  // Each case fired leaves the next one ready: the lag, then 3, then 4.
  CHECK(leash::try_select(leash::on_recv(rx, take)) == 0);
  CHECK(leash::try_select(leash::on_recv(rx, take)) == 0);
  CHECK(leash::try_select(leash::on_recv(rx, take)) == 0);
  CHECK_FALSE(leash::try_select(leash::on_recv(rx, take)).has_value());
  REQUIRE(got.size() == 3);
  CHECK(got[0].lagged());
  CHECK(got[0].missed == 3);
  CHECK(*got[1].value == 3);
  CHECK(*got[2].value == 4);
}

TEST_CASE("broadcast: stress, thread and coroutine receivers, every value read or counted lagged") {
  // Receives (values x receivers): 2.4 million, 1.2 million under a sanitizer.
  constexpr int sent = leash_test::under_any_sanitizer ? 150000 : 300000;
  constexpr int receivers = 8;
  leash::broadcast<int> b(1024);
  std::vector<leash::broadcast<int>::receiver> rxs;
  for (int i = 0; i < receivers; ++i)
    rxs.push_back(b.subscribe());
  struct tally {
    std::uint64_t received = 0, missed = 0;
    bool in_order = true, closed = false;
    int last = -1;
    void add(const leash::broadcast_result<int>& r) {
      if (r.lagged()) {
        missed += r.missed;
        last += static_cast<int>(r.missed);  // the values skipped
      } else if (r.closed()) {
        closed = true;
      } else {
        ++received;
        if (*r.value != last + 1) in_order = false;
        last = *r.value;
      }
    }
  };
  std::vector<tally> tallies(receivers);
  leash::run_nursery([&](leash::nursery& n) {
    for (int i = 0; i < receivers; ++i) {
      if (i % 2 == 0) {
        n.spawn([&, i] {
          while (!tallies[i].closed)
            tallies[i].add(rxs[i].recv());
        });
      } else {
        n.spawn([&, i]() -> coro<void> {
          while (!tallies[i].closed)
            tallies[i].add(co_await rxs[i].async_recv());
        });
      }
    }
    n.spawn([&] {
      for (int v = 0; v < sent; ++v)
        b.send(v);
      b.close();
    });
  });
  for (const tally& t : tallies) {
    CHECK(t.received + t.missed == static_cast<std::uint64_t>(sent));
    CHECK(t.in_order);
    CHECK(t.closed);
  }
}

// ---- watch

TEST_CASE("watch: initial value, get, and changed after a send") {
  leash::watch<std::string> w("initial");
  CHECK(w.get() == "initial");
  CHECK(w.version() == 0);
  auto rx = w.subscribe();
  CHECK(rx.get() == "initial");
  CHECK_FALSE(rx.has_changed());  // subscribing marks the current value seen
  w.send("second");
  CHECK(rx.has_changed());
  CHECK(rx.get() == "second");  // get marks nothing seen
  CHECK(rx.has_changed());
  CHECK(rx.changed() == "second");
  CHECK_FALSE(rx.has_changed());
  CHECK(w.version() == 1);
}

TEST_CASE("watch: changed returns once per change, the latest, skipping intermediate values") {
  leash::watch<int> w(0);
  auto rx = w.subscribe();
  w.send(1);
  w.send(2);
  w.send(3);
  CHECK(rx.changed() == 3);
  // The change was returned: no select case is ready, no second return.
  CHECK_FALSE(leash::try_select(leash::on_changed(rx, [] {})).has_value());
  w.send(3);  // the same value again is a change
  CHECK(leash::try_select(leash::on_changed(rx, [] {})) == 0);
  CHECK_FALSE(rx.has_changed());
}

TEST_CASE("watch: a slow receiver sees the latest and never an older value after a newer") {
  constexpr int changes = scaled(20000);
  for (bool coroutine : {false, true}) {
    CAPTURE(coroutine);
    leash::watch<int> w(0);
    auto rx = w.subscribe();
    std::vector<int> seen;
    leash::run_nursery([&](leash::nursery& n) {
      if (coroutine) {
        n.spawn([&]() -> coro<void> {
          while (std::optional<int> v = co_await rx.async_changed())
            seen.push_back(*v);
        });
      } else {
        n.spawn([&] {
          while (std::optional<int> v = rx.changed())
            seen.push_back(*v);
        });
      }
      n.spawn([&] {
        for (int v = 1; v <= changes; ++v)
          w.send(v);
        w.close();
      });
    });
    REQUIRE_FALSE(seen.empty());
    CHECK(seen.back() == changes);  // the latest is never skipped
    CHECK(seen.size() <= static_cast<std::size_t>(changes));
    bool increasing = true;
    for (std::size_t i = 1; i < seen.size(); ++i)
      increasing = increasing && seen[i] > seen[i - 1];
    CHECK(increasing);
  }
}

TEST_CASE("watch: close returns an unseen value first, then ends every wait") {
  leash::watch<int> w(0);
  auto rx = w.subscribe();
  w.send(5);
  CHECK(w.close());
  CHECK_FALSE(w.close());
  CHECK_THROWS_AS(w.send(6), leash::channel_closed);
  CHECK(rx.changed() == 5);
  CHECK(rx.changed() == std::nullopt);
  CHECK(rx.changed() == std::nullopt);
  CHECK(rx.get() == 5);
  // Waits blocked at close end, thread and coroutine.
  leash::watch<int> w2(0);
  auto a = w2.subscribe();
  auto c = w2.subscribe();
  bool a_ended = false, c_ended = false;
  leash::run_nursery([&](leash::nursery& n) {
    n.spawn([&] { a_ended = !a.changed().has_value(); });
    n.spawn([&]() -> coro<void> { c_ended = !(co_await c.async_changed()).has_value(); });
    wait_blocked(watch_recv);
    wait_blocked(watch_async);
    w2.close();
  });
  CHECK(a_ended);
  CHECK(c_ended);
  CHECK_FALSE(w2.subscribe().changed().has_value());  // subscribed after close
}

TEST_CASE("watch: cancelling the scope ends blocked waits and marks nothing seen") {
  leash::watch<int> w(0);
  auto rx = w.subscribe();
  auto rx_coro = w.subscribe();
  std::atomic<int> cancelled{0};
  leash::nursery n;
  n.spawn([&] {
    try {
      (void)rx.changed();
    } catch (const leash::cancelled&) {
      cancelled.fetch_add(1);
      throw;
    }
  });
  n.spawn([&]() -> coro<void> {
    try {
      (void)co_await rx_coro.async_changed();
    } catch (const leash::cancelled&) {
      cancelled.fetch_add(1);
      throw;
    }
  });
  wait_blocked(watch_recv);
  wait_blocked(watch_async);
  n.cancel();
  n.wait();
  CHECK(cancelled.load() == 2);
  w.send(1);
  CHECK(rx.changed() == 1);
  CHECK(rx_coro.changed() == 1);
}

TEST_CASE("watch: on_changed is a select case beside a channel, thread and coroutine") {
  leash::watch<int> w(0);
  auto rx = w.subscribe();
  leash::channel<int> ch;
  std::optional<int> got;
  leash::run_nursery([&](leash::nursery& n) {
    n.spawn([&] {
      CHECK(leash::select(leash::on_recv(ch, [](int) {}),
                          leash::on_changed(rx, [&](std::optional<int> v) { got = v; })) == 1);
    });
    wait_blocked("select");
    w.send(4);
  });
  CHECK(got == 4);
  CHECK_FALSE(rx.has_changed());  // the select case marked it seen
  leash::run_nursery([&](leash::nursery& n) {
    n.spawn([&]() -> coro<void> {
      bool closed = false;
      CHECK(co_await leash::async_select(
                leash::on_recv(ch, [](int) {}),
                leash::on_changed(rx, [&](std::optional<int> v) { closed = !v; })) == 1);
      CHECK(closed);
    });
    wait_blocked("async_select");
    w.close();
  });
}
