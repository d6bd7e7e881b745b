// Tests for leash/channel.hpp: send, recv, close, the try_ forms, iteration,
// cancellation, ordering and values never lost.
#include <doctest/doctest.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <latch>
#include <leash.hpp>
#include <memory>
#include <mutex>
#include <numeric>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "support/blocked.hpp"

using namespace std::chrono_literals;
using leash::channel_status;
using leash_test::wait_blocked;

TEST_CASE("an unbuffered send blocks until a receiver takes the value") {
  leash::channel<int> ch;
  std::atomic<bool> sent{false};
  leash::run_nursery([&](leash::nursery& n) {
    n.spawn([&] {
      ch.send(42);
      sent = true;
    });
    wait_blocked("channel<int>::send");
    CHECK_FALSE(sent.load());
    CHECK(ch.try_send(43) == channel_status::full);  // 42 waits with its sender, not in a slot
    CHECK(ch.recv() == 42);
  });
  CHECK(sent.load());
}

TEST_CASE("an unbuffered recv blocks until a sender arrives") {
  leash::channel<std::string> ch;
  leash::task<std::optional<std::string>> got;
  leash::run_nursery([&](leash::nursery& n) {
    got = n.spawn([&] { return ch.recv(); });
    wait_blocked(">::recv");
    ch.send("hello");
  });
  CHECK(got.get() == "hello");
}

TEST_CASE("a buffered channel holds capacity values, then send blocks") {
  leash::channel<int> ch(2);
  CHECK(ch.capacity() == 2);
  ch.send(1);
  ch.send(2);
  CHECK(ch.size() == 2);
  leash::run_nursery([&](leash::nursery& n) {
    n.spawn([&] { ch.send(3); });
    wait_blocked("channel<int>::send");
    CHECK(ch.recv() == 1);  // makes room: the blocked sender's value moves in
  });
  CHECK(ch.size() == 2);
  CHECK(ch.recv() == 2);
  CHECK(ch.recv() == 3);
}

// Go's rule for a full buffer: the receiver that makes room moves a blocked
// sender's value in, so the sender's send is complete, not merely woken to
// try again (which would leave the buffer short until that thread runs).
TEST_CASE("a recv from a full buffer moves a blocked sender's value in before it returns") {
  leash::channel<int> ch(1);
  ch.send(1);
  leash::run_nursery([&](leash::nursery& n) {
    n.spawn([&] { ch.send(2); });
    wait_blocked("channel<int>::send");
    CHECK(ch.recv() == 1);
    CHECK(ch.size() == 1);  // 2 is buffered already, whether or not its sender has run
    CHECK(ch.try_recv().value == 2);
  });
}

// And the other way round: a value sent while a receiver waits on an empty
// buffer goes to that receiver, not into the buffer to wait for it. (A send
// that sees the receiver queued hands the value over directly; a lock-free
// push that races the receiver's queueing serves it through the ring.)
TEST_CASE("a send to an empty buffer with a blocked receiver completes that receive") {
  leash::channel<int> ch(4);
  leash::task<std::optional<int>> got;
  leash::run_nursery([&](leash::nursery& n) {
    got = n.spawn([&] { return ch.recv(); });
    wait_blocked("channel<int>::recv");
    CHECK(ch.try_send(7) == channel_status::ok);
    CHECK(ch.size() == 0);  // delivered, whether or not the receiver has run
  });
  CHECK(got.get() == 7);
}

TEST_CASE("values from one producer arrive in FIFO order, for every capacity") {
  for (std::size_t capacity : {0, 1, 3, 1024}) {
    CAPTURE(capacity);
    constexpr int producers = 4, per_producer = 2000;
    leash::channel<std::pair<int, int>> ch(capacity);
    std::vector<int> last(producers, -1);
    bool ordered = true;
    leash::run_nursery([&](leash::nursery& n) {
      for (int p = 0; p < producers; ++p) {
        n.spawn([&, p] {
          for (int i = 0; i < per_producer; ++i)
            ch.send({p, i});
        });
      }
      for (int k = 0; k < producers * per_producer; ++k) {
        auto [p, i] = *ch.recv();
        ordered = ordered && i == last[p] + 1;
        last[p] = i;
      }
    });
    CHECK(ordered);
    CHECK(std::all_of(last.begin(), last.end(), [](int i) { return i == per_producer - 1; }));
  }
}

TEST_CASE("close delivers buffered values, then receivers get nullopt") {
  leash::channel<int> ch(3);
  ch.send(1);
  ch.send(2);
  CHECK(ch.close());
  CHECK(ch.closed());
  CHECK(ch.recv() == 1);
  CHECK(ch.recv() == 2);
  CHECK(ch.recv() == std::nullopt);
  CHECK(ch.recv() == std::nullopt);
  CHECK(ch.try_recv().status == channel_status::closed);
}

TEST_CASE("close wakes blocked receivers with nullopt") {
  leash::channel<int> ch;
  std::atomic<int> woke{0};
  leash::run_nursery([&](leash::nursery& n) {
    for (int i = 0; i < 3; ++i) {
      n.spawn([&] {
        if (ch.recv() == std::nullopt) ++woke;
      });
    }
    wait_blocked("channel<int>::recv", 3);
    CHECK(ch.close());
  });
  CHECK(woke == 3);
}

TEST_CASE("close wakes blocked senders with channel_closed, their values untouched") {
  for (std::size_t capacity : {0, 1}) {
    CAPTURE(capacity);
    leash::channel<std::unique_ptr<int>> ch(capacity);
    if (capacity == 1) ch.send(std::make_unique<int>(0));
    std::atomic<int> refused_intact{0};
    leash::run_nursery([&](leash::nursery& n) {
      for (int i = 0; i < 3; ++i) {
        n.spawn([&, i] {
          auto value = std::make_unique<int>(i);
          try {
            ch.send(std::move(value));
          } catch (const leash::channel_closed& e) {
            CHECK(std::string(e.what()) == "leash::channel: send on closed channel");
            if (value != nullptr && *value == i) ++refused_intact;
          }
        });
      }
      wait_blocked(">::send", 3);
      CHECK(ch.close());
    });
    CHECK(refused_intact == 3);
  }
}

TEST_CASE("send on a closed channel throws and leaves the value with the caller") {
  leash::channel<std::unique_ptr<int>> ch(4);
  ch.close();
  auto value = std::make_unique<int>(7);
  CHECK_THROWS_AS(ch.send(std::move(value)), leash::channel_closed);
  REQUIRE(value != nullptr);
  CHECK(*value == 7);
  CHECK(ch.try_send(std::move(value)) == channel_status::closed);
  REQUIRE(value != nullptr);
  const std::string copy = "copy";
  leash::channel<std::string> strings;
  strings.close();
  CHECK_THROWS_AS(strings.send(copy), leash::channel_closed);
}

TEST_CASE("a cancelled send leaves the value with the caller") {
  leash::channel<std::unique_ptr<int>> ch;
  auto value = std::make_unique<int>(9);
  leash::cancel_scope scope;
  scope.cancel("stop");
  CHECK_THROWS_AS(ch.send(std::move(value)), leash::cancelled);
  REQUIRE(value != nullptr);
  CHECK(*value == 9);
}

TEST_CASE("closing twice returns false") {
  leash::channel<int> ch;
  CHECK(ch.close());
  CHECK_FALSE(ch.close());
}

TEST_CASE("move-only element types work, buffered and unbuffered") {
  for (std::size_t capacity : {0, 8}) {
    leash::channel<std::unique_ptr<std::string>> ch(capacity);
    leash::run_nursery([&](leash::nursery& n) {
      n.spawn([&] {
        for (int i = 0; i < 100; ++i)
          ch.send(std::make_unique<std::string>(std::to_string(i)));
        ch.close();
      });
      int expected = 0;
      for (auto& p : ch)
        CHECK(*p == std::to_string(expected++));
      CHECK(expected == 100);
    });
  }
}

TEST_CASE("element types need no default constructor") {
  struct no_default {
    explicit no_default(int v) : value(v) {}
    int value;
  };
  leash::channel<no_default> ch(2);
  ch.send(no_default(5));
  CHECK(ch.recv()->value == 5);
}

TEST_CASE("buffered values are destroyed with the channel") {
  auto shared = std::make_shared<int>(1);
  {
    leash::channel<std::shared_ptr<int>> ch(4);
    ch.send(shared);
    ch.send(shared);
    CHECK(shared.use_count() == 3);
  }
  CHECK(shared.use_count() == 1);
}

// Go's test/chan/nonblock.go: non-blocking operations on every kind of channel.
TEST_CASE("try_send and try_recv never block: the nonblocking matrix") {
  SUBCASE("unbuffered, nobody waiting") {
    leash::channel<int> ch;
    CHECK(ch.try_recv().status == channel_status::empty);
    CHECK(ch.try_send(1) == channel_status::full);
  }
  SUBCASE("unbuffered, a receiver waiting") {
    leash::channel<int> ch;
    leash::task<std::optional<int>> got;
    leash::run_nursery([&](leash::nursery& n) {
      got = n.spawn([&] { return ch.recv(); });
      wait_blocked("channel<int>::recv");
      CHECK(ch.try_send(5) == channel_status::ok);
    });
    CHECK(got.get() == 5);
  }
  SUBCASE("unbuffered, a sender waiting") {
    leash::channel<int> ch;
    leash::run_nursery([&](leash::nursery& n) {
      n.spawn([&] { ch.send(6); });
      wait_blocked("channel<int>::send");
      auto r = ch.try_recv();
      CHECK(r.status == channel_status::ok);
      CHECK(r.value == 6);
    });
  }
  SUBCASE("buffered: empty, partly full, full") {
    leash::channel<int> ch(2);
    CHECK(ch.try_recv().status == channel_status::empty);
    CHECK(ch.try_send(1) == channel_status::ok);
    CHECK(ch.try_send(2) == channel_status::ok);
    int three = 3;
    CHECK(ch.try_send(std::move(three)) == channel_status::full);
    auto r = ch.try_recv();
    CHECK(static_cast<bool>(r));
    CHECK(r.value == 1);
  }
  SUBCASE("closed") {
    leash::channel<int> ch(1);
    ch.send(1);
    ch.close();
    CHECK(ch.try_send(2) == channel_status::closed);
    CHECK(ch.try_recv().value == 1);
    CHECK(ch.try_recv().status == channel_status::closed);
  }
}

TEST_CASE("try_recv_for and try_send_for time out, and succeed when a partner comes") {
  leash::channel<int> ch;
  const auto t0 = std::chrono::steady_clock::now();
  auto r = ch.try_recv_for(20ms);
  CHECK(r.status == channel_status::timeout);
  CHECK(std::chrono::steady_clock::now() - t0 >= 20ms);
  int v = 1;
  CHECK(ch.try_send_for(std::move(v), 1ms) == channel_status::timeout);
  CHECK(ch.try_recv_for(0ms).status == channel_status::timeout);
  leash::run_nursery([&](leash::nursery& n) {
    n.spawn([&] { ch.send(8); });
    auto got = ch.try_recv_for(1h);
    CHECK(got.status == channel_status::ok);
    CHECK(got.value == 8);
  });
  ch.close();
  CHECK(ch.try_recv_for(1h).status == channel_status::closed);
  int w = 2;
  CHECK(ch.try_send_for(std::move(w), 1h) == channel_status::closed);
}

TEST_CASE("a blocked recv is cancelled by its nursery, a blocked send by an explicit token") {
  leash::channel<int> ch;
  std::atomic<int> cancelled{0};
  {
    leash::nursery n;
    n.spawn([&] {
      try {
        ch.recv();
      } catch (const leash::cancelled&) {
        ++cancelled;
        throw;
      }
    });
    wait_blocked("channel<int>::recv");
    n.cancel();
    n.wait();
  }
  CHECK(cancelled == 1);

  std::stop_source source;
  leash::run_nursery([&](leash::nursery& m) {
    m.spawn([&] {
      CHECK_THROWS_AS(ch.send(1, source.get_token()), leash::cancelled);
      CHECK_THROWS_AS(ch.recv(source.get_token()), leash::cancelled);
    });
    wait_blocked("channel<int>::send");
    source.request_stop();
  });
}

TEST_CASE("a deadline ends a blocked recv with deadline_exceeded") {
  leash::channel<int> ch;
  CHECK_THROWS_AS(leash::fail_after(20ms, [&] { return ch.recv(); }), leash::deadline_exceeded);
  CHECK(leash::move_on_after(1ms, [&] { ch.send(1); }) == false);
}

TEST_CASE("readiness wins over a stopped token") {
  leash::channel<int> ch(1);
  ch.send(3);
  leash::cancel_scope scope;
  scope.cancel();
  CHECK(ch.recv() == 3);  // a value was ready: no cancelled
  ch.send(4);             // room was ready
  CHECK_THROWS_AS(ch.send(5), leash::cancelled);
  ch.close();
  CHECK(ch.recv() == 4);
  CHECK(ch.recv() == std::nullopt);  // closed is ready too
}

TEST_CASE("range-for ends when the channel is closed and drained") {
  leash::channel<int> ch(8);
  for (int i = 1; i <= 5; ++i)
    ch.send(i);
  ch.close();
  int sum = 0;
  for (int v : ch)
    sum += v;
  CHECK(sum == 15);
}

// Go's test/chan/sieve1.go: a chain of filter tasks connected by channels.
TEST_CASE("a prime sieve of chained channels finds the first 100 primes") {
  std::vector<int> primes;
  leash::run_nursery([&](leash::nursery& n) {
    auto source = std::make_shared<leash::channel<int>>();
    n.spawn([source] {
      for (int i = 2;; ++i)
        source->send(i);  // until the nursery is cancelled
    });
    std::vector<std::shared_ptr<leash::channel<int>>> chain{source};
    for (int k = 0; k < 100; ++k) {
      auto in = chain.back();
      const int prime = *in->recv();
      primes.push_back(prime);
      auto out = std::make_shared<leash::channel<int>>();
      n.spawn([in, out, prime] {
        for (;;) {
          const int v = *in->recv();
          if (v % prime != 0) out->send(v);
        }
      });
      chain.push_back(out);
    }
    n.cancel();  // the filters end quietly, blocked in send or recv
  });
  REQUIRE(primes.size() == 100);
  CHECK(primes.front() == 2);
  CHECK(primes[24] == 97);
  CHECK(primes.back() == 541);
}

namespace {

// Moves `total` distinct values from P producers to C consumers through one
// channel and returns every value received (sorted).
std::vector<long> mpmc(std::size_t capacity, int producers, int consumers, long total) {
  leash::channel<long> ch(capacity);
  std::mutex mutex;
  std::vector<long> received;
  received.reserve(static_cast<std::size_t>(total));
  leash::run_nursery([&](leash::nursery& n) {
    leash::nursery senders;
    for (int p = 0; p < producers; ++p) {
      senders.spawn([&, p] {
        for (long v = p; v < total; v += producers)
          ch.send(v);
      });
    }
    for (int c = 0; c < consumers; ++c) {
      n.spawn([&] {
        std::vector<long> mine;
        for (long v : ch)
          mine.push_back(v);
        std::lock_guard lock(mutex);
        received.insert(received.end(), mine.begin(), mine.end());
      });
    }
    senders.wait();
    ch.close();
  });
  std::sort(received.begin(), received.end());
  return received;
}

}  // namespace

TEST_CASE("stress: 8 producers x 8 consumers lose and duplicate nothing, capacities 0, 1, 1024") {
  const long total = leash_test::scaled(1'000'000);
  for (std::size_t capacity : {0, 1, 1024}) {
    CAPTURE(capacity);
    const std::vector<long> got = mpmc(capacity, 8, 8, capacity == 0 ? total / 4 : total);
    std::vector<long> expected(got.size());
    std::iota(expected.begin(), expected.end(), 0L);
    CHECK(got.size() == static_cast<std::size_t>(capacity == 0 ? total / 4 : total));
    CHECK(got == expected);
  }
}

TEST_CASE("stress: close and cancel racing the traffic lose and duplicate nothing") {
  const int rounds = static_cast<int>(leash_test::scaled(200));
  for (int round = 0; round < rounds; ++round) {
    const std::size_t capacity = static_cast<std::size_t>(round % 3 == 2 ? 16 : round % 3);
    leash::channel<long> ch(capacity);
    std::mutex mutex;
    std::vector<long> sent, received;
    leash::run_nursery([&](leash::nursery& n) {
      for (int p = 0; p < 4; ++p) {
        n.spawn([&, p] {
          std::vector<long> mine;
          try {
            for (long v = p;; v += 4) {
              ch.send(v);
              mine.push_back(v);
            }
          } catch (const leash::channel_closed&) {
          }
          std::lock_guard lock(mutex);
          sent.insert(sent.end(), mine.begin(), mine.end());
        });
      }
      leash::nursery consumers;  // a child of n: cancelling it leaves the producers alone
      for (int c = 0; c < 4; ++c) {
        consumers.spawn([&] {
          std::vector<long> mine;
          try {
            while (auto v = ch.recv())
              mine.push_back(*v);
          } catch (const leash::cancelled&) {
          }
          std::lock_guard lock(mutex);
          received.insert(received.end(), mine.begin(), mine.end());
        });
      }
      // Let traffic flow for a while (measured in values, not time).
      for (int i = 0; i < 200 + round * 7; ++i) {
        if (auto v = ch.recv()) {
          std::lock_guard lock(mutex);
          received.push_back(*v);
        }
      }
      if (round % 2 == 0) consumers.cancel();  // consumers stop mid-traffic
      ch.close();                              // producers stop
      consumers.wait();
    });
    while (auto v = ch.try_recv().value)
      received.push_back(*v);  // what was buffered when the consumers stopped
    std::sort(sent.begin(), sent.end());
    std::sort(received.begin(), received.end());
    REQUIRE(sent == received);
  }
}
