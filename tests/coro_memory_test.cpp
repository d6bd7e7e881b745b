// Memory after a burst: once a burst of coroutine tasks has ended and the
// workers are idle, the memory their frames and records took goes back to
// the OS instead of staying resident (glibc keeps freed small blocks).
#include <doctest/doctest.h>
#include <unistd.h>

#include <cstddef>
#include <fstream>
#include <leash.hpp>

#include "support/eventually.hpp"
#include "support/sanitizer.hpp"

using leash::coro;
using leash_test::eventually;

namespace {

// Resident set size in bytes, from /proc/self/statm (0 where there is none).
std::size_t resident_bytes() {
  std::ifstream statm("/proc/self/statm");
  std::size_t pages = 0, resident = 0;
  if (!(statm >> pages >> resident)) return 0;
  return resident * static_cast<std::size_t>(sysconf(_SC_PAGESIZE));
}

// Enough tasks that their frames and records take some hundred MB.
constexpr long burst = 300000;
// What may stay resident after it: caches and allocator slack, far below the
// burst's peak.
constexpr std::size_t allowed_growth = 12u << 20;

}  // namespace

TEST_CASE("after a burst of coroutine tasks the workers give the memory back" *
          doctest::skip(leash_test::under_any_sanitizer)) {  // a sanitizer's allocator keeps it
  leash::channel<int> gate;
  const std::size_t baseline = resident_bytes();
  std::size_t peak = 0;
  leash::run_nursery([&](leash::nursery& n) {
    for (long i = 0; i < burst; ++i) {
      n.spawn([&]() -> coro<void> { co_await gate.async_recv(); });
    }
    peak = resident_bytes();
    gate.close();
  });
  REQUIRE(peak > baseline + 2 * allowed_growth);  // the burst did take memory
  CHECK(eventually([&] { return resident_bytes() < baseline + allowed_growth; }));
  // Nor do the frame blocks that moved between threads stay in the depot.
  CHECK(eventually([] { return leash::detail::frame_depot::instance().bytes() == 0; }));
}
