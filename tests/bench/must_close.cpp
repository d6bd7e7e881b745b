// bench_must_close: 1 M open/close of a resource, raw and inside leash::must_close.
//
//   raw                  the resource alone: a 64-byte heap buffer, freed by close()
//   leash                the same resource in a must_close handle, closed explicitly
//   leash_under_leak_check  the same while a leak_check lives (handles are registered)
//   raw_trivial / leash_trivial  a resource whose close() only bumps a counter: the
//                        wrapper's absolute cost per handle
//   must_close_fd        a kernel resource (an eventfd, made and closed), raw and
//                        wrapped: what handles usually own (sockets, files)
//
// Prints the median ns per open+close over -runs runs. Flags: -iters (1000000), -runs (5).
#include <sys/eventfd.h>
#include <unistd.h>

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

struct event_fd {
  int fd = ::eventfd(0, EFD_CLOEXEC);
  event_fd() = default;
  event_fd(event_fd&& o) noexcept : fd(std::exchange(o.fd, -1)) {}
  ~event_fd() {
    if (fd >= 0) ::close(fd);
  }
  void close() { ::close(std::exchange(fd, -1)); }
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
double once(long iters, F&& body) {
  return bench::seconds([&] {
           for (long i = 0; i < iters; ++i)
             body();
         }) *
         1e9 / iters;
}

}  // namespace

int main(int argc, char** argv) {
  const long iters = bench::flag(argc, argv, "-iters", 1'000'000);
  const long runs = bench::flag(argc, argv, "-runs", 5);
  long closes = 0;

  auto raw = [] {
    buffer b;
    keep(b);
    b.close();
  };
  auto wrapped = [] {
    auto h = leash::make_must_close(buffer{});
    keep(h);
    h.close();
  };
  auto raw_trivial = [&] {
    counter c{&closes};
    keep(c);
    c.close();
  };
  auto wrapped_trivial = [&] {
    auto h = leash::make_must_close(counter{&closes});
    keep(h);
    h.close();
  };
  auto raw_fd = [] {
    event_fd f;
    keep(f);
    f.close();
  };
  auto wrapped_fd = [] {
    auto h = leash::make_must_close(event_fd{});
    keep(h);
    h.close();
  };
  // Interleaved, so that every variant sees the same machine load; run 0 warms up.
  std::vector<double> v_raw, v_wrapped, v_checked, v_raw_trivial, v_wrapped_trivial;
  std::vector<double> v_raw_fd, v_wrapped_fd;
  for (long r = 0; r < runs + 1; ++r) {
    const double a = once(iters, raw);
    const double b = once(iters, wrapped);
    const double c = once(iters, raw_trivial);
    const double d = once(iters, wrapped_trivial);
    // Two system calls each: a tenth of the iterations keeps the run short.
    const double f = once(iters / 10, raw_fd);
    const double g = once(iters / 10, wrapped_fd);
    double e = 0;
    {
      leash::leak_check guard;  // handles are registered while it lives
      e = once(iters / 10, wrapped);
    }
    if (r == 0) continue;
    v_raw.push_back(a);
    v_wrapped.push_back(b);
    v_raw_trivial.push_back(c);
    v_wrapped_trivial.push_back(d);
    v_checked.push_back(e);
    v_raw_fd.push_back(f);
    v_wrapped_fd.push_back(g);
  }
  const double m_raw = bench::median(v_raw), m_wrapped = bench::median(v_wrapped);
  const double m_checked = bench::median(v_checked);
  const double m_raw_trivial = bench::median(v_raw_trivial);
  const double m_wrapped_trivial = bench::median(v_wrapped_trivial);
  std::printf("BENCH must_close leash ns_per_op=%.1f runs=%ld\n", m_wrapped, runs);
  std::printf("BENCH must_close raw ns_per_op=%.1f runs=%ld\n", m_raw, runs);
  std::printf("BENCH must_close leash_under_leak_check ns_per_op=%.1f runs=%ld\n", m_checked, runs);
  std::printf("BENCH must_close_trivial leash ns_per_op=%.1f runs=%ld\n", m_wrapped_trivial, runs);
  std::printf("BENCH must_close_trivial raw ns_per_op=%.1f runs=%ld\n", m_raw_trivial, runs);
  std::printf("BENCH must_close_fd leash ns_per_op=%.1f runs=%ld\n", bench::median(v_wrapped_fd),
              runs);
  std::printf("BENCH must_close_fd raw ns_per_op=%.1f runs=%ld\n", bench::median(v_raw_fd), runs);
  const auto s = leash::must_close_stats();
  return s.opened == s.closed && closes > 0 ? 0 : 1;
}
