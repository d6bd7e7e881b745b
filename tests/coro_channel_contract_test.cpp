// The channel contract for coroutine tasks: each behaviour of channel_test.cpp
// that involves waiting or a task, with async_send / async_recv, between two
// coroutine tasks and between a thread task and a coroutine task in either
// role.
#include <doctest/doctest.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstddef>
#include <latch>
#include <leash.hpp>
#include <memory>
#include <optional>
#include <stop_token>
#include <string>
#include <string_view>
#include <thread>
#include <utility>
#include <vector>

#include "support/blocked.hpp"
#include "support/parties.hpp"

using namespace std::chrono_literals;
using leash::channel_status;
using leash::coro;
using leash_test::blocked_name;
using leash_test::mixed_pairings;
using leash_test::party;
using leash_test::spawn_recv;
using leash_test::spawn_send;
using leash_test::wait_blocked;

namespace {

// A wait no test sits out: only cancellation ends it.
constexpr auto forever = 1h;

// Suspends the running coroutine task until its nursery is cancelled, so what
// follows runs with its ambient token stopped.
coro<void> until_cancelled() {
  try {
    co_await leash::this_task::async_sleep_for(forever);
  } catch (const leash::cancelled&) {
  }
}

}  // namespace

TEST_CASE("an unbuffered async_send waits until a receiver takes the value") {
  for (const auto& mix : mixed_pairings) {  // first sends, second receives
    CAPTURE(to_string(mix));
    leash::channel<int> ch;
    leash::run_nursery([&](leash::nursery& n) {
      auto sent = spawn_send(n, mix.first, ch, 42);
      wait_blocked(blocked_name(mix.first, "send"));
      CHECK_FALSE(sent.done());
      CHECK(ch.try_send(43) == channel_status::full);  // 42 waits with its sender, not in a slot
      CHECK(spawn_recv(n, mix.second, ch).get() == 42);
      sent.get();
    });
  }
}

TEST_CASE("an unbuffered async_recv waits until a sender arrives") {
  for (const auto& mix : mixed_pairings) {
    CAPTURE(to_string(mix));
    leash::channel<std::string> ch;
    leash::run_nursery([&](leash::nursery& n) {
      auto got = spawn_recv(n, mix.second, ch);
      wait_blocked(blocked_name(mix.second, "recv"));
      CHECK_FALSE(got.done());
      spawn_send(n, mix.first, ch, std::string("hello"));
      CHECK(got.get() == "hello");
    });
  }
}

TEST_CASE("a buffered channel holds capacity values, then async_send waits") {
  for (const auto& mix : mixed_pairings) {
    CAPTURE(to_string(mix));
    leash::channel<int> ch(2);
    ch.send(1);
    ch.send(2);
    leash::run_nursery([&](leash::nursery& n) {
      auto sent = spawn_send(n, mix.first, ch, 3);
      wait_blocked(blocked_name(mix.first, "send"));
      CHECK(ch.size() == 2);
      CHECK(spawn_recv(n, mix.second, ch).get() == 1);  // makes room: 3 moves in
      sent.get();
    });
    CHECK(ch.size() == 2);
    CHECK(ch.recv() == 2);
    CHECK(ch.recv() == 3);
  }
}

TEST_CASE("a receive from a full buffer moves a waiting sender's value in before it returns") {
  for (const auto& mix : mixed_pairings) {
    CAPTURE(to_string(mix));
    leash::channel<int> ch(1);
    ch.send(1);
    leash::run_nursery([&](leash::nursery& n) {
      spawn_send(n, mix.first, ch, 2);
      wait_blocked(blocked_name(mix.first, "send"));
      // What the receiver got, and the buffer's size the moment it returned.
      using seen = std::pair<std::optional<int>, std::size_t>;
      auto got = mix.second == party::thread ? n.spawn([&] {
        auto v = ch.recv();
        return seen(v, ch.size());
      })
                                             : n.spawn([&]() -> coro<seen> {
                                                 auto v = co_await ch.async_recv();
                                                 co_return seen(v, ch.size());
                                               });
      const seen s = got.get();
      CHECK(s.first == 1);
      CHECK(s.second == 1);  // 2 is buffered already, whether or not its sender has run
      CHECK(ch.try_recv().value == 2);
    });
  }
}

TEST_CASE("a send to an empty buffer with a waiting receiver completes that receive") {
  for (const auto& mix : mixed_pairings) {
    CAPTURE(to_string(mix));
    leash::channel<int> ch(4);
    leash::run_nursery([&](leash::nursery& n) {
      auto got = spawn_recv(n, mix.second, ch);
      wait_blocked(blocked_name(mix.second, "recv"));
      // The buffer's size the moment the send returned.
      auto size_after = mix.first == party::thread ? n.spawn([&] {
        ch.send(7);
        return ch.size();
      })
                                                   : n.spawn([&]() -> coro<std::size_t> {
                                                       co_await ch.async_send(7);
                                                       co_return ch.size();
                                                     });
      CHECK(size_after.get() == 0);  // delivered, whether or not the receiver has run
      CHECK(got.get() == 7);
    });
  }
}

namespace {

// Sends (producer, 0..per_producer-1) from a task of kind `p`.
void spawn_producer(leash::nursery& n, party p, leash::channel<std::pair<int, int>>& ch,
                    int producer, int per_producer) {
  if (p == party::thread) {
    n.spawn([&ch, producer, per_producer] {
      for (int i = 0; i < per_producer; ++i)
        ch.send({producer, i});
    });
    return;
  }
  n.spawn([&ch, producer, per_producer]() -> coro<void> {
    for (int i = 0; i < per_producer; ++i) {
      std::pair<int, int> v(producer, i);  // named: no braced temporary in a co_await
      co_await ch.async_send(std::move(v));
    }
  });
}

// Whether `got` holds each producer's values in the order sent, all of them.
bool in_order(const std::vector<std::pair<int, int>>& got, int producers, int per_producer) {
  std::vector<int> last(static_cast<std::size_t>(producers), -1);
  for (auto [p, i] : got) {
    if (i != last[static_cast<std::size_t>(p)] + 1) return false;
    last[static_cast<std::size_t>(p)] = i;
  }
  return std::all_of(last.begin(), last.end(), [&](int i) { return i == per_producer - 1; });
}

}  // namespace

TEST_CASE("values from one producer arrive in FIFO order, for every capacity and pairing") {
  constexpr int producers = 4, per_producer = 2000, total = producers * per_producer;
  using item = std::pair<int, int>;
  for (std::size_t capacity : {0, 1, 3, 1024}) {
    for (const auto& mix : mixed_pairings) {  // first produces, second consumes
      CAPTURE(capacity);
      CAPTURE(to_string(mix));
      leash::channel<item> ch(capacity);
      leash::run_nursery([&](leash::nursery& n) {
        for (int p = 0; p < producers; ++p)
          spawn_producer(n, mix.first, ch, p, per_producer);
        auto got = mix.second == party::thread ? n.spawn([&] {
          std::vector<item> all;
          for (int k = 0; k < total; ++k)
            all.push_back(*ch.recv());
          return all;
        })
                                               : n.spawn([&]() -> coro<std::vector<item>> {
                                                   std::vector<item> all;
                                                   for (int k = 0; k < total; ++k)
                                                     all.push_back(*co_await ch.async_recv());
                                                   co_return all;
                                                 });
        CHECK(in_order(got.get(), producers, per_producer));
      });
    }
  }
}

TEST_CASE("async_recv delivers buffered values after close, then nullopt, and a loop ends there") {
  leash::channel<int> ch(3), more(8);
  ch.send(1);
  ch.send(2);
  CHECK(ch.close());
  for (int i = 1; i <= 5; ++i)
    more.send(i);
  more.close();
  leash::nursery n;
  auto t = n.spawn([&]() -> coro<std::vector<std::optional<int>>> {
    std::vector<std::optional<int>> got;
    for (int i = 0; i < 4; ++i)
      got.push_back(co_await ch.async_recv());
    int sum = 0;
    while (auto v = co_await more.async_recv())
      sum += *v;
    got.emplace_back(sum);
    co_return got;
  });
  const std::vector<std::optional<int>> expected{1, 2, std::nullopt, std::nullopt, 15};
  CHECK(t.get() == expected);
  n.wait();
}

TEST_CASE("close wakes waiting receivers of both kinds with nullopt") {
  for (std::size_t capacity : {0, 1}) {
    for (party closer : {party::thread, party::coroutine}) {
      CAPTURE(capacity);
      CAPTURE(to_string(closer));
      leash::channel<int> ch(capacity);
      std::atomic<int> woke{0};
      leash::run_nursery([&](leash::nursery& n) {
        for (int i = 0; i < 3; ++i) {
          n.spawn([&] {
            if (ch.recv() == std::nullopt) ++woke;
          });
          n.spawn([&]() -> coro<void> {
            if (co_await ch.async_recv() == std::nullopt) ++woke;
          });
        }
        wait_blocked("channel<int>::recv", 3);
        wait_blocked("channel<int>::async_recv", 3);
        if (closer == party::thread) {
          CHECK(ch.close());
        } else {
          CHECK(n.spawn([&]() -> coro<bool> { co_return ch.close(); }).get());
        }
      });
      CHECK(woke == 6);
    }
  }
}

TEST_CASE("close wakes waiting senders of both kinds with channel_closed, their values untouched") {
  for (std::size_t capacity : {0, 1}) {
    CAPTURE(capacity);
    leash::channel<std::unique_ptr<int>> ch(capacity);
    if (capacity == 1) ch.send(std::make_unique<int>(0));
    std::atomic<int> refused_intact{0};
    auto note = [&](const leash::channel_closed& e, const std::unique_ptr<int>& value, int i) {
      CHECK(std::string(e.what()) == "leash::channel: send on closed channel");
      if (value != nullptr && *value == i) ++refused_intact;
    };
    leash::run_nursery([&](leash::nursery& n) {
      for (int i = 0; i < 3; ++i) {
        n.spawn([&, i] {
          auto value = std::make_unique<int>(i);
          try {
            ch.send(std::move(value));
          } catch (const leash::channel_closed& e) {
            note(e, value, i);
          }
        });
        n.spawn([&, i]() -> coro<void> {
          auto value = std::make_unique<int>(10 + i);
          try {
            co_await ch.async_send(std::move(value));
          } catch (const leash::channel_closed& e) {
            note(e, value, 10 + i);
          }
        });
      }
      wait_blocked(">::send", 3);
      wait_blocked(">::async_send", 3);
      CHECK(ch.close());
    });
    CHECK(refused_intact == 6);
  }
}

TEST_CASE("async_send on a closed channel throws and leaves the value with the coroutine") {
  leash::channel<std::unique_ptr<int>> ch(4);
  ch.close();
  leash::channel<std::string> strings;
  strings.close();
  leash::nursery n;
  n.spawn([&]() -> coro<void> {
    auto value = std::make_unique<int>(7);
    bool threw = false;
    try {
      co_await ch.async_send(std::move(value));
    } catch (const leash::channel_closed&) {
      threw = true;
    }
    CHECK(threw);
    REQUIRE(value != nullptr);
    CHECK(*value == 7);
    const std::string copy = "copy";
    threw = false;
    try {
      co_await strings.async_send(copy);
    } catch (const leash::channel_closed&) {
      threw = true;
    }
    CHECK(threw);
    CHECK(copy == "copy");
  });
  n.wait();
}

TEST_CASE("a cancelled async_send leaves the value with the coroutine, waiting or stopped first") {
  for (std::size_t capacity : {0, 1}) {
    CAPTURE(capacity);
    leash::channel<std::unique_ptr<int>> ch(capacity);
    if (capacity == 1) ch.send(std::make_unique<int>(0));
    std::atomic<int> intact{0};
    // Sends `v` and expects cancelled, with v still its own.
    auto send_cancelled = [&](std::unique_ptr<int>& v, int expected) -> coro<void> {
      try {
        co_await ch.async_send(std::move(v));
      } catch (const leash::cancelled&) {
        if (v != nullptr && *v == expected) ++intact;
      }
    };
    {
      leash::nursery n;
      n.spawn([&]() -> coro<void> {  // waits in async_send when the stop comes
        auto v = std::make_unique<int>(9);
        co_await send_cancelled(v, 9);
      });
      n.spawn([&]() -> coro<void> {  // already stopped when it tries
        co_await until_cancelled();
        auto v = std::make_unique<int>(8);
        co_await send_cancelled(v, 8);
      });
      wait_blocked(">::async_send");
      wait_blocked("this_task::async_sleep");
      n.cancel();
      n.wait();
    }
    CHECK(intact == 2);
    CHECK(ch.size() == capacity);  // nothing was delivered
  }
}

TEST_CASE("move-only values pass between coroutine parties in order, buffered and unbuffered") {
  using item = std::unique_ptr<std::string>;
  constexpr int count = 100;
  for (std::size_t capacity : {0, 8}) {
    for (const auto& mix : mixed_pairings) {  // first produces, second consumes
      CAPTURE(capacity);
      CAPTURE(to_string(mix));
      leash::channel<item> ch(capacity);
      leash::run_nursery([&](leash::nursery& n) {
        if (mix.first == party::thread) {
          n.spawn([&] {
            for (int i = 0; i < count; ++i)
              ch.send(std::make_unique<std::string>(std::to_string(i)));
            ch.close();
          });
        } else {
          n.spawn([&]() -> coro<void> {
            for (int i = 0; i < count; ++i)
              co_await ch.async_send(std::make_unique<std::string>(std::to_string(i)));
            ch.close();
          });
        }
        // How many arrived in order.
        auto ordered = mix.second == party::thread
                           ? n.spawn([&] {
                               int expected = 0;
                               for (auto& p : ch)
                                 expected += *p == std::to_string(expected) ? 1 : count * 2;
                               return expected;
                             })
                           : n.spawn([&]() -> coro<int> {
                               int expected = 0;
                               while (auto p = co_await ch.async_recv())
                                 expected += **p == std::to_string(expected) ? 1 : count * 2;
                               co_return expected;
                             });
        CHECK(ordered.get() == count);
      });
    }
  }
}

TEST_CASE(
    "waiting async_recv and async_send are cancelled by their nursery, leaving nothing queued") {
  for (std::size_t capacity : {0, 1}) {
    CAPTURE(capacity);
    leash::channel<int> empty(capacity), full(capacity);
    if (capacity == 1) full.send(0);
    std::atomic<int> cancelled{0};
    {
      leash::nursery n;
      for (int i = 0; i < 3; ++i) {
        n.spawn([&]() -> coro<void> {
          try {
            co_await empty.async_recv();
          } catch (const leash::cancelled&) {
            ++cancelled;
            throw;
          }
        });
        n.spawn([&]() -> coro<void> {
          try {
            co_await full.async_send(1);
          } catch (const leash::cancelled&) {
            ++cancelled;
            throw;
          }
        });
      }
      wait_blocked("channel<int>::async_recv", 3);
      wait_blocked("channel<int>::async_send", 3);
      n.cancel();
      n.wait();
    }
    CHECK(cancelled == 6);
    // No node is left behind: a sender finds no receiver, a receiver no sender.
    if (capacity == 0) CHECK(empty.try_send(1) == channel_status::full);
    CHECK(empty.try_recv().status == channel_status::empty);
    CHECK(full.try_recv().value == (capacity == 1 ? std::optional<int>(0) : std::nullopt));
    CHECK(full.try_recv().status == channel_status::empty);
  }
}

TEST_CASE("a nursery deadline ends a waiting async_send with deadline_exceeded, value intact") {
  leash::channel<std::string> ch;
  leash::nursery_options o;
  o.timeout = 20ms;
  std::optional<leash::task<std::string>> kept;
  {
    leash::nursery n(o);
    kept = n.spawn([&]() -> coro<std::string> {
      std::string mine = "mine";
      try {
        co_await ch.async_send(std::move(mine));
      } catch (const leash::deadline_exceeded&) {
        co_return mine;
      }
      co_return "delivered";
    });
    CHECK_THROWS_AS(n.wait(), leash::deadline_exceeded);
  }
  CHECK(kept->get() == "mine");
  CHECK(ch.try_recv().status == channel_status::empty);
}

// cancel_scope inside a coroutine task: its ambient chain belongs to the task
// across suspensions, so the scope's deadline reaches the suspended operation
// and the scope's guard finds its own state at destruction.
TEST_CASE("a cancel_scope deadline inside a coroutine task ends a waiting async_recv") {
  leash::channel<int> ch;
  leash::nursery n;
  auto t = n.spawn([&]() -> coro<bool> {
    leash::cancel_scope scope(20ms);
    try {
      co_await ch.async_recv();
    } catch (const leash::deadline_exceeded&) {
      co_return scope.reason() == leash::stop_reason::deadline_exceeded;
    }
    co_return false;
  });
  CHECK(t.get());
  n.wait();
}

TEST_CASE("a cancel_scope stopped inside a coroutine task cancels an async_recv that would wait") {
  leash::channel<int> ready(1), empty;
  ready.send(3);
  leash::nursery n;
  auto t = n.spawn([&]() -> coro<int> {
    leash::cancel_scope scope;
    scope.cancel("enough");
    auto v = co_await ready.async_recv();  // ready: taken though stopped
    try {
      co_await empty.async_recv();
    } catch (const leash::cancelled& e) {
      co_return e.reason() == leash::stop_reason::cancelled ? v.value_or(-1) : -2;
    }
    co_return -3;
  });
  CHECK(t.get() == 3);
  n.wait();
}

TEST_CASE("readiness wins over a stopped token for a coroutine task") {
  leash::channel<int> ch(1);
  ch.send(3);
  std::optional<leash::task<std::vector<int>>> t;
  {
    leash::nursery n;  // installed on this thread: cancelling it would cancel t->get() here
    t = n.spawn([&]() -> coro<std::vector<int>> {
      co_await until_cancelled();
      std::vector<int> got;
      got.push_back((co_await ch.async_recv()).value_or(-1));  // a value was ready
      co_await ch.async_send(4);                               // room was ready
      try {
        co_await ch.async_send(5);
        got.push_back(-5);
      } catch (const leash::cancelled&) {
        got.push_back(0);
      }
      ch.close();
      got.push_back((co_await ch.async_recv()).value_or(-1));
      got.push_back((co_await ch.async_recv()).value_or(-1));  // closed is ready too
      co_return got;
    });
    wait_blocked("this_task::async_sleep");
    n.cancel();
    n.wait();
  }
  CHECK(t->get() == std::vector<int>{3, 0, 4, -1});
}

// Go's test/chan/sieve1.go, with a chain whose links alternate between thread
// tasks and coroutine tasks.
TEST_CASE("a prime sieve of chained coroutine and thread filters finds the first 100 primes") {
  std::vector<int> primes;
  leash::run_nursery([&](leash::nursery& n) {
    auto source = std::make_shared<leash::channel<int>>();
    n.spawn([source]() -> coro<void> {
      for (int i = 2;; ++i)
        co_await source->async_send(i);  // until the nursery is cancelled
    });
    std::vector<std::shared_ptr<leash::channel<int>>> chain{source};
    for (int k = 0; k < 100; ++k) {
      auto in = chain.back();
      const int prime = *in->recv();
      primes.push_back(prime);
      auto out = std::make_shared<leash::channel<int>>();
      if (k % 2 == 0) {
        n.spawn([in, out, prime]() -> coro<void> {
          for (;;) {
            const int v = *co_await in->async_recv();
            if (v % prime != 0) co_await out->async_send(v);
          }
        });
      } else {
        n.spawn([in, out, prime] {
          for (;;) {
            const int v = *in->recv();
            if (v % prime != 0) out->send(v);
          }
        });
      }
      chain.push_back(out);
    }
    n.cancel();  // the filters end quietly, waiting in a send or a receive
  });
  REQUIRE(primes.size() == 100);
  CHECK(primes.front() == 2);
  CHECK(primes[24] == 97);
  CHECK(primes.back() == 541);
}

namespace {

// One round of a stop racing matched operations: `tasks` coroutine tasks each
// wait in async_recv on a channel of their own while `hander` (a thread or a
// coroutine task) hands values to every other one and another thread cancels
// their nursery. Returns whether every value handed over was received and
// every task ended received or cancelled.
bool stop_races_handed_values(party hander, int tasks) {
  std::vector<std::unique_ptr<leash::channel<int>>> channels;
  for (int i = 0; i < tasks; ++i)
    channels.push_back(std::make_unique<leash::channel<int>>(0));
  std::atomic<long> received{0};
  std::atomic<int> got{0}, cancelled{0};
  long handed = 0;
  auto hand_out = [&] {
    long sum = 0;
    for (int i = 0; i < tasks; i += 2) {
      if (channels[static_cast<std::size_t>(i)]->try_send(i + 1) == channel_status::ok)
        sum += i + 1;
    }
    return sum;
  };
  {
    leash::nursery hander_nursery;  // the outer one: cancelling n leaves it alone
    leash::nursery n;
    for (int i = 0; i < tasks; ++i) {
      n.spawn([&, i]() -> coro<void> {
        try {
          if (auto v = co_await channels[static_cast<std::size_t>(i)]->async_recv()) {
            received += *v;
            ++got;
          }
        } catch (const leash::cancelled&) {
          ++cancelled;
          throw;
        }
      });
    }
    wait_blocked("channel<int>::async_recv", static_cast<std::size_t>(tasks));
    std::thread canceller([&] { n.cancel(); });
    if (hander == party::thread) {
      handed = hand_out();
    } else {
      auto t = hander_nursery.spawn([&]() -> coro<long> { co_return hand_out(); });
      handed = t.get(std::stop_token());  // this thread's ambient n may be cancelled by now
    }
    canceller.join();
    n.wait();
  }
  return received == handed && got + cancelled == tasks;
}

}  // namespace

TEST_CASE("a stop racing matched operations loses: every value handed to a coroutine arrives") {
  constexpr int tasks = 64;
  const int rounds = leash_test::scaled(40);
  for (party hander : {party::thread, party::coroutine}) {
    CAPTURE(to_string(hander));
    for (int round = 0; round < rounds; ++round)
      REQUIRE(stop_races_handed_values(hander, tasks));
  }
}

TEST_CASE("a stop racing a matched async_send loses: a send that returned was received") {
  // The other direction: coroutine senders wait while this thread takes
  // values and another thread cancels. A sender that returned normally had its
  // value taken; one that was cancelled did not.
  constexpr int tasks = 64;
  const int rounds = leash_test::scaled(40);
  for (int round = 0; round < rounds; ++round) {
    leash::channel<int> ch;
    std::atomic<long> sent{0};
    std::atomic<int> returned{0}, cancelled{0};
    long taken = 0;
    int taken_count = 0;
    {
      leash::nursery n;
      for (int i = 1; i <= tasks; ++i) {
        n.spawn([&, i]() -> coro<void> {
          try {
            co_await ch.async_send(i);
            sent += i;
            ++returned;
          } catch (const leash::cancelled&) {
            ++cancelled;
            throw;
          }
        });
      }
      wait_blocked("channel<int>::async_send", tasks);
      std::thread canceller([&] { n.cancel(); });
      for (int k = 0; k < tasks / 2; ++k) {
        if (auto r = ch.try_recv(); r.status == channel_status::ok) {
          taken += *r.value;
          ++taken_count;
        }
      }
      canceller.join();
      n.wait();
    }
    REQUIRE(sent == taken);
    REQUIRE(returned == taken_count);
    REQUIRE(returned + cancelled == tasks);
  }
}

namespace {

// The live task of nursery `nursery` named `name`, if any.
std::optional<leash::live_task> find_task(const std::string& nursery, const std::string& name) {
  for (auto& t : leash::live_tasks()) {
    if (t.nursery == nursery && t.name == name) return t;
  }
  return std::nullopt;
}

}  // namespace

TEST_CASE("live_tasks and leak_check name what a coroutine task is suspended in") {
  leash::channel<int> in, out;
  leash::leak_check local;
  leash::nursery_options o;
  o.name = "contract";
  leash::nursery n(o);
  n.spawn("reader", [&]() -> coro<void> { co_await in.async_recv(); });
  n.spawn("writer", [&]() -> coro<void> { co_await out.async_send(1); });
  wait_blocked("channel<int>::async_recv");
  wait_blocked("channel<int>::async_send");
  const auto reader = find_task("contract", "reader");
  const auto writer = find_task("contract", "writer");
  REQUIRE(reader.has_value());
  REQUIRE(writer.has_value());
  REQUIRE(reader->blocked_in != nullptr);
  REQUIRE(writer->blocked_in != nullptr);
  CHECK(std::string(reader->blocked_in) == "channel<int>::async_recv");
  CHECK(std::string(writer->blocked_in) == "channel<int>::async_send");
  CHECK(std::string_view(reader->site.file).ends_with("coro_channel_contract_test.cpp"));
  const std::string report = local.verify(0ms);
  CHECK(report.find("task \"reader\" spawned at") != std::string::npos);
  CHECK(report.find("blocked in channel<int>::async_recv") != std::string::npos);
  CHECK(report.find("blocked in channel<int>::async_send") != std::string::npos);
  in.close();
  out.close();
  CHECK_THROWS_AS(n.wait(), leash::channel_closed);  // the writer's send was refused
  CHECK(local.verify().empty());
}
