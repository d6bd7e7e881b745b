// death_cases: behaviours that end (or must not end) a process, run in a child
// by tests/support/child_process.hpp.
//
//   death_cases unobserved      a failure nobody observed: default handler terminates
//   death_cases out_of_order    a cancel scope destroyed out of order: terminates
//   death_cases static_exit     leash used in main and in a static destructor: exits 0
//   death_cases unclosed_abort  a must_close handle dropped open under the abort policy
//   death_cases unclosed_report the default policy: stderr once per site, exits 0
//   death_cases unclosed_ignore the ignore policy: closed, counted, silent, exits 0
//   death_cases ticker_self_destroy  a ticker destroyed from its own callback: terminates
//   death_cases observer_throws an observer callback throws: terminates, naming it
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <leash.hpp>
#include <leash/must_close.hpp>
#include <leash/ticker.hpp>
#include <memory>
#include <optional>
#include <stdexcept>
#include <thread>

using namespace std::chrono_literals;

namespace {

// Constructed before the runtime's first use, so destroyed after the runtime's
// exit guard ran: leash must still work from here.
struct uses_leash_at_exit {
  ~uses_leash_at_exit() {
    const int v = leash::run_nursery([](leash::nursery& n) {
      auto t = n.spawn([] {
        leash::fail_after(1s, [] { leash::this_task::sleep_for(1ms); });
        return 7;
      });
      return t.get();
    });
    std::printf("static destructor ran a nursery: %d\n", v);
    std::fflush(stdout);
  }
} at_exit;

int unobserved() {
  leash::nursery n({.name = "death"});
  n.spawn("boom", [] { throw std::runtime_error("nobody reads this"); });
  return 0;  // ~nursery joins, finds the failure unobserved: terminate
}

int out_of_order() {
  auto outer = std::make_unique<leash::cancel_scope>();
  leash::cancel_scope inner;
  outer.reset();  // outer dies while inner is still the ambient scope
  return 0;
}

int static_exit() {
  leash::runtime::configure({.keep_alive = 60s});  // idle threads would linger a minute
  leash::run_nursery([](leash::nursery& n) {
    for (int i = 0; i < 8; ++i)
      n.spawn([] { leash::this_task::sleep_for(1ms); });
  });
  leash::cancel_scope far_deadline(1h);
  std::printf("main returns with %zu idle threads\n", leash::runtime::stats().threads_idle);
  return 0;
}

struct toy_resource {
  int* closes;
  void close() { ++*closes; }
};

int unclosed_abort() {
  leash::set_unclosed_handler(leash::unclosed_policy::abort);
  int closes = 0;
  { auto h = leash::make_must_close(toy_resource{&closes}); }
  return 0;  // not reached
}

int unclosed_report() {
  int closes = 0;
  for (int i = 0; i < 3; ++i) {
    auto h = leash::make_must_close(toy_resource{&closes});  // one site, three drops
  }
  { auto h = leash::make_must_close(toy_resource{&closes}); }
  std::printf("closed %d\n", closes);
  return 0;
}

int unclosed_ignore() {
  leash::set_unclosed_handler(leash::unclosed_policy::ignore);
  int closes = 0;
  { auto h = leash::make_must_close(toy_resource{&closes}); }
  std::printf("closed %d, dropped %llu\n", closes,
              static_cast<unsigned long long>(leash::must_close_stats().dropped_open));
  return 0;
}

int ticker_self_destroy() {
  std::optional<leash::ticker> t;
  std::atomic<bool> armed{false};
  t.emplace(
      1ms,
      [&] {
        if (armed) t.reset();  // destroys the ticker from its own callback
      },
      leash::ticker_options{.name = "self"});
  armed = true;
  std::this_thread::sleep_for(5s);
  return 0;  // not reached
}

// An observer callback that throws: ends the process, naming the callback.
int observer_throws() {
  struct broken final : leash::observer {
    void on_start(const leash::task_event&) override { throw std::runtime_error("tracer broke"); }
  } o;
  leash::runtime::set_observer(&o);
  leash::run_nursery([](leash::nursery& n) { n.spawn("traced", [] {}); });
  leash::runtime::set_observer(nullptr);
  return 0;  // not reached
}

}  // namespace

int main(int argc, char** argv) {
  if (argc == 2 && std::strcmp(argv[1], "unobserved") == 0) return unobserved();
  if (argc == 2 && std::strcmp(argv[1], "out_of_order") == 0) return out_of_order();
  if (argc == 2 && std::strcmp(argv[1], "static_exit") == 0) return static_exit();
  if (argc == 2 && std::strcmp(argv[1], "unclosed_abort") == 0) return unclosed_abort();
  if (argc == 2 && std::strcmp(argv[1], "unclosed_report") == 0) return unclosed_report();
  if (argc == 2 && std::strcmp(argv[1], "unclosed_ignore") == 0) return unclosed_ignore();
  if (argc == 2 && std::strcmp(argv[1], "ticker_self_destroy") == 0) return ticker_self_destroy();
  if (argc == 2 && std::strcmp(argv[1], "observer_throws") == 0) return observer_throws();
  std::fprintf(stderr,
               "usage: death_cases unobserved|out_of_order|static_exit|unclosed_abort|"
               "unclosed_report|unclosed_ignore|ticker_self_destroy|observer_throws\n");
  return 2;
}
