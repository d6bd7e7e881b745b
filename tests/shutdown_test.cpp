// Tests for two-phase cancellation: nursery::shutdown, cancel_scope::cancel_after_grace,
// and the soft stop they request first (leash/shutdown.hpp, this_task::soft_stop_*).
#include <doctest/doctest.h>

#include <atomic>
#include <chrono>
#include <latch>
#include <leash.hpp>
#include <mutex>
#include <stop_token>
#include <string>
#include <thread>

using namespace std::chrono_literals;
using leash::coro;
using leash::stop_reason;

namespace {

// A grace no test waits out in real time: only finishing early, a shorter
// grace or a hard cancel ends what it covers.
constexpr auto long_grace = 1h;

bool contains(const std::string& s, const std::string& part) {
  return s.find(part) != std::string::npos;
}

// What a task that ignored the soft stop saw when the hard stop came.
struct hard_stop_seen {
  std::mutex mutex;
  int count = 0;
  stop_reason reason = stop_reason::none;
  std::string message;
  std::string what;

  void note(const leash::cancelled& e) {
    std::lock_guard lock(mutex);
    ++count;
    reason = e.reason();
    message = e.message();
    what = e.what();
  }
};

// Blocks in a leash call that only a hard stop ends; records it.
void ignore_soft_stop(hard_stop_seen& seen) {
  leash::channel<int> never;
  try {
    (void)never.recv();
  } catch (const leash::cancelled& e) {
    seen.note(e);
    throw;
  }
}

}  // namespace

// ---------------------------------------------------------------------------
// Tasks that finish within the grace: no hard cancel, no error.

TEST_CASE("shutdown asks thread tasks to finish; those that do end with no error") {
  std::atomic<int> finished{0};
  std::latch started(2);
  leash::channel<int> after_soft;
  leash::nursery n;
  n.spawn([&] {  // polls
    started.count_down();
    while (!leash::this_task::soft_stop_requested())
      std::this_thread::yield();
    finished.fetch_add(1);
  });
  n.spawn([&] {  // waits, then still blocks in leash calls without throwing
    started.count_down();
    leash::this_task::wait_for_soft_stop();
    CHECK(after_soft.recv() == 7);
    finished.fetch_add(1);
  });
  started.wait();
  CHECK_FALSE(leash::this_task::soft_stop_requested());
  n.shutdown(long_grace);
  CHECK(leash::this_task::soft_stop_requested());  // the owner is inside the nursery's scope
  CHECK_FALSE(n.stop_requested());
  after_soft.send(7);  // a blocking call of the owner does not throw either
  n.wait();
  CHECK(finished.load() == 2);
  CHECK(n.reason() == stop_reason::none);
}

TEST_CASE("shutdown asks coroutine tasks to finish; those that do end with no error") {
  std::atomic<int> finished{0};
  std::latch started(2);
  leash::nursery n;
  n.spawn([&]() -> coro<void> {  // polls between yields
    started.count_down();
    while (!leash::this_task::soft_stop_requested())
      co_await leash::this_task::async_checkpoint();
    finished.fetch_add(1);
  });
  n.spawn([&]() -> coro<void> {  // suspends until asked
    started.count_down();
    co_await leash::this_task::async_wait_for_soft_stop();
    co_await leash::this_task::async_checkpoint();  // the soft stop is not a cancel
    finished.fetch_add(1);
  });
  started.wait();
  n.shutdown(long_grace);
  n.wait();
  CHECK(finished.load() == 2);
  CHECK(n.reason() == stop_reason::none);
}

TEST_CASE("soft_stop_token stops on the soft stop and serves the task's own waits") {
  std::latch started(1);
  bool woke = false;
  leash::nursery n;
  n.spawn([&] {
    const std::stop_token soft = leash::this_task::soft_stop_token();
    CHECK_FALSE(soft.stop_requested());
    std::latch asked(1);  // a wait of the task's own, outside leash
    std::stop_callback on_soft(soft, [&] { asked.count_down(); });
    started.count_down();
    asked.wait();
    woke = soft.stop_requested();
  });
  started.wait();
  n.shutdown(long_grace);
  n.wait();
  CHECK(woke);
  CHECK(n.reason() == stop_reason::none);
}

// ---------------------------------------------------------------------------
// Tasks that ignore it: the hard cancel at the deadline, in virtual time.

TEST_CASE("at the end of the grace the nursery is cancelled with a message naming it") {
  leash::virtual_time vt;
  const auto start = vt.now();
  hard_stop_seen thread_seen;
  hard_stop_seen coro_seen;
  stop_reason after = stop_reason::none;
  vt.run([&](leash::nursery&) {
    leash::nursery n;
    n.spawn([&] { ignore_soft_stop(thread_seen); });
    n.spawn([&]() -> coro<void> {
      leash::channel<int> never;
      try {
        (void)co_await never.async_recv();
      } catch (const leash::cancelled& e) {
        coro_seen.note(e);
        throw;
      }
    });
    n.shutdown(2s);
    n.wait();  // quiet: the hard stop is the nursery's own cancel
    after = n.reason();
    CHECK(vt.now() - start == 2s);
  });
  CHECK(after == stop_reason::cancelled);
  for (hard_stop_seen* seen : {&thread_seen, &coro_seen}) {
    CHECK(seen->count == 1);
    CHECK(seen->reason == stop_reason::cancelled);
    CHECK(seen->message == "leash::nursery: shutdown grace of 2s elapsed");
    CHECK(contains(seen->what, "leash::cancelled: cancelled"));
    CHECK(contains(seen->what, "shutdown grace of 2s elapsed"));
  }
}

TEST_CASE("a 1 h grace completes at once in virtual time, exactly 1 h later") {
  leash::virtual_time vt;
  const auto start = vt.now();
  hard_stop_seen seen;
  std::atomic<bool> polite_done{false};
  vt.run([&](leash::nursery&) {
    leash::run_nursery([&](leash::nursery& n) {
      n.spawn([&] { ignore_soft_stop(seen); });
      n.spawn([&] {
        leash::this_task::wait_for_soft_stop();
        polite_done = true;
      });
      n.shutdown(1h);
    });
  });
  CHECK(vt.now() - start == 1h);
  CHECK(polite_done.load());
  CHECK(seen.count == 1);
  CHECK(seen.message == "leash::nursery: shutdown grace of 1h elapsed");
}

// ---------------------------------------------------------------------------
// Reach: nested scopes, shields, other tasks.

TEST_CASE("a nested nursery and cancel_scope see the outer nursery's soft stop") {
  std::latch ready(3);
  std::atomic<int> finished{0};
  bool shielded_saw = true;
  bool scope_saw = false;
  leash::nursery outer;
  outer.spawn([&] {
    leash::run_nursery([&](leash::nursery& inner) {
      inner.spawn([&] {
        ready.count_down();
        leash::this_task::wait_for_soft_stop();
        finished.fetch_add(1);
      });
      inner.spawn([&]() -> coro<void> {
        ready.count_down();
        co_await leash::this_task::async_wait_for_soft_stop();
        finished.fetch_add(1);
      });
      leash::cancel_scope scope;
      ready.count_down();
      leash::this_task::wait_for_soft_stop();
      scope_saw = scope.soft_stop_requested();
      leash::cancel_scope shield(leash::shielded);
      shielded_saw = leash::this_task::soft_stop_requested();
    });
  });
  ready.wait();
  outer.shutdown(long_grace);
  outer.wait();
  CHECK(finished.load() == 2);
  CHECK(scope_saw);
  CHECK_FALSE(shielded_saw);  // a shield ignores every enclosing scope
  CHECK(outer.reason() == stop_reason::none);
}

TEST_CASE("a token taken before the soft stop in a nested scope stops with the outer one") {
  std::latch ready(1);
  bool stopped = false;
  leash::nursery outer;
  outer.spawn([&] {
    leash::cancel_scope scope;
    const std::stop_token soft = scope.soft_stop_token();  // created before any request
    ready.count_down();
    leash::this_task::wait_for_soft_stop();
    stopped = soft.stop_requested();
  });
  ready.wait();
  outer.shutdown(long_grace);
  outer.wait();
  CHECK(stopped);
}

TEST_CASE("select waits for the soft stop beside a channel; a task calls shutdown") {
  leash::channel<int> jobs;
  std::atomic<int> done{0};
  std::atomic<int> soft_cases{0};
  leash::run_nursery([&](leash::nursery& n) {
    n.spawn([&] {  // a worker: takes jobs until asked to finish
      bool asked = false;
      while (!asked) {
        leash::select(leash::on_recv(jobs, [&](int) { done.fetch_add(1); }),
                      leash::on_soft_stop([&] { asked = true; }));
      }
      soft_cases.fetch_add(1);
    });
    n.spawn([&]() -> coro<void> {  // the same worker as a coroutine task
      bool asked = false;
      while (!asked) {
        co_await leash::async_select(leash::on_recv(jobs, [&](int) { done.fetch_add(1); }),
                                     leash::on_soft_stop([&] { asked = true; }));
      }
      soft_cases.fetch_add(1);
    });
    n.spawn([&] {  // a producer that ends the work when it has none left
      for (int i = 0; i < 10; ++i)
        jobs.send(i);
      n.shutdown(long_grace);
    });
  });
  CHECK(done.load() == 10);
  CHECK(soft_cases.load() == 2);
}

TEST_CASE("a hard stop counts as a soft stop: waiters wake, pollers see it") {
  std::latch ready(1);
  bool polled = false;
  leash::nursery n;
  n.spawn([&] {
    const std::stop_token soft = leash::this_task::soft_stop_token();
    ready.count_down();
    try {
      leash::this_task::wait_for_soft_stop();  // may end either way on a hard stop
    } catch (const leash::cancelled&) {
    }
    polled = leash::this_task::soft_stop_requested() && soft.stop_requested();
  });
  ready.wait();
  n.cancel("now");
  n.wait();
  CHECK(polled);
}

// ---------------------------------------------------------------------------
// Changing one's mind: a shorter grace, a cancel, no grace.

TEST_CASE("a second shutdown with a shorter grace shortens it; a longer one does not") {
  leash::virtual_time vt;
  const auto start = vt.now();
  hard_stop_seen seen;
  vt.run([&](leash::nursery&) {
    leash::run_nursery([&](leash::nursery& n) {
      n.spawn([&] { ignore_soft_stop(seen); });
      n.shutdown(1h);
      n.shutdown(5min);
      n.shutdown(2h);
    });
  });
  CHECK(vt.now() - start == 5min);
  CHECK(seen.message == "leash::nursery: shutdown grace of 5min elapsed");
}

TEST_CASE("cancel() during the grace cancels at once with its own message") {
  hard_stop_seen seen;
  std::latch blocked(1);
  leash::nursery n;
  n.spawn([&] {
    blocked.count_down();
    ignore_soft_stop(seen);
  });
  n.shutdown(long_grace);
  blocked.wait();
  n.cancel("stop now");
  n.wait();
  CHECK(seen.count == 1);
  CHECK(seen.message == "stop now");
  CHECK(n.reason() == stop_reason::cancelled);
}

TEST_CASE("shutdown(0) is cancel(): soft and hard at once") {
  hard_stop_seen seen;
  leash::nursery n;
  n.spawn([&] { ignore_soft_stop(seen); });
  n.shutdown(0s);
  CHECK(n.stop_requested());
  CHECK(leash::this_task::soft_stop_requested());
  n.wait();
  CHECK(n.reason() == stop_reason::cancelled);
  CHECK(seen.message == "leash::nursery: shutdown grace of 0s elapsed");
}

// ---------------------------------------------------------------------------
// cancel_scope::cancel_after_grace.

TEST_CASE("cancel_after_grace: a soft stop now, a hard cancel after the grace") {
  leash::virtual_time vt;
  const auto start = vt.now();
  bool finished_in_time = false;
  bool cut = false;
  stop_reason reason = stop_reason::none;
  std::string message;
  vt.run([&](leash::nursery&) {
    {
      leash::cancel_scope scope;
      scope.cancel_after_grace(10s);
      CHECK(scope.soft_stop_requested());
      CHECK_FALSE(scope.stop_requested());
      leash::this_task::sleep_for(3s);  // blocking calls go on within the grace
      finished_in_time = true;
    }
    CHECK(vt.now() - start == 3s);
    leash::cancel_scope scope;
    scope.cancel_after_grace(30s);
    try {
      leash::this_task::sleep_for(1h);
    } catch (const leash::cancelled& e) {
      cut = true;
      reason = e.reason();
      message = e.message();
    }
  });
  CHECK(finished_in_time);
  CHECK(cut);
  CHECK(reason == stop_reason::cancelled);
  CHECK(message == "leash::cancel_scope: grace of 30s elapsed");
  CHECK(vt.now() - start == 33s);
}

TEST_CASE("cancel_after_grace reaches the tasks of a nursery opened inside the scope") {
  std::latch ready(1);
  bool saw = false;
  leash::cancel_scope scope;
  leash::run_nursery([&](leash::nursery& n) {
    n.spawn([&]() -> coro<void> {
      ready.count_down();
      co_await leash::this_task::async_wait_for_soft_stop();
      saw = true;
    });
    ready.wait();
    scope.cancel_after_grace(long_grace);
  });
  CHECK(saw);
  CHECK_FALSE(scope.stop_requested());
}

TEST_CASE("outside every scope no soft stop ever comes") {
  CHECK_FALSE(leash::this_task::soft_stop_requested());
  CHECK_FALSE(leash::this_task::soft_stop_token().stop_possible());
}
