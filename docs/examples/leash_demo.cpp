// leash-demo: the fan-out of SPEC's table, told step by step.
//
// Three simulated backends answer a query; one hangs. A nursery with a
// deadline collects the two answers, cancels the third, and nothing is left
// running afterwards: the leak check proves it.
#include <chrono>
#include <cstdio>
#include <leash.hpp>
#include <string>
#include <vector>

using namespace std::chrono_literals;
using clock_type = std::chrono::steady_clock;

namespace {

struct backend {
  const char* name;
  std::chrono::milliseconds latency;
};

double ms_since(clock_type::time_point t0) {
  return std::chrono::duration<double, std::milli>(clock_type::now() - t0).count();
}

}  // namespace

int main() {
  leash::leak_check leaks;
  const std::vector<backend> backends = {{"eu-west", 40ms}, {"us-east", 90ms}, {"ap-south", 1h}};
  const auto deadline = 250ms;
  std::printf("leash-demo: fan-out to %zu backends, deadline %lld ms\n\n", backends.size(),
              static_cast<long long>(deadline.count()));
  std::printf("  %-10s %-12s %s\n", "backend", "latency", "outcome");

  const auto t0 = clock_type::now();
  std::vector<leash::task<double>> answers;
  leash::nursery n({.timeout = deadline, .name = "fan-out"});
  for (const auto& b : backends) {
    answers.push_back(n.spawn(b.name, [b, t0] {
      leash::this_task::sleep_for(b.latency);  // a cancellable stand-in for the request
      return ms_since(t0);
    }));
  }
  bool deadline_hit = false;
  try {
    n.wait();
  } catch (const leash::deadline_exceeded&) {
    deadline_hit = true;
  }
  const double took = ms_since(t0);

  int answered = 0;
  for (std::size_t i = 0; i < backends.size(); ++i) {
    const std::string latency =
        backends[i].latency >= 1h ? "hangs" : std::to_string(backends[i].latency.count()) + " ms";
    try {
      std::printf("  %-10s %-12s answered after %.0f ms\n", backends[i].name, latency.c_str(),
                  answers[i].get());
      ++answered;
    } catch (const leash::cancelled&) {
      std::printf("  %-10s %-12s cancelled at the deadline\n", backends[i].name, latency.c_str());
    }
  }
  std::printf("\n%d of %zu answers in %.0f ms%s\n", answered, backends.size(), took,
              deadline_hit ? " (deadline hit: the hanging backend was cancelled)" : "");

  const auto stats = leash::runtime::stats();
  std::printf("runtime: %zu threads alive (%zu idle, cached for reuse), %zu pending timers\n",
              stats.threads_alive, stats.threads_idle, stats.pending_timers);
  const std::string report = leaks.verify();
  std::printf("leak check: %s\n", report.empty() ? "clean, nothing left running" : report.c_str());
  return report.empty() && answered == 2 ? 0 : 1;
}
