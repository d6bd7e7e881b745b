// bench_must_close: 1 M open/close of a resource, raw and inside leash::must_close.
//
//   raw                  the resource alone: a 64-byte heap buffer, freed by close()
//   leash                the same resource in a must_close handle, closed explicitly
//   leash_under_leak_check  the same while a leak_check lives (handles are registered)
//   raw_trivial / leash_trivial  a resource whose close() only bumps a counter: the
//                        wrapper's absolute cost per handle
//
// Prints the median ns per open+close over -runs runs. Flags: -iters (1000000), -runs (5).
#include <leash/leak_check.hpp>
#include <leash/must_close.hpp>
#include <vector>

#include "bench_util.hpp"

namespace {

struct buffer {
  char* p = new char[64];
  buffer() = default;
  buffer(buffer&& o) noexcept : p(std::exchange(o.p, nullptr)) {}
  ~buffer() { delete[] p; }
  void close() {
    delete[] p;
    p = nullptr;
  }
};

struct counter {
  long* closes;
  void close() { ++*closes; }
};

// Keeps the compiler from folding the loop away.
template <class T>
void keep(T& v) {
  asm volatile("" : : "r"(&v) : "memory");
}

template <class F>
double ns_per_op(long iters, long runs, F&& body) {
  std::vector<double> v;
  for (long r = 0; r < runs + 1; ++r) {
    const double s = bench::seconds([&] {
      for (long i = 0; i < iters; ++i)
        body();
    });
    if (r > 0) v.push_back(s * 1e9 / iters);  // the first run warms up
  }
  return bench::median(v);
}

}  // namespace

int main(int argc, char** argv) {
  const long iters = bench::flag(argc, argv, "-iters", 1'000'000);
  const long runs = bench::flag(argc, argv, "-runs", 5);
  long closes = 0;

  const double raw = ns_per_op(iters, runs, [] {
    buffer b;
    keep(b);
    b.close();
  });
  const double wrapped = ns_per_op(iters, runs, [] {
    auto h = leash::make_must_close(buffer{});
    keep(h);
    h.close();
  });
  double checked = 0;
  {
    leash::leak_check guard;
    checked = ns_per_op(iters / 10, runs, [] {
      auto h = leash::make_must_close(buffer{});
      keep(h);
      h.close();
    });
  }
  const double raw_trivial = ns_per_op(iters, runs, [&] {
    counter c{&closes};
    keep(c);
    c.close();
  });
  const double wrapped_trivial = ns_per_op(iters, runs, [&] {
    auto h = leash::make_must_close(counter{&closes});
    keep(h);
    h.close();
  });
  std::printf("BENCH must_close leash ns_per_op=%.1f runs=%ld\n", wrapped, runs);
  std::printf("BENCH must_close raw ns_per_op=%.1f runs=%ld\n", raw, runs);
  std::printf("BENCH must_close leash_under_leak_check ns_per_op=%.1f runs=%ld\n", checked, runs);
  std::printf("BENCH must_close_trivial leash ns_per_op=%.1f runs=%ld\n", wrapped_trivial, runs);
  std::printf("BENCH must_close_trivial raw ns_per_op=%.1f runs=%ld\n", raw_trivial, runs);
  const auto s = leash::must_close_stats();
  return s.opened == s.closed && closes > 0 ? 0 : 1;
}
