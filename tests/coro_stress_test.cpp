// Stress: many producers and consumers, half thread tasks and half coroutine
// tasks, on one channel at capacities 0, 1 and 1024, with close and cancel
// racing the traffic. Whatever the interleaving, the values received are
// exactly the values whose send succeeded: none lost, none duplicated.
#include <doctest/doctest.h>

#include <algorithm>
#include <atomic>
#include <cstddef>
#include <leash.hpp>
#include <vector>

#include "support/sanitizer.hpp"

using leash::coro;

namespace {

constexpr int producers = 8;  // half threads, half coroutine tasks
constexpr int consumers = 8;  // likewise
// Values per producer: a million distinct values per run (320 000 under a
// sanitizer, still millions over the nine runs).
constexpr int per_producer = leash_test::under_any_sanitizer ? 40000 : 125000;

using values = std::vector<int>;

// Each producer sends its own range; returns what it sent successfully.
values send_thread(leash::channel<int>& ch, int first) {
  values sent;
  try {
    for (int i = first; i < first + per_producer; ++i) {
      ch.send(i);
      sent.push_back(i);
    }
  } catch (const leash::cancelled&) {
  }
  return sent;
}
coro<values> send_coro(leash::channel<int>& ch, int first) {
  values sent;
  try {
    for (int i = first; i < first + per_producer; ++i) {
      co_await ch.async_send(i);
      sent.push_back(i);
    }
  } catch (const leash::cancelled&) {
  }
  co_return sent;
}

// Each consumer receives until the end or a stop; after `cancel_after`
// values received in total (by all consumers) one of them cancels the nursery.
struct shared_count {
  std::atomic<long> received{0};
  long cancel_after;
  leash::nursery* nursery;
  void note() {
    if (received.fetch_add(1, std::memory_order_relaxed) + 1 == cancel_after) nursery->cancel();
  }
};
values recv_thread(leash::channel<int>& ch, shared_count& count) {
  values got;
  try {
    while (auto v = ch.recv()) {
      got.push_back(*v);
      count.note();
    }
  } catch (const leash::cancelled&) {
  }
  return got;
}
coro<values> recv_coro(leash::channel<int>& ch, shared_count& count) {
  values got;
  try {
    while (auto v = co_await ch.async_recv()) {
      got.push_back(*v);
      count.note();
    }
  } catch (const leash::cancelled&) {
  }
  co_return got;
}

// A task's values; none when it never ran (spawned after the cancel).
values values_of(leash::task<values>& t) {
  try {
    return t.get();
  } catch (const leash::cancelled&) {
    return {};
  }
}

// One run: every party in one nursery; the producers' nursery closes the
// channel when they all ended. cancel_after < 0: no cancel.
void run(std::size_t capacity, long cancel_after) {
  leash::channel<int> ch(capacity);
  std::vector<leash::task<values>> sends, recvs;
  {
    leash::nursery n;
    shared_count count{{}, cancel_after, &n};
    for (int c = 0; c < consumers; ++c) {
      if (c % 2 == 0) {
        recvs.push_back(n.spawn([&] { return recv_thread(ch, count); }));
      } else {
        recvs.push_back(
            n.spawn([&]() -> coro<values> { co_return co_await recv_coro(ch, count); }));
      }
    }
    n.spawn([&] {
      leash::run_nursery([&](leash::nursery& p) {
        for (int k = 0; k < producers; ++k) {
          const int first = k * per_producer;
          if (k % 2 == 0) {
            sends.push_back(p.spawn([&ch, first] { return send_thread(ch, first); }));
          } else {
            sends.push_back(p.spawn(
                [&ch, first]() -> coro<values> { co_return co_await send_coro(ch, first); }));
          }
        }
      });
      ch.close();
    });
    n.wait();
  }
  values sent_all, received_all;
  for (auto& t : sends) {
    const values v = values_of(t);
    sent_all.insert(sent_all.end(), v.begin(), v.end());
  }
  for (auto& t : recvs) {
    const values v = values_of(t);
    received_all.insert(received_all.end(), v.begin(), v.end());
  }
  while (auto v = ch.try_recv())  // left in the buffer by a cancel
    received_all.push_back(*v.value);
  std::sort(sent_all.begin(), sent_all.end());
  std::sort(received_all.begin(), received_all.end());
  CHECK(received_all.size() == sent_all.size());
  CHECK(std::adjacent_find(received_all.begin(), received_all.end()) == received_all.end());
  CHECK(received_all == sent_all);
  if (cancel_after < 0) CHECK(sent_all.size() == std::size_t{producers} * per_producer);
}

}  // namespace

TEST_CASE("8x8 mixed MPMC: every value sent is received exactly once, closed at the end") {
  for (std::size_t capacity : {0u, 1u, 1024u}) {
    CAPTURE(capacity);
    run(capacity, -1);
  }
}

TEST_CASE("8x8 mixed MPMC: a cancel racing the traffic loses no value and duplicates none") {
  const long total = long{producers} * per_producer;
  for (std::size_t capacity : {0u, 1u, 1024u}) {
    for (long cancel_after : {total / 10, total / 2}) {
      CAPTURE(capacity);
      CAPTURE(cancel_after);
      run(capacity, cancel_after);
    }
  }
}
