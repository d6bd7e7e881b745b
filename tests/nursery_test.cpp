// Tests for leash/nursery.hpp: spawn, join, failures and their order,
// limits, deadlines, supervisors and unobserved failures.
#include <doctest/doctest.h>

#include <atomic>
#include <chrono>
#include <latch>
#include <leash.hpp>
#include <memory>
#include <mutex>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "support/captures.hpp"
#include "support/child_process.hpp"
#include "support/eventually.hpp"
#include "support/thread_state.hpp"

using namespace std::chrono_literals;
using leash::stop_reason;
using leash_test::handler_capture;

namespace {

struct backend_error : std::runtime_error {
  using std::runtime_error::runtime_error;
};

}  // namespace

TEST_CASE("the first failure cancels siblings blocked in leash calls, wait rethrows it unchanged") {
  std::atomic<int> cancelled_quietly{0};
  leash::nursery n;
  std::latch asleep(2);
  for (int i = 0; i < 2; ++i) {
    n.spawn([&] {
      try {
        asleep.count_down();
        leash::this_task::sleep_for(1h);
      } catch (const leash::cancelled&) {
        ++cancelled_quietly;
        throw;
      }
    });
  }
  asleep.wait();
  n.spawn([] { throw backend_error("backend 3 is down"); });
  CHECK_THROWS_WITH_AS(n.wait(), "backend 3 is down", backend_error);
  CHECK(cancelled_quietly == 2);
  CHECK(n.failures().size() == 1);  // the siblings' cancellations are not failures
}

TEST_CASE("the body blocked in a leash call is cancelled by a task failure too") {
  CHECK_THROWS_AS(leash::run_nursery([](leash::nursery& n) {
                    n.spawn([] { throw backend_error("x"); });
                    leash::this_task::sleep_for(1h);
                  }),
                  backend_error);
}

TEST_CASE("a real failure beats cancellation, even when thrown after the cancel") {
  SUBCASE("after cancel()") {
    leash::nursery n;
    std::latch asleep(1);
    n.spawn([&] {
      try {
        asleep.count_down();
        leash::this_task::sleep_for(1h);
      } catch (const leash::cancelled&) {
        throw backend_error("cleanup failed");
      }
    });
    asleep.wait();
    n.cancel();
    CHECK_THROWS_AS(n.wait(), backend_error);
  }
  SUBCASE("after the nursery's deadline") {
    leash::nursery n({.timeout = 10ms});
    n.spawn([] {
      try {
        leash::this_task::sleep_for(1h);
      } catch (const leash::cancelled&) {
        throw backend_error("cleanup failed");
      }
    });
    CHECK_THROWS_AS(n.wait(), backend_error);
  }
}

TEST_CASE("a fail_after timeout inside a task fails its nursery, stopped siblings end quietly") {
  leash::nursery n;
  std::latch asleep(1);
  n.spawn([&] {
    asleep.count_down();
    leash::this_task::sleep_for(1h);
  });
  asleep.wait();
  n.spawn([] { leash::fail_after(10ms, [] { leash::this_task::sleep_for(1h); }); });
  CHECK_THROWS_AS(n.wait(), leash::deadline_exceeded);
  CHECK(n.failures().size() == 1);
  CHECK(n.reason() == stop_reason::cancelled);
}

TEST_CASE("a supervisor lets siblings finish and reports through get() and failures()") {
  leash::nursery n({.cancel_on_failure = false});
  auto bad = n.spawn([]() -> int { throw backend_error("one bad"); });
  auto good = n.spawn([&] {
    try {
      bad.get();
    } catch (const backend_error&) {
    }
    leash::this_task::checkpoint();  // the sibling's failure did not cancel this task
    return 7;
  });
  CHECK_NOTHROW(n.wait());
  CHECK(good.get() == 7);
  CHECK_THROWS_AS(bad.get(), backend_error);
  const auto all = n.failures();
  REQUIRE(all.size() == 1);
  CHECK_THROWS_WITH(std::rethrow_exception(all[0]), "one bad");
  CHECK_FALSE(n.stop_requested());
}

TEST_CASE("a supervisor's failure that nobody reads reaches the handler with its spawn line") {
  handler_capture capture;
  int line = 0;
  {
    leash::nursery n({.cancel_on_failure = false, .name = "supervisor"});
    line = __LINE__ + 1;
    n.spawn("unread", [] { throw backend_error("lost?"); });
    auto read = n.spawn("read", [] { throw backend_error("read"); });
    n.wait();
    CHECK_THROWS_AS(read.get(), backend_error);
  }
  REQUIRE(capture.seen.size() == 1);
  CHECK(capture.seen[0].task_name == "unread");
  CHECK(capture.seen[0].nursery_name == "supervisor");
  CHECK(capture.seen[0].task_site.line == static_cast<unsigned>(line));
  CHECK(std::string(capture.seen[0].task_site.file).find("nursery_test.cpp") != std::string::npos);
  CHECK_THROWS_WITH(std::rethrow_exception(capture.seen[0].error), "lost?");
}

TEST_CASE("a failure in a nursery destroyed without wait reaches the handler") {
  handler_capture capture;
  {
    leash::nursery n;
    n.spawn("boom", [] { throw backend_error("never waited for"); });
  }
  REQUIRE(capture.seen.size() == 1);
  CHECK(capture.seen[0].task_name == "boom");
}

TEST_CASE("the default unobserved-failure handler prints the spawn site and terminates") {
  const auto r = leash_test::run_child(std::string(LEASH_DEATH_CASES) + " unobserved");
  CHECK(r.signalled);
  CHECK(r.output.find("unobserved failure in task \"boom\" spawned at") != std::string::npos);
  CHECK(r.output.find("death_cases.cpp:") != std::string::npos);
  CHECK(r.output.find("nobody reads this") != std::string::npos);
}

TEST_CASE("limit never lets more than N tasks run") {
  constexpr int limit = 4;
  std::atomic<int> running{0};
  std::atomic<int> most{0};
  std::latch first_wave(limit);
  leash::run_nursery({.limit = limit}, [&](leash::nursery& n) {
    for (int i = 0; i < 40; ++i) {
      n.spawn([&, i] {
        const int now = ++running;
        int seen = most.load();
        while (now > seen && !most.compare_exchange_weak(seen, now)) {
        }
        if (i < limit) first_wave.arrive_and_wait();  // all N run at once, provably
        --running;
      });
    }
  });
  CHECK(most == limit);
}

TEST_CASE("try_spawn refuses when the nursery is full") {
  std::latch release(1);
  leash::nursery n({.limit = 1});
  auto first = n.try_spawn([&] { release.wait(); });
  REQUIRE(first.has_value());
  bool ran = false;
  auto second = n.try_spawn([&] { ran = true; });
  CHECK_FALSE(second.has_value());
  release.count_down();
  n.wait();
  CHECK_FALSE(ran);
}

TEST_CASE("a spawn waiting at the limit wakes on cancellation and runs nothing") {
  leash::nursery outer;
  leash::nursery n({.limit = 1});
  std::latch asleep(1);
  n.spawn([&] {
    asleep.count_down();
    leash::this_task::sleep_for(1h);
  });
  asleep.wait();
  std::atomic<bool> ran{false};
  leash::task<void> late;
  outer.spawn("spawner", [&] { late = n.spawn([&] { ran = true; }); });
  // Cancel once the spawner is provably blocked at the limit.
  for (bool blocked = false; !blocked; std::this_thread::yield()) {
    for (const auto& t : leash::live_tasks()) {
      blocked = blocked || (t.name == "spawner" && t.blocked_in != nullptr &&
                            std::string(t.blocked_in) == "nursery::spawn (at limit)");
    }
  }
  n.cancel("stop spawning");
  outer.wait();
  CHECK_THROWS_AS(late.get(), leash::cancelled);
  CHECK_FALSE(ran);
  CHECK_NOTHROW(n.wait());
}

TEST_CASE("a spawn waiting at the limit is cancellable by the caller's scope") {
  leash::nursery n({.limit = 1});
  std::latch release(1);
  n.spawn([&] { release.wait(); });
  {
    leash::cancel_scope scope(10ms);
    CHECK_THROWS_AS(n.spawn([] {}), leash::deadline_exceeded);
  }
  release.count_down();
  n.wait();
}

TEST_CASE("a nursery timeout cancels a task blocked in sleep_for(1h), results stay readable") {
  leash::nursery n({.timeout = 50ms});
  auto quick = n.spawn([] { return std::string("fast answer"); });
  auto slow = n.spawn([] {
    leash::this_task::sleep_for(1h);
    return std::string("never");
  });
  quick.get();  // finished before the deadline
  const auto t0 = std::chrono::steady_clock::now();
  CHECK_THROWS_AS(n.wait(), leash::deadline_exceeded);
  CHECK(std::chrono::steady_clock::now() - t0 < 10s);
  CHECK(quick.get() == "fast answer");
  CHECK_THROWS_AS(slow.get(), leash::deadline_exceeded);
  CHECK(n.reason() == stop_reason::deadline_exceeded);
}

TEST_CASE("a nursery deadline that fires after all tasks ended is not an error") {
  leash::nursery n({.deadline = std::chrono::steady_clock::now() + 20ms});
  auto t = n.spawn([] { return 1; });
  CHECK(t.get() == 1);
  while (!n.stop_requested())
    std::this_thread::yield();  // the deadline passes, idle
  CHECK_NOTHROW(n.wait());
}

TEST_CASE("spawning into a cancelled nursery runs nothing") {
  leash::nursery n;
  n.cancel();
  bool ran = false;
  auto t = n.spawn([&] {
    ran = true;
    return 1;
  });
  CHECK_THROWS_AS(t.get(), leash::cancelled);
  CHECK(t.done());
  CHECK_NOTHROW(n.wait());
  CHECK_FALSE(ran);
}

TEST_CASE("spawning after wait() returned throws usage_error") {
  leash::nursery n;
  n.wait();
  CHECK_THROWS_WITH_AS(n.spawn([] {}), doctest::Contains("spawn after wait() returned"),
                       leash::usage_error);
}

TEST_CASE("a limit of 0 is a usage_error") {
  CHECK_THROWS_WITH_AS(leash::nursery({.limit = 0}), doctest::Contains("limit must be at least 1"),
                       leash::usage_error);
}

TEST_CASE("cancelling an outer scope reaches the tasks of nested nurseries") {
  std::atomic<int> stopped{0};
  std::latch asleep(3);
  leash::cancel_scope outer;
  try {
    leash::run_nursery([&](leash::nursery& n) {
      n.spawn([&] {
        leash::run_nursery([&](leash::nursery& inner) {
          for (int i = 0; i < 3; ++i) {
            inner.spawn([&] {
              try {
                asleep.count_down();
                leash::this_task::sleep_for(1h);
              } catch (const leash::cancelled& e) {
                if (e.origin() == stop_reason::cancelled) ++stopped;
                throw;
              }
            });
          }
        });
      });
      asleep.wait();
      outer.cancel("shutting down");
    });
    FAIL("the outer cancellation did not propagate");
  } catch (const leash::cancelled& e) {
    CHECK(e.reason() == stop_reason::parent);
    CHECK(e.message() == "shutting down");
  }
  CHECK(stopped == 3);
}

// The join in ~nursery is no leash call (live_tasks() does not show it), so
// the task finishes only once it sees the destroying thread asleep inside the
// destructor. A destructor that did not join would return, and reach the
// first CHECK, while the task still waits for that.
TEST_CASE("the destructor joins every task") {
  const pid_t destroying_thread = leash_test::current_thread_id();
  std::atomic<bool> finished{false};
  std::latch scope_ending(1);
  std::latch task_done(1);
  {
    leash::nursery n;
    n.spawn([&] {
      scope_ending.wait();
      CHECK(leash_test::eventually([&] { return leash_test::thread_asleep(destroying_thread); }));
      finished = true;
      task_done.count_down();
    });
    struct signal_on_exit {
      std::latch& ending;
      ~signal_on_exit() { ending.count_down(); }
    } last_before_destructor{scope_ending};  // destroyed just before n
  }
  CHECK(finished);
  task_done.wait();  // had ~nursery not joined, the task runs on: it ends once this thread sleeps
}

TEST_CASE("a scope unwinding with an exception cancels its tasks") {
  std::atomic<bool> cancelled{false};
  std::latch asleep(1);
  try {
    leash::nursery n;
    n.spawn([&] {
      try {
        asleep.count_down();
        leash::this_task::sleep_for(1h);
      } catch (const leash::cancelled&) {
        cancelled = true;
        throw;
      }
    });
    asleep.wait();
    throw std::runtime_error("body failed");
  } catch (const std::runtime_error& e) {
    CHECK(std::string(e.what()) == "body failed");
  }
  CHECK(cancelled);
}

TEST_CASE("a nursery can be destroyed right after wait(), thousands of times") {
  std::atomic<int> sum{0};
  for (int i = 0; i < 3000; ++i) {
    leash::nursery n;
    n.spawn([&] { ++sum; });
    n.spawn([&](std::stop_token) { ++sum; });
    n.wait();
  }
  CHECK(sum == 6000);
}

TEST_CASE("a task handle stays valid after its nursery is gone") {
  leash::task<std::string> t;
  {
    leash::nursery n;
    t = n.spawn("named", [] { return std::string("kept"); });
  }
  CHECK(t.done());
  CHECK(t.get() == "kept");
  CHECK(t.name() == "named");
}

TEST_CASE("an empty task handle is a usage_error") {
  leash::task<int> t;
  CHECK_FALSE(t.valid());
  CHECK_THROWS_AS(t.get(), leash::usage_error);
}

TEST_CASE("wait() from one of the nursery's own tasks is a usage_error") {
  leash::nursery n;
  n.spawn([&] { n.wait(); });
  CHECK_THROWS_WITH_AS(n.wait(), doctest::Contains("would deadlock"), leash::usage_error);
}

TEST_CASE("task::get waits for the task and is cancellable") {
  leash::nursery n;
  std::latch release(1);
  auto t = n.spawn([&] {
    release.wait();
    return 5;
  });
  CHECK_THROWS_AS(leash::fail_after(10ms, [&] { return t.get(); }), leash::deadline_exceeded);
  release.count_down();
  CHECK(t.get() == 5);
  n.wait();
}

TEST_CASE("a task taking a stop_token gets the nursery's token") {
  leash::nursery n;
  std::stop_token seen;
  std::stop_token ambient;
  n.spawn([&](std::stop_token st) {
    seen = st;
    ambient = leash::this_task::stop_token();
  });
  n.wait();
  CHECK(seen == n.token());
  CHECK(ambient == n.token());
}

TEST_CASE("tasks may spawn into their own nursery") {
  std::atomic<int> count{0};
  leash::run_nursery([&](leash::nursery& n) {
    struct spawner {
      leash::nursery& n;
      std::atomic<int>& count;
      int depth;
      void operator()() const {
        ++count;
        if (depth < 6) {
          n.spawn(spawner{n, count, depth + 1});
          n.spawn(spawner{n, count, depth + 1});
        }
      }
    };
    n.spawn(spawner{n, count, 0});
  });
  CHECK(count == 127);
}

TEST_CASE("run_nursery returns the body's value after joining") {
  const auto v = leash::run_nursery([](leash::nursery& n) {
    auto a = n.spawn([] { return 40; });
    auto b = n.spawn([] { return 2; });
    return a.get() + b.get();
  });
  CHECK(v == 42);
}

TEST_CASE("run_nursery absorbs the body's cancelled after its own cancel()") {
  bool after = false;
  CHECK_NOTHROW(leash::run_nursery([&](leash::nursery& n) {
    n.spawn([] { leash::this_task::sleep_for(1h); });
    n.cancel();
    leash::this_task::sleep_for(1h);
    after = true;
  }));
  CHECK_FALSE(after);
}

TEST_CASE("run_nursery propagates its own deadline from the body") {
  CHECK_THROWS_AS(leash::run_nursery({.timeout = 10ms},
                                     [](leash::nursery&) { leash::this_task::sleep_for(1h); }),
                  leash::deadline_exceeded);
}

TEST_CASE("move-only callables and results work") {
  auto p = std::make_unique<int>(41);
  leash::nursery n;
  auto t = n.spawn([p = std::move(p)] { return std::make_unique<int>(*p + 1); });
  n.wait();
  std::unique_ptr<int> r = std::move(t.get());
  CHECK(*r == 42);
}

TEST_CASE("the callable is destroyed on the task's thread once it has run") {
  auto token = std::make_shared<int>(0);
  std::weak_ptr<int> watch = token;
  leash::nursery n;
  auto t = n.spawn([token = std::move(token)] { return *token; });
  t.get();
  n.wait();
  CHECK(watch.expired());  // the handle t keeps the record, not the captures
}

TEST_CASE("failures() lists every failure in order") {
  leash::nursery n({.cancel_on_failure = false});
  n.spawn([] { throw backend_error("first"); });
  while (n.failures().size() < 1)
    std::this_thread::yield();
  n.spawn([] { throw backend_error("second"); });
  n.wait();
  const auto f = n.failures();
  REQUIRE(f.size() == 2);
  CHECK_THROWS_WITH(std::rethrow_exception(f[0]), "first");
  CHECK_THROWS_WITH(std::rethrow_exception(f[1]), "second");
}

TEST_CASE("a cancelled escaping a task whose own token is not stopped is a failure") {
  leash::nursery n;
  n.spawn([] {
    leash::cancel_scope own;
    own.cancel("inner scope gave up");
    own.throw_if_stopped();  // escapes the task, but the nursery was not stopped
  });
  CHECK_THROWS_WITH_AS(n.wait(), doctest::Contains("inner scope gave up"), leash::cancelled);
  CHECK(n.failures().size() == 1);
}

TEST_CASE("every task records its spawn site and name") {
  leash::nursery n;
  const unsigned line = __LINE__ + 1;
  auto t = n.spawn("fetch", [] { return 1; });
  CHECK(t.site().line == line);
  CHECK(t.name() == "fetch");
  n.wait();
}

TEST_CASE("live_tasks shows running tasks as a tree of nurseries") {
  std::latch inner_running(1);
  std::latch release(1);
  std::vector<leash::live_task> live;
  leash::run_nursery({.name = "outer"}, [&](leash::nursery& n) {
    n.spawn("parent", [&] {
      leash::run_nursery({.name = "inner"}, [&](leash::nursery& inner) {
        inner.spawn("child", [&] {
          inner_running.count_down();
          release.wait();
        });
      });
    });
    inner_running.wait();
    // The parent reaches its inner nursery's wait() a moment after the child runs.
    do {
      live = leash::live_tasks();
    } while (live.size() != 2 || live[0].blocked_in == nullptr);
    release.count_down();
  });
  REQUIRE(live.size() == 2);
  CHECK(live[0].name == "parent");
  CHECK(live[0].nursery == "outer");
  CHECK(live[0].depth == 0);
  CHECK(std::string(live[0].blocked_in) == "nursery::wait");
  CHECK(live[1].name == "child");
  CHECK(live[1].nursery == "inner");
  CHECK(live[1].depth == 1);
  const std::string tree = leash::to_string(live);
  CHECK(tree.find("nursery \"outer\" opened at") != std::string::npos);
  CHECK(tree.find("    nursery \"inner\"") != std::string::npos);
  CHECK(tree.find("task \"child\" spawned at") != std::string::npos);
}

TEST_CASE("the nursery is the ambient scope of its body") {
  leash::nursery n;
  CHECK(leash::this_task::stop_token() == n.token());
}

TEST_CASE("limit holds with several spawners waiting for one free slot") {
  std::atomic<int> running{0};
  std::atomic<int> most{0};
  leash::nursery producers;
  leash::nursery n({.limit = 1});
  for (int p = 0; p < 3; ++p) {
    producers.spawn([&] {
      for (int i = 0; i < 200; ++i) {
        n.spawn([&] {
          const int now = ++running;
          int seen = most.load();
          while (now > seen && !most.compare_exchange_weak(seen, now)) {
          }
          std::this_thread::yield();
          --running;
        });
      }
    });
  }
  producers.wait();
  n.wait();
  CHECK(most == 1);
}

TEST_CASE("wait rethrows the failure that cancelled the nursery, even if another records first") {
  leash::nursery n;
  std::latch a_cancelling(1);
  // Runs on A's thread inside its stop request: holds A there until B's
  // failure has been recorded.
  std::stop_callback hold(n.token(), [&] {
    a_cancelling.count_down();
    while (n.failures().empty())
      std::this_thread::yield();
  });
  // B first: a spawn after A's failure would find the nursery cancelled.
  n.spawn("B", [&] {
    a_cancelling.wait();
    throw backend_error("B failed second");
  });
  n.spawn("A", [] { throw backend_error("A cancelled the nursery"); });
  CHECK_THROWS_WITH_AS(n.wait(), "A cancelled the nursery", backend_error);
  const auto f = n.failures();
  REQUIRE(f.size() == 2);
  CHECK_THROWS_WITH(std::rethrow_exception(f[0]), "A cancelled the nursery");
}

TEST_CASE("a task failure is reported when the scope unwinds with an unrelated exception") {
  handler_capture capture;
  try {
    leash::nursery n;
    n.spawn("F", [] { throw backend_error("task failure"); });
    while (!n.stop_requested())
      std::this_thread::yield();  // F failed and cancelled n
    throw std::logic_error("unrelated body error");
  } catch (const std::logic_error&) {
  }
  REQUIRE(capture.seen.size() == 1);
  CHECK(capture.seen[0].task_name == "F");
}

TEST_CASE("a failure carried as cause() by the unwinding cancelled is not reported twice") {
  handler_capture capture;
  try {
    leash::nursery n;
    n.spawn("F", [] { throw backend_error("task failure"); });
    leash::this_task::sleep_for(1h);  // throws cancelled with cause F
  } catch (const leash::cancelled& e) {
    CHECK_THROWS_AS(std::rethrow_exception(e.cause()), backend_error);
  }
  CHECK(capture.seen.empty());
}

TEST_CASE("task::get from inside the task itself is a usage_error") {
  leash::nursery n;
  leash::task<int> self;
  std::latch assigned(1);
  self = n.spawn([&] {
    assigned.wait();
    return self.get();
  });
  assigned.count_down();
  CHECK_THROWS_WITH_AS(n.wait(), doctest::Contains("from inside the task itself"),
                       leash::usage_error);
}

TEST_CASE("wait() from a task of a nested nursery is a usage_error") {
  leash::nursery n;
  n.spawn(
      [&] { leash::run_nursery([&](leash::nursery& inner) { inner.spawn([&] { n.wait(); }); }); });
  CHECK_THROWS_WITH_AS(n.wait(), doctest::Contains("would deadlock"), leash::usage_error);
}

namespace {

// Counts its live instances, so a test can see when a task's result or
// exception was destroyed (and on which side of wait() that happened).
struct counted {
  explicit counted(std::atomic<int>& live) : live(&live) { ++live; }
  counted(const counted& other) : live(other.live) { ++*live; }
  counted& operator=(const counted&) = delete;
  ~counted() { --*live; }
  std::atomic<int>* live;
};

struct counted_error : std::runtime_error {
  explicit counted_error(std::atomic<int>& live) : std::runtime_error("counted"), mark(live) {}
  counted mark;
};

// Enough rounds that the old race (the runtime thread releasing the last
// reference after wait() returned) shows up nearly every run.
constexpr int lifetime_rounds = 300;

}  // namespace

TEST_CASE("a task's value is destroyed before the scope that waited for it ends") {
  for (int i = 0; i < lifetime_rounds; ++i) {
    std::atomic<int> live{0};
    {
      leash::nursery n;
      auto t = n.spawn([&] { return counted(live); });
      n.wait();
      CHECK(t.get().live == &live);
    }
    REQUIRE(live == 0);
  }
}

TEST_CASE("a task's value nobody holds is destroyed before wait() returns") {
  for (int i = 0; i < lifetime_rounds; ++i) {
    std::atomic<int> live{0};
    leash::nursery n;
    (void)n.spawn([&] { return counted(live); });
    n.wait();
    REQUIRE(live == 0);
  }
}

TEST_CASE("a task's exception is destroyed before the nursery's scope ends") {
  for (int i = 0; i < lifetime_rounds; ++i) {
    std::atomic<int> live{0};
    {
      leash::nursery n;
      (void)n.spawn([&] { throw counted_error(live); });
      CHECK_THROWS_AS(n.wait(), counted_error);
    }
    REQUIRE(live == 0);
  }
}

TEST_CASE("a supervised task's exception read through get() dies with the last handle") {
  for (int i = 0; i < lifetime_rounds; ++i) {
    std::atomic<int> live{0};
    {
      leash::nursery n({.cancel_on_failure = false});
      auto t = n.spawn([&]() -> int { throw counted_error(live); });
      n.wait();
      CHECK_THROWS_AS(t.get(), counted_error);
      (void)n.failures();
    }
    REQUIRE(live == 0);
  }
}
