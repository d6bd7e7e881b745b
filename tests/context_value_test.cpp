// Tests for leash::context_value: values bound in a task (or plain thread),
// inherited by the tasks spawned below, thread tasks and coroutine tasks
// alike; shadowing, scoping, the innermost-first rule, and value lifetimes.
#include <doctest/doctest.h>

#include <atomic>
#include <chrono>
#include <latch>
#include <leash.hpp>
#include <memory>
#include <optional>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

using namespace std::chrono_literals;
using leash::coro;

namespace {

leash::context_value<std::string> request_id;
leash::context_value<int> depth;
leash::context_value<int> layer;

// The request id seen here, or "" when none is bound.
std::string seen_id() {
  return request_id.value_or("");
}

// Counts its live instances: a value's lifetime is observable.
struct counted {
  static inline std::atomic<int> live{0};
  explicit counted(int v) : value(v) { live.fetch_add(1); }
  counted(const counted& other) : value(other.value) { live.fetch_add(1); }
  ~counted() { live.fetch_sub(1); }
  int value;
};
leash::context_value<counted> counted_value;

}  // namespace

// ---------------------------------------------------------------------------
// One context: a plain thread's.

TEST_CASE("context_value: nothing bound gives nullptr and the fallback") {
  CHECK(request_id.get() == nullptr);
  CHECK(request_id.value_or("none") == "none");
  CHECK(depth.value_or(-1) == -1);
}

TEST_CASE("context_value: a binding is visible until it ends, then the previous value is back") {
  {
    auto outer = request_id.bind("req-1");
    REQUIRE(request_id.get() != nullptr);
    CHECK(*request_id.get() == "req-1");
    CHECK(outer.value() == "req-1");
    {
      auto inner = request_id.bind("req-2");
      auto other = depth.bind(7);
      CHECK(*request_id.get() == "req-2");  // shadows
      CHECK(*depth.get() == 7);             // another key is independent
    }
    CHECK(*request_id.get() == "req-1");
    CHECK(depth.get() == nullptr);
  }
  CHECK(request_id.get() == nullptr);
}

TEST_CASE("context_value: a plain thread has its own context, and its tasks inherit it") {
  auto here = request_id.bind("main");
  std::string in_thread_before;
  std::string in_task;
  std::string in_thread_after;
  std::thread t([&] {
    in_thread_before = seen_id();  // the spawning thread's binding is not this thread's
    auto bound = request_id.bind("plain");
    leash::run_nursery([&](leash::nursery& n) { n.spawn([&] { in_task = seen_id(); }); });
    in_thread_after = seen_id();
  });
  t.join();
  CHECK(in_thread_before.empty());
  CHECK(in_task == "plain");
  CHECK(in_thread_after == "plain");
  CHECK(seen_id() == "main");
}

// ---------------------------------------------------------------------------
// Thread tasks.

TEST_CASE("context_value: a thread task keeps what was bound when it was spawned") {
  std::latch binding_ended(1);
  std::string before_end;
  std::string after_end;
  std::string late_child;
  leash::run_nursery([&](leash::nursery& n) {
    {
      auto bound = request_id.bind("req-42");
      n.spawn([&] {
        before_end = seen_id();
        binding_ended.wait();
        after_end = seen_id();  // the spawner's binding has ended: the task's copy stays
      });
    }
    auto later = request_id.bind("later");
    binding_ended.count_down();
    n.spawn([&] { late_child = seen_id(); });
  });
  CHECK(before_end == "req-42");
  CHECK(after_end == "req-42");
  CHECK(late_child == "later");
  CHECK(request_id.get() == nullptr);
}

TEST_CASE("context_value: a child's binding is invisible to its parent and its siblings") {
  auto bound = request_id.bind("parent");
  std::latch child_bound(1);
  std::latch sibling_looked(1);
  std::string in_child;
  std::string in_sibling;
  std::string in_parent;
  leash::run_nursery([&](leash::nursery& n) {
    n.spawn([&] {
      auto mine = request_id.bind("child");
      child_bound.count_down();
      sibling_looked.wait();
      in_child = seen_id();
    });
    n.spawn([&] {
      child_bound.wait();
      in_sibling = seen_id();
      sibling_looked.count_down();
    });
    child_bound.wait();
    in_parent = seen_id();
  });
  CHECK(in_child == "child");
  CHECK(in_sibling == "parent");
  CHECK(in_parent == "parent");
}

TEST_CASE("context_value: a task on a reused worker thread does not see an earlier task's values") {
  leash::run_nursery([&](leash::nursery& n) {
    auto bound = request_id.bind("first");
    n.spawn([] { CHECK(seen_id() == "first"); }).get();
  });
  std::vector<std::string> seen(8);
  leash::run_nursery([&](leash::nursery& n) {
    for (auto& s : seen)
      n.spawn([&s] { s = seen_id(); });
  });
  for (const auto& s : seen)
    CHECK(s.empty());
}

// ---------------------------------------------------------------------------
// Coroutine tasks.

TEST_CASE("context_value: a coroutine task inherits, and its own binding lasts across co_await") {
  leash::channel<int> ch(0);
  std::string inherited;
  std::string after_suspend;
  std::string after_end;
  leash::run_nursery([&](leash::nursery& n) {
    auto bound = request_id.bind("spawner");
    n.spawn([&]() -> coro<void> {
      inherited = seen_id();
      {
        auto mine = request_id.bind("coro");
        co_await ch.async_recv();
        after_suspend = seen_id();
      }
      after_end = seen_id();
    });
    ch.send(1);
  });
  CHECK(inherited == "spawner");
  CHECK(after_suspend == "coro");
  CHECK(after_end == "spawner");
}

TEST_CASE(
    "context_value: coroutine tasks keep their own bindings across many suspensions "
    "while other tasks bind other values on the same workers") {
  constexpr int pairs = 6;     // more coroutine tasks than workers: they share workers
  constexpr int rounds = 300;  // suspensions per task: each may resume on another worker
  std::atomic<int> wrong{0};
  const auto check = [&](int expected) {
    const int* d = depth.get();
    if (d == nullptr || *d != expected) wrong.fetch_add(1);
  };
  leash::run_nursery([&](leash::nursery& n) {
    for (int p = 0; p < pairs; ++p) {
      auto ping = std::make_shared<leash::channel<int>>(0);
      auto pong = std::make_shared<leash::channel<int>>(0);
      n.spawn([&, p, ping, pong]() -> coro<void> {
        auto mine = depth.bind(2 * p);
        for (int i = 0; i < rounds; ++i) {
          co_await ping->async_send(i);
          check(2 * p);
          co_await pong->async_recv();
          check(2 * p);
        }
        ping->close();
      });
      n.spawn([&, p, ping, pong]() -> coro<void> {
        auto mine = depth.bind(2 * p + 1);
        while (co_await ping->async_recv()) {
          check(2 * p + 1);
          co_await pong->async_send(0);
          check(2 * p + 1);
        }
      });
    }
    // A thread task beside them, unbound: it sees nothing of theirs.
    n.spawn([&] {
      if (depth.get() != nullptr) wrong.fetch_add(1);
    });
  });
  CHECK(wrong.load() == 0);
  CHECK(depth.get() == nullptr);
}

TEST_CASE("context_value: tasks spawned in a coroutine nursery inherit the coroutine's bindings") {
  std::string in_child;
  std::string in_coroutine_child;
  leash::run_nursery([&](leash::nursery& outer) {
    outer.spawn([&]() -> coro<void> {
      auto bound = request_id.bind("coro-parent");
      co_await leash::run_nursery([&](leash::nursery& inner) -> coro<void> {
        inner.spawn([&] { in_child = seen_id(); });
        inner.spawn([&]() -> coro<void> {
          in_coroutine_child = seen_id();
          co_return;
        });
        co_return;
      });
    });
  });
  CHECK(in_child == "coro-parent");
  CHECK(in_coroutine_child == "coro-parent");
}

TEST_CASE(
    "context_value: thread task, coroutine task, thread task: each layer adds to what it "
    "inherited") {
  std::vector<int> innermost;
  leash::run_nursery([&](leash::nursery& n) {
    auto top = layer.bind(1);
    n.spawn([&] {
      auto second = depth.bind(2);
      leash::run_nursery([&](leash::nursery& n2) {
        n2.spawn([&]() -> coro<void> {
          co_await leash::this_task::async_checkpoint();
          auto third = request_id.bind("three");
          co_await leash::run_nursery([&](leash::nursery& n3) -> coro<void> {
            n3.spawn([&] {
              auto fourth = layer.bind(4);  // shadows the top layer here only
              innermost = {*layer.get(), *depth.get(), static_cast<int>(seen_id().size())};
            });
            co_return;
          });
          CHECK(*layer.get() == 1);
        });
      });
    });
  });
  CHECK(innermost == std::vector<int>{4, 2, 5});
}

TEST_CASE("context_value: a ticker in a nursery calls back with the starter's values") {
  std::string in_callback;
  std::latch ticked(1);
  leash::run_nursery([&](leash::nursery& n) {
    auto bound = request_id.bind("ticking");
    leash::ticker t(n, 1ms, [&] {
      if (in_callback.empty()) {
        in_callback = seen_id();
        ticked.count_down();
      }
    });
    ticked.wait();
    t.stop();
  });
  CHECK(in_callback == "ticking");
}

// ---------------------------------------------------------------------------
// Bindings end innermost first.

TEST_CASE(
    "context_value: ending a binding before a later one is a usage_error, and the later "
    "one then restores the context as it was before both") {
  auto base = request_id.bind("base");
  auto* first = new auto(request_id.bind("first"));
  {
    auto second = request_id.bind("second");
    CHECK_THROWS_WITH_AS(delete first,
                         doctest::Contains("leash::context_value: a binding ended while"),
                         leash::usage_error);
    CHECK(seen_id() == "second");
  }
  CHECK(seen_id() == "base");
}

TEST_CASE(
    "context_value: ending a binding out of order while an exception propagates repairs "
    "the context without throwing") {
  auto* first = new auto(depth.bind(1));
  try {
    struct ends_first {
      decltype(first) b;
      ~ends_first() { delete b; }  // runs during the unwinding below
    } guard{first};
    auto second = depth.bind(2);
    throw std::runtime_error("unwinding");
  } catch (const std::runtime_error&) {
  }
  CHECK(depth.get() == nullptr);
}

// ---------------------------------------------------------------------------
// Lifetime: a value dies with the last binding and the last task that
// captured it.

TEST_CASE("context_value: a value lives while a binding or a capturing task does, and no longer") {
  REQUIRE(counted::live.load() == 0);
  {
    auto bound = counted_value.bind(5);
    CHECK(counted::live.load() == 1);
  }
  CHECK(counted::live.load() == 0);

  std::latch release(1);
  std::latch looked(1);
  std::optional<leash::task<int>> handle;
  leash::nursery n({.name = "lifetime"});
  {
    auto bound = counted_value.bind(9);
    handle.emplace(n.spawn([&] {
      looked.count_down();
      release.wait();
      return counted_value.get()->value;
    }));
  }
  looked.wait();
  CHECK(counted::live.load() == 1);  // the binding ended; the task still holds the value
  release.count_down();
  n.wait();
  CHECK(handle->get() == 9);
  CHECK(counted::live.load() == 0);  // the finished task's handle does not keep it
  CHECK(counted_value.get() == nullptr);
}

TEST_CASE("context_value: a coroutine task's values die when the task ends") {
  REQUIRE(counted::live.load() == 0);
  leash::channel<int> ch(0);
  leash::nursery n({.name = "coro lifetime"});
  std::optional<leash::task<void>> handle;
  {
    auto bound = counted_value.bind(3);
    handle.emplace(n.spawn([&]() -> coro<void> {
      auto mine = counted_value.bind(4);
      co_await ch.async_recv();
    }));
  }
  ch.send(0);
  n.wait();
  CHECK(counted::live.load() == 0);
}
