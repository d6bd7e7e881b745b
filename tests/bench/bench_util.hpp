// tests/bench/bench_util.hpp: what every leash benchmark shares.
//
// Each benchmark prints lines "BENCH <scenario> <impl> <metric>=<value> ..."
// that tests/bench/run.sh collects beside the Go programs' lines.
#pragma once

#include <sys/resource.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <string>
#include <vector>

namespace bench {

inline double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  const std::size_t n = v.size();
  return n % 2 == 1 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

// Wall-clock seconds that fn() takes.
template <class F>
double seconds(F&& fn) {
  const auto t0 = std::chrono::steady_clock::now();
  fn();
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

// User+system CPU seconds of the whole process so far.
inline double cpu_seconds() {
  rusage u{};
  getrusage(RUSAGE_SELF, &u);
  auto s = [](const timeval& t) { return t.tv_sec + t.tv_usec / 1e6; };
  return s(u.ru_utime) + s(u.ru_stime);
}

// A field of /proc/self/status in KiB (VmRSS, VmHWM).
inline long status_kb(const char* field) {
  std::ifstream in("/proc/self/status");
  std::string line;
  const std::size_t len = std::strlen(field);
  while (std::getline(in, line)) {
    if (line.compare(0, len, field) == 0 && line.size() > len && line[len] == ':') {
      return std::atol(line.c_str() + len + 1);
    }
  }
  return -1;
}

// One run's cost per operation, wall and CPU (user+sys of the process).
struct result {
  double wall_ns, cpu_ns;
};

// Runs run() `runs` times and prints the medians as one line
// "BENCH <scenario> <impl> ns_per_op=... cpu_ns_per_op=... runs=...".
template <class Run>
void report(const std::string& scenario, const char* impl, long runs, Run run) {
  std::vector<double> wall, cpu;
  for (long r = 0; r < runs; ++r) {
    const result x = run();
    wall.push_back(x.wall_ns);
    cpu.push_back(x.cpu_ns);
  }
  std::printf("BENCH %s %s ns_per_op=%.1f cpu_ns_per_op=%.1f runs=%ld\n", scenario.c_str(), impl,
              median(wall), median(cpu), runs);
  std::fflush(stdout);
}

// "-n 1000" style integer flag, or the default.
inline long flag(int argc, char** argv, const char* name, long fallback) {
  for (int i = 1; i + 1 < argc; ++i) {
    if (std::strcmp(argv[i], name) == 0) return std::atol(argv[i + 1]);
  }
  return fallback;
}

}  // namespace bench
