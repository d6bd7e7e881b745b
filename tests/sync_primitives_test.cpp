// Tests for leash/semaphore.hpp, leash/event.hpp and leash/oneshot.hpp: each
// primitive's semantics from thread tasks and coroutine tasks, cancellation
// by the ambient scope, select cases, and the races that could lose or
// duplicate a permit.
#include <doctest/doctest.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstddef>
#include <leash.hpp>
#include <memory>
#include <optional>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

#include "support/blocked.hpp"
#include "support/sanitizer.hpp"

using namespace std::chrono_literals;
using leash::coro;
using leash_test::scaled;
using leash_test::wait_blocked;

namespace {

// The blocked-in names of each primitive's waits: the channel underneath.
const std::string sem_recv = "semaphore_token>::recv";
const std::string sem_async = "semaphore_token>::async_recv";
const std::string event_recv = "event_signal>::recv";
const std::string event_async = "event_signal>::async_recv";

// Takes every available permit of `sem` without waiting; how many it got.
std::size_t drain(leash::semaphore& sem) {
  std::vector<leash::semaphore::permit> held;
  while (auto p = sem.try_acquire())
    held.push_back(std::move(*p));
  return held.size();
}

}  // namespace

// ---- semaphore

TEST_CASE("semaphore: acquire takes permits, try_acquire fails when none is left") {
  leash::semaphore sem(2);
  CHECK(sem.capacity() == 2);
  CHECK(sem.available() == 2);
  leash::semaphore::permit a = sem.acquire();
  std::optional<leash::semaphore::permit> b = sem.try_acquire();
  REQUIRE(b.has_value());
  CHECK(a.held());
  CHECK(b->held());
  CHECK(sem.available() == 0);
  CHECK_FALSE(sem.try_acquire().has_value());
  CHECK_FALSE(sem.try_acquire_for(1ms).has_value());
  b->release();
  CHECK_FALSE(b->held());
  CHECK(sem.available() == 1);
  b->release();  // holds nothing: no effect
  CHECK(sem.available() == 1);
}

TEST_CASE("semaphore: a permit is released by scope exit, by move assignment, and not twice") {
  leash::semaphore sem(1);
  {
    leash::semaphore::permit p = sem.acquire();
    CHECK(sem.available() == 0);
  }
  CHECK(sem.available() == 1);
  leash::semaphore::permit p = sem.acquire();
  leash::semaphore::permit q = std::move(p);
  CHECK_FALSE(p.held());  // NOLINT(bugprone-use-after-move): moved-from holds nothing
  CHECK(q.held());
  CHECK(sem.available() == 0);
  q = leash::semaphore::permit();  // assignment releases what q held
  CHECK(sem.available() == 1);
}

TEST_CASE("semaphore: a task that throws while holding a permit gives it back") {
  leash::semaphore sem(2);
  leash::nursery n;
  n.spawn([&] {
    auto p = sem.acquire();
    throw std::runtime_error("thread failed");
  });
  n.spawn([&]() -> coro<void> {
    auto p = co_await sem.async_acquire();
    throw std::runtime_error("coroutine failed");
  });
  CHECK_THROWS_AS(n.wait(), std::runtime_error);
  CHECK(sem.available() == 2);
}

TEST_CASE("semaphore: a permit moved to another task is released there") {
  leash::semaphore sem(1);
  leash::channel<leash::semaphore::permit> hand_over;
  leash::nursery n;
  auto held_by_receiver = n.spawn([&]() -> coro<bool> {
    std::optional<leash::semaphore::permit> p = co_await hand_over.async_recv();
    const bool held = p && p->held() && sem.available() == 0;
    co_return held;  // p is released as the task ends
  });
  n.spawn([&] { hand_over.send(sem.acquire()); });
  CHECK(held_by_receiver.get());
  n.wait();
  CHECK(sem.available() == 1);
}

TEST_CASE("semaphore: a release wakes a blocked acquire, thread or coroutine") {
  for (bool coroutine : {false, true}) {
    CAPTURE(coroutine);
    leash::semaphore sem(1);
    auto first = sem.acquire();
    leash::nursery n;
    std::atomic<bool> got{false};
    if (coroutine) {
      n.spawn([&]() -> coro<void> {
        auto p = co_await sem.async_acquire();
        got = p.held();
      });
    } else {
      n.spawn([&] { got = sem.acquire().held(); });
    }
    wait_blocked(coroutine ? sem_async : sem_recv);
    CHECK_FALSE(got.load());
    first.release();
    n.wait();
    CHECK(got.load());
    CHECK(sem.available() == 1);
  }
}

TEST_CASE("semaphore: cancelling the scope ends blocked acquires and takes no permit") {
  leash::semaphore sem(1);
  auto held = sem.acquire();
  std::atomic<int> cancelled{0};
  leash::nursery n;
  for (int i = 0; i < 4; ++i) {
    n.spawn([&] {
      try {
        (void)sem.acquire();
      } catch (const leash::cancelled&) {
        cancelled.fetch_add(1);
        throw;
      }
    });
    n.spawn([&]() -> coro<void> {
      try {
        (void)co_await sem.async_acquire();
      } catch (const leash::cancelled&) {
        cancelled.fetch_add(1);
        throw;
      }
    });
  }
  wait_blocked(sem_recv, 4);
  wait_blocked(sem_async, 4);
  n.cancel();
  n.wait();
  CHECK(cancelled.load() == 8);
  CHECK(sem.available() == 0);
  held.release();
  CHECK(drain(sem) == 1);  // no cancelled acquire is still queued to take it
}

TEST_CASE("semaphore: a nursery deadline ends a blocked acquire with deadline_exceeded") {
  leash::semaphore sem(1);
  auto held = sem.acquire();
  leash::nursery_options o;
  o.timeout = 20ms;
  leash::nursery n(o);
  n.spawn([&]() -> coro<void> { (void)co_await sem.async_acquire(); });
  n.spawn([&] { (void)sem.acquire(); });
  CHECK_THROWS_AS(n.wait(), leash::deadline_exceeded);
  CHECK(sem.available() == 0);
}

TEST_CASE("semaphore: an acquire cancelled while a permit is released loses no permit") {
  // Each round: one permit, held; a waiter (thread or coroutine) is queued in
  // acquire; then a racer task releases the permit while this thread cancels
  // the scope, both let go at once. Whichever wins, the permit ends up back:
  // exactly one is available, none lost and none duplicated.
  constexpr int rounds = scaled(2000);
  int acquired_by[2] = {0, 0};  // per waiter kind: thread, coroutine
  int cancelled_by[2] = {0, 0};
  for (int round = 0; round < rounds; ++round) {
    const int kind = round % 2;
    leash::semaphore sem(1);
    std::optional<leash::semaphore::permit> held = sem.acquire();
    std::atomic<bool> acquired{false}, racer_ready{false}, go{false};
    {
      leash::nursery n;
      if (kind == 0) {
        n.spawn([&] {
          auto p = sem.acquire();
          acquired = true;
        });
      } else {
        n.spawn([&]() -> coro<void> {
          auto p = co_await sem.async_acquire();
          acquired = true;
        });
      }
      n.spawn([&] {
        racer_ready = true;
        while (!go.load()) {
        }
        held.reset();
      });
      wait_blocked(kind == 0 ? sem_recv : sem_async);
      while (!racer_ready.load()) {
      }
      go = true;
      n.cancel();
      try {
        n.wait();
      } catch (const leash::cancelled&) {
      }
    }
    ++(acquired ? acquired_by : cancelled_by)[kind];
    REQUIRE(sem.available() == 1);
    REQUIRE(drain(sem) == 1);
  }
  MESSAGE("thread waiters: acquired " << acquired_by[0] << ", cancelled " << cancelled_by[0]
                                      << "; coroutine waiters: acquired " << acquired_by[1]
                                      << ", cancelled " << cancelled_by[1]);
  CHECK(acquired_by[0] + acquired_by[1] + cancelled_by[0] + cancelled_by[1] == rounds);
}

TEST_CASE("semaphore: a stop that comes after the permit was handed over loses") {
  // The waiter is queued first; the release hands it the permit, then the
  // stop arrives: the acquire returns the permit rather than throwing.
  for (bool coroutine : {false, true}) {
    CAPTURE(coroutine);
    leash::semaphore sem(1);
    auto held = sem.acquire();
    leash::event release_done;
    std::atomic<bool> acquired{false};
    leash::nursery n;
    if (coroutine) {
      n.spawn([&]() -> coro<void> {
        auto p = co_await sem.async_acquire();
        acquired = true;
        co_await release_done.async_wait();  // keep it while the scope is cancelled
      });
    } else {
      n.spawn([&] {
        auto p = sem.acquire();
        acquired = true;
        release_done.wait(std::stop_token());
      });
    }
    wait_blocked(coroutine ? sem_async : sem_recv);
    held.release();  // handed to the queued waiter under the channel's lock
    n.cancel();
    release_done.set();
    try {
      n.wait();
    } catch (const leash::cancelled&) {
    }
    CHECK(acquired.load());
    CHECK(sem.available() == 1);
  }
}

TEST_CASE("semaphore: on_acquire is a select case that takes a permit only when chosen") {
  leash::semaphore sem(1);
  leash::channel<int> ch(1);
  ch.send(5);
  auto held = sem.acquire();
  int value = 0;
  bool acquire_ran = false;
  // No permit: the channel case is chosen.
  CHECK(leash::select(leash::on_acquire(sem, [&](leash::semaphore::permit) { acquire_ran = true; }),
                      leash::on_recv(ch, [&](int v) { value = v; })) == 1);
  CHECK(value == 5);
  CHECK_FALSE(acquire_ran);
  // A permit and no value: the acquire case, and its permit is given back after.
  held.release();
  std::size_t inside = 0;
  CHECK(leash::select(leash::on_acquire(sem,
                                        [&](leash::semaphore::permit p) {
                                          inside = sem.available();
                                          CHECK(p.held());
                                        }),
                      leash::on_recv(ch, [&](int) {})) == 0);
  CHECK(inside == 0);
  CHECK(sem.available() == 1);
  // try_select on nothing ready takes nothing.
  held = sem.acquire();
  CHECK_FALSE(
      leash::try_select(leash::on_acquire(sem, [](leash::semaphore::permit) {})).has_value());
  CHECK(sem.available() == 0);
}

TEST_CASE("semaphore: a waiting select and async_select get a permit released later") {
  leash::semaphore sem(1);
  leash::channel<int> never;
  auto held = sem.acquire();
  std::optional<leash::semaphore::permit> kept;
  leash::nursery n;
  n.spawn([&]() -> coro<void> {
    co_await leash::async_select(
        leash::on_recv(never, [](std::optional<int>) {}),
        leash::on_acquire(sem, [&](leash::semaphore::permit p) { kept = std::move(p); }));
  });
  wait_blocked("async_select");
  held.release();
  n.wait();
  REQUIRE(kept.has_value());
  CHECK(kept->held());
  CHECK(sem.available() == 0);
  // A thread's select, woken by a coroutine's release.
  leash::nursery m;
  m.spawn([&]() -> coro<void> {
    kept.reset();
    co_return;
  });
  std::size_t k = leash::select(leash::on_recv(never, [](std::optional<int>) {}),
                                leash::on_acquire(sem, [](leash::semaphore::permit) {}));
  m.wait();
  CHECK(k == 1);
  CHECK(sem.available() == 1);
}

TEST_CASE("semaphore: misuse is reported") {
  CHECK_THROWS_WITH_AS(leash::semaphore(0), "leash::semaphore: needs at least one permit",
                       leash::usage_error);
  leash::semaphore sem(1);
  auto outside = [&] { (void)sem.async_acquire().await_ready(); };
  CHECK_THROWS_WITH_AS(outside(), doctest::Contains("leash::semaphore::async_acquire"),
                       leash::usage_error);
  CHECK(sem.available() == 1);
}

TEST_CASE("semaphore stress: never more than N holders, and every permit comes back") {
  // 8 thread tasks and 8 coroutine tasks acquire and release, in every form;
  // a counter of holders must never exceed N.
  constexpr std::size_t permits = 3;
  constexpr int tasks_per_kind = 8;
  // About a million acquire/release pairs, and half that (a million
  // operations) under a sanitizer, where this stress is the point.
  constexpr int per_task = leash_test::under_any_sanitizer ? 32000 : 65000;
  leash::semaphore sem(permits);
  std::atomic<int> inside{0};
  std::atomic<int> peak{0};
  std::atomic<long> acquisitions{0};
  auto hold = [&] {
    const int now = inside.fetch_add(1) + 1;
    int seen = peak.load();
    while (now > seen && !peak.compare_exchange_weak(seen, now)) {
    }
    acquisitions.fetch_add(1, std::memory_order_relaxed);
    inside.fetch_sub(1);
  };
  leash::nursery n;
  for (int t = 0; t < tasks_per_kind; ++t) {
    n.spawn([&, t] {
      for (int i = 0; i < per_task; ++i) {
        if ((i + t) % 4 == 0) {
          if (auto p = sem.try_acquire()) {
            hold();
            continue;
          }
        }
        if ((i + t) % 4 == 1) {
          leash::select(leash::on_acquire(sem, [&](leash::semaphore::permit) { hold(); }));
          continue;
        }
        auto p = sem.acquire();
        hold();
      }
    });
    n.spawn([&, t]() -> coro<void> {
      for (int i = 0; i < per_task; ++i) {
        if ((i + t) % 4 == 1) {
          co_await leash::async_select(
              leash::on_acquire(sem, [&](leash::semaphore::permit) { hold(); }));
          continue;
        }
        auto p = co_await sem.async_acquire();
        hold();
      }
    });
  }
  n.wait();
  CHECK(peak.load() <= static_cast<int>(permits));
  CHECK(peak.load() >= 1);
  CHECK(acquisitions.load() == 2L * tasks_per_kind * per_task);
  CHECK(inside.load() == 0);
  CHECK(sem.available() == permits);
  CHECK(drain(sem) == permits);
}

// ---- event

TEST_CASE("event: set is idempotent, and a wait after it returns at once") {
  leash::event ev;
  CHECK_FALSE(ev.is_set());
  CHECK_FALSE(ev.wait_for(1ms));
  CHECK(ev.set());
  CHECK_FALSE(ev.set());
  CHECK(ev.is_set());
  ev.wait();
  CHECK(ev.wait_for(1ms));
  leash::nursery n;
  auto t = n.spawn([&]() -> coro<bool> {
    co_await ev.async_wait();
    co_return true;
  });
  CHECK(t.get());
  n.wait();
}

TEST_CASE("event: set releases every waiter at once, threads and coroutines") {
  constexpr int per_kind = 8;
  leash::event ev;
  std::atomic<int> released{0};
  leash::nursery n;
  for (int i = 0; i < per_kind; ++i) {
    n.spawn([&] {
      ev.wait();
      released.fetch_add(1);
    });
    n.spawn([&]() -> coro<void> {
      co_await ev.async_wait();
      released.fetch_add(1);
    });
  }
  wait_blocked(event_recv, per_kind);
  wait_blocked(event_async, per_kind);
  CHECK(released.load() == 0);
  CHECK(ev.set());
  n.wait();
  CHECK(released.load() == 2 * per_kind);
}

TEST_CASE("event: a wait is cancelled by its scope, and by a deadline") {
  leash::event ev;
  std::atomic<int> cancelled{0};
  {
    leash::nursery n;
    n.spawn([&] {
      try {
        ev.wait();
      } catch (const leash::cancelled&) {
        cancelled.fetch_add(1);
      }
    });
    n.spawn([&]() -> coro<void> {
      try {
        co_await ev.async_wait();
      } catch (const leash::cancelled&) {
        cancelled.fetch_add(1);
      }
    });
    wait_blocked(event_recv);
    wait_blocked(event_async);
    n.cancel();
    n.wait();
  }
  CHECK(cancelled.load() == 2);
  leash::nursery_options o;
  o.timeout = 20ms;
  leash::nursery timed(o);
  timed.spawn([&]() -> coro<void> { co_await ev.async_wait(); });
  CHECK_THROWS_AS(timed.wait(), leash::deadline_exceeded);
  CHECK_FALSE(ev.is_set());
}

TEST_CASE("event: on_set in select, beside a channel, thread and coroutine") {
  leash::event ev;
  leash::channel<int> ch(1);
  ch.send(1);
  bool set_ran = false;
  // Not set: the channel's value is chosen.
  CHECK(leash::select(leash::on_set(ev, [&] { set_ran = true; }), leash::on_recv(ch, [](int) {})) ==
        1);
  CHECK_FALSE(set_ran);
  CHECK_FALSE(leash::try_select(leash::on_set(ev, [] {})).has_value());
  // A select waiting on both is woken by set().
  leash::nursery n;
  auto coroutine_chose = n.spawn([&]() -> coro<std::size_t> {
    co_return co_await leash::async_select(leash::on_recv(ch, [](std::optional<int>) {}),
                                           leash::on_set(ev, [] {}));
  });
  auto thread_chose = n.spawn([&] {
    return leash::select(leash::on_recv(ch, [](std::optional<int>) {}), leash::on_set(ev, [] {}));
  });
  wait_blocked("async_select");
  wait_blocked("select");
  ev.set();
  CHECK(coroutine_chose.get() == 1);
  CHECK(thread_chose.get() == 1);
  n.wait();
  // Set: ready every time.
  CHECK(leash::select(leash::on_set(ev, [&] { set_ran = true; })) == 0);
  CHECK(set_ran);
}

TEST_CASE("event: async_wait outside a coroutine task is a usage_error") {
  leash::event ev;
  auto outside = [&] { (void)ev.async_wait().await_ready(); };
  CHECK_THROWS_WITH_AS(outside(), doctest::Contains("leash::event::async_wait"),
                       leash::usage_error);
}

// ---- oneshot

TEST_CASE("oneshot: the value reaches the receiver, thread or coroutine, in either role") {
  for (bool coroutine_receives : {false, true}) {
    CAPTURE(coroutine_receives);
    leash::oneshot<std::unique_ptr<int>> reply;
    leash::nursery n;
    leash::task<int> got = coroutine_receives ? n.spawn([&]() -> coro<int> {
      auto v = co_await reply.async_recv();
      co_return v&&* v ? **v : -1;
    })
                                              : n.spawn([&] {
                                                  auto v = reply.recv();
                                                  return v && *v ? **v : -1;
                                                });
    wait_blocked(coroutine_receives ? ">::async_recv" : ">::recv");
    if (coroutine_receives) {
      n.spawn([tx = reply.sender()]() mutable { tx.send(std::make_unique<int>(42)); });
    } else {
      n.spawn([tx = reply.sender()]() mutable -> coro<void> {
        tx.send(std::make_unique<int>(42));
        co_return;
      });
    }
    CHECK(got.get() == 42);
    n.wait();
    CHECK(reply.closed());
    CHECK_FALSE(reply.recv().has_value());  // taken: nothing more
  }
}

TEST_CASE("oneshot: a send before the receive is kept for it") {
  leash::oneshot<std::string> os;
  CHECK(os.try_recv().status == leash::channel_status::empty);
  os.send("early");
  CHECK(os.recv() == std::optional<std::string>("early"));
  CHECK(os.try_recv().status == leash::channel_status::closed);
}

TEST_CASE("oneshot: a sender dropped without sending gives the receiver nullopt") {
  leash::oneshot<int> reply;
  leash::nursery n;
  auto got = n.spawn([&]() -> coro<std::optional<int>> { co_return co_await reply.async_recv(); });
  n.spawn([tx = reply.sender()]() mutable {
    throw std::runtime_error("sender failed");
    tx.send(1);
  });
  CHECK_THROWS_WITH_AS(n.wait(), "sender failed", std::runtime_error);
  CHECK(got.get() == std::nullopt);

  leash::oneshot<int> closed;
  CHECK(closed.close());
  CHECK_FALSE(closed.close());
  CHECK(closed.recv() == std::nullopt);
}

TEST_CASE("oneshot: a second send, a send after close and a second sender() are usage errors") {
  leash::oneshot<int> os;
  os.send(1);
  CHECK_THROWS_WITH_AS(os.send(2),
                       "leash::oneshot: send after a send or close (one value per oneshot)",
                       leash::usage_error);
  CHECK(os.recv() == 1);
  leash::oneshot<int> closed;
  closed.close();
  CHECK_THROWS_AS(closed.send(1), leash::usage_error);
  leash::oneshot<int> two;
  auto tx = two.sender();
  CHECK_THROWS_WITH_AS(two.sender(), doctest::Contains("sender() called twice"),
                       leash::usage_error);
  tx.send(3);
  CHECK_THROWS_AS(tx.send(4), leash::usage_error);
  CHECK(two.recv() == 3);
}

TEST_CASE("oneshot: a blocked recv is cancelled by its scope, and the value stays") {
  leash::oneshot<int> os;
  std::atomic<int> cancelled{0};
  {
    leash::nursery n;
    n.spawn([&] {
      try {
        (void)os.recv();
      } catch (const leash::cancelled&) {
        cancelled.fetch_add(1);
      }
    });
    n.spawn([&]() -> coro<void> {
      try {
        (void)co_await os.async_recv();
      } catch (const leash::cancelled&) {
        cancelled.fetch_add(1);
      }
    });
    wait_blocked("int>::recv");
    wait_blocked("int>::async_recv");
    n.cancel();
    n.wait();
  }
  CHECK(cancelled.load() == 2);
  os.send(9);
  CHECK(os.recv() == 9);  // no cancelled receive took it
}

TEST_CASE("oneshot: on_recv in select gets the value, or nullopt once closed") {
  leash::oneshot<int> os;
  leash::channel<int> ch;
  CHECK_FALSE(leash::try_select(leash::on_recv(os, [](int) {})).has_value());
  leash::nursery n;
  auto got = n.spawn([&]() -> coro<int> {
    int v = -1;
    co_await leash::async_select(leash::on_recv(ch, [](std::optional<int>) {}),
                                 leash::on_recv(os, [&](int x) { v = x; }));
    co_return v;
  });
  wait_blocked("async_select");
  os.send(11);
  CHECK(got.get() == 11);
  n.wait();
  std::optional<int> after{0};
  CHECK(leash::select(leash::on_recv(os, [&](std::optional<int> v) { after = v; })) == 0);
  CHECK(after == std::nullopt);  // closed and taken
  CHECK_THROWS_AS(leash::select(leash::on_recv(os, [](int) {})), leash::channel_closed);
}
