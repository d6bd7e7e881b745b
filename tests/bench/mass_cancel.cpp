// bench_mass_cancel: N tasks blocked in a leash call, then one cancel of their
// nursery; the time from cancel() until wait() returned (every task joined).
//
//   sleep  each task in this_task::sleep_for(1h)     (Go: select on ctx.Done and a 1 h timer)
//   recv   each task in recv() on its own channel    (Go: select on ctx.Done and a channel)
//   leash_coro (sleep only): N coroutine tasks in
//          co_await this_task::async_sleep_for(1h): no thread per task
//   std_thread (the OS floor): N plain threads, each waiting on its own
//          condition variable, woken one after another until all returned
//
// Flags: -n tasks (default: 10000, then 30000), -runs (3). The tasks are counted in before the
// cancel: each bumps a counter right before it blocks, and the cancel waits
// until every task is blocked (leash::live_tasks() reports each one's call).
#include <atomic>
#include <condition_variable>
#include <leash.hpp>
#include <memory>
#include <mutex>
#include <thread>
#include <vector>

#include "bench_util.hpp"

namespace {

// Waits until `n` tasks of the nursery are blocked in a leash call.
void await_blocked(const std::atomic<long>& entered, long n) {
  while (entered.load() < n)
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  for (;;) {
    long blocked = 0;
    for (const leash::live_task& t : leash::live_tasks())
      blocked += t.blocked_in != nullptr;
    if (blocked >= n) return;
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
}

// Seconds from cancel() to the end of wait(), for n tasks blocked by `block`.
template <class Block>
double cancel_seconds(long n, Block block) {
  std::atomic<long> entered{0};
  leash::nursery nursery;
  for (long i = 0; i < n; ++i) {
    nursery.spawn([&entered, &block, i] {
      entered.fetch_add(1);
      block(i);
    });
  }
  await_blocked(entered, n);
  return bench::seconds([&] {
    nursery.cancel();
    nursery.wait();
  });
}

template <class Block>
void report(const char* scenario, long n, long runs, Block block) {
  std::vector<double> took;
  double cpu = 0;
  long peak_threads = 0;
  for (long r = 0; r < runs; ++r) {
    const double c0 = bench::cpu_seconds();
    took.push_back(cancel_seconds(n, block));
    cpu += bench::cpu_seconds() - c0;
    peak_threads = static_cast<long>(leash::runtime::stats().peak_threads);
  }
  std::printf("BENCH %s leash ms=%.1f cpu_ms_per_run=%.1f tasks=%ld runs=%ld peak_threads=%ld\n",
              scenario, bench::median(took) * 1e3, cpu * 1e3 / runs, n, runs, peak_threads);
}

// The same cancel for coroutine tasks suspended in async_sleep_for: they
// hold no thread, so waking one is a queue push, not a futex wake.
double coro_cancel_seconds(long n) {
  std::atomic<long> entered{0};
  leash::nursery nursery;
  for (long i = 0; i < n; ++i) {
    nursery.spawn([&entered]() -> leash::coro<void> {
      entered.fetch_add(1);
      co_await leash::this_task::async_sleep_for(std::chrono::hours(1));
    });
  }
  await_blocked(entered, n);
  return bench::seconds([&] {
    nursery.cancel();
    nursery.wait();
  });
}

// The floor any thread-per-task design pays: waking n parked OS threads.
double std_thread_seconds(long n) {
  struct slot {
    std::mutex mutex;
    std::condition_variable cv;
    bool go = false;
  };
  std::vector<std::unique_ptr<slot>> slots;
  for (long i = 0; i < n; ++i)
    slots.push_back(std::make_unique<slot>());
  std::atomic<long> waiting{0};
  std::atomic<long> woken{0};
  std::vector<std::thread> threads;
  for (long i = 0; i < n; ++i) {
    threads.emplace_back([&, i] {
      std::unique_lock lock(slots[i]->mutex);
      waiting.fetch_add(1);
      slots[i]->cv.wait(lock, [&] { return slots[i]->go; });
      woken.fetch_add(1);
    });
  }
  while (waiting.load() < n)
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  const double took = bench::seconds([&] {
    for (auto& s : slots) {
      {
        std::lock_guard lock(s->mutex);
        s->go = true;
      }
      s->cv.notify_one();
    }
    while (woken.load() < n)
      std::this_thread::yield();
  });
  for (auto& t : threads)
    t.join();
  return took;
}

// Every scenario at one size.
void run_size(long n, long runs) {
  // 30 000 threads is above the default cap (90 % of the OS limit): the
  // benchmark asks for what the OS allows.
  if (leash::runtime::stats().max_threads < static_cast<std::size_t>(n) + 64) {
    leash::runtime::configure({.max_threads = static_cast<std::size_t>(n) + 64});
  }
  char sleep_name[64], recv_name[64];
  std::snprintf(sleep_name, sizeof sleep_name, "mass_cancel_sleep_%ldk", n / 1000);
  std::snprintf(recv_name, sizeof recv_name, "mass_cancel_recv_%ldk", n / 1000);
  report(sleep_name, n, runs, [](long) { leash::this_task::sleep_for(std::chrono::hours(1)); });
  std::vector<std::unique_ptr<leash::channel<int>>> channels;
  for (long i = 0; i < n; ++i)
    channels.push_back(std::make_unique<leash::channel<int>>(0));
  report(recv_name, n, runs, [&](long i) { (void)channels[i]->recv(); });
  std::vector<double> coro_took;
  double coro_cpu = 0;
  for (long r = 0; r < runs; ++r) {
    const double c0 = bench::cpu_seconds();
    coro_took.push_back(coro_cancel_seconds(n));
    coro_cpu += bench::cpu_seconds() - c0;
  }
  std::printf("BENCH %s leash_coro ms=%.1f cpu_ms_per_run=%.1f tasks=%ld runs=%ld\n", sleep_name,
              bench::median(coro_took) * 1e3, coro_cpu * 1e3 / runs, n, runs);
  // The floor's own threads need the pids leash's lingering threads still hold.
  for (int i = 0; i < 1000 && leash::runtime::stats().threads_alive > 64; ++i)
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  std::vector<double> floor;
  for (long r = 0; r < runs; ++r)
    floor.push_back(std_thread_seconds(n));
  std::printf("BENCH %s std_thread ms=%.1f tasks=%ld runs=%ld\n", sleep_name,
              bench::median(floor) * 1e3, n, runs);
}

}  // namespace

int main(int argc, char** argv) {
  const long n = bench::flag(argc, argv, "-n", 0);
  const long runs = bench::flag(argc, argv, "-runs", 3);
  if (n > 0) {
    run_size(n, runs);
  } else {
    run_size(10'000, runs);
    run_size(30'000, runs);
  }
  return 0;
}
