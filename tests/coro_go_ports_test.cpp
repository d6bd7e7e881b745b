// Go's channel tests from test/chan/, ported to coroutine tasks: the
// nonblocking matrix (nonblock.go), the prime sieve (sieve1.go) and double
// select (doubleselect.go). Their thread-task ports are in channel_test.cpp
// and select_test.cpp; here every Go goroutine is a coroutine task using the
// awaitable forms, and the mixed variants put thread tasks (blocking forms)
// and coroutine tasks on the same channels and in the same selects.
#include <doctest/doctest.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <cstddef>
#include <cstdint>
#include <leash.hpp>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "support/eventually.hpp"
#include "support/sanitizer.hpp"

using leash::channel_status;
using leash::coro;

namespace {

// ---- The nonblocking matrix (nonblock.go).

// Who runs a party of a test: a thread task (blocking forms) or a coroutine
// task (awaitable forms).
enum class party { thread, coroutine };

std::string name_of(party p) {
  return p == party::thread ? "thread" : "coroutine";
}

// The values nonblock.go passes through a channel of each type: one to a
// waiting receiver, one from a waiting sender.
template <class T>
struct lane {
  T to_receiver;
  T from_sender;
};

const lane<std::int32_t> i32_lane{123, 234};
const lane<std::int64_t> i64_lane{123456, 234567};
const lane<bool> bool_lane{true, true};
const lane<std::string> string_lane{"hello", "hello again"};

// The name of the partner tasks, by which the tester finds them.
constexpr const char* partner_name = "partner";

// How many partner tasks of `n` wait in a channel operation named `op`
// ("recv" or "send") in the form `kind` uses (a snapshot).
std::size_t waiting_in(const leash::nursery& n, party kind, std::string_view op) {
  const std::string suffix = std::string(kind == party::thread ? "::" : "::async_") += op;
  std::size_t count = 0;
  for (const auto& t : leash::live_tasks()) {
    if (t.nursery == n.name() && t.name == partner_name && t.blocked_in != nullptr &&
        std::string_view(t.blocked_in).ends_with(suffix)) {
      ++count;
    }
  }
  return count;
}

// How many partner tasks of `n` are alive (a snapshot). A partner that has
// signalled its strobe may still show the strobe operation it was woken from
// for a moment; the tester waits for it to end before starting the next one,
// so that waiting_in sees only the new one.
std::size_t partners_alive(const leash::nursery& n) {
  std::size_t count = 0;
  for (const auto& t : leash::live_tasks()) {
    if (t.nursery == n.name() && t.name == partner_name) ++count;
  }
  return count;
}

// Go's receiver goroutine: takes one value into `got`, then signals `strobe`.
template <class T>
void spawn_receiver(leash::nursery& n, party kind, leash::channel<T>& c, std::optional<T>& got,
                    leash::channel<bool>& strobe) {
  if (kind == party::thread) {
    n.spawn(partner_name, [c = &c, got = &got, strobe = &strobe] {
      *got = c->recv();
      strobe->send(true);
    });
  } else {
    n.spawn(partner_name, [c = &c, got = &got, strobe = &strobe]() -> coro<void> {
      *got = co_await c->async_recv();
      co_await strobe->async_send(true);
    });
  }
}

// Go's sender goroutine: sends `value`, then signals `strobe`.
template <class T>
void spawn_sender(leash::nursery& n, party kind, leash::channel<T>& c, const T& value,
                  leash::channel<bool>& strobe) {
  if (kind == party::thread) {
    n.spawn(partner_name, [c = &c, value = &value, strobe = &strobe] {
      c->send(*value);
      strobe->send(true);
    });
  } else {
    n.spawn(partner_name, [c = &c, value = &value, strobe = &strobe]() -> coro<void> {
      co_await c->async_send(*value);
      co_await strobe->async_send(true);
    });
  }
}

// One lane of the matrix, tried from a thread: try_recv finds nothing; a
// waiting receiver takes a try_send; a waiting sender's value (in the buffer
// already when there is one) is taken by try_recv. Where Go sleeps and retries
// up to a bound, this waits until the partner is waiting, so every try
// succeeds the first time.
template <class T>
void thread_tries(leash::nursery& n, party partner, std::size_t buffer, const lane<T>& values) {
  leash::channel<T> c(buffer);
  leash::channel<bool> strobe;
  CHECK(c.try_recv().status == channel_status::empty);
  if (buffer == 0) CHECK(c.try_send(values.to_receiver) == channel_status::full);

  std::optional<T> got;
  spawn_receiver(n, partner, c, got, strobe);
  REQUIRE(leash_test::eventually([&] { return waiting_in(n, partner, "recv") == 1; }));
  CHECK(c.try_send(values.to_receiver) == channel_status::ok);
  strobe.recv();
  CHECK(got == values.to_receiver);
  REQUIRE(leash_test::eventually([&] { return partners_alive(n) == 0; }));

  spawn_sender(n, partner, c, values.from_sender, strobe);
  if (buffer > 0) {
    strobe.recv();  // the send completed into the buffer
  } else {
    REQUIRE(leash_test::eventually([&] { return waiting_in(n, partner, "send") == 1; }));
  }
  auto r = c.try_recv();
  CHECK(r.status == channel_status::ok);
  CHECK(r.value == values.from_sender);
  if (buffer == 0) strobe.recv();
  REQUIRE(leash_test::eventually([&] { return partners_alive(n) == 0; }));
}

// thread_tries from a coroutine task: the same steps, waiting by awaiting.
// Polls the partner's state by yielding (async_checkpoint); a partner that
// never waits leaves it polling until the test's timeout.
template <class T>
coro<void> coro_tries(leash::nursery& n, party partner, std::size_t buffer, const lane<T>& values) {
  leash::channel<T> c(buffer);
  leash::channel<bool> strobe;
  CHECK(c.try_recv().status == channel_status::empty);
  if (buffer == 0) CHECK(c.try_send(values.to_receiver) == channel_status::full);

  std::optional<T> got;
  spawn_receiver(n, partner, c, got, strobe);
  while (waiting_in(n, partner, "recv") == 0)
    co_await leash::this_task::async_checkpoint();
  CHECK(c.try_send(values.to_receiver) == channel_status::ok);
  co_await strobe.async_recv();
  CHECK(got == values.to_receiver);
  while (partners_alive(n) > 0)
    co_await leash::this_task::async_checkpoint();

  spawn_sender(n, partner, c, values.from_sender, strobe);
  if (buffer > 0) {
    co_await strobe.async_recv();
  } else {
    while (waiting_in(n, partner, "send") == 0)
      co_await leash::this_task::async_checkpoint();
  }
  auto r = c.try_recv();
  CHECK(r.status == channel_status::ok);
  CHECK(r.value == values.from_sender);
  if (buffer == 0) co_await strobe.async_recv();
  while (partners_alive(n) > 0)
    co_await leash::this_task::async_checkpoint();
}

void thread_matrix(leash::nursery& n, party partner, std::size_t buffer) {
  thread_tries(n, partner, buffer, i32_lane);
  thread_tries(n, partner, buffer, i64_lane);
  thread_tries(n, partner, buffer, bool_lane);
  thread_tries(n, partner, buffer, string_lane);
}

coro<void> coro_matrix(leash::nursery& n, party partner, std::size_t buffer) {
  co_await coro_tries(n, partner, buffer, i32_lane);
  co_await coro_tries(n, partner, buffer, i64_lane);
  co_await coro_tries(n, partner, buffer, bool_lane);
  co_await coro_tries(n, partner, buffer, string_lane);
}

}  // namespace

TEST_CASE("the nonblocking matrix: try_send and try_recv against waiting threads and coroutines") {
  for (party tester : {party::thread, party::coroutine}) {
    for (party partner : {party::coroutine, party::thread}) {
      for (std::size_t buffer : {0u, 1u}) {
        CAPTURE(name_of(tester));
        CAPTURE(name_of(partner));
        CAPTURE(buffer);
        leash::nursery n({.name = "nonblock"});
        if (tester == party::thread) {
          thread_matrix(n, partner, buffer);
        } else {
          n.spawn([&]() -> coro<void> { return coro_matrix(n, partner, buffer); });
        }
        n.wait();
      }
    }
  }
}

namespace {

// ---- The prime sieve (sieve1.go).

using int_channel = std::shared_ptr<leash::channel<int>>;

// Go's generate: 2, 3, 4, ... until cancelled.
coro<void> generate(int_channel out) {
  for (int i = 2;; ++i)
    co_await out->async_send(i);
}

// Go's filter: passes on the values not divisible by `prime`, until cancelled.
coro<void> filter(int_channel in, int_channel out, int prime) {
  for (;;) {
    const int v = (co_await in->async_recv()).value();
    if (v % prime != 0) co_await out->async_send(v);
  }
}

// filter as a thread task: the blocking forms.
void thread_filter(const int_channel& in, const int_channel& out, int prime) {
  for (;;) {
    const int v = in->recv().value();
    if (v % prime != 0) out->send(v);
  }
}

// Go's sieve: the first `count` primes, each found at the head of the chain,
// which then grows by one filter task; with thread_every = k > 0, every k-th
// filter is a thread task instead. The tasks it starts stay suspended (or
// blocked) in send or recv until `n` is cancelled.
coro<std::vector<int>> sieve(leash::nursery& n, int count, int thread_every) {
  std::vector<int> primes;
  int_channel head = std::make_shared<leash::channel<int>>();
  n.spawn([head] { return generate(head); });
  for (int k = 0; k < count; ++k) {
    const int prime = (co_await head->async_recv()).value();
    primes.push_back(prime);
    int_channel next = std::make_shared<leash::channel<int>>();
    if (thread_every > 0 && k % thread_every == 0) {
      n.spawn([head, next, prime] { thread_filter(head, next, prime); });
    } else {
      n.spawn([head, next, prime] { return filter(head, next, prime); });
    }
    head = next;
  }
  co_return primes;
}

// Threads the runtime may start beyond the coroutine workers while a sieve
// runs (the test thread's helpers, a timer): far below one per filter task.
constexpr std::size_t sieve_thread_slack = 16;

// Runs a sieve of `count` primes (see sieve), checks that it needed no thread
// per coroutine task, and cancels the tasks it leaves waiting.
std::vector<int> run_sieve(int count, int thread_every = 0) {
  const std::size_t threads_before = leash::runtime::stats().threads_alive;
  const std::size_t thread_filters =
      thread_every > 0 ? static_cast<std::size_t>((count + thread_every - 1) / thread_every) : 0;
  std::vector<int> primes;
  std::size_t suspended_at_cancel = 0;
  leash::run_nursery([&](leash::nursery& n) {
    auto main =
        n.spawn("sieve", [&]() -> coro<std::vector<int>> { return sieve(n, count, thread_every); });
    primes = main.get();
    CHECK(leash::runtime::stats().threads_alive <=
          threads_before + thread_filters + sieve_thread_slack);
    suspended_at_cancel = n.running();
    n.cancel();  // the generator and every filter end with cancelled, suspended
  });
  CHECK(suspended_at_cancel >= static_cast<std::size_t>(count));  // a filter per prime
  return primes;
}

}  // namespace

TEST_CASE("a prime sieve of chained coroutine tasks finds the first 100 primes") {
  const std::vector<int> primes = run_sieve(100);
  REQUIRE(primes.size() == 100);
  CHECK(primes.front() == 2);
  CHECK(primes[24] == 97);
  CHECK(primes.back() == 541);
}

TEST_CASE("a prime sieve whose filters alternate thread and coroutine tasks finds 100 primes") {
  const std::vector<int> primes = run_sieve(100, 2);
  REQUIRE(primes.size() == 100);
  CHECK(primes[24] == 97);
  CHECK(primes.back() == 541);
}

TEST_CASE("a prime sieve of 1000 coroutine filter tasks finds the first 1000 primes") {
  const std::vector<int> primes = run_sieve(1000);
  REQUIRE(primes.size() == 1000);
  CHECK(primes[99] == 541);
  CHECK(primes[999] == 7919);
  CHECK(std::is_sorted(primes.begin(), primes.end()));
}

namespace {

// ---- Double select (doubleselect.go).

using channels4 = std::array<leash::channel<int>, 4>;

void close_all(channels4& c) {
  for (auto& ch : c)
    ch.close();
}

// Go's sender: each value to whichever of the four channels is ready first.
coro<void> select_sender(channels4& c, int values) {
  for (int i = 0; i < values; ++i) {
    co_await leash::async_select(leash::on_send(c[0], i, [] {}), leash::on_send(c[1], i, [] {}),
                                 leash::on_send(c[2], i, [] {}), leash::on_send(c[3], i, [] {}));
  }
  close_all(c);
}

// Go's mux: forwards `in` to `out`; the last mux to end closes `out`.
coro<void> mux(leash::channel<int>& in, leash::channel<int>& out, std::atomic<int>& open_muxes) {
  while (auto v = co_await in.async_recv())
    co_await out.async_send(*v);
  if (open_muxes.fetch_sub(1) == 1) out.close();
}

// Go's recver: how many times each value arrived.
coro<std::vector<int>> count_arrivals(leash::channel<int>& in, int values) {
  std::vector<int> seen(static_cast<std::size_t>(values), 0);
  while (auto v = co_await in.async_recv())
    ++seen.at(static_cast<std::size_t>(*v));
  co_return seen;
}

constexpr int mux_count = 4;

}  // namespace

TEST_CASE("double select in coroutine tasks: every value arrives exactly once") {
  const int values = static_cast<int>(leash_test::scaled(100'000));
  channels4 c;
  leash::channel<int> out;
  std::atomic<int> open_muxes{mux_count};
  leash::nursery n;
  n.spawn([&] { return select_sender(c, values); });
  for (auto& in : c)
    n.spawn([&, in = &in] { return mux(*in, out, open_muxes); });
  auto seen = n.spawn([&] { return count_arrivals(out, values); }).get();
  n.wait();
  CHECK(std::count(seen.begin(), seen.end(), 1) == values);
}

namespace {

// Sends values start, start + stride, ... below `values`, each through one
// select over the four channels; the last sender to end closes them.
struct select_senders {
  channels4& c;
  int values;
  int stride;
  std::atomic<int> open;

  void blocking(int start) {
    for (int i = start; i < values; i += stride) {
      leash::select(leash::on_send(c[0], i, [] {}), leash::on_send(c[1], i, [] {}),
                    leash::on_send(c[2], i, [] {}), leash::on_send(c[3], i, [] {}));
    }
    done();
  }
  coro<void> awaiting(int start) {
    for (int i = start; i < values; i += stride) {
      co_await leash::async_select(leash::on_send(c[0], i, [] {}), leash::on_send(c[1], i, [] {}),
                                   leash::on_send(c[2], i, [] {}), leash::on_send(c[3], i, [] {}));
    }
    done();
  }
  void done() {
    if (open.fetch_sub(1) == 1) close_all(c);
  }
};

// A receiver selecting over the four channels until all are closed; returns
// the values it got. A closed channel's case is disabled (Go's nil channel).
struct select_receiver {
  explicit select_receiver(channels4& channels) : c(channels) {}

  channels4& c;
  std::array<bool, 4> open{true, true, true, true};
  std::vector<int> got;

  auto take(std::size_t k) {
    return [this, k](std::optional<int> v) {
      if (v) {
        got.push_back(*v);
      } else {
        open[k] = false;
      }
    };
  }
  bool any_open() const { return std::find(open.begin(), open.end(), true) != open.end(); }

  std::vector<int> blocking() {
    while (any_open()) {
      leash::select(
          leash::on_recv(c[0], take(0)).when(open[0]), leash::on_recv(c[1], take(1)).when(open[1]),
          leash::on_recv(c[2], take(2)).when(open[2]), leash::on_recv(c[3], take(3)).when(open[3]));
    }
    return std::move(got);
  }
  coro<std::vector<int>> awaiting() {
    while (any_open()) {
      co_await leash::async_select(
          leash::on_recv(c[0], take(0)).when(open[0]), leash::on_recv(c[1], take(1)).when(open[1]),
          leash::on_recv(c[2], take(2)).when(open[2]), leash::on_recv(c[3], take(3)).when(open[3]));
    }
    co_return std::move(got);
  }
};

constexpr int parties_per_side = 2;

}  // namespace

TEST_CASE(
    "double select with selects on both sides, coroutine tasks alone and mixed with "
    "threads, unbuffered and buffered") {
  const int values = static_cast<int>(leash_test::scaled(50'000));
  for (std::size_t capacity : {0u, 1u, 8u}) {
    // Whether sender 0 and receiver 0 are threads using blocking select.
    for (bool mixed : {false, true}) {
      CAPTURE(capacity);
      CAPTURE(mixed);
      channels4 c{leash::channel<int>(capacity), leash::channel<int>(capacity),
                  leash::channel<int>(capacity), leash::channel<int>(capacity)};
      select_senders senders{c, values, parties_per_side, parties_per_side};
      std::array<select_receiver, parties_per_side> receivers{select_receiver(c),
                                                              select_receiver(c)};
      std::array<leash::task<std::vector<int>>, parties_per_side> got;
      leash::nursery n;
      for (int s = 0; s < parties_per_side; ++s) {
        if (mixed && s == 0) {
          n.spawn([&, s] { senders.blocking(s); });
        } else {
          n.spawn([&, s] { return senders.awaiting(s); });
        }
      }
      for (std::size_t r = 0; r < parties_per_side; ++r) {
        if (mixed && r == 0) {
          got[r] = n.spawn([&, r] { return receivers[r].blocking(); });
        } else {
          got[r] = n.spawn([&, r] { return receivers[r].awaiting(); });
        }
      }
      std::vector<int> seen(static_cast<std::size_t>(values), 0);
      for (auto& t : got) {
        for (int v : t.get())
          ++seen.at(static_cast<std::size_t>(v));
      }
      n.wait();
      CHECK(std::count(seen.begin(), seen.end(), 1) == values);
    }
  }
}
