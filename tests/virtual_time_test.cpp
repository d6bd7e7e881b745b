// Tests for leash/virtual_time.hpp: the virtual clock of a scope, its jumps
// when every task is blocked, and the deadlock report.
#include <doctest/doctest.h>
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <latch>
#include <leash.hpp>
#include <leash/io/socket.hpp>
#include <leash/virtual_time.hpp>
#include <mutex>
#include <stop_token>
#include <string>
#include <thread>

using namespace std::chrono_literals;

namespace {

// The real time a test took, for the log: the figure is never asserted.
struct real_time_note {
  const char* what;
  std::chrono::steady_clock::time_point start = std::chrono::steady_clock::now();
  ~real_time_note() {
    const auto took =
        std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start);
    MESSAGE(std::string(what) << ": " << took.count() << " ms of real time");
  }
};

bool contains(const std::string& s, const std::string& part) {
  return s.find(part) != std::string::npos;
}

// True once live_tasks() shows the task `name` blocked in `what`.
bool blocked_in(const std::string& name, const std::string& what) {
  for (const auto& t : leash::live_tasks()) {
    if (t.name == name && t.blocked_in != nullptr && what == t.blocked_in) return true;
  }
  return false;
}

}  // namespace

TEST_CASE("a 1 h fail_after around a thread task blocked on a channel ends 1 h later") {
  real_time_note note{"1 h fail_after, thread task"};
  leash::virtual_time vt;
  const auto start = vt.now();
  bool exceeded = false;
  vt.run([&](leash::nursery& n) {
    n.spawn([&] {
      leash::channel<int> ch;
      try {
        leash::fail_after(1h, [&] { (void)ch.recv(); });
      } catch (const leash::deadline_exceeded&) {
        exceeded = true;
      }
    });
  });
  CHECK(exceeded);
  CHECK(vt.now() - start == 1h);
}

TEST_CASE("a 1 h fail_after around a coroutine task blocked on a channel ends 1 h later") {
  real_time_note note{"1 h fail_after, coroutine task"};
  leash::virtual_time vt;
  const auto start = vt.now();
  bool exceeded = false;
  vt.run([&](leash::nursery& n) -> leash::coro<void> {
    n.spawn([&]() -> leash::coro<void> {
      leash::channel<int> ch;
      try {
        co_await leash::fail_after(1h,
                                   [&]() -> leash::coro<void> { (void)co_await ch.async_recv(); });
      } catch (const leash::deadline_exceeded&) {
        exceeded = true;
      }
    });
    co_return;
  });
  CHECK(exceeded);
  CHECK(vt.now() - start == 1h);
}

TEST_CASE("sleeps of thread and coroutine tasks end in virtual time, in order") {
  leash::virtual_time vt;
  const auto start = vt.now();
  leash::channel<int> order(3);
  std::chrono::steady_clock::duration slept_thread{}, slept_coro{};
  vt.run([&](leash::nursery& n) {
    n.spawn([&] {
      leash::this_task::sleep_for(3h);
      slept_thread = vt.now() - start;
      order.send(3);
    });
    n.spawn([&]() -> leash::coro<void> {
      co_await leash::this_task::async_sleep_for(2h);
      slept_coro = vt.now() - start;
      co_await order.async_send(2);
    });
    leash::this_task::sleep_for(1h);
    order.send(1);
  });
  CHECK(slept_thread == 3h);
  CHECK(slept_coro == 2h);
  CHECK(order.recv() == 1);
  CHECK(order.recv() == 2);
  CHECK(order.recv() == 3);
  CHECK(vt.now() - start == 3h);
}

TEST_CASE("a nursery timeout and move_on_after inside virtual_time") {
  leash::virtual_time vt;
  const auto start = vt.now();
  bool moved_on = false;
  bool nursery_exceeded = false;
  vt.run([&](leash::nursery&) {
    moved_on = !leash::move_on_after(10min, [] { leash::this_task::sleep_for(1h); });
    CHECK(vt.now() - start == 10min);
    try {
      leash::run_nursery({.timeout = 30min}, [](leash::nursery& inner) {
        inner.spawn([] {
          leash::channel<int> never;
          (void)never.recv();
        });
      });
    } catch (const leash::deadline_exceeded&) {
      nursery_exceeded = true;
    }
  });
  CHECK(moved_on);
  CHECK(nursery_exceeded);
  CHECK(vt.now() - start == 40min);
}

TEST_CASE("a timed recv and advance() inside virtual_time") {
  leash::virtual_time vt;
  const auto start = vt.now();
  vt.run([&](leash::nursery&) {
    leash::channel<int> ch;
    CHECK(ch.try_recv_for(5s).status == leash::channel_status::timeout);
    CHECK(vt.now() - start == 5s);
    vt.advance(1min);
    CHECK(vt.now() - start == 65s);
  });
}

TEST_CASE("a forgotten close() before a range-for is a deadlock naming both thread tasks") {
  leash::virtual_time vt;
  std::string report;
  leash::channel<int> ch;  // outlives the tasks: a deadlock cancels the body first
  try {
    vt.run([&](leash::nursery& n) {
      n.spawn("producer", [&] {
        for (int i = 0; i < 3; ++i)
          ch.send(i);
        // ch.close() forgotten
      });
      const int consumer_line = __LINE__ + 1;
      auto consumer = n.spawn("consumer", [&] {
        int sum = 0;
        for (int v : ch)
          sum += v;
        return sum;
      });
      (void)consumer_line;
      (void)consumer.get();
    });
  } catch (const leash::deadlock& e) {
    report = e.what();
  }
  MESSAGE(report);
  REQUIRE_FALSE(report.empty());
  CHECK(contains(report, "leash::virtual_time: deadlock"));
  CHECK(contains(report, "\"consumer\" spawned at"));
  CHECK(contains(report, "\"virtual_time::run\" spawned at"));
  CHECK(contains(report, "task::get"));
  CHECK(contains(report, "recv"));
}

TEST_CASE("a forgotten close() before an async_recv loop is a deadlock naming both coroutines") {
  leash::virtual_time vt;
  std::string report;
  int body_line = 0, consumer_line = 0;
  leash::channel<int> ch;  // outlives the tasks: a deadlock cancels the body first
  try {
    body_line = __LINE__ + 1;
    vt.run([&](leash::nursery& n) -> leash::coro<void> {
      n.spawn("producer", [&]() -> leash::coro<void> {
        for (int i = 0; i < 3; ++i)
          co_await ch.async_send(i);
        // ch.close() forgotten
      });
      consumer_line = __LINE__ + 1;
      auto consumer = n.spawn("consumer", [&]() -> leash::coro<int> {
        int sum = 0;
        while (auto v = co_await ch.async_recv())
          sum += *v;
        co_return sum;
      });
      (void)co_await consumer;
    });
  } catch (const leash::deadlock& e) {
    report = e.what();
  }
  MESSAGE(report);
  REQUIRE_FALSE(report.empty());
  CHECK(contains(report, "leash::virtual_time: deadlock"));
  CHECK(contains(report, "\"consumer\" spawned at " + std::string(__FILE__) + ":" +
                             std::to_string(consumer_line) +
                             " blocked in channel<int>::async_recv"));
  CHECK(contains(report, "\"virtual_time::run\" spawned at " + std::string(__FILE__) + ":" +
                             std::to_string(body_line) + " blocked in task::co_await"));
  CHECK_FALSE(contains(report, "\"producer\""));
}

TEST_CASE("a two-task channel cycle is a deadlock naming both tasks and their lines") {
  leash::virtual_time vt;
  std::string report;
  int a_line = 0, b_line = 0;
  leash::channel<int> ab, ba;  // outlive the tasks: the body returns at once
  try {
    vt.run([&](leash::nursery& n) {
      a_line = __LINE__ + 1;
      n.spawn("a", [&] { ab.send(ba.recv().value_or(0)); });
      b_line = __LINE__ + 1;
      n.spawn("b", [&] { ba.send(ab.recv().value_or(0)); });
    });
  } catch (const leash::deadlock& e) {
    report = e.what();
  }
  MESSAGE(report);
  CHECK(
      contains(report, "\"a\" spawned at " + std::string(__FILE__) + ":" + std::to_string(a_line)));
  CHECK(
      contains(report, "\"b\" spawned at " + std::string(__FILE__) + ":" + std::to_string(b_line)));
  CHECK(contains(report, "channel<int>::recv"));
}

TEST_CASE("a two-task cycle of coroutine tasks is a deadlock naming both") {
  leash::virtual_time vt;
  std::string report;
  int a_line = 0, b_line = 0;
  leash::channel<int> ab, ba;  // outlive the tasks: the body returns at once
  try {
    vt.run([&](leash::nursery& n) -> leash::coro<void> {
      a_line = __LINE__ + 1;
      n.spawn("a", [&]() -> leash::coro<void> {
        co_await ab.async_send((co_await ba.async_recv()).value_or(0));
      });
      b_line = __LINE__ + 1;
      n.spawn("b", [&]() -> leash::coro<void> {
        co_await ba.async_send((co_await ab.async_recv()).value_or(0));
      });
      co_return;
    });
  } catch (const leash::deadlock& e) {
    report = e.what();
  }
  MESSAGE(report);
  CHECK(
      contains(report, "\"a\" spawned at " + std::string(__FILE__) + ":" + std::to_string(a_line)));
  CHECK(
      contains(report, "\"b\" spawned at " + std::string(__FILE__) + ":" + std::to_string(b_line)));
}

TEST_CASE("a task in a raw read() keeps the virtual clock still: no jump, no deadlock") {
  leash::virtual_time vt;
  const auto start = vt.now();
  int fds[2];
  REQUIRE(::pipe(fds) == 0);
  std::latch reading(1);
  std::thread writer([&] {
    reading.wait();
    const char c = 'x';
    CHECK(::write(fds[1], &c, 1) == 1);
  });
  std::chrono::steady_clock::duration read_at{}, slept_at{};
  vt.run([&](leash::nursery& n) {
    n.spawn([&] {
      leash::this_task::sleep_for(1h);
      slept_at = vt.now() - start;
    });
    n.spawn([&] {
      reading.count_down();
      char c = 0;
      {
        leash::this_task::external_wait outside("read(pipe)");
        CHECK(::read(fds[0], &c, 1) == 1);
      }
      read_at = vt.now() - start;
    });
  });
  writer.join();
  ::close(fds[0]);
  ::close(fds[1]);
  CHECK(read_at == 0s);
  CHECK(slept_at == 1h);
}

TEST_CASE("a coroutine task waiting on a socket keeps the virtual clock still: no jump") {
  int fds[2];
  REQUIRE(::socketpair(AF_UNIX, SOCK_STREAM, 0, fds) == 0);
  leash::io::socket a(fds[0]);
  leash::io::detail::unique_fd b(fds[1]);
  leash::virtual_time vt;
  const auto start = vt.now();
  std::thread writer([&] {
    while (!blocked_in("reader", "io::async_read_some"))
      std::this_thread::yield();
    const char c = 'x';
    CHECK(::write(b.get(), &c, 1) == 1);
  });
  std::chrono::steady_clock::duration read_at{}, slept_at{};
  CHECK_NOTHROW(vt.run([&](leash::nursery& n) {
    n.spawn("sleeper", [&] {
      leash::this_task::sleep_for(1h);
      slept_at = vt.now() - start;
    });
    n.spawn("reader", [&]() -> leash::coro<void> {
      std::byte buf[1];
      CHECK(co_await a.async_read_some(buf) == 1);
      read_at = vt.now() - start;
    });
  }));
  writer.join();
  CHECK(read_at == 0s);
  CHECK(slept_at == 1h);
}

TEST_CASE("a select with only disabled cases is a deadlock naming the tasks and the select") {
  leash::virtual_time vt;
  std::string report;
  leash::channel<int> a, b;
  int thread_line = 0, coro_line = 0;
  try {
    vt.run([&](leash::nursery& n) {
      thread_line = __LINE__ + 1;
      n.spawn("thread", [&] {
        leash::select(leash::on_recv(a, [](std::optional<int>) {}).when(false),
                      leash::on_recv(b, [](std::optional<int>) {}).when(false));
      });
      coro_line = __LINE__ + 1;
      n.spawn("coroutine", [&]() -> leash::coro<void> {
        co_await leash::async_select(leash::on_recv(a, [](std::optional<int>) {}).when(false));
      });
    });
  } catch (const leash::deadlock& e) {
    report = e.what();
  }
  MESSAGE(report);
  CHECK(contains(report, "\"thread\" spawned at " + std::string(__FILE__) + ":" +
                             std::to_string(thread_line) + " blocked in select"));
  CHECK(contains(report, "\"coroutine\" spawned at " + std::string(__FILE__) + ":" +
                             std::to_string(coro_line) + " blocked in async_select"));
}

namespace {

// A real-time bound on a test body that must end in virtual time: if it has
// not ended after `limit` of real time, the body's scope is cancelled, so a
// timer left on real time fails the test's checks instead of hanging it.
class watchdog {
 public:
  explicit watchdog(std::chrono::seconds limit)
      : thread_([this, limit] {
          std::unique_lock lock(mutex_);
          if (!cv_.wait_for(lock, limit, [&] { return done_; })) source_.request_stop();
        }) {}
  ~watchdog() {
    {
      std::lock_guard lock(mutex_);
      done_ = true;
    }
    cv_.notify_all();
    thread_.join();
  }
  watchdog(const watchdog&) = delete;
  watchdog& operator=(const watchdog&) = delete;

  std::stop_token token() const { return source_.get_token(); }

 private:
  std::stop_source source_;
  std::mutex mutex_;
  std::condition_variable cv_;
  bool done_ = false;
  std::thread thread_;  // last: starts once the rest exists
};

// Long enough for any machine to run the tests in virtual time.
constexpr auto watchdog_limit = std::chrono::seconds(60);

constexpr int ticker_ticks = 1000;

// Counts a ticker's ticks and those that were not exactly on time.
struct tick_count {
  std::chrono::steady_clock::time_point start;
  int ticks = 0;
  int off = 0;  // late, missed ticks before them, or off the grid start + k * 1 s
  void on(const leash::tick_info& tick) {
    ++ticks;
    if (tick.started != tick.scheduled || tick.missed != 0 ||
        tick.scheduled - start != ticks * std::chrono::seconds(1)) {
      ++off;
    }
  }
};

}  // namespace

TEST_CASE("a 1 s ticker of a thread task delivers 1000 ticks on time in 1000 s of virtual time") {
  real_time_note note{"1000 ticks, thread task"};
  watchdog dog(watchdog_limit);
  leash::virtual_time vt;
  tick_count count{vt.now()};
  vt.run([&](leash::nursery&) {
    leash::cancel_scope bounded(dog.token());
    leash::channel<int> done(1);
    leash::ticker t(1s, [&](const leash::tick_info& tick) {
      count.on(tick);
      if (count.ticks == ticker_ticks) (void)done.try_send(0);
    });
    (void)done.recv();
  });
  CHECK(count.ticks == ticker_ticks);
  CHECK(count.off == 0);
  CHECK(vt.now() - count.start == ticker_ticks * 1s);
}

TEST_CASE("a 1 s ticker of a coroutine task delivers 1000 ticks on time in 1000 s") {
  real_time_note note{"1000 ticks, coroutine task"};
  watchdog dog(watchdog_limit);
  leash::virtual_time vt;
  tick_count count{vt.now()};
  vt.run([&](leash::nursery&) -> leash::coro<void> {
    leash::cancel_scope bounded(dog.token());
    leash::channel<int> done(1);
    leash::ticker t(1s, [&](const leash::tick_info& tick) {
      count.on(tick);
      if (count.ticks == ticker_ticks) (void)done.try_send(0);
    });
    (void)co_await done.async_recv();
  });
  CHECK(count.ticks == ticker_ticks);
  CHECK(count.off == 0);
  CHECK(vt.now() - count.start == ticker_ticks * 1s);
}

TEST_CASE("a 1 s ticker running in a nursery delivers 1000 ticks on time in 1000 s") {
  real_time_note note{"1000 ticks, ticker in a nursery"};
  watchdog dog(watchdog_limit);
  leash::virtual_time vt;
  tick_count count{vt.now()};
  vt.run([&](leash::nursery&) {
    leash::cancel_scope bounded(dog.token());
    leash::channel<int> done(1);
    leash::nursery n;
    leash::ticker t(n, 1s, [&](const leash::tick_info& tick) {
      count.on(tick);
      if (count.ticks == ticker_ticks) (void)done.try_send(0);
    });
    (void)done.recv();
    t.stop();
  });
  CHECK(count.ticks == ticker_ticks);
  CHECK(count.off == 0);
  CHECK(vt.now() - count.start == ticker_ticks * 1s);
}

TEST_CASE("after(1h) in a select beside a silent channel fires at exactly +1 h") {
  real_time_note note{"after(1h) in a select"};
  watchdog dog(watchdog_limit);
  leash::virtual_time vt;
  const auto start = vt.now();
  std::chrono::steady_clock::time_point fired{};
  bool fired_case = false;
  vt.run([&](leash::nursery&) {
    leash::cancel_scope bounded(dog.token());
    leash::channel<int> silent;
    auto give_up = leash::after(1h);
    leash::select(leash::on_recv(silent, [](int) {}),
                  leash::on_recv(give_up, [&](const std::chrono::steady_clock::time_point& t) {
                    fired = t;
                    fired_case = true;
                  }));
  });
  CHECK(fired_case);
  CHECK(fired - start == 1h);
  CHECK(vt.now() - start == 1h);
}

TEST_CASE("after(1h) in a select of a coroutine task fires at exactly +1 h") {
  real_time_note note{"after(1h) in a select, coroutine task"};
  watchdog dog(watchdog_limit);
  leash::virtual_time vt;
  const auto start = vt.now();
  std::chrono::steady_clock::time_point fired{};
  vt.run([&](leash::nursery&) -> leash::coro<void> {
    leash::cancel_scope bounded(dog.token());
    leash::channel<int> silent;
    auto give_up = leash::after(1h);
    (void)co_await leash::async_select(
        leash::on_recv(silent, [](int) {}),
        leash::on_recv(give_up,
                       [&](const std::chrono::steady_clock::time_point& t) { fired = t; }));
  });
  CHECK(fired - start == 1h);
  CHECK(vt.now() - start == 1h);
}

TEST_CASE("tick(1s) received 10 times in a select loop gives 10 ticks 1 s apart") {
  real_time_note note{"tick(1s) in a select loop"};
  watchdog dog(watchdog_limit);
  leash::virtual_time vt;
  const auto start = vt.now();
  constexpr int rounds = 10;
  int off = 0;
  int received = 0;
  vt.run([&](leash::nursery&) {
    leash::cancel_scope bounded(dog.token());
    leash::channel<int> silent;
    auto ticks = leash::tick(1s);
    for (int i = 1; i <= rounds; ++i) {
      leash::select(leash::on_recv(silent, [](int) {}),
                    leash::on_recv(ticks, [&](const std::chrono::steady_clock::time_point& t) {
                      ++received;
                      if (t - start != i * 1s || vt.now() != t) ++off;
                    }));
    }
  });
  CHECK(received == rounds);
  CHECK(off == 0);
  CHECK(vt.now() - start == rounds * 1s);
}

TEST_CASE("tick(1s) in an async_select loop of a coroutine task gives 10 ticks 1 s apart") {
  real_time_note note{"tick(1s) in an async_select loop"};
  watchdog dog(watchdog_limit);
  leash::virtual_time vt;
  const auto start = vt.now();
  constexpr int rounds = 10;
  int off = 0;
  int received = 0;
  vt.run([&](leash::nursery&) -> leash::coro<void> {
    leash::cancel_scope bounded(dog.token());
    leash::channel<int> silent;
    auto ticks = leash::tick(1s);
    for (int i = 1; i <= rounds; ++i) {
      (void)co_await leash::async_select(
          leash::on_recv(silent, [](int) {}),
          leash::on_recv(ticks, [&](const std::chrono::steady_clock::time_point& t) {
            ++received;
            if (t - start != i * 1s || vt.now() != t) ++off;
          }));
    }
  });
  CHECK(received == rounds);
  CHECK(off == 0);
  CHECK(vt.now() - start == rounds * 1s);
}

TEST_CASE("a ticker's callback in virtual time may run a nursery whose task sleeps") {
  real_time_note note{"ticker callback with a nursery"};
  watchdog dog(watchdog_limit);
  leash::virtual_time vt;
  const auto start = vt.now();
  constexpr int rounds = 3;
  int ticks = 0;
  vt.run([&](leash::nursery&) {
    leash::cancel_scope bounded(dog.token());
    leash::channel<int> done(1);
    leash::ticker t(1s, [&] {
      {
        leash::nursery n;
        n.spawn([] { leash::this_task::sleep_for(100ms); });
      }
      if (++ticks == rounds) (void)done.try_send(0);
    });
    (void)done.recv();
  });
  CHECK(ticks == rounds);
  CHECK(vt.now() - start == rounds * 1s + 100ms);
}

TEST_CASE("virtual_time::run called from a thread task runs its scope on the virtual clock") {
  std::chrono::steady_clock::duration waited{};
  leash::run_nursery([&](leash::nursery& n) {
    n.spawn("test driver", [&] {
      leash::virtual_time vt;
      // Only a bound: were the scope on real time, the hour would end here.
      leash::move_on_after(60s, [&] {
        vt.run([&](leash::nursery&) {
          const auto start = vt.now();
          leash::this_task::sleep_for(1h);
          waited = vt.now() - start;
        });
      });
    });
  });
  CHECK(waited == 1h);
}
