// One trace span per task, from leash's observer events, with no tracing
// library: each finished task prints a line with its name, id, parent id,
// start (since the trace began), duration, time blocked and outcome. A real
// exporter would hand the same fields to its span API (OpenTelemetry:
// StartSpan at on_start, AddEvent at on_cancel, End at on_finish).
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <leash.hpp>
#include <map>
#include <mutex>
#include <string>

using namespace std::chrono_literals;
using clock_type = std::chrono::steady_clock;

class span_tracer final : public leash::observer {
 public:
  void on_start(const leash::task_event& e) override {
    std::lock_guard lock(mutex_);
    span& s = spans_[e.id];
    s.name = e.name;
    s.parent = e.parent_id;
    s.start = clock_type::now();
  }
  void on_block(const leash::task_event& e) override {
    std::lock_guard lock(mutex_);
    span& s = spans_[e.id];
    if (s.depth++ == 0) s.blocked_since = clock_type::now();
  }
  void on_unblock(const leash::task_event& e) override {
    std::lock_guard lock(mutex_);
    span& s = spans_[e.id];
    if (--s.depth == 0) s.blocked += clock_type::now() - s.blocked_since;
  }
  void on_cancel(const leash::task_event& e) override {
    std::lock_guard lock(mutex_);
    spans_[e.id].cancel_reason = leash::to_string(e.cancel->origin);
  }
  void on_finish(const leash::task_event& e) override {
    std::lock_guard lock(mutex_);
    const auto it = spans_.find(e.id);
    if (it == spans_.end()) return;  // never started: spawned into a cancelled nursery
    const span& s = it->second;
    std::printf(
        "span %-10s id=%-3llu parent=%-3llu start=%5.1fms duration=%5.1fms "
        "blocked=%5.1fms outcome=%s%s%s\n",
        s.name.c_str(), static_cast<unsigned long long>(e.id),
        static_cast<unsigned long long>(s.parent), ms(s.start - began_),
        ms(clock_type::now() - s.start), ms(s.blocked), leash::to_string(e.outcome),
        s.cancel_reason.empty() ? "" : " after cancel: ", s.cancel_reason.c_str());
    spans_.erase(it);
    ++finished_;
  }

  int finished() const {
    std::lock_guard lock(mutex_);
    return finished_;
  }

 private:
  struct span {
    std::string name;
    std::uint64_t parent = 0;
    clock_type::time_point start, blocked_since;
    clock_type::duration blocked{};
    int depth = 0;  // blocks nest: a wait inside a wait
    std::string cancel_reason;
  };

  static double ms(clock_type::duration d) {
    return std::chrono::duration<double, std::milli>(d).count();
  }

  mutable std::mutex mutex_;
  std::map<std::uint64_t, span> spans_;
  clock_type::time_point began_ = clock_type::now();
  int finished_ = 0;
};

leash::coro<int> sum(leash::channel<int>& in) {
  int total = 0;
  while (auto v = co_await in.async_recv())
    total += *v;
  co_return total;
}

int main() {
  span_tracer tracer;
  leash::runtime::set_observer(&tracer);
  int total = 0;
  leash::run_nursery({.name = "pipeline"}, [&](leash::nursery& n) {
    leash::channel<int> numbers;
    n.spawn("producer", [&] {
      for (int i = 1; i <= 5; ++i) {
        leash::this_task::sleep_for(2ms);
        numbers.send(i);
      }
      numbers.close();
    });
    auto summed = n.spawn("summer", [&] { return sum(numbers); });  // a coroutine task
    n.spawn("watchdog", [&] {
      // Spawns a helper and waits for it; both are cancelled with the nursery.
      leash::run_nursery([](leash::nursery& inner) {
        inner.spawn("helper", [] { leash::this_task::sleep_for(1h); });
      });
    });
    total = summed.get();
    n.cancel("pipeline done");
  });
  leash::runtime::set_observer(nullptr);  // the tracer may be destroyed from here on
  std::printf("sum %d, %d spans\n", total, tracer.finished());
  return total == 15 && tracer.finished() == 4 ? 0 : 1;
}
