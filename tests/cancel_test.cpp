// Tests for leash/cancel.hpp: cancel scopes, deadlines, move_on/fail_after, this_task.
#include <doctest/doctest.h>

#include <atomic>
#include <chrono>
#include <latch>
#include <leash.hpp>
#include <memory>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "support/child_process.hpp"

using namespace std::chrono_literals;
using leash::stop_reason;

namespace {

// Spins (without leash calls) until `tp` has passed.
void busy_until(std::chrono::steady_clock::time_point tp) {
  while (std::chrono::steady_clock::now() < tp) {
  }
}

}  // namespace

TEST_CASE("a deadline stops the scope with reason deadline_exceeded") {
  leash::cancel_scope scope(20ms);
  CHECK_FALSE(scope.stop_requested());
  CHECK(scope.reason() == stop_reason::none);
  CHECK_THROWS_AS(leash::this_task::sleep_for(1h), leash::deadline_exceeded);
  CHECK(scope.reason() == stop_reason::deadline_exceeded);
  CHECK(scope.origin_reason() == stop_reason::deadline_exceeded);
}

TEST_CASE("cancel() stops the scope with reason cancelled and its message") {
  leash::cancel_scope scope;
  CHECK(scope.cancel("enough"));
  CHECK(scope.reason() == stop_reason::cancelled);
  try {
    leash::this_task::checkpoint();
    FAIL("checkpoint did not throw");
  } catch (const leash::deadline_exceeded&) {
    FAIL("a cancel is not a deadline");
  } catch (const leash::cancelled& e) {
    CHECK(e.reason() == stop_reason::cancelled);
    CHECK(e.message() == "enough");
    CHECK(std::string(e.what()).find("enough") != std::string::npos);
  }
}

TEST_CASE("a child reports parent and the ancestor's origin when the parent stopped") {
  leash::cancel_scope outer(20ms);
  leash::cancel_scope inner;
  try {
    leash::this_task::sleep_for(1h);
    FAIL("sleep was not cancelled");
  } catch (const leash::deadline_exceeded& e) {  // the root cause is a deadline
    CHECK(e.reason() == stop_reason::parent);
    CHECK(e.origin() == stop_reason::deadline_exceeded);
  }
  CHECK(inner.reason() == stop_reason::parent);
  CHECK(inner.origin_reason() == stop_reason::deadline_exceeded);
  CHECK(outer.reason() == stop_reason::deadline_exceeded);
}

TEST_CASE("the first reason is never overwritten") {
  SUBCASE("a deadline after cancel()") {
    leash::cancel_scope scope(5ms);
    CHECK(scope.cancel("first"));
    busy_until(scope.deadline() + 20ms);
    CHECK_FALSE(scope.cancel("second"));
    CHECK(scope.reason() == stop_reason::cancelled);
    CHECK_THROWS_WITH_AS(leash::this_task::checkpoint(), doctest::Contains("first"),
                         leash::cancelled);
  }
  SUBCASE("a parent stop after the child's own cancel") {
    leash::cancel_scope outer;
    leash::cancel_scope inner;
    inner.cancel();
    outer.cancel();
    CHECK(inner.reason() == stop_reason::cancelled);
  }
  SUBCASE("cancel() after a deadline") {
    leash::cancel_scope scope(1ms);
    CHECK_THROWS_AS(leash::this_task::sleep_for(1h), leash::deadline_exceeded);
    CHECK_FALSE(scope.cancel());
    CHECK(scope.reason() == stop_reason::deadline_exceeded);
  }
}

TEST_CASE("a scope born under a stopped parent is born stopped") {
  leash::cancel_scope outer;
  outer.cancel();
  leash::cancel_scope inner(1h);
  CHECK(inner.stop_requested());
  CHECK(inner.reason() == stop_reason::parent);
  CHECK(inner.origin_reason() == stop_reason::cancelled);
}

TEST_CASE("a zero or negative timeout runs the body and fails its first blocking call") {
  for (auto timeout : {0ms, -5ms}) {
    bool body_ran = false;
    const bool finished = leash::move_on_after(timeout, [&] {
      body_ran = true;
      leash::this_task::sleep_for(1h);
    });
    CHECK(body_ran);
    CHECK_FALSE(finished);
    leash::cancel_scope scope(timeout);
    CHECK(scope.reason() == stop_reason::deadline_exceeded);
    CHECK_THROWS_AS(leash::this_task::checkpoint(), leash::deadline_exceeded);
  }
}

TEST_CASE("a child deadline later than an ancestor's registers no timer") {
  const auto base = leash::runtime::stats().pending_timers;
  leash::cancel_scope outer(1h);
  CHECK(leash::runtime::stats().pending_timers == base + 1);
  {
    leash::cancel_scope later(2h);
    CHECK(leash::runtime::stats().pending_timers == base + 1);
    CHECK(later.deadline() == outer.deadline());
    leash::cancel_scope earlier(30min);
    CHECK(leash::runtime::stats().pending_timers == base + 2);
  }
  CHECK(leash::runtime::stats().pending_timers == base + 1);
}

TEST_CASE("destroying 100 000 scopes with far deadlines leaves no pending timer") {
  for (int i = 0; i < 100'000; ++i) {
    leash::cancel_scope scope(1h + std::chrono::milliseconds(i));
  }
  CHECK(leash::runtime::stats().pending_timers == 0);
}

TEST_CASE("move_on_after returns whether the body finished") {
  CHECK(leash::move_on_after(1h, [] {}));
  CHECK_FALSE(leash::move_on_after(10ms, [] { leash::this_task::sleep_for(1h); }));
}

TEST_CASE("move_on_after lets an enclosing cancellation through") {
  leash::cancel_scope outer;
  outer.cancel("outer");
  CHECK_THROWS_WITH_AS(leash::move_on_after(1h, [] { leash::this_task::checkpoint(); }),
                       doctest::Contains("outer"), leash::cancelled);
}

TEST_CASE("fail_after returns the value of work that finished after its deadline") {
  const int v = leash::fail_after(5ms, [] {
    busy_until(std::chrono::steady_clock::now() + 30ms);  // no leash call: never interrupted
    return 42;
  });
  CHECK(v == 42);
}

TEST_CASE("fail_after throws deadline_exceeded when its own deadline stopped the work") {
  CHECK_THROWS_AS(leash::fail_after(10ms, [] { leash::this_task::sleep_for(1h); }),
                  leash::deadline_exceeded);
}

TEST_CASE("fail_after lets an outer cancellation pass through as cancelled") {
  leash::cancel_scope outer;
  outer.cancel();
  try {
    leash::fail_after(1h, [] { leash::this_task::checkpoint(); });
    FAIL("no exception");
  } catch (const leash::deadline_exceeded&) {
    FAIL("an outer cancel must not become a deadline");
  } catch (const leash::cancelled& e) {
    CHECK(e.reason() == stop_reason::parent);
  }
}

TEST_CASE("a shielded scope ignores its parent's cancel but keeps its own deadline") {
  leash::cancel_scope outer;
  leash::cancel_scope shield(leash::shielded);
  outer.cancel();
  CHECK(outer.stop_requested());
  CHECK_FALSE(shield.stop_requested());
  CHECK_NOTHROW(leash::this_task::checkpoint());
  CHECK_FALSE(leash::move_on_after(10ms, [] { leash::this_task::sleep_for(1h); }));
  leash::cancel_scope own_deadline(leash::shielded, 10ms);
  CHECK_THROWS_AS(leash::this_task::sleep_for(1h), leash::deadline_exceeded);
}

TEST_CASE("a scope can be a child of an explicit stop_token") {
  std::stop_source source;
  leash::cancel_scope scope(source.get_token(), 1h);
  CHECK(leash::this_task::stop_token() == scope.token());
  source.request_stop();
  CHECK(scope.stop_requested());
  CHECK(scope.reason() == stop_reason::parent);
  CHECK(scope.origin_reason() == stop_reason::cancelled);
  CHECK_THROWS_AS(leash::this_task::checkpoint(), leash::cancelled);
}

TEST_CASE("blocking calls take an explicit stop_token too") {
  std::stop_source source;
  source.request_stop();
  try {
    leash::this_task::sleep_for(1h, source.get_token());
    FAIL("no exception");
  } catch (const leash::cancelled& e) {
    CHECK(e.reason() == stop_reason::cancelled);
    CHECK(e.message().find("explicit std::stop_token") != std::string::npos);
  }
  std::stop_source never;
  CHECK_NOTHROW(leash::this_task::sleep_for(1ms, never.get_token()));
}

TEST_CASE("outside any scope the ambient token never stops") {
  CHECK_FALSE(leash::this_task::stop_token().stop_possible());
  CHECK_NOTHROW(leash::this_task::checkpoint());
  leash::cancel_scope scope;
  CHECK(leash::this_task::stop_token() == scope.token());
}

TEST_CASE("sleep_until accepts other clocks") {
  const auto t0 = std::chrono::steady_clock::now();
  leash::this_task::sleep_until(std::chrono::system_clock::now() + 20ms);
  CHECK(std::chrono::steady_clock::now() - t0 >= 15ms);  // generous: system clock may step
  leash::cancel_scope scope(10ms);
  CHECK_THROWS_AS(leash::this_task::sleep_until(std::chrono::system_clock::now() + 1h),
                  leash::deadline_exceeded);
}

TEST_CASE("cancelling a blocked sleep_for wakes it well under 100 ms") {
  std::latch sleeping(1);
  std::chrono::steady_clock::time_point woke;
  leash::run_nursery([&](leash::nursery& n) {
    n.spawn([&] {
      sleeping.count_down();
      try {
        leash::this_task::sleep_for(1h);
      } catch (const leash::cancelled&) {
        woke = std::chrono::steady_clock::now();
        throw;
      }
    });
    sleeping.wait();
    const auto cancelled_at = std::chrono::steady_clock::now();
    n.cancel();
    n.wait();
    CHECK(woke - cancelled_at < 100ms);
  });
}

TEST_CASE("a cancelled exception names its reason, the triggering task and the cause") {
  std::string seen_what;
  leash::cancel_info seen;
  int boom_line = 0;
  // Not inside a CHECK macro: a macro gives every token in it the macro's line.
  try {
    leash::run_nursery({.name = "fanout"}, [&](leash::nursery& n) {
      std::latch asleep(1);
      n.spawn([&] {
        try {
          asleep.count_down();
          leash::this_task::sleep_for(1h);
        } catch (const leash::cancelled& e) {
          seen = e.info();
          seen_what = e.what();
          throw;
        }
      });
      asleep.wait();
      boom_line = __LINE__ + 1;
      n.spawn("boom", [] { throw std::logic_error("bad"); });
    });
    FAIL("the failure was not rethrown");
  } catch (const std::logic_error& e) {
    CHECK(std::string(e.what()) == "bad");
  }
  CHECK(seen.reason == stop_reason::cancelled);
  CHECK(seen.task_name == "boom");
  CHECK(seen.task_site.line == static_cast<unsigned>(boom_line));
  CHECK(seen.scope_name == "fanout");
  REQUIRE(seen.cause != nullptr);
  CHECK_THROWS_AS(std::rethrow_exception(seen.cause), std::logic_error);
  CHECK(seen_what.find("cancelled") != std::string::npos);
  CHECK(seen_what.find("\"boom\"") != std::string::npos);
  CHECK(seen_what.find("cancel_test.cpp:" + std::to_string(boom_line)) != std::string::npos);
  CHECK(seen_what.find("cause: bad") != std::string::npos);
}

TEST_CASE("a scope destroyed out of order is a checked precondition") {
  const auto r = leash_test::run_child(std::string(LEASH_DEATH_CASES) + " out_of_order");
  CHECK(r.signalled);
  CHECK(r.output.find("destroyed out of order") != std::string::npos);
}

TEST_CASE("the timer thread holds a scope's deadline only while the scope lives") {
  const auto base = leash::runtime::stats().pending_timers;
  {
    leash::cancel_scope scope(1h);
    CHECK(leash::runtime::stats().pending_timers == base + 1);
  }
  CHECK(leash::runtime::stats().pending_timers == base);
}

TEST_CASE("a scope with an explicit token still honours the enclosing scopes") {
  std::stop_source request;  // e.g. a client's token handed in from elsewhere
  leash::cancel_scope outer;
  leash::cancel_scope scope(request.get_token(), 1h);
  outer.cancel("server shutting down");
  CHECK(scope.stop_requested());
  CHECK(scope.reason() == stop_reason::parent);
  CHECK_THROWS_WITH_AS(leash::this_task::checkpoint(), doctest::Contains("server shutting down"),
                       leash::cancelled);
}

TEST_CASE("a scope stopped by its explicit token is its own origin while its parent runs on") {
  std::stop_source request;
  leash::cancel_scope outer;
  leash::cancel_scope scope(request.get_token());
  request.request_stop();
  CHECK(scope.reason() == stop_reason::parent);
  CHECK(scope.origin_reason() == stop_reason::cancelled);  // not the unstopped outer's none
  CHECK_FALSE(outer.stop_requested());
  CHECK_THROWS_AS(leash::this_task::checkpoint(), leash::cancelled);
}

TEST_CASE("an enclosing scope's token passed explicitly keeps its deadline as the origin") {
  leash::cancel_scope outer(10ms);
  leash::cancel_scope child(outer.token());
  CHECK_THROWS_AS(leash::this_task::sleep_for(1h), leash::deadline_exceeded);
  CHECK(child.origin_reason() == stop_reason::deadline_exceeded);
}

TEST_CASE("a nursery's token passed explicitly reports the nursery's deadline") {
  std::atomic<bool> typed{false};
  leash::nursery n({.timeout = 10ms});
  n.spawn([&] {
    leash::cancel_scope shield(leash::shielded);
    try {
      leash::this_task::sleep_for(1h, n.token());  // not the ambient token here
    } catch (const leash::deadline_exceeded&) {
      typed = true;
      throw;
    }
  });
  CHECK_THROWS_AS(n.wait(), leash::deadline_exceeded);
  CHECK(typed);
}

TEST_CASE("sleep_until a time point long past returns at once") {
  CHECK_NOTHROW(leash::this_task::sleep_until(std::chrono::steady_clock::time_point::min()));
  CHECK_NOTHROW(leash::this_task::sleep_until(std::chrono::system_clock::time_point::min()));
}

TEST_CASE("a cancel racing matched channel operations loses: every value handed over is received") {
  // Each task waits in recv() on its own unbuffered channel while this thread
  // hands values to some of them and cancels the nursery at the same time. A
  // waiter may be woken by its value while the stop runs its hooks; the value
  // must still be received, and every other task must end cancelled.
  constexpr int tasks = 64;
  constexpr int rounds = 40;
  for (int round = 0; round < rounds; ++round) {
    std::vector<std::unique_ptr<leash::channel<int>>> channels;
    for (int i = 0; i < tasks; ++i)
      channels.push_back(std::make_unique<leash::channel<int>>(0));
    std::atomic<long> received{0};
    std::atomic<int> got{0};
    std::atomic<int> cancelled{0};
    std::latch waiting(tasks);
    long handed = 0;
    {
      leash::nursery n;
      for (int i = 0; i < tasks; ++i) {
        n.spawn([&, i] {
          waiting.count_down();
          try {
            if (auto v = channels[i]->recv()) {
              received += *v;
              ++got;
            }
          } catch (const leash::cancelled&) {
            ++cancelled;
            throw;
          }
        });
      }
      waiting.wait();
      std::thread canceller([&] { n.cancel(); });
      for (int i = 0; i < tasks; i += 2) {
        if (channels[i]->try_send(i + 1) == leash::channel_status::ok) handed += i + 1;
      }
      canceller.join();
      n.wait();
    }
    REQUIRE(received == handed);
    REQUIRE(got + cancelled == tasks);  // nothing ended any other way
  }
}
