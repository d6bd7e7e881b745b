// Tests for runtime::set_observer: the events of thread and coroutine tasks
// in order, cancel reasons, ids and blocked_in strings as live_tasks()
// reports them, parent ids, replacing the observer while tasks run, and
// exact counts under concurrency.
#include <doctest/doctest.h>

#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <latch>
#include <leash.hpp>
#include <memory>
#include <mutex>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "support/blocked.hpp"
#include "support/child_process.hpp"

using leash::coro;
using leash::detail::event_kind;

namespace {

struct record {
  event_kind kind;
  std::uint64_t id;
  std::string name;
  std::uint64_t parent_id;
  std::uint64_t nursery_id;
  bool coroutine;
  std::string blocked_in;
  std::string cancel_message;
  leash::stop_reason cancel_origin;
  leash::task_outcome outcome;
};

// Records every event; lets a test wait until a given event was seen.
class recorder final : public leash::observer {
 public:
  void on_spawn(const leash::task_event& e) override { add(event_kind::spawn, e); }
  void on_start(const leash::task_event& e) override { add(event_kind::start, e); }
  void on_block(const leash::task_event& e) override { add(event_kind::block, e); }
  void on_unblock(const leash::task_event& e) override { add(event_kind::unblock, e); }
  void on_cancel(const leash::task_event& e) override { add(event_kind::cancel, e); }
  void on_finish(const leash::task_event& e) override { add(event_kind::finish, e); }

  // The events of the task named `name`, in order.
  std::vector<record> of(const std::string& name) const {
    std::lock_guard lock(mutex_);
    std::vector<record> out;
    for (const auto& r : events_) {
      if (r.name == name) out.push_back(r);
    }
    return out;
  }

  std::vector<event_kind> kinds_of(const std::string& name) const {
    std::vector<event_kind> out;
    for (const auto& r : of(name))
      out.push_back(r.kind);
    return out;
  }

  // Waits until the task named `name` had an event of kind `k`; returns it.
  record wait_for(const std::string& name, event_kind k) const {
    std::unique_lock lock(mutex_);
    const record* found = nullptr;
    changed_.wait(lock, [&] {
      for (const auto& r : events_) {
        if (r.name == name && r.kind == k) found = &r;
      }
      return found != nullptr;
    });
    return *found;
  }

 private:
  void add(event_kind k, const leash::task_event& e) {
    record r{k,
             e.id,
             std::string(e.name),
             e.parent_id,
             e.nursery_id,
             e.coroutine,
             e.blocked_in != nullptr ? e.blocked_in : "",
             e.cancel != nullptr ? e.cancel->message : "",
             e.cancel != nullptr ? e.cancel->origin : leash::stop_reason::none,
             e.outcome};
    std::lock_guard lock(mutex_);
    events_.push_back(std::move(r));
    changed_.notify_all();
  }

  mutable std::mutex mutex_;
  mutable std::condition_variable changed_;
  std::vector<record> events_;
};

// Installs an observer for a test's scope.
struct observing {
  explicit observing(leash::observer& o) { leash::runtime::set_observer(&o); }
  ~observing() { leash::runtime::set_observer(nullptr); }
  observing(const observing&) = delete;
  observing& operator=(const observing&) = delete;
};

const char* live_blocked_in(std::uint64_t id) {
  for (const auto& t : leash::live_tasks()) {
    if (t.id == id) return t.blocked_in;
  }
  return nullptr;
}

std::vector<event_kind> without_cancel(std::vector<event_kind> kinds) {
  std::erase(kinds, event_kind::cancel);
  return kinds;
}

const std::vector<event_kind> full_life = {event_kind::spawn, event_kind::start, event_kind::block,
                                           event_kind::unblock, event_kind::finish};

}  // namespace

TEST_CASE(
    "a thread task reports spawn, start, block, unblock, finish with the ids of live_tasks()") {
  recorder rec;
  observing on(rec);
  leash::channel<int> ch;
  leash::run_nursery({.name = "outer"}, [&](leash::nursery& n) {
    auto t = n.spawn("receiver", [&] { return *ch.recv(); });
    const record blocked = rec.wait_for("receiver", event_kind::block);
    // While it blocks, live_tasks() lists it with the same id and call.
    REQUIRE(live_blocked_in(blocked.id) != nullptr);
    CHECK(blocked.blocked_in == live_blocked_in(blocked.id));
    ch.send(7);
    CHECK(t.get() == 7);
  });
  CHECK(rec.kinds_of("receiver") == full_life);
  const auto events = rec.of("receiver");
  for (const auto& r : events) {
    CHECK(r.id == events.front().id);
    CHECK(r.parent_id == 0);  // spawned from the test's thread
    CHECK_FALSE(r.coroutine);
  }
  CHECK(events.back().outcome == leash::task_outcome::value);
}

TEST_CASE("a coroutine task reports the same events: start at its first slice, block in a wait") {
  recorder rec;
  observing on(rec);
  leash::channel<int> ch;
  std::uint64_t blocked_id = 0;
  leash::run_nursery([&](leash::nursery& n) {
    n.spawn("coro receiver", [&]() -> coro<int> { co_return *co_await ch.async_recv(); });
    const record blocked = rec.wait_for("coro receiver", event_kind::block);
    blocked_id = blocked.id;
    REQUIRE(live_blocked_in(blocked.id) != nullptr);
    CHECK(blocked.blocked_in == live_blocked_in(blocked.id));
    ch.send(1);
  });
  CHECK(rec.kinds_of("coro receiver") == full_life);
  for (const auto& r : rec.of("coro receiver")) {
    CHECK(r.id == blocked_id);
    CHECK(r.coroutine);
  }
}

TEST_CASE("cancel events carry the reason and the finish outcome says cancelled or exception") {
  recorder rec;
  observing on(rec);
  leash::channel<int> ch;
  SUBCASE("an explicit cancel, with its message") {
    leash::run_nursery([&](leash::nursery& n) {
      n.spawn("waiter", [&] { ch.recv(); });
      rec.wait_for("waiter", event_kind::block);
      n.cancel("shutting down");
    });
    // The cancel races with the task's wake-up, never with its spawn or finish.
    CHECK(without_cancel(rec.kinds_of("waiter")) == full_life);
    CHECK(rec.kinds_of("waiter").at(3) != event_kind::finish);
    const record cancel = rec.wait_for("waiter", event_kind::cancel);
    CHECK(cancel.cancel_message == "shutting down");
    CHECK(cancel.cancel_origin == leash::stop_reason::cancelled);
    CHECK(rec.wait_for("waiter", event_kind::finish).outcome == leash::task_outcome::cancelled);
  }
  SUBCASE("a sibling's failure: the failing task ends with exception, the other is cancelled") {
    CHECK_THROWS_AS(leash::run_nursery([&](leash::nursery& n) {
                      n.spawn("waiter", [&] { ch.recv(); });
                      rec.wait_for("waiter", event_kind::block);
                      n.spawn("failing", [] { throw std::runtime_error("boom"); });
                    }),
                    std::runtime_error);
    CHECK(rec.wait_for("waiter", event_kind::cancel).cancel_message == "a sibling task failed");
    CHECK(rec.wait_for("failing", event_kind::finish).outcome == leash::task_outcome::exception);
    CHECK(rec.wait_for("waiter", event_kind::finish).outcome == leash::task_outcome::cancelled);
  }
  SUBCASE("task<T>::cancel(): a cancel event of that task alone, with its message") {
    leash::run_nursery([&](leash::nursery& n) {
      auto t = n.spawn("waiter", [&] { ch.recv(); });
      n.spawn("sibling", [] {});
      rec.wait_for("waiter", event_kind::block);
      t.cancel("not needed");
    });
    CHECK(without_cancel(rec.kinds_of("waiter")) == full_life);
    const auto waiter = rec.kinds_of("waiter");
    REQUIRE(std::count(waiter.begin(), waiter.end(), event_kind::cancel) == 1);
    const record cancel = rec.wait_for("waiter", event_kind::cancel);
    CHECK(cancel.cancel_message == "not needed");
    CHECK(cancel.cancel_origin == leash::stop_reason::cancelled);
    CHECK(rec.wait_for("waiter", event_kind::finish).outcome == leash::task_outcome::cancelled);
    CHECK(rec.wait_for("sibling", event_kind::finish).outcome == leash::task_outcome::value);
    const auto sibling = rec.kinds_of("sibling");
    CHECK(std::find(sibling.begin(), sibling.end(), event_kind::cancel) == sibling.end());
  }
  SUBCASE("spawned into a nursery past its deadline: spawn, cancel, finish, never start") {
    CHECK_THROWS_AS(leash::run_nursery({.deadline = std::chrono::steady_clock::now()},
                                       [&](leash::nursery& n) { n.spawn("late", [] {}); }),
                    leash::deadline_exceeded);
    CHECK(rec.kinds_of("late") ==
          std::vector<event_kind>{event_kind::spawn, event_kind::cancel, event_kind::finish});
    CHECK(rec.wait_for("late", event_kind::cancel).cancel_origin ==
          leash::stop_reason::deadline_exceeded);
  }
}

TEST_CASE(
    "parent ids: the spawning task's id, 0 from a plain thread, nursery ids as live_tasks()") {
  recorder rec;
  observing on(rec);
  std::uint64_t parent_nursery_seen = 0;
  leash::run_nursery([&](leash::nursery& outer) {
    outer.spawn("parent", [&] {
      leash::run_nursery([&](leash::nursery& inner) {
        inner.spawn("child", [] {});
        outer.spawn("sibling", [] {});  // spawned by a task into another nursery
        for (const auto& t : leash::live_tasks()) {
          if (t.name == "parent") parent_nursery_seen = t.nursery_id;
        }
      });
    });
  });
  const record parent = rec.wait_for("parent", event_kind::spawn);
  const record child = rec.wait_for("child", event_kind::spawn);
  const record sibling = rec.wait_for("sibling", event_kind::spawn);
  CHECK(parent.parent_id == 0);
  CHECK(child.parent_id == parent.id);
  CHECK(sibling.parent_id == parent.id);
  CHECK(sibling.nursery_id == parent.nursery_id);
  CHECK(child.nursery_id != parent.nursery_id);
  CHECK(parent_nursery_seen == parent.nursery_id);
}

namespace {

// Counts its callbacks; any that runs once it is retired is a violation.
class counting_observer final : public leash::observer {
 public:
  void on_spawn(const leash::task_event&) override { count(); }
  void on_start(const leash::task_event&) override { count(); }
  void on_block(const leash::task_event&) override { count(); }
  void on_unblock(const leash::task_event&) override { count(); }
  void on_finish(const leash::task_event&) override { count(); }

  std::atomic<bool> retired{false};
  std::atomic<long> calls{0};
  std::atomic<long> violations{0};

 private:
  void count() {
    if (retired.load(std::memory_order_acquire)) violations.fetch_add(1);
    calls.fetch_add(1, std::memory_order_relaxed);
    if (retired.load(std::memory_order_acquire)) violations.fetch_add(1);
  }
};

// Blocks its first on_block until released.
class holding_observer final : public leash::observer {
 public:
  void on_block(const leash::task_event&) override {
    if (held_.exchange(true)) return;
    entered.count_down();
    release.wait();
    returned.store(true, std::memory_order_release);
  }

  std::latch entered{1};
  std::latch release{1};
  std::atomic<bool> returned{false};

 private:
  std::atomic<bool> held_{false};
};

}  // namespace

TEST_CASE("set_observer returns only after the old observer's running callback returned") {
  holding_observer holder;
  leash::runtime::set_observer(&holder);
  leash::channel<int> ch;
  leash::run_nursery([&](leash::nursery& n) {
    n.spawn("blocks", [&] { ch.recv(); });
    holder.entered.wait();  // its on_block runs now, held
    std::atomic<bool> replaced{false};
    std::thread replacer([&] {
      leash::runtime::set_observer(nullptr);
      replaced.store(true);
    });
    // The replacer has swapped the observer out and now waits for the callback.
    while (leash::detail::observing())
      std::this_thread::yield();
    CHECK_FALSE(replaced.load());
    holder.release.count_down();
    replacer.join();
    CHECK(holder.returned.load(std::memory_order_acquire));
    ch.send(1);
  });
}

TEST_CASE("replacing the observer while tasks run: no old callback after set_observer returns") {
  constexpr int replacements = 200;
  constexpr int ping_pongs = 2;
  leash::channel<int> ping, pong;
  leash::run_nursery([&](leash::nursery& n) {
    for (int i = 0; i < ping_pongs; ++i) {
      n.spawn([&] {
        while (auto v = ping.recv())
          pong.send(*v);
      });
      n.spawn([&]() -> coro<void> {
        for (int v = 0;; ++v) {
          co_await ping.async_send(v);
          if (!co_await pong.async_recv()) co_return;
        }
      });
    }
    std::vector<std::unique_ptr<counting_observer>> observers;
    for (int i = 0; i < replacements; ++i) {
      observers.push_back(std::make_unique<counting_observer>());
      leash::runtime::set_observer(observers.back().get());
      // Wait until the new one sees events: the tasks keep running.
      while (observers.back()->calls.load() == 0)
        std::this_thread::yield();
      if (i > 0) {
        observers[i - 1]->retired.store(true, std::memory_order_release);
      }
    }
    leash::runtime::set_observer(nullptr);
    observers.back()->retired.store(true, std::memory_order_release);
    n.cancel();
    long violations = 0;
    for (const auto& o : observers)
      violations += o->violations.load();
    CHECK(violations == 0);
  });
}

TEST_CASE("set_observer from inside a callback throws usage_error") {
  struct reentrant final : leash::observer {
    void on_start(const leash::task_event&) override {
      try {
        leash::runtime::set_observer(nullptr);
      } catch (const leash::usage_error&) {
        refused = true;
      }
    }
    std::atomic<bool> refused{false};
  } o;
  {
    observing on(o);
    leash::run_nursery([](leash::nursery& n) { n.spawn([] {}); });
  }
  CHECK(o.refused.load());
}

namespace {

class tally final : public leash::observer {
 public:
  void on_spawn(const leash::task_event&) override { spawns.fetch_add(1); }
  void on_start(const leash::task_event&) override { starts.fetch_add(1); }
  void on_block(const leash::task_event&) override { blocks.fetch_add(1); }
  void on_unblock(const leash::task_event&) override { unblocks.fetch_add(1); }
  void on_finish(const leash::task_event&) override { finishes.fetch_add(1); }
  std::atomic<long> spawns{0}, starts{0}, blocks{0}, unblocks{0}, finishes{0};
};

}  // namespace

TEST_CASE("events of many tasks on many threads are counted exactly") {
  constexpr int spawners = 8;
  constexpr int tasks_each = 200;
  tally t;
  observing on(t);
  leash::channel<int> ch(4);
  leash::run_nursery([&](leash::nursery& n) {
    n.spawn("drain", [&] {
      for (int i = 0; i < spawners * tasks_each; ++i)
        ch.recv();
    });
    leash::run_nursery([&](leash::nursery& spawning) {
      for (int s = 0; s < spawners; ++s) {
        spawning.spawn([&, s] {
          for (int i = 0; i < tasks_each; ++i) {
            if ((i + s) % 2 == 0) {
              n.spawn([&] { ch.send(1); });
            } else {
              n.spawn([&]() -> coro<void> { co_await ch.async_send(1); });
            }
          }
        });
      }
    });
  });
  const long total = spawners * tasks_each + spawners + 1;  // senders, spawners, drain
  CHECK(t.spawns.load() == total);
  CHECK(t.starts.load() == total);
  CHECK(t.finishes.load() == total);
  CHECK(t.blocks.load() == t.unblocks.load());
}

TEST_CASE("a callback that throws ends the process with a message naming it (child process)") {
  const auto r = leash_test::run_child(std::string(LEASH_DEATH_CASES) + " observer_throws");
  CHECK(r.signalled);
  CHECK(r.output.find("leash::observer: on_start threw (tracer broke)") != std::string::npos);
}
