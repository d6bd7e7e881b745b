// Tests for blocking calls inside coroutine tasks: a worker that blocks in a
// leash call hands its slot to another thread, so the other coroutine tasks
// keep running, and leash::offload runs a long call without holding a worker.
//
// Each stall scenario fills every worker with a coroutine task that blocks
// its thread, then spawns one more coroutine task that is the only way to
// release them. Without the hand-off that task never runs and the scenario
// hangs; a bounded wait (hang_guard) turns the hang into a failed CHECK and
// then rescues the blocked tasks from the test thread, so the nursery joins
// and the test process ends cleanly.
#include <doctest/doctest.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <coroutine>
#include <cstddef>
#include <functional>
#include <future>
#include <latch>
#include <leash.hpp>
#include <leash/coro.hpp>
#include <leash/detail/scheduler.hpp>
#include <mutex>
#include <optional>
#include <stdexcept>
#include <thread>
#include <vector>

using namespace std::chrono_literals;
using leash::coro;

namespace {

// How long a stall scenario may take before the test calls it hung. A guard
// against a hang only, never an ordering: a correct run ends long before it.
constexpr auto hang_guard = 30s;

// A sleep no test waits out: only cancellation ends it.
constexpr auto forever = 1h;

struct backend_error : std::runtime_error {
  using std::runtime_error::runtime_error;
};

std::size_t workers() {
  return leash::detail::scheduler::instance().workers();
}

std::ptrdiff_t as_count(std::size_t n) {
  return static_cast<std::ptrdiff_t>(n);
}

// Its future becomes ready once arrive() was called `count` times.
class completion {
 public:
  explicit completion(std::size_t count) : left_(count), done_(promise_.get_future()) {}
  void arrive() {
    if (left_.fetch_sub(1) == 1) promise_.set_value();
  }
  // Waits at most hang_guard. On a hang calls `rescue` (which must unblock
  // the scenario's tasks, so its nursery can join) and returns false.
  bool finished(const std::function<void()>& rescue) {
    if (done_.wait_for(hang_guard) == std::future_status::ready) return true;
    rescue();
    return false;
  }

 private:
  std::atomic<std::size_t> left_;
  std::promise<void> promise_;
  std::future<void> done_;
};

// A one-shot gate. Coroutines await opened(); open() resumes them on the
// calling thread. Threads wait() for it.
class gate {
 public:
  auto opened() {
    struct awaiter {
      gate& g;
      bool await_ready() const noexcept { return false; }
      bool await_suspend(std::coroutine_handle<> h) {
        std::lock_guard lock(g.mutex_);
        if (g.open_) return false;
        g.waiting_.push_back(h);
        return true;
      }
      void await_resume() const noexcept {}
    };
    return awaiter{*this};
  }
  void open() {
    std::vector<std::coroutine_handle<>> resume;
    {
      std::lock_guard lock(mutex_);
      if (open_) return;
      open_ = true;
      resume.swap(waiting_);
      opened_.notify_all();
    }
    for (auto h : resume)
      h.resume();
  }
  void wait() {
    std::unique_lock lock(mutex_);
    opened_.wait(lock, [&] { return open_; });
  }

 private:
  std::mutex mutex_;
  std::condition_variable opened_;
  bool open_ = false;
  std::vector<std::coroutine_handle<>> waiting_;
};

coro<void> recv_blocking(leash::channel<int>& ch, std::latch& started, std::atomic<int>& sum,
                         completion& received) {
  started.count_down();
  const std::optional<int> v = ch.recv();  // the blocking form: holds this thread
  sum += v.value_or(0);
  received.arrive();
  co_return;
}

coro<void> send_each(leash::channel<int>& ch, std::size_t count) {
  for (std::size_t i = 1; i <= count; ++i)
    ch.send(static_cast<int>(i));
  co_return;
}

coro<void> recv_until_cancelled(leash::channel<int>& ch, std::latch& started,
                                completion& cancelled) {
  started.count_down();
  try {
    ch.recv();
  } catch (const leash::cancelled&) {
    cancelled.arrive();
    throw;
  }
  co_return;
}

coro<void> sleep_blocking(std::latch& started) {
  started.count_down();
  leash::this_task::sleep_for(forever);
  co_return;
}

coro<void> arrive(completion& c) {
  c.arrive();
  co_return;
}

coro<void> get_blocking(leash::task<int> t, std::latch& started, std::atomic<int>& sum,
                        completion& got) {
  started.count_down();
  sum += t.get();
  got.arrive();
  co_return;
}

coro<void> close_channel(leash::channel<int>& ch) {
  ch.close();
  co_return;
}

// Half of the callers join the inner nursery with wait(), the others with its
// destructor.
coro<void> join_inner(leash::channel<int>& release, bool by_destructor, std::latch& started,
                      completion& joined) {
  {
    leash::nursery inner({.name = "inner"});
    inner.spawn([&release] { release.recv(); });
    started.count_down();
    if (!by_destructor) inner.wait();
  }
  joined.arrive();
  co_return;
}

coro<void> wait_gate(gate& g) {
  co_await g.opened();
}

coro<void> sync_wait_blocking(gate& g, std::latch& started, completion& done) {
  started.count_down();
  leash::sync_wait(wait_gate(g));
  done.arrive();
  co_return;
}

coro<void> open_gate(gate& g) {
  g.open();
  co_return;
}

coro<void> offload_blocking(gate& g, std::latch& started, std::atomic<int>& sum, completion& done) {
  started.count_down();
  auto wait_then_one = [&g] {
    g.wait();
    return 1;
  };
  sum += co_await leash::offload(wait_then_one);
  done.arrive();
}

}  // namespace

// First in the file: it must configure the scheduler before anything starts
// it (ctest runs each case in a process of its own).
TEST_CASE("runtime_options::coro_workers sets the worker count before the scheduler starts") {
  if (leash::runtime::stats().coro_workers != 0) {
    MESSAGE("the scheduler already runs in this process: run this case on its own");
    return;
  }
  const std::size_t wanted = std::thread::hardware_concurrency() + 1;
  leash::runtime::configure({.coro_workers = wanted});
  leash::nursery n;
  auto t = n.spawn([]() -> coro<int> { co_return 1; });
  CHECK(t.get() == 1);
  n.wait();
  CHECK(workers() == wanted);
  CHECK(leash::runtime::stats().coro_workers == wanted);
  leash::runtime::configure({});
}

TEST_CASE("every worker blocked in recv(): another coroutine task still runs and sends") {
  const std::size_t count = workers();
  leash::channel<int> ch;
  std::latch started(as_count(count));
  std::atomic<int> sum{0};
  completion received(count);
  leash::nursery n({.name = "recv"});
  for (std::size_t i = 0; i < count; ++i) {
    n.spawn([&]() -> coro<void> { return recv_blocking(ch, started, sum, received); });
  }
  started.wait();
  n.spawn("sender", [&]() -> coro<void> { return send_each(ch, count); });
  CHECK(received.finished([&] { n.cancel(); }));
  n.wait();
  CHECK(sum.load() == static_cast<int>(count * (count + 1) / 2));
}

TEST_CASE("every worker blocked in recv(): a coroutine task's cancel reaches them all") {
  const std::size_t count = workers();
  leash::channel<int> ch;
  std::latch started(as_count(count));
  completion cancelled(count);
  leash::nursery n({.name = "cancel"});
  for (std::size_t i = 0; i < count; ++i) {
    n.spawn([&]() -> coro<void> { return recv_until_cancelled(ch, started, cancelled); });
  }
  started.wait();
  n.spawn("canceller", [&]() -> coro<void> {
    n.cancel("done");
    co_return;
  });
  CHECK(cancelled.finished([&] { n.cancel(); }));
  n.wait();  // an explicit cancel ends quietly
  CHECK(n.running() == 0);
}

TEST_CASE("every worker blocked in this_task::sleep_for: another coroutine task still runs") {
  const std::size_t count = workers();
  std::latch started(as_count(count));
  completion ran(1);
  leash::nursery n({.name = "sleep"});
  for (std::size_t i = 0; i < count; ++i) {
    n.spawn([&]() -> coro<void> { return sleep_blocking(started); });
  }
  started.wait();
  n.spawn("runner", [&]() -> coro<void> { return arrive(ran); });
  CHECK(ran.finished([] {}));
  n.cancel();
  n.wait();
}

TEST_CASE("every worker blocked in task::get: another coroutine task still runs and releases") {
  const std::size_t count = workers();
  leash::channel<int> release;
  std::latch started(as_count(count));
  std::atomic<int> sum{0};
  completion got(count);
  leash::nursery n({.name = "get"});
  for (std::size_t i = 0; i < count; ++i) {
    auto thread_task = n.spawn([&release] {
      release.recv();  // nullopt once closed
      return 1;
    });
    n.spawn(
        [&, thread_task]() -> coro<void> { return get_blocking(thread_task, started, sum, got); });
  }
  started.wait();
  n.spawn("closer", [&]() -> coro<void> { return close_channel(release); });
  CHECK(got.finished([&] { n.cancel(); }));
  n.wait();
  CHECK(sum.load() == static_cast<int>(count));
}

TEST_CASE("every worker joining a nursery: another coroutine task still runs and releases") {
  const std::size_t count = workers();
  leash::channel<int> release;
  std::latch started(as_count(count));
  completion joined(count);
  leash::nursery n({.name = "join"});
  for (std::size_t i = 0; i < count; ++i) {
    const bool by_destructor = i % 2 == 1;
    n.spawn([&, by_destructor]() -> coro<void> {
      return join_inner(release, by_destructor, started, joined);
    });
  }
  started.wait();
  n.spawn("closer", [&]() -> coro<void> { return close_channel(release); });
  CHECK(joined.finished([&] { n.cancel(); }));
  n.wait();
}

TEST_CASE("every worker in sync_wait: another coroutine task still runs and releases") {
  const std::size_t count = workers();
  gate g;
  std::latch started(as_count(count));
  completion done(count);
  leash::nursery n({.name = "sync_wait"});
  for (std::size_t i = 0; i < count; ++i) {
    n.spawn([&]() -> coro<void> { return sync_wait_blocking(g, started, done); });
  }
  started.wait();
  n.spawn("opener", [&]() -> coro<void> { return open_gate(g); });
  CHECK(done.finished([&] { g.open(); }));
  n.wait();
}

TEST_CASE("every worker in offload: another coroutine task still runs and releases") {
  const std::size_t count = workers();
  gate g;
  std::latch started(as_count(count));
  std::atomic<int> sum{0};
  completion done(count);
  leash::nursery n({.name = "offload"});
  for (std::size_t i = 0; i < count; ++i) {
    n.spawn([&]() -> coro<void> { return offload_blocking(g, started, sum, done); });
  }
  started.wait();
  n.spawn("opener", [&]() -> coro<void> { return open_gate(g); });
  CHECK(done.finished([&] { g.open(); }));
  n.wait();
  CHECK(sum.load() == static_cast<int>(count));
}

TEST_CASE("offload returns fn's value, runs a void fn, and rethrows fn's exception") {
  std::atomic<bool> ran{false};
  leash::nursery n({.cancel_on_failure = false});
  auto value = n.spawn([]() -> coro<int> { co_return co_await leash::offload([] { return 42; }); });
  auto nothing =
      n.spawn([&ran]() -> coro<void> { co_await leash::offload([&ran] { ran = true; }); });
  auto failing = n.spawn([]() -> coro<int> {
    co_return co_await leash::offload([]() -> int { throw backend_error("offloaded failure"); });
  });
  CHECK(value.get() == 42);
  nothing.get();
  CHECK(ran.load());
  CHECK_THROWS_WITH_AS(failing.get(), "offloaded failure", backend_error);
  n.wait();
}

TEST_CASE("offload outside a coroutine task runs fn on the calling thread") {
  const auto caller = std::this_thread::get_id();
  auto where = [] { return std::this_thread::get_id(); };
  CHECK(leash::sync_wait(leash::offload(where)) == caller);
}

TEST_CASE("runtime stats count the hand-offs of blocking calls in coroutine tasks") {
  const auto before = leash::runtime::stats();
  leash::nursery n;
  // The blocking form: its thread blocks, so its worker's slot is handed off.
  n.spawn([]() -> coro<void> {
    leash::this_task::sleep_for(1ms);
    co_return;
  });
  n.wait();
  const auto after = leash::runtime::stats();
  CHECK(after.coro_workers == workers());
  CHECK(after.coro_handoffs > before.coro_handoffs);
}

namespace {

// A call leash cannot see into: blocks on the gate's condition variable.
coro<void> call_blocked_on_gate(gate& g, std::latch& started, completion& done) {
  leash::detail::scheduler::instance().call_may_block([&] {
    started.count_down();
    g.wait();
  });
  done.arrive();
  co_return;
}

// A lent call that blocks in a leash call (the blocking recv).
coro<void> call_blocked_in_recv(leash::channel<int>& ch, std::latch& started,
                                completion& received) {
  leash::detail::scheduler::instance().call_may_block([&] {
    started.count_down();
    ch.recv();
  });
  received.arrive();
  co_return;
}

}  // namespace

TEST_CASE("every worker in a call_may_block blocked where leash cannot see: another task runs") {
  const std::size_t count = workers();
  gate g;
  std::latch started(as_count(count));
  completion done(count);
  leash::nursery n({.name = "call_may_block"});
  for (std::size_t i = 0; i < count; ++i) {
    n.spawn([&]() -> coro<void> { return call_blocked_on_gate(g, started, done); });
  }
  started.wait();
  n.spawn("opener", [&]() -> coro<void> { return open_gate(g); });
  CHECK(done.finished([&] { g.open(); }));
  n.wait();
}

TEST_CASE("every worker in a call_may_block blocked in recv(): another task runs and sends") {
  const std::size_t count = workers();
  leash::channel<int> ch;
  std::latch started(as_count(count));
  completion received(count);
  leash::nursery n({.name = "call_may_block recv"});
  for (std::size_t i = 0; i < count; ++i) {
    n.spawn([&]() -> coro<void> { return call_blocked_in_recv(ch, started, received); });
  }
  started.wait();
  n.spawn("sender", [&]() -> coro<void> { return send_each(ch, count); });
  CHECK(received.finished([&] { n.cancel(); }));
  n.wait();
}

TEST_CASE("a call_may_block that does not block keeps its worker: no hand-off") {
  constexpr int calls = 1000;
  const auto before = leash::runtime::stats().coro_handoffs;
  int sum = 0;
  leash::nursery n;
  n.spawn([&]() -> coro<void> {
    for (int i = 0; i < calls; ++i)
      leash::detail::scheduler::instance().call_may_block([&] { ++sum; });
    co_return;
  });
  n.wait();
  CHECK(sum == calls);
  // The monitor may take the slot of one call that ran across two of its
  // looks (a preempted thread), never one per call.
  CHECK(leash::runtime::stats().coro_handoffs - before < 10);
}

TEST_CASE("call_may_block rethrows f's exception and gives the worker back") {
  leash::nursery n;
  auto t = n.spawn([]() -> coro<int> {
    try {
      leash::detail::scheduler::instance().call_may_block(
          [] { throw backend_error("lent call failed"); });
    } catch (const backend_error&) {
    }
    co_await leash::this_task::async_checkpoint();  // still a coroutine task on a worker
    co_return 7;
  });
  CHECK(t.get() == 7);
  n.wait();
}
