// bench_deadline_scope: create and destroy a scope with a 250 ms timeout.
//
//   leash                      leash::cancel_scope scope(250ms)   (Go: context.WithTimeout +
//   cancel) stop_source_callback_floor std::stop_source + a linked std::stop_callback, no timer
//
// Flags: -iters (1000000), -runs (5).
#include <chrono>
#include <leash.hpp>
#include <stop_token>
#include <vector>

#include "bench_util.hpp"

using namespace std::chrono_literals;

int main(int argc, char** argv) {
  const long iters = bench::flag(argc, argv, "-iters", 1'000'000);
  const long runs = bench::flag(argc, argv, "-runs", 5);

  leash::cancel_scope parent;  // like Go's, the scope has a live parent to link to
  std::vector<double> per_op;
  for (long r = 0; r < runs + 1; ++r) {
    const double s = bench::seconds([&] {
      for (long i = 0; i < iters; ++i) {
        leash::cancel_scope scope(250ms);
      }
    });
    if (r > 0) per_op.push_back(s * 1e9 / iters);  // the first run warms up
  }
  std::printf("BENCH deadline_scope leash ns_per_op=%.1f runs=%ld pending_timers_after=%zu\n",
              bench::median(per_op), runs, leash::runtime::stats().pending_timers);

  std::stop_source root;
  std::vector<double> floor;
  for (long r = 0; r < runs; ++r) {
    const double s = bench::seconds([&] {
      for (long i = 0; i < iters; ++i) {
        std::stop_source child;
        std::stop_callback link(root.get_token(), [&child] { child.request_stop(); });
      }
    });
    floor.push_back(s * 1e9 / iters);
  }
  std::printf("BENCH deadline_scope stop_source_callback_floor ns_per_op=%.1f runs=%ld\n",
              bench::median(floor), runs);
}
