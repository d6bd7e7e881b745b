// The select contract for coroutine tasks: each behaviour of select_test.cpp
// that involves waiting or a task, with async_select / async_select_biased,
// between two coroutine tasks and between a thread task and a coroutine task
// in either role.
#include <doctest/doctest.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstddef>
#include <leash.hpp>
#include <memory>
#include <optional>
#include <stop_token>
#include <string>
#include <string_view>
#include <thread>
#include <utility>
#include <vector>

#include "support/blocked.hpp"
#include "support/parties.hpp"

using namespace std::chrono_literals;
using leash::channel_status;
using leash::coro;
using leash_test::blocked_name;
using leash_test::mixed_pairings;
using leash_test::party;
using leash_test::spawn_recv;
using leash_test::spawn_send;
using leash_test::wait_blocked;
using time_point = std::chrono::steady_clock::time_point;

namespace {

auto ignore = [](auto&&...) {};

// What a coroutine task is seen suspended in while it waits in async_select.
constexpr const char* async_select_name = "async_select";

// A wait no test sits out: only cancellation ends it.
constexpr auto forever = 1h;

// Suspends the running coroutine task until its nursery is cancelled, so what
// follows runs with its ambient token stopped.
coro<void> until_cancelled() {
  try {
    co_await leash::this_task::async_sleep_for(forever);
  } catch (const leash::cancelled&) {
  }
}

// Threads seen blocked in select (the coroutine form's name ends the same way).
void wait_blocked_thread_select(std::size_t count = 1) {
  const auto give_up = std::chrono::steady_clock::now() + 30s;
  while (leash_test::blocked_in("select") - leash_test::blocked_in(async_select_name) < count) {
    if (std::chrono::steady_clock::now() > give_up) FAIL("threads never blocked in select");
    std::this_thread::yield();
  }
}

}  // namespace

TEST_CASE("async_select completes the ready case, and a losing send case keeps its value") {
  leash::channel<int> a(1), b(1);
  b.send(7);
  leash::channel<std::unique_ptr<int>> full(1), open(1);
  full.send(std::make_unique<int>(0));
  leash::nursery n;
  n.spawn([&]() -> coro<void> {
    std::optional<int> got;
    bool a_ran = false;
    const std::size_t k =
        co_await leash::async_select(leash::on_recv(a, [&](std::optional<int>) { a_ran = true; }),
                                     leash::on_recv(b, [&](std::optional<int> v) { got = v; }));
    CHECK(k == 1);
    CHECK(got == 7);
    CHECK_FALSE(a_ran);
    auto mine = std::make_unique<int>(1);
    auto other = std::make_unique<int>(2);
    CHECK(co_await leash::async_select(leash::on_send(full, mine, ignore),
                                       leash::on_send(open, std::move(other), ignore)) == 1);
    REQUIRE(mine != nullptr);  // lost: still ours
    CHECK(*mine == 1);
    CHECK(other == nullptr);  // won: moved into the channel
    CHECK(co_await leash::async_select(leash::on_send(full, std::move(mine), ignore),
                                       leash::on_recv(open, ignore)) == 1);
    REQUIRE(mine != nullptr);
    CHECK(*mine == 1);
  });
  n.wait();
  CHECK(b.size() == 0);
  CHECK(open.size() == 0);
  CHECK(**full.recv() == 0);
}

TEST_CASE("a waiting send case given std::move(p) that loses to a receive leaves p as it was") {
  for (const auto& mix : mixed_pairings) {  // first selects, second sends to it
    CAPTURE(to_string(mix));
    leash::channel<std::string> in, out;
    std::string p = "mine";
    std::optional<std::string> got;
    leash::run_nursery([&](leash::nursery& n) {
      auto receive = [&](std::optional<std::string> v) { got = v; };
      if (mix.first == party::thread) {
        n.spawn([&] {
          CHECK(leash::select(leash::on_send(out, std::move(p), ignore),
                              leash::on_recv(in, receive)) == 1);
        });
        wait_blocked_thread_select();
      } else {
        n.spawn([&]() -> coro<void> {
          CHECK(co_await leash::async_select(leash::on_send(out, std::move(p), ignore),
                                             leash::on_recv(in, receive)) == 1);
        });
        wait_blocked(async_select_name);
      }
      spawn_send(n, mix.second, in, std::string("theirs"));
    });
    CHECK(got == "theirs");
    CHECK(p == "mine");
    CHECK(out.try_recv().status == channel_status::empty);
  }
}

namespace {

// Suspends a coroutine task in async_select with one receive case calling
// `fn`, then sends "v" to it from a task of kind `sender`.
template <class F>
void deliver_while_suspended(party sender, F fn) {
  leash::channel<std::string> ch;
  leash::run_nursery([&](leash::nursery& n) {
    n.spawn([&ch, fn]() -> coro<void> {
      CHECK(co_await leash::async_select(leash::on_recv(ch, fn)) == 0);
    });
    wait_blocked(async_select_name);
    spawn_send(n, sender, ch, std::string("v"));
  });
  CHECK(ch.size() == 0);
}

}  // namespace

TEST_CASE("a waiting async_select hands the value to every shape of receive callback") {
  for (party sender : {party::thread, party::coroutine}) {
    CAPTURE(to_string(sender));
    std::string got;
    deliver_while_suspended(sender, [&](std::string v) { got = v + "1"; });
    CHECK(got == "v1");
    deliver_while_suspended(sender, [&](const std::string& v) { got = v + "2"; });
    CHECK(got == "v2");
    deliver_while_suspended(sender, [&](std::string&& v) { got = std::move(v) + "3"; });
    CHECK(got == "v3");
    deliver_while_suspended(sender, [&](std::optional<std::string> v) { got = *v + "4"; });
    CHECK(got == "v4");
    deliver_while_suspended(sender, [&](const std::optional<std::string>& v) { got = *v + "5"; });
    CHECK(got == "v5");
    deliver_while_suspended(sender, [&](std::optional<std::string>&& v) { got = *v + "6"; });
    CHECK(got == "v6");
    bool ran = false;
    deliver_while_suspended(sender, [&] { ran = true; });
    CHECK(ran);
  }
}

TEST_CASE("a move-only value reaches a T or T&& callback of a waiting async_select") {
  for (party sender : {party::thread, party::coroutine}) {
    CAPTURE(to_string(sender));
    leash::channel<std::unique_ptr<int>> ch;
    std::unique_ptr<int> by_value, by_rvalue;
    leash::run_nursery([&](leash::nursery& n) {
      n.spawn([&]() -> coro<void> {
        co_await leash::async_select(
            leash::on_recv(ch, [&](std::unique_ptr<int> v) { by_value = std::move(v); }));
        co_await leash::async_select(
            leash::on_recv(ch, [&](std::unique_ptr<int>&& v) { by_rvalue = std::move(v); }));
      });
      for (int i = 7; i <= 8; ++i) {
        wait_blocked(async_select_name);
        spawn_send(n, sender, ch, std::make_unique<int>(i)).get();
      }
    });
    REQUIRE(by_value != nullptr);
    REQUIRE(by_rvalue != nullptr);
    CHECK(*by_value == 7);
    CHECK(*by_rvalue == 8);
  }
}

TEST_CASE("a receive case on a closed channel: an optional callback gets nullopt, a T one throws") {
  leash::channel<int> open, closed;
  closed.close();
  leash::nursery n;
  n.spawn([&]() -> coro<void> {
    bool ran = false;
    auto takes_int = [&](int) { ran = true; };
    std::string message;
    try {
      co_await leash::async_select(leash::on_recv(open, ignore), leash::on_recv(closed, takes_int));
    } catch (const leash::channel_closed& e) {
      message = e.what();
    }
    CHECK(message.starts_with("leash::select: "));
    CHECK_FALSE(ran);
    std::optional<int> got = 1;
    CHECK(co_await leash::async_select(
              leash::on_recv(open, ignore),
              leash::on_recv(closed, [&](const std::optional<int>& v) { got = v; })) == 1);
    CHECK(got == std::nullopt);
  });
  n.wait();
}

TEST_CASE(
    "a waiting receive case with a T callback throws channel_closed when its channel closes") {
  for (const auto& mix : mixed_pairings) {  // first selects, second closes
    CAPTURE(to_string(mix));
    leash::channel<int> a, b;
    std::atomic<bool> threw{false}, ran{false};
    auto takes_int = [&](const int&) { ran = true; };
    leash::run_nursery([&](leash::nursery& n) {
      if (mix.first == party::thread) {
        n.spawn([&] {
          try {
            leash::select(leash::on_recv(a, ignore), leash::on_recv(b, takes_int));
          } catch (const leash::channel_closed&) {
            threw = true;
          }
        });
        wait_blocked_thread_select();
      } else {
        n.spawn([&]() -> coro<void> {
          try {
            co_await leash::async_select(leash::on_recv(a, ignore), leash::on_recv(b, takes_int));
          } catch (const leash::channel_closed&) {
            threw = true;
          }
        });
        wait_blocked(async_select_name);
      }
      if (mix.second == party::thread) {
        b.close();
      } else {
        n.spawn([&]() -> coro<void> {
          b.close();
          co_return;
        });
      }
    });
    CHECK(threw);
    CHECK_FALSE(ran);
  }
}

TEST_CASE("async_select's timer cases give the time point and leave no timer behind") {
  const auto pending = leash::runtime::stats().pending_timers;
  const time_point t0 = std::chrono::steady_clock::now();
  leash::channel<int> ch;
  leash::nursery n;
  auto got = n.spawn([&]() -> coro<std::vector<time_point>> {
    std::vector<time_point> at;
    auto note = [&](time_point t) { at.push_back(t); };
    auto note_ref = [&](const time_point& t) { at.push_back(t); };
    CHECK(co_await leash::async_select(leash::on_recv(ch, ignore), leash::on_after(1ms, note)) ==
          1);
    CHECK(co_await leash::async_select(leash::on_after(0ms, note_ref)) == 0);
    auto timer = leash::after(1ms);
    CHECK(co_await leash::async_select(leash::on_recv(ch, ignore), leash::on_recv(timer, note)) ==
          1);
    auto ticks = leash::tick(1ms);
    co_await leash::async_select(leash::on_recv(ticks, note_ref));
    CHECK(co_await leash::async_select(leash::on_recv(ch, ignore), leash::on_after(1h, ignore),
                                       leash::on_after(0ms, ignore)) == 2);
    co_return at;
  });
  const std::vector<time_point> at = got.get();
  n.wait();
  REQUIRE(at.size() == 4);
  for (const time_point t : at)
    CHECK(t >= t0 + 1ms);
  CHECK(leash::runtime::stats().pending_timers == pending);
}

TEST_CASE("a send case on a closed channel throws channel_closed with the value intact") {
  leash::channel<std::unique_ptr<int>> closed;
  closed.close();
  leash::channel<std::string> later;
  std::string text = "kept";
  leash::run_nursery([&](leash::nursery& n) {
    n.spawn([&]() -> coro<void> {  // chosen on a channel closed already: lvalue and std::move(p)
      auto p = std::make_unique<int>(4);
      int refused = 0;
      for (int round = 0; round < 2; ++round) {
        try {
          if (round == 0) {
            co_await leash::async_select(leash::on_send(closed, p, ignore));
          } else {
            co_await leash::async_select(leash::on_send(closed, std::move(p), ignore));
          }
        } catch (const leash::channel_closed&) {
          ++refused;
        }
      }
      CHECK(refused == 2);
      REQUIRE(p != nullptr);
      CHECK(*p == 4);
    });
    n.spawn([&]() -> coro<void> {  // waiting when its channel closes
      bool refused = false;
      try {
        co_await leash::async_select(leash::on_send(later, std::move(text), ignore));
      } catch (const leash::channel_closed&) {
        refused = true;
      }
      CHECK(refused);
    });
    wait_blocked(async_select_name);
    later.close();
  });
  CHECK(text == "kept");
}

TEST_CASE(
    "an async_select send case given a temporary delivers it, at once or to a later partner") {
  for (party receiver : {party::thread, party::coroutine}) {
    CAPTURE(to_string(receiver));
    leash::channel<std::string> buffered(1), rendezvous;
    bool sent = false;
    const std::string constant = "copied";
    leash::run_nursery([&](leash::nursery& n) {
      n.spawn([&]() -> coro<void> {
        CHECK(co_await leash::async_select(
                  leash::on_send(buffered, std::string("made here"), [&] { sent = true; })) == 0);
        CHECK(co_await leash::async_select(
                  leash::on_send(rendezvous, std::string("made earlier"), ignore)) == 0);
        CHECK(co_await leash::async_select(leash::on_send(rendezvous, constant, ignore)) == 0);
      });
      wait_blocked(async_select_name);
      CHECK(spawn_recv(n, receiver, rendezvous).get() == "made earlier");
      wait_blocked(async_select_name);
      CHECK(spawn_recv(n, receiver, rendezvous).get() == "copied");
    });
    CHECK(sent);
    CHECK(buffered.recv() == "made here");
    CHECK(constant == "copied");
  }
}

TEST_CASE("select waits until a partner arrives, for receive and send cases") {
  for (const auto& mix : mixed_pairings) {  // first selects, second is its partner
    CAPTURE(to_string(mix));
    leash::channel<int> in, out;
    for (const std::size_t expected : {0, 1}) {  // the partner sends, then receives
      CAPTURE(expected);
      int v = 5;
      std::optional<int> got;
      std::size_t k = 99;
      auto receive = [&](std::optional<int> x) { got = x; };
      leash::run_nursery([&](leash::nursery& n) {
        if (mix.first == party::thread) {
          n.spawn([&] {
            k = leash::select(leash::on_recv(in, receive), leash::on_send(out, v, ignore));
          });
          wait_blocked_thread_select();
        } else {
          n.spawn([&]() -> coro<void> {
            k = co_await leash::async_select(leash::on_recv(in, receive),
                                             leash::on_send(out, v, ignore));
          });
          wait_blocked(async_select_name);
        }
        if (expected == 0) {
          spawn_send(n, mix.second, in, 11);
        } else {
          CHECK(spawn_recv(n, mix.second, out).get() == 5);
        }
      });
      CHECK(k == expected);
      CHECK(got == (expected == 0 ? std::optional<int>(11) : std::nullopt));
      CHECK(v == 5);  // an lvalue case copies, whether it won or lost
    }
  }
}

TEST_CASE("among ready cases async_select's choice is uniform: 50% +- 5%, also for two of three") {
  constexpr long rounds = 100'000;
  leash::channel<int> a(1), b(1), c(1);
  leash::nursery n;
  auto picked = n.spawn([&]() -> coro<std::vector<long>> {
    std::vector<long> count(5, 0);
    for (long i = 0; i < rounds; ++i) {  // two ready of two
      (void)a.try_send(1);
      (void)b.try_send(2);
      ++count[co_await leash::async_select(leash::on_recv(a, ignore), leash::on_recv(b, ignore))];
    }
    (void)a.try_recv();
    (void)b.try_recv();
    for (long i = 0; i < rounds; ++i) {  // two ready of three
      (void)b.try_send(2);
      (void)c.try_send(3);
      ++count[2 + co_await leash::async_select(leash::on_recv(a, ignore), leash::on_recv(b, ignore),
                                               leash::on_recv(c, ignore))];
      (void)b.try_recv();
      (void)c.try_recv();
    }
    co_return count;
  });
  const std::vector<long> count = picked.get();
  n.wait();
  CHECK(count[0] > rounds * 45 / 100);
  CHECK(count[0] < rounds * 55 / 100);
  CHECK(count[2] == 0);
  CHECK(count[3] > rounds * 45 / 100);
  CHECK(count[4] > rounds * 45 / 100);
}

TEST_CASE("async_select_biased takes the first ready case in argument order") {
  leash::channel<int> a(1), b(1);
  leash::nursery n;
  auto firsts = n.spawn([&]() -> coro<int> {
    int first = 0;
    for (int i = 0; i < 100; ++i) {
      (void)a.try_send(1);
      (void)b.try_send(2);
      if (co_await leash::async_select_biased(leash::on_recv(a, ignore),
                                              leash::on_recv(b, ignore)) == 0) {
        ++first;
      }
      (void)a.try_recv();
      (void)b.try_recv();
    }
    co_return first;
  });
  CHECK(firsts.get() == 100);
  auto second = n.spawn([&]() -> coro<std::size_t> {  // waits: b becomes ready first
    co_return co_await leash::async_select_biased(leash::on_recv(a, ignore),
                                                  leash::on_recv(b, ignore));
  });
  wait_blocked(async_select_name);
  b.send(3);
  CHECK(second.get() == 1);
  n.wait();
}

TEST_CASE("closing a channel wakes selects of both kinds waiting on it") {
  leash::channel<int> a, b, c;
  std::atomic<int> woke_nullopt{0}, refused_intact{0};
  leash::run_nursery([&](leash::nursery& n) {
    auto nullopt_seen = [&](std::optional<int> v) {
      if (!v) ++woke_nullopt;
    };
    n.spawn([&]() -> coro<void> {
      CHECK(co_await leash::async_select(leash::on_recv(a, ignore),
                                         leash::on_recv(b, nullopt_seen)) == 1);
    });
    n.spawn([&] {
      CHECK(leash::select(leash::on_recv(a, ignore), leash::on_recv(b, nullopt_seen)) == 1);
    });
    n.spawn([&]() -> coro<void> {
      int v = 1;
      try {
        co_await leash::async_select(leash::on_send(c, v, ignore));
      } catch (const leash::channel_closed&) {
        if (v == 1) ++refused_intact;
      }
    });
    n.spawn([&] {
      int v = 1;
      try {
        leash::select(leash::on_send(c, v, ignore));
      } catch (const leash::channel_closed&) {
        if (v == 1) ++refused_intact;
      }
    });
    wait_blocked(async_select_name, 2);
    wait_blocked_thread_select(2);
    b.close();
    c.close();
  });
  CHECK(woke_nullopt == 2);
  CHECK(refused_intact == 2);
}

TEST_CASE(
    "a disabled case never fires, and an async_select with no enabled case waits until cancelled") {
  leash::channel<int> a(1);
  a.send(1);
  std::atomic<int> cancelled{0}, deadline{0};
  {
    leash::nursery n;
    n.spawn([&]() -> coro<void> {
      try {
        co_await leash::async_select(leash::on_recv(a, ignore).when(false));
      } catch (const leash::cancelled&) {
        ++cancelled;
      }
    });
    n.spawn([&]() -> coro<void> {
      try {
        co_await leash::async_select();
      } catch (const leash::cancelled&) {
        ++cancelled;
      }
    });
    wait_blocked(async_select_name, 2);
    CHECK(a.size() == 1);
    n.cancel();
    n.wait();
  }
  leash::nursery_options o;
  o.timeout = 20ms;
  {
    leash::nursery n(o);
    n.spawn([&]() -> coro<void> {
      try {
        co_await leash::async_select(leash::on_recv(a, ignore).when(false));
      } catch (const leash::deadline_exceeded&) {
        ++deadline;
      }
    });
    CHECK_THROWS_AS(n.wait(), leash::deadline_exceeded);
  }
  CHECK(cancelled == 2);
  CHECK(deadline == 1);
  CHECK(a.size() == 1);
}

TEST_CASE("the same channel may appear twice in an async_select, and is matched once") {
  for (party sender : {party::thread, party::coroutine}) {
    CAPTURE(to_string(sender));
    leash::channel<int> a(2);
    a.send(1);
    leash::run_nursery([&](leash::nursery& n) {
      auto ready = n.spawn([&]() -> coro<int> {
        int got = 0;
        const auto k = co_await leash::async_select(
            leash::on_recv(a, [&](std::optional<int> v) { got += *v; }),
            leash::on_recv(a, [&](std::optional<int> v) { got += *v * 10; }));
        co_return k == 0 ? got - 1 : got - 10;
      });
      CHECK(ready.get() == 0);
      CHECK(a.size() == 0);
      auto waiting = n.spawn([&]() -> coro<int> {
        int fired = 0;
        co_await leash::async_select(leash::on_recv(a, [&](int) { ++fired; }),
                                     leash::on_recv(a, [&](int) { ++fired; }));
        co_return fired;
      });
      wait_blocked(async_select_name);
      spawn_send(n, sender, a, 5).get();  // one partner, matched once, though queued twice
      CHECK(waiting.get() == 1);
    });
    CHECK(a.size() == 0);
    a.send(6);  // no node of the select is left to take it
    CHECK(a.size() == 1);
  }
}

TEST_CASE("a send and a receive case on one unbuffered channel never match each other") {
  leash::channel<int> ch;
  leash::channel<int> buffered(1);
  leash::nursery n;
  auto timed = n.spawn([&]() -> coro<std::size_t> {
    int v = 1;
    const std::size_t k = co_await leash::async_select(
        leash::on_send(ch, v, ignore), leash::on_recv(ch, ignore), leash::on_after(30ms, ignore));
    co_return v == 1 ? k : 99;
  });
  CHECK(timed.get() == 2);
  // Its own queued receive must not make its send case look ready (and send
  // it round its loop forever): it waits, seen suspended in async_select.
  std::atomic<bool> intact{false};
  n.spawn([&]() -> coro<void> {
    int v = 1;
    try {
      co_await leash::async_select(leash::on_send(ch, v, ignore), leash::on_recv(ch, ignore),
                                   leash::on_recv(buffered, ignore));
    } catch (const leash::cancelled&) {
      intact = v == 1;
      throw;
    }
  });
  wait_blocked(async_select_name);
  n.cancel();
  n.wait();
  CHECK(intact);
}

TEST_CASE("a waiting async_select is cancelled by its nursery or its deadline, leaving nothing") {
  const auto pending = leash::runtime::stats().pending_timers;
  leash::channel<int> a, b;
  std::atomic<int> cancelled{0}, intact{0};
  // Waits on a receive, a send and a timer until stopped.
  auto wait_stopped = [&]() -> coro<void> {
    int v = 7;
    try {
      co_await leash::async_select(leash::on_recv(a, ignore), leash::on_send(b, v, ignore),
                                   leash::on_after(forever, ignore));
    } catch (const leash::cancelled&) {
      ++cancelled;
      if (v == 7) ++intact;
      throw;
    }
  };
  {
    leash::nursery n;
    n.spawn(wait_stopped);
    n.spawn(wait_stopped);
    wait_blocked(async_select_name, 2);
    n.cancel();
    n.wait();
  }
  leash::nursery_options o;
  o.timeout = 10ms;
  {
    leash::nursery n(o);
    n.spawn(wait_stopped);
    CHECK_THROWS_AS(n.wait(), leash::deadline_exceeded);
  }
  CHECK(cancelled == 3);
  CHECK(intact == 3);
  // Nothing was left queued: a sender finds no receiver, a receiver no sender.
  CHECK(a.try_send(1) == channel_status::full);
  CHECK(b.try_recv().status == channel_status::empty);
  CHECK(leash::runtime::stats().pending_timers == pending);
}

TEST_CASE("readiness wins over a stopped token in async_select") {
  leash::channel<int> a(1);
  a.send(1);
  std::optional<leash::task<std::vector<int>>> t;
  {
    leash::nursery n;  // installed on this thread: cancelling it would cancel t->get() here
    t = n.spawn([&]() -> coro<std::vector<int>> {
      co_await until_cancelled();
      std::vector<int> got;
      got.push_back(static_cast<int>(co_await leash::async_select(leash::on_recv(a, ignore))));
      try {
        co_await leash::async_select(leash::on_recv(a, ignore));
        got.push_back(-1);
      } catch (const leash::cancelled&) {
        got.push_back(-2);
      }
      co_return got;
    });
    wait_blocked("this_task::async_sleep");
    n.cancel();
    n.wait();
  }
  CHECK(t->get() == std::vector<int>{0, -2});
}

TEST_CASE("a stop racing a matched async_select loses: every value handed over is received") {
  constexpr int tasks = 64;
  const int rounds = leash_test::scaled(40);
  for (party hander : {party::thread, party::coroutine}) {
    CAPTURE(to_string(hander));
    for (int round = 0; round < rounds; ++round) {
      std::vector<std::unique_ptr<leash::channel<int>>> channels;
      for (int i = 0; i < tasks; ++i)
        channels.push_back(std::make_unique<leash::channel<int>>(0));
      leash::channel<int> never;
      std::atomic<long> received{0};
      std::atomic<int> got{0}, cancelled{0};
      long handed = 0;
      auto hand_out = [&] {
        long sum = 0;
        for (int i = 0; i < tasks; i += 2) {
          if (channels[static_cast<std::size_t>(i)]->try_send(i + 1) == channel_status::ok)
            sum += i + 1;
        }
        return sum;
      };
      {
        leash::nursery hander_nursery;  // the outer one: cancelling n leaves it alone
        leash::nursery n;
        for (int i = 0; i < tasks; ++i) {
          n.spawn([&, i]() -> coro<void> {
            auto take = [&](int v) {
              received += v;
              ++got;
            };
            try {
              co_await leash::async_select(
                  leash::on_recv(*channels[static_cast<std::size_t>(i)], take),
                  leash::on_recv(never, take));
            } catch (const leash::cancelled&) {
              ++cancelled;
              throw;
            }
          });
        }
        wait_blocked(async_select_name, tasks);
        std::thread canceller([&] { n.cancel(); });
        if (hander == party::thread) {
          handed = hand_out();
        } else {
          auto h = hander_nursery.spawn([&]() -> coro<long> { co_return hand_out(); });
          handed = h.get(std::stop_token());  // this thread's ambient n may be cancelled by now
        }
        canceller.join();
        n.wait();
      }
      REQUIRE(received == handed);
      REQUIRE(got + cancelled == tasks);
    }
  }
}

// async_select has no range form; the thread's select(range) fans in from
// coroutine producers.
TEST_CASE("select over a range of cases fans in from coroutine producers") {
  constexpr int inputs = 10, per_input = 100;
  std::vector<std::unique_ptr<leash::channel<int>>> channels;
  for (int i = 0; i < inputs; ++i)
    channels.push_back(std::make_unique<leash::channel<int>>());
  std::vector<int> count(inputs, 0);
  leash::run_nursery([&](leash::nursery& n) {
    for (int i = 0; i < inputs; ++i) {
      n.spawn([&, i]() -> coro<void> {
        auto& ch = *channels[static_cast<std::size_t>(i)];
        for (int k = 0; k < per_input; ++k)
          co_await ch.async_send(i);
        ch.close();
      });
    }
    std::vector<leash::recv_case<int>> cases;
    for (auto& ch : channels)
      cases.push_back(leash::on_recv(*ch));
    for (int open = inputs; open > 0;) {
      const std::size_t k = leash::select(cases);
      if (auto v = cases[k].take()) {
        CHECK(*v == static_cast<int>(k));
        ++count[k];
      } else {
        cases[k].when(false);
        --open;
      }
    }
  });
  for (int c : count)
    CHECK(c == per_input);
}

namespace {

// Sends values first, first+2, ... below `values`, each through a select
// over a and b, from a task of kind `p`.
void spawn_select_sender(leash::nursery& n, party p, leash::channel<int>& a, leash::channel<int>& b,
                         int first, int values) {
  if (p == party::thread) {
    n.spawn([&a, &b, first, values] {
      for (int i = first; i < values; i += 2)
        leash::select(leash::on_send(a, i, ignore), leash::on_send(b, i, ignore));
    });
    return;
  }
  n.spawn([&a, &b, first, values]() -> coro<void> {
    for (int i = first; i < values; i += 2)
      co_await leash::async_select(leash::on_send(a, i, ignore), leash::on_send(b, i, ignore));
  });
}

}  // namespace

TEST_CASE("selects on both sides: a send select meets a receive select exactly once") {
  const int values = leash_test::scaled(20'000);
  for (const auto& mix : mixed_pairings) {  // first sends, second receives
    CAPTURE(to_string(mix));
    leash::channel<int> a, b;
    std::vector<int> seen(static_cast<std::size_t>(values), 0);
    auto note = [&](int v) { ++seen[static_cast<std::size_t>(v)]; };
    leash::run_nursery([&](leash::nursery& n) {
      for (int s = 0; s < 2; ++s)
        spawn_select_sender(n, mix.first, a, b, s, values);
      if (mix.second == party::thread) {
        n.spawn([&] {
          for (int i = 0; i < values; ++i)
            leash::select(leash::on_recv(a, note), leash::on_recv(b, note));
        });
      } else {
        n.spawn([&]() -> coro<void> {
          for (int i = 0; i < values; ++i)
            co_await leash::async_select(leash::on_recv(a, note), leash::on_recv(b, note));
        });
      }
    });
    CHECK(std::count(seen.begin(), seen.end(), 1) == values);
  }
}

TEST_CASE("live_tasks and leak_check name a coroutine task suspended in async_select") {
  leash::channel<int> ch;
  leash::leak_check local;
  leash::nursery_options o;
  o.name = "select-contract";
  leash::nursery n(o);
  n.spawn("chooser", [&]() -> coro<void> {
    co_await leash::async_select(leash::on_recv(ch, ignore), leash::on_after(forever, ignore));
  });
  wait_blocked(async_select_name);
  bool found = false;
  for (const auto& t : leash::live_tasks()) {
    if (t.nursery != "select-contract" || t.name != "chooser") continue;
    found = true;
    REQUIRE(t.blocked_in != nullptr);
    CHECK(std::string(t.blocked_in) == async_select_name);
    CHECK(std::string_view(t.site.file).ends_with("coro_select_contract_test.cpp"));
  }
  CHECK(found);
  const std::string report = local.verify(0ms);
  CHECK(report.find("task \"chooser\" spawned at") != std::string::npos);
  CHECK(report.find("blocked in async_select") != std::string::npos);
  ch.close();
  n.wait();
  CHECK(local.verify().empty());
}
