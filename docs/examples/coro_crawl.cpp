// 100 000 concurrent tasks without 100 000 threads: coroutine tasks wait
// (a timer, a channel) as suspended frames on a few worker threads, and the
// nursery owns, cancels and joins them like thread tasks.
#include <cstdio>
#include <leash.hpp>

using namespace std::chrono_literals;

int main() {
  constexpr int pages = 100000;
  leash::channel<int> sizes(1024);
  long total = 0;
  leash::run_nursery({.timeout = 30s, .name = "crawl"}, [&](leash::nursery& n) {
    for (int i = 0; i < pages; ++i) {
      n.spawn([&sizes, i]() -> leash::coro<void> {
        co_await leash::this_task::async_sleep_for(10ms);  // stands in for I/O; cancellable
        co_await sizes.async_send(i % 100);
      });
    }
    n.spawn([&]() -> leash::coro<void> {
      for (int k = 0; k < pages; ++k)
        total += *co_await sizes.async_recv();
    });
  });                                                  // joins all 100 001 tasks
  std::printf("%d pages, %ld bytes\n", pages, total);  // 100000 pages, 4950000 bytes
}
