// bench_channels: channel throughput beside Go (tests/bench/go/channels.go)
// and a plain std::mutex + std::condition_variable bounded queue.
//
//   chan_pingpong     unbuffered, two tasks, round trips     ns per round trip
//   chan_spsc         cap 1024, one producer, one consumer   ns per item
//   chan_mpsc         cap 1024, 4 producers, 1 consumer      ns per item
//   chan_mpmc_cN      4 producers x 4 consumers, cap N       ns per item
//   chan_select2      2 producers into cap-1024 channels, one consumer selecting over both
//   atomic_wait_floor (in chan_pingpong) two threads alternating through std::atomic
//                     wait/notify: what a hand-off between OS threads costs the kernel
//   busy_wait_floor   (in chan_pingpong, unpinned) the same alternation pausing on
//                     the word: what moving one cache line between CPUs costs
//
// Rows "leash" and "mutex_cv" run each party on its own thread; rows
// "leash_coro" run each party as a coroutine task of one nursery (co_await
// async_send / async_recv / async_select), on the scheduler's workers.
//
// Every worker is started and has moved a few values before the clock starts.
// Prints wall ns and CPU (user+sys of the process) ns per operation, median of
// -runs runs. Flags: -n items (200000), -runs (5), -pinned 1 (only tags the
// scenario names: run.sh runs the binary under `taskset -c 0` for that).
#include <atomic>
#include <condition_variable>
#include <functional>
#include <latch>
#include <leash.hpp>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "bench_util.hpp"

namespace {

using bench::report;
using bench::result;

// The baseline: what one writes with the standard library alone.
template <class T>
class mutex_queue {
 public:
  explicit mutex_queue(std::size_t capacity) : capacity_(capacity == 0 ? 1 : capacity) {
    ring_.resize(capacity_);
  }
  void send(T v) {
    std::unique_lock lock(mutex_);
    not_full_.wait(lock, [&] { return count_ < capacity_; });
    ring_[(head_ + count_++) % capacity_] = std::move(v);
    not_empty_.notify_one();
  }
  std::optional<T> recv() {
    std::unique_lock lock(mutex_);
    not_empty_.wait(lock, [&] { return count_ > 0; });
    T v = std::move(ring_[head_]);
    head_ = (head_ + 1) % capacity_;
    --count_;
    not_full_.notify_one();
    return v;
  }

 private:
  std::size_t capacity_;
  std::vector<T> ring_;
  std::size_t head_ = 0, count_ = 0;
  std::mutex mutex_;
  std::condition_variable not_empty_, not_full_;
};

// Runs `workers` bodies on their own threads: each warms up, then all wait for
// the start signal; the clock runs from the signal until every body returned.
result timed(const std::vector<std::function<void()>>& warm,
             const std::vector<std::function<void()>>& work, long ops) {
  std::latch ready(static_cast<std::ptrdiff_t>(work.size()) + 1);
  std::latch go(1);
  std::vector<std::thread> threads;
  for (std::size_t i = 0; i < work.size(); ++i) {
    threads.emplace_back([&, i] {
      if (warm[i]) warm[i]();
      ready.count_down();
      go.wait();
      work[i]();
    });
  }
  ready.arrive_and_wait();
  const double c0 = bench::cpu_seconds();
  const auto t0 = std::chrono::steady_clock::now();
  go.count_down();
  for (auto& t : threads)
    t.join();
  const double wall = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  return {wall * 1e9 / static_cast<double>(ops),
          (bench::cpu_seconds() - c0) * 1e9 / static_cast<double>(ops)};
}

constexpr long warm_items = 1000;

// P producers and C consumers moving n items through one queue of type Q.
template <class Q>
result producers_consumers(std::size_t capacity, int producers, int consumers, long n) {
  Q q(capacity);
  std::vector<std::function<void()>> warm, work;
  const long per_producer = n / producers, per_consumer = n / consumers;
  for (int p = 0; p < producers; ++p) {
    warm.push_back([&] {
      for (long i = 0; i < warm_items / producers; ++i)
        q.send(i);
    });
    work.push_back([&, per_producer] {
      for (long i = 0; i < per_producer; ++i)
        q.send(i);
    });
  }
  for (int c = 0; c < consumers; ++c) {
    warm.push_back([&] {
      for (long i = 0; i < warm_items / consumers; ++i)
        q.recv();
    });
    work.push_back([&, per_consumer] {
      for (long i = 0; i < per_consumer; ++i)
        q.recv();
    });
  }
  return timed(warm, work, per_producer * producers);
}

template <class Q>
result pingpong(long n) {
  Q ping(0), pong(0);
  auto a = [&](long k) {
    for (long i = 0; i < k; ++i) {
      ping.send(i);
      pong.recv();
    }
  };
  auto b = [&](long k) {
    for (long i = 0; i < k; ++i)
      pong.send(*ping.recv());
  };
  return timed({[&] { a(warm_items); }, [&] { b(warm_items); }}, {[&] { a(n); }, [&] { b(n); }}, n);
}

// The kernel's floor for a hand-off between OS threads: two threads bounce a
// turn counter through std::atomic wait/notify (a futex on Linux; libstdc++
// spins briefly first). Pinned to one CPU, every hop is a context switch,
// which any OS-thread channel pays and goroutines do not. With `busy_wait`,
// the hardware's floor instead: the same turns taken by pausing on the word,
// no kernel; all that is left is the word's cache line moving between the two
// CPUs and back, which any channel between two running threads pays too (on
// the development VM it moves between 30 and 500 ns per round trip with where
// the hypervisor runs the two vCPUs, hence the row in every run).
result turn_pingpong(long n, bool busy_wait) {
  std::atomic<long> turn{0};
  auto player = [&](long first, long k) {
    for (long i = 0; i < k; ++i) {
      const long mine = first + 2 * i;
      for (long t = turn.load(); t != mine; t = turn.load()) {
        if (busy_wait) {
          leash::detail::cpu_relax();
        } else {
          turn.wait(t);
        }
      }
      turn.store(mine + 1);
      if (!busy_wait) turn.notify_one();
    }
  };
  // Warm-up and work continue one sequence of turns: 2 * warm_items first.
  return timed({[&] { player(0, warm_items); }, [&] { player(1, warm_items); }},
               {[&] { player(2 * warm_items, n); }, [&] { player(2 * warm_items + 1, n); }}, n);
}

// The same scenarios between coroutine tasks. A party is a warm-up and a work
// coro; both are made by the caller's factories, which outlive the run.
struct coro_party {
  std::function<leash::coro<void>()> warm, work;
};

// One party as a coroutine task: warms up, counts itself ready, waits for the
// start (the close of `start`), then works.
leash::coro<void> run_party(const coro_party& p, std::atomic<long>& ready,
                            leash::channel<int>& start) {
  co_await p.warm();
  ready.fetch_add(1);
  (void)co_await start.async_recv();
  co_await p.work();
}

// Runs the parties as coroutine tasks of one nursery; the clock runs from the
// start signal until the nursery joined every party.
result timed_coro(const std::vector<coro_party>& parties, long ops) {
  leash::channel<int> start(0);
  std::atomic<long> ready{0};
  leash::nursery nursery;
  for (const coro_party& p : parties)
    nursery.spawn([&ready, &start, party = &p] { return run_party(*party, ready, start); });
  while (ready.load() < static_cast<long>(parties.size()))
    std::this_thread::yield();
  const double c0 = bench::cpu_seconds();
  const auto t0 = std::chrono::steady_clock::now();
  start.close();
  nursery.wait();
  const double wall = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  return {wall * 1e9 / static_cast<double>(ops),
          (bench::cpu_seconds() - c0) * 1e9 / static_cast<double>(ops)};
}

leash::coro<void> send_n(leash::channel<long>& ch, long k) {
  for (long i = 0; i < k; ++i)
    co_await ch.async_send(i);
}

leash::coro<void> recv_n(leash::channel<long>& ch, long k) {
  for (long i = 0; i < k; ++i)
    (void)co_await ch.async_recv();
}

result coro_producers_consumers(std::size_t capacity, int producers, int consumers, long n) {
  leash::channel<long> ch(capacity);
  const long per_producer = n / producers, per_consumer = n / consumers;
  std::vector<coro_party> parties;
  for (int p = 0; p < producers; ++p) {
    parties.push_back({[&] { return send_n(ch, warm_items / producers); },
                       [&, per_producer] { return send_n(ch, per_producer); }});
  }
  for (int c = 0; c < consumers; ++c) {
    parties.push_back({[&] { return recv_n(ch, warm_items / consumers); },
                       [&, per_consumer] { return recv_n(ch, per_consumer); }});
  }
  return timed_coro(parties, per_producer * producers);
}

leash::coro<void> ping_side(leash::channel<long>& ping, leash::channel<long>& pong, long k) {
  for (long i = 0; i < k; ++i) {
    co_await ping.async_send(i);
    (void)co_await pong.async_recv();
  }
}

leash::coro<void> pong_side(leash::channel<long>& ping, leash::channel<long>& pong, long k) {
  for (long i = 0; i < k; ++i) {
    std::optional<long> v = co_await ping.async_recv();
    co_await pong.async_send(*v);
  }
}

result coro_pingpong(long n) {
  leash::channel<long> ping(0), pong(0);
  return timed_coro({{[&] { return ping_side(ping, pong, warm_items); },
                      [&, n] { return ping_side(ping, pong, n); }},
                     {[&] { return pong_side(ping, pong, warm_items); },
                      [&, n] { return pong_side(ping, pong, n); }}},
                    n);
}

leash::coro<void> select_n(leash::channel<long>& a, leash::channel<long>& b, long k) {
  long sum = 0;
  auto take = [&sum](std::optional<long> v) { sum += *v; };
  for (long i = 0; i < k; ++i)
    co_await leash::async_select(leash::on_recv(a, take), leash::on_recv(b, take));
}

result coro_select2(long n) {
  leash::channel<long> a(1024), b(1024);
  return timed_coro(
      {{[&] { return send_n(a, warm_items); }, [&, n] { return send_n(a, n / 2); }},
       {[&] { return send_n(b, warm_items); }, [&, n] { return send_n(b, n / 2); }},
       {[&] { return select_n(a, b, 2 * warm_items); }, [&, n] { return select_n(a, b, n); }}},
      n);
}

result select2(long n) {
  leash::channel<long> a(1024), b(1024);
  auto produce = [](leash::channel<long>& ch, long k) {
    for (long i = 0; i < k; ++i)
      ch.send(i);
  };
  auto consume = [&](long k) {
    long sum = 0;
    auto take = [&](std::optional<long> v) { sum += *v; };
    for (long i = 0; i < k; ++i)
      leash::select(leash::on_recv(a, take), leash::on_recv(b, take));
  };
  return timed({[&] { produce(a, warm_items); }, [&] { produce(b, warm_items); },
                [&] { consume(2 * warm_items); }},
               {[&] { produce(a, n / 2); }, [&] { produce(b, n / 2); }, [&] { consume(n); }}, n);
}

}  // namespace

int main(int argc, char** argv) {
  const long n = bench::flag(argc, argv, "-n", 200'000);
  const long runs = bench::flag(argc, argv, "-runs", 5);
  const std::string tag = bench::flag(argc, argv, "-pinned", 0) != 0 ? "_pinned" : "";
  using leash_q = leash::channel<long>;
  using std_q = mutex_queue<long>;

  report("chan_pingpong" + tag, "leash", runs, [&] { return pingpong<leash_q>(n / 4); });
  report("chan_pingpong" + tag, "leash_coro", runs, [&] { return coro_pingpong(n / 4); });
  report("chan_pingpong" + tag, "mutex_cv", runs, [&] { return pingpong<std_q>(n / 40); });
  report("chan_pingpong" + tag, "atomic_wait_floor", runs,
         [&] { return turn_pingpong(n / 40, false); });
  if (tag.empty()) {  // pinned, a busy wait only ends when the scheduler preempts it
    report("chan_pingpong" + tag, "busy_wait_floor", runs, [&] { return turn_pingpong(n, true); });
  }
  report("chan_spsc" + tag, "leash", runs,
         [&] { return producers_consumers<leash_q>(1024, 1, 1, n); });
  report("chan_spsc" + tag, "leash_coro", runs,
         [&] { return coro_producers_consumers(1024, 1, 1, n); });
  report("chan_spsc" + tag, "mutex_cv", runs,
         [&] { return producers_consumers<std_q>(1024, 1, 1, n); });
  report("chan_mpsc" + tag, "leash", runs,
         [&] { return producers_consumers<leash_q>(1024, 4, 1, n); });
  report("chan_mpsc" + tag, "leash_coro", runs,
         [&] { return coro_producers_consumers(1024, 4, 1, n); });
  report("chan_mpsc" + tag, "mutex_cv", runs,
         [&] { return producers_consumers<std_q>(1024, 4, 1, n); });
  for (std::size_t cap : {0, 1, 1024}) {
    const std::string name = "chan_mpmc_c" + std::to_string(cap) + tag;
    report(name, "leash", runs, [&] { return producers_consumers<leash_q>(cap, 4, 4, n); });
    report(name, "leash_coro", runs, [&] { return coro_producers_consumers(cap, 4, 4, n); });
    if (cap != 0) {
      report(name, "mutex_cv", runs, [&] { return producers_consumers<std_q>(cap, 4, 4, n / 4); });
    }
  }
  report("chan_select2" + tag, "leash", runs, [&] { return select2(n); });
  report("chan_select2" + tag, "leash_coro", runs, [&] { return coro_select2(n); });
  return 0;
}
