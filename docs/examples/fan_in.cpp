// Fan-in with select and a timeout: merge two feeds until both are closed,
// noting each 100 ms of silence. A third feed that nobody reads is cancelled
// with the nursery, so nothing is left blocked.
#include <chrono>
#include <cstdio>
#include <leash.hpp>
#include <optional>

using namespace std::chrono_literals;

int main() {
  leash::channel<int> fast, slow, unread;
  int received = 0, silences = 0;
  leash::run_nursery([&](leash::nursery& n) {
    n.spawn("fast", [&] {
      for (int i = 0; i < 10; ++i)
        fast.send(i);
      fast.close();
    });
    n.spawn("slow", [&] {
      for (int i = 0; i < 3; ++i) {
        leash::this_task::sleep_for(150ms);
        slow.send(i);
      }
      slow.close();
    });
    n.spawn("unread", [&] { unread.send(0); });  // blocks until cancelled below
    bool fast_open = true, slow_open = true;
    auto feed = [&received](bool& open) {
      return [&received, &open](std::optional<int> v) {
        if (v) {
          ++received;
        } else {
          open = false;  // closed and drained: stop selecting on it (Go: set it to nil)
        }
      };
    };
    while (fast_open || slow_open) {
      leash::select(leash::on_recv(fast, feed(fast_open)).when(fast_open),
                    leash::on_recv(slow, feed(slow_open)).when(slow_open),
                    leash::on_after(100ms, [&] { ++silences; }));
    }
    n.cancel();  // the unread feed's send ends with cancelled, quietly
  });
  std::printf("received %d values, noticed %s, no task left behind\n", received,
              silences > 0 ? "the silences" : "no silence");
  return received == 13 && silences > 0 ? 0 : 1;
}
