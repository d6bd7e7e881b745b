// Tests for leash/select.hpp and leash/timer_channel.hpp: select, after, tick.
#include <doctest/doctest.h>

#include <atomic>
#include <chrono>
#include <leash.hpp>
#include <memory>
#include <mutex>
#include <optional>
#include <set>
#include <stdexcept>
#include <string>
#include <thread>
#include <type_traits>
#include <vector>

#include "support/blocked.hpp"

using namespace std::chrono_literals;
using leash::channel_status;
using leash_test::wait_blocked;

namespace {
auto ignore = [](auto&&...) {};
}

TEST_CASE("select completes the ready case, runs its callback and returns its index") {
  leash::channel<int> a(1), b(1);
  b.send(7);
  std::optional<int> got;
  bool a_ran = false;
  const std::size_t k = leash::select(leash::on_recv(a, [&](std::optional<int>) { a_ran = true; }),
                                      leash::on_recv(b, [&](std::optional<int> v) { got = v; }));
  CHECK(k == 1);
  CHECK(got == 7);
  CHECK_FALSE(a_ran);
  CHECK(b.size() == 0);
}

TEST_CASE("a losing send case's value is not moved, and its channel is untouched") {
  leash::channel<std::unique_ptr<int>> full(1), open(1);
  full.send(std::make_unique<int>(0));
  auto mine = std::make_unique<int>(1);
  auto other = std::make_unique<int>(2);
  const std::size_t k =
      leash::select(leash::on_send(full, mine, ignore), leash::on_send(open, other, ignore));
  CHECK(k == 1);
  REQUIRE(mine != nullptr);  // lost: still ours
  CHECK(*mine == 1);
  CHECK(other == nullptr);  // won: moved into the channel
  CHECK(**open.recv() == 2);
  CHECK(**full.recv() == 0);
}

TEST_CASE("a receive case's callback gets the value as T, const T&, T&& or std::optional<T>") {
  leash::channel<std::string> ch(1);
  auto once = [&](auto fn) {
    ch.send("v");
    CHECK(leash::select(leash::on_recv(ch, fn)) == 0);
  };
  std::string got;
  once([&](std::string v) { got = v + "1"; });
  CHECK(got == "v1");
  once([&](const std::string& v) { got = v + "2"; });
  CHECK(got == "v2");
  once([&](std::string&& v) { got = std::move(v) + "3"; });
  CHECK(got == "v3");
  once([&](std::optional<std::string> v) { got = *v + "4"; });
  CHECK(got == "v4");
  once([&](const std::optional<std::string>& v) { got = *v + "5"; });
  CHECK(got == "v5");
  once([&](std::optional<std::string>&& v) { got = *v + "6"; });
  CHECK(got == "v6");
  bool ran = false;
  once([&] { ran = true; });
  CHECK(ran);
  CHECK(ch.size() == 0);
}

TEST_CASE("a move-only value reaches a T or T&& receive callback") {
  leash::channel<std::unique_ptr<int>> ch(1);
  ch.send(std::make_unique<int>(7));
  std::unique_ptr<int> got;
  leash::select(leash::on_recv(ch, [&](std::unique_ptr<int> v) { got = std::move(v); }));
  REQUIRE(got != nullptr);
  CHECK(*got == 7);
  ch.send(std::make_unique<int>(8));
  leash::select(leash::on_recv(ch, [&](std::unique_ptr<int>&& v) { got = std::move(v); }));
  CHECK(*got == 8);
}

TEST_CASE("a receive case whose callback takes T throws channel_closed on a closed channel") {
  leash::channel<int> open, closed;
  closed.close();
  bool ran = false;
  auto takes_int = [&](int) { ran = true; };
  CHECK_THROWS_WITH_AS(leash::select(leash::on_recv(closed, takes_int)),
                       doctest::Contains("leash::select: "), leash::channel_closed);
  CHECK_THROWS_AS(
      leash::try_select(leash::on_recv(open, ignore), leash::on_recv(closed, takes_int)),
      leash::channel_closed);
  CHECK_FALSE(ran);
  // A callback that can take std::optional<T> gets nullopt instead.
  std::optional<int> got = 1;
  leash::select(leash::on_recv(closed, [&](const std::optional<int>& v) { got = v; }));
  CHECK(got == std::nullopt);
}

TEST_CASE(
    "a blocked receive case with a T callback throws channel_closed when its channel closes") {
  leash::channel<int> a, b;
  leash::run_nursery([&](leash::nursery& n) {
    n.spawn([&] {
      bool ran = false;
      CHECK_THROWS_AS(leash::select(leash::on_recv(a, ignore),
                                    leash::on_recv(b, [&](const int&) { ran = true; })),
                      leash::channel_closed);
      CHECK_FALSE(ran);
    });
    wait_blocked("select");
    b.close();
  });
}

TEST_CASE("a timer case's callback gets the time point, by value or by const&") {
  using time_point = std::chrono::steady_clock::time_point;
  const time_point t0 = std::chrono::steady_clock::now();
  time_point got{};
  auto timer = leash::after(1ms);
  leash::select(leash::on_recv(timer, [&](time_point t) { got = t; }));
  CHECK(got >= t0 + 1ms);
  got = {};
  auto ticks = leash::tick(1ms);
  leash::select(leash::on_recv(ticks, [&](const time_point& t) { got = t; }));
  CHECK(got >= t0 + 1ms);
}

TEST_CASE("on_after's callback may take the time point it fired at") {
  using time_point = std::chrono::steady_clock::time_point;
  leash::channel<int> ch;
  const time_point t0 = std::chrono::steady_clock::now();
  time_point got{};
  CHECK(leash::select(leash::on_recv(ch, ignore),
                      leash::on_after(1ms, [&](time_point t) { got = t; })) == 1);
  CHECK(got >= t0 + 1ms);
  got = {};
  leash::select(leash::on_after(0ms, [&](const time_point& t) { got = t; }));
  CHECK(got >= t0 + 1ms);
}

TEST_CASE("a losing send case given std::move(p) leaves p as it was; the winner moves its value") {
  leash::channel<std::unique_ptr<int>> full(1), open(1);
  full.send(std::make_unique<int>(0));
  auto mine = std::make_unique<int>(1);
  auto other = std::make_unique<int>(2);
  CHECK(leash::select(leash::on_send(full, std::move(mine), ignore),
                      leash::on_send(open, std::move(other), ignore)) == 1);
  REQUIRE(mine != nullptr);  // lost: still ours
  CHECK(*mine == 1);
  CHECK(other == nullptr);  // won: moved into the channel
  CHECK(**open.recv() == 2);
  std::string text = "kept";
  CHECK(leash::try_select(leash::on_send(full, std::move(mine), ignore)) == std::nullopt);
  leash::channel<std::string> strings;
  CHECK(leash::try_select(leash::on_send(strings, std::move(text), ignore)) == std::nullopt);
  CHECK(text == "kept");
  REQUIRE(mine != nullptr);
  CHECK(*mine == 1);
}

TEST_CASE("a blocked send case given std::move(p) that loses to a receive leaves p as it was") {
  leash::channel<std::string> in, out;
  std::string p = "mine";
  leash::run_nursery([&](leash::nursery& n) {
    n.spawn([&] {
      std::optional<std::string> got;
      CHECK(leash::select(leash::on_send(out, std::move(p), ignore),
                          leash::on_recv(in, [&](std::optional<std::string> v) { got = v; })) == 1);
      CHECK(got == "theirs");
    });
    wait_blocked("select");
    in.send("theirs");
  });
  CHECK(p == "mine");
}

TEST_CASE("a send case given std::move(p) on a closed channel throws channel_closed, p intact") {
  leash::channel<std::unique_ptr<int>> ch;
  ch.close();
  auto p = std::make_unique<int>(4);
  CHECK_THROWS_AS(leash::select(leash::on_send(ch, std::move(p), ignore)), leash::channel_closed);
  REQUIRE(p != nullptr);
  CHECK(*p == 4);
  leash::channel<std::string> blocked;
  std::string text = "kept";
  leash::run_nursery([&](leash::nursery& n) {
    n.spawn([&] {
      CHECK_THROWS_AS(leash::select(leash::on_send(blocked, std::move(text), ignore)),
                      leash::channel_closed);
    });
    wait_blocked("select");
    blocked.close();
  });
  CHECK(text == "kept");
}

TEST_CASE("a send case given a temporary delivers it") {
  leash::channel<std::string> ch(1);
  bool sent = false;
  CHECK(leash::select(leash::on_send(ch, std::string("made here"), [&] { sent = true; })) == 0);
  CHECK(sent);
  CHECK(ch.recv() == "made here");
  const std::string constant = "copied";
  leash::select(leash::on_send(ch, constant, ignore));
  CHECK(ch.recv() == "copied");
  CHECK(constant == "copied");
}

TEST_CASE("send cases over lvalues can be kept in a range; a case referencing an rvalue cannot") {
  leash::channel<int> full(1), open(1);
  full.send(0);
  int a = 1, b = 2;
  bool b_sent = false;
  auto note_b = [&] { b_sent = true; };
  std::vector<decltype(leash::on_send(full, a, note_b))> cases;
  cases.push_back(leash::on_send(full, a, note_b));
  cases.push_back(leash::on_send(open, b, note_b));
  CHECK(leash::select(cases) == 1);
  CHECK(b_sent);
  CHECK(open.recv() == 2);
  // A case that owns a copy (of a const value) copies like any value.
  const int c = 3;
  auto owning = leash::on_send(open, c, ignore);
  auto copy = owning;
  CHECK(leash::select(copy) == 0);
  CHECK(open.recv() == 3);
  static_assert(std::is_move_constructible_v<decltype(leash::on_send(full, a, ignore))>);
  static_assert(
      !std::is_move_constructible_v<decltype(leash::on_send(full, std::move(a), ignore))>);
  static_assert(
      !std::is_copy_constructible_v<decltype(leash::on_send(full, std::move(a), ignore))>);
}

TEST_CASE("select blocks until a partner arrives, for receive and send cases") {
  leash::channel<int> in, out;
  leash::run_nursery([&](leash::nursery& n) {
    n.spawn([&] {
      int v = 5;
      std::optional<int> got;
      const auto k = leash::select(leash::on_recv(in, [&](std::optional<int> x) { got = x; }),
                                   leash::on_send(out, v, ignore));
      CHECK(k == 0);
      CHECK(got == 11);
      CHECK(v == 5);
    });
    wait_blocked("select");
    in.send(11);
  });
  leash::run_nursery([&](leash::nursery& n) {
    n.spawn([&] {
      int v = 6;
      const auto k = leash::select(leash::on_recv(in, ignore), leash::on_send(out, v, ignore));
      CHECK(k == 1);
    });
    wait_blocked("select");
    CHECK(out.recv() == 6);
  });
}

TEST_CASE("among ready cases the choice is uniform: 50% +- 5% over 100 000 selects") {
  leash::channel<int> a(1), b(1);
  long picked_a = 0;
  constexpr long rounds = 100'000;
  for (long i = 0; i < rounds; ++i) {
    a.try_send(1);
    b.try_send(2);
    if (leash::select(leash::on_recv(a, ignore), leash::on_recv(b, ignore)) == 0) ++picked_a;
  }
  CHECK(picked_a > rounds * 45 / 100);
  CHECK(picked_a < rounds * 55 / 100);
}

TEST_CASE("the choice stays uniform when some cases are not ready: 50% +- 5% for two of three") {
  // A lock-free pass that started at a random case and took the first ready
  // one after it would pick b twice as often as c here (a's turn falls to b).
  leash::channel<int> a(1), b(1), c(1);
  long picked_b = 0, picked_c = 0;
  constexpr long rounds = 100'000;
  for (long i = 0; i < rounds; ++i) {
    b.try_send(2);
    c.try_send(3);
    const std::size_t k = leash::select(leash::on_recv(a, ignore), leash::on_recv(b, ignore),
                                        leash::on_recv(c, ignore));
    (k == 1 ? picked_b : picked_c) += 1;
    CHECK(k != 0);
    (void)b.try_recv();  // leave both empty for the next round
    (void)c.try_recv();
  }
  CHECK(picked_b > rounds * 45 / 100);
  CHECK(picked_c > rounds * 45 / 100);
}

TEST_CASE("select_biased takes the first ready case in argument order") {
  leash::channel<int> a(1), b(1);
  for (int i = 0; i < 100; ++i) {
    a.try_send(1);
    b.try_send(2);
    CHECK(leash::select_biased(leash::on_recv(a, ignore), leash::on_recv(b, ignore)) == 0);
    a.try_recv();
    b.try_recv();
  }
  b.send(3);
  CHECK(leash::select_biased(leash::on_recv(a, ignore), leash::on_recv(b, ignore)) == 1);
}

TEST_CASE("a closed channel's receive case is ready and yields nullopt") {
  leash::channel<int> open, closed;
  closed.close();
  std::optional<int> got = 1;
  CHECK(leash::select(leash::on_recv(open, ignore),
                      leash::on_recv(closed, [&](std::optional<int> v) { got = v; })) == 1);
  CHECK(got == std::nullopt);
}

TEST_CASE("a chosen send case on a closed channel throws channel_closed, value intact") {
  leash::channel<std::unique_ptr<int>> ch;
  ch.close();
  auto value = std::make_unique<int>(4);
  CHECK_THROWS_AS(leash::select(leash::on_send(ch, value, ignore)), leash::channel_closed);
  REQUIRE(value != nullptr);
  CHECK(*value == 4);
}

TEST_CASE("closing a channel wakes a select blocked on it") {
  leash::channel<int> a, b, c;
  leash::run_nursery([&](leash::nursery& n) {
    n.spawn([&] {
      bool got_nullopt = false;
      CHECK(leash::select(leash::on_recv(a, ignore),
                          leash::on_recv(b, [&](std::optional<int> v) { got_nullopt = !v; })) == 1);
      CHECK(got_nullopt);
    });
    n.spawn([&] {
      int v = 1;
      CHECK_THROWS_AS(leash::select(leash::on_send(c, v, ignore)), leash::channel_closed);
      CHECK(v == 1);
    });
    wait_blocked("select", 2);
    b.close();
    c.close();
  });
}

TEST_CASE("a disabled case never fires; with no enabled case select blocks until cancelled") {
  leash::channel<int> a(1);
  a.send(1);
  CHECK(leash::try_select(leash::on_recv(a, ignore).when(false)) == std::nullopt);
  CHECK(a.size() == 1);
  CHECK(leash::move_on_after(20ms, [&] { leash::select(leash::on_recv(a, ignore).when(false)); }) ==
        false);
  CHECK(leash::move_on_after(20ms, [] { leash::select(); }) == false);
  CHECK(a.size() == 1);
}

TEST_CASE("try_select never blocks: nullopt when nothing is ready") {
  leash::channel<int> a, b(1);
  CHECK(leash::try_select(leash::on_recv(a, ignore), leash::on_recv(b, ignore)) == std::nullopt);
  b.send(1);
  CHECK(leash::try_select(leash::on_recv(a, ignore), leash::on_recv(b, ignore)) == 1);
  int v = 2;
  CHECK(leash::try_select(leash::on_send(a, v, ignore)) == std::nullopt);
  CHECK(v == 2);
}

TEST_CASE("the same channel may appear twice") {
  leash::channel<int> a(2);
  a.send(1);
  int got = 0;
  const auto k = leash::select(leash::on_recv(a, [&](std::optional<int> v) { got += *v; }),
                               leash::on_recv(a, [&](std::optional<int> v) { got += *v * 10; }));
  CHECK(k < 2);
  CHECK(got == (k == 0 ? 1 : 10));
  CHECK(a.size() == 0);
  leash::run_nursery([&](leash::nursery& n) {
    n.spawn([&] { leash::select(leash::on_recv(a, ignore), leash::on_recv(a, ignore)); });
    wait_blocked("select");
    a.send(5);  // one partner, matched once, though queued twice
  });
  CHECK(a.size() == 0);
}

TEST_CASE("a send and a receive case on one unbuffered channel never match each other") {
  leash::channel<int> ch;
  int v = 1;
  bool timed_out = false;
  const auto k = leash::select(leash::on_send(ch, v, ignore), leash::on_recv(ch, ignore),
                               leash::on_after(30ms, [&] { timed_out = true; }));
  CHECK(k == 2);
  CHECK(timed_out);
  CHECK(v == 1);
}

TEST_CASE("a select whose only partner would be itself parks instead of spinning") {
  // Its own queued receive node must not make its send case look ready (and
  // send it round its loop forever); it waits, seen blocked in select.
  leash::channel<int> ch;
  leash::channel<int> buffered(1);
  int v = 1;
  CHECK_THROWS_AS(leash::run_nursery([&](leash::nursery& n) {
                    n.spawn([&] {
                      leash::select(leash::on_send(ch, v, ignore), leash::on_recv(ch, ignore),
                                    leash::on_recv(buffered, ignore));
                    });
                    wait_blocked("select");
                    throw std::runtime_error("done waiting");
                  }),
                  std::runtime_error);
  CHECK(v == 1);
}

TEST_CASE("on_after fires when nothing else does, and leaves no timer behind") {
  leash::channel<int> ch;
  const auto pending = leash::runtime::stats().pending_timers;
  const auto t0 = std::chrono::steady_clock::now();
  bool fired = false;
  CHECK(leash::select(leash::on_recv(ch, ignore), leash::on_after(20ms, [&] { fired = true; })) ==
        1);
  CHECK(fired);
  CHECK(std::chrono::steady_clock::now() - t0 >= 20ms);
  CHECK(leash::select(leash::on_recv(ch, ignore), leash::on_after(1h, ignore),
                      leash::on_after(0ms, ignore)) == 2);
  CHECK(leash::runtime::stats().pending_timers == pending);
}

TEST_CASE("a blocked select is cancelled by its nursery and by an explicit token") {
  leash::channel<int> a, b;
  std::stop_source source;
  leash::run_nursery([&](leash::nursery& n) {
    n.spawn([&] {
      CHECK_THROWS_AS(leash::select(source.get_token(), leash::on_recv(a, ignore)),
                      leash::cancelled);
    });
    wait_blocked("select");
    source.request_stop();
  });
  CHECK_THROWS_AS(
      leash::fail_after(
          10ms, [&] { leash::select(leash::on_recv(a, ignore), leash::on_recv(b, ignore)); }),
      leash::deadline_exceeded);
  // Nothing was left queued: a plain send still finds no receiver.
  CHECK(a.try_send(1) == channel_status::full);
}

TEST_CASE("readiness wins over a stopped token in select") {
  leash::channel<int> a(1);
  a.send(1);
  leash::cancel_scope scope;
  scope.cancel();
  CHECK(leash::select(leash::on_recv(a, ignore)) == 0);
  CHECK_THROWS_AS(leash::select(leash::on_recv(a, ignore)), leash::cancelled);
}

TEST_CASE("the dynamic form fans in over N channels") {
  constexpr int inputs = 10, per_input = 100;
  std::vector<std::unique_ptr<leash::channel<int>>> channels;
  for (int i = 0; i < inputs; ++i)
    channels.push_back(std::make_unique<leash::channel<int>>());
  std::vector<int> count(inputs, 0);
  leash::run_nursery([&](leash::nursery& n) {
    for (int i = 0; i < inputs; ++i) {
      n.spawn([&, i] {
        for (int k = 0; k < per_input; ++k)
          channels[static_cast<std::size_t>(i)]->send(i);
        channels[static_cast<std::size_t>(i)]->close();
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
        cases[k].when(false);  // Go: set the channel to nil
        --open;
      }
    }
  });
  for (int c : count)
    CHECK(c == per_input);
}

// Go's test/chan/doubleselect.go: values are multiplexed through racing
// selects over shared channels; each must arrive exactly once.
TEST_CASE("double select: many selects race over the same channels, every value arrives once") {
  const int values = static_cast<int>(leash_test::scaled(100'000));
  leash::channel<int> c1, c2, c3, c4, out;
  std::vector<int> seen(static_cast<std::size_t>(values), 0);
  leash::run_nursery([&](leash::nursery& n) {
    n.spawn([&] {  // the sender: each value to whichever channel is ready
      for (int i = 0; i < values; ++i) {
        int v = i;
        leash::select(leash::on_send(c1, v, ignore), leash::on_send(c2, v, ignore),
                      leash::on_send(c3, v, ignore), leash::on_send(c4, v, ignore));
      }
      c1.close();
      c2.close();
      c3.close();
      c4.close();
    });
    leash::nursery muxes;
    for (leash::channel<int>* in : {&c1, &c2, &c3, &c4}) {
      muxes.spawn([&, in] {
        for (int v : *in)
          out.send(v);
      });
    }
    n.spawn([&] {
      muxes.wait();
      out.close();
    });
    for (int v : out)
      ++seen[static_cast<std::size_t>(v)];
  });
  CHECK(std::count(seen.begin(), seen.end(), 1) == values);
}

TEST_CASE("selects on both sides: a send select meets a receive select exactly once") {
  const int values = static_cast<int>(leash_test::scaled(50'000));
  leash::channel<int> a, b;
  std::vector<int> seen(static_cast<std::size_t>(values), 0);
  leash::run_nursery([&](leash::nursery& n) {
    for (int s = 0; s < 2; ++s) {
      n.spawn([&, s] {
        for (int i = s; i < values; i += 2) {
          int v = i;
          leash::select(leash::on_send(a, v, ignore), leash::on_send(b, v, ignore));
        }
      });
    }
    for (int i = 0; i < values; ++i) {
      leash::select(leash::on_recv(a, [&](std::optional<int> v) { ++seen[std::size_t(*v)]; }),
                    leash::on_recv(b, [&](std::optional<int> v) { ++seen[std::size_t(*v)]; }));
    }
  });
  CHECK(std::count(seen.begin(), seen.end(), 1) == values);
}

TEST_CASE("after delivers one time point, no earlier than its duration") {
  const auto t0 = std::chrono::steady_clock::now();
  auto timer = leash::after(20ms);
  const auto when = timer.recv();
  CHECK(when - t0 >= 20ms);
  CHECK(timer.try_recv().status == channel_status::empty);  // one-shot
  CHECK(leash::move_on_after(20ms, [&] { timer.recv(); }) == false);
}

TEST_CASE("after in select acts as a timeout; destroying it removes the timer") {
  const auto pending = leash::runtime::stats().pending_timers;
  {
    leash::channel<int> ch;
    auto timer = leash::after(10ms);
    CHECK(leash::select(leash::on_recv(ch, ignore), leash::on_recv(timer, ignore)) == 1);
    auto far = leash::after(1h);
    CHECK(leash::runtime::stats().pending_timers == pending + 1);
  }
  CHECK(leash::runtime::stats().pending_timers == pending);
}

TEST_CASE("tick delivers periodically and drops ticks for a slow reader") {
  auto ticks = leash::tick(2ms);
  auto previous = ticks.recv();
  for (int i = 0; i < 5; ++i) {
    const auto now = ticks.recv();
    CHECK(now > previous);
    previous = now;
  }
  // Time is the subject: the reader sleeps through about 15 ticks, then finds
  // one waiting, not fifteen.
  std::this_thread::sleep_for(30ms);
  CHECK(ticks.channel().size() == 1);
  ticks.recv();
  CHECK(ticks.channel().size() == 0);
  CHECK_THROWS_AS((void)leash::tick(0ms), leash::usage_error);
}

TEST_CASE("tick's timer is gone once the tick dies, even while it fires") {
  const auto pending = leash::runtime::stats().pending_timers;
  for (int i = 0; i < 200; ++i) {
    auto t = leash::tick(1us);
    t.recv();
  }
  CHECK(leash::runtime::stats().pending_timers == pending);
}
