// Tests for leash/must_close.hpp: close on every path, idempotent close,
// reports of handles dropped open, counters and the leak_check registry.
#include <doctest/doctest.h>

#include <chrono>
#include <latch>
#include <leash/leak_check.hpp>
#include <leash/must_close.hpp>
#include <memory>
#include <mutex>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "support/captures.hpp"
#include "support/child_process.hpp"

using namespace std::chrono_literals;

using leash_test::unclosed_capture;

namespace {

// A resource that counts its closes, and can be told to fail them.
struct counted {
  std::shared_ptr<int> closes = std::make_shared<int>(0);
  bool fail = false;
  void close() {
    ++*closes;
    if (fail) throw std::runtime_error("disk full");
  }
};

leash::must_close_counters delta(const leash::must_close_counters& a,
                                 const leash::must_close_counters& b) {
  return {b.opened - a.opened, b.closed - a.closed, b.dropped_open - a.dropped_open,
          b.closed_by_unwind - a.closed_by_unwind, b.released - a.released};
}

}  // namespace

TEST_CASE("a handle dropped open is closed once and reported once with its opening line") {
  unclosed_capture capture;
  counted r;
  const auto before = leash::must_close_stats();
  unsigned line = 0;
  {
    line = __LINE__ + 1;
    auto h = leash::make_must_close(r);
  }
  CHECK(*r.closes == 1);
  REQUIRE(capture.seen.size() == 1);
  CHECK(std::string(capture.seen[0].site.file).find("must_close_test.cpp") != std::string::npos);
  CHECK(capture.seen[0].site.line == line);
  CHECK(capture.seen[0].type.find("counted") != std::string::npos);
  CHECK(capture.seen[0].age >= std::chrono::steady_clock::duration::zero());
  CHECK(capture.seen[0].close_error == nullptr);
  const auto d = delta(before, leash::must_close_stats());
  CHECK(d.opened == 1);
  CHECK(d.dropped_open == 1);
  CHECK(d.closed == 0);
  const std::string text = leash::to_string(capture.seen[0]);
  CHECK(text.rfind("leash::must_close: ", 0) == 0);
  CHECK(text.find("must_close_test.cpp:" + std::to_string(line)) != std::string::npos);
}

TEST_CASE("close is idempotent: a second close closes nothing") {
  unclosed_capture capture;
  counted r;
  auto h = leash::make_must_close(r);
  CHECK(h.is_open());
  h.close();
  h.close();
  CHECK_FALSE(h.is_open());
  CHECK(*r.closes == 1);
  CHECK(h.try_close() == nullptr);
  CHECK(*r.closes == 1);
  CHECK(capture.seen.empty());
}

TEST_CASE("close rethrows the close error and leaves the handle closed, try_close returns it") {
  unclosed_capture capture;
  counted r;
  r.fail = true;
  SUBCASE("close") {
    auto h = leash::make_must_close(r);
    CHECK_THROWS_WITH_AS(h.close(), "disk full", std::runtime_error);
    CHECK_FALSE(h.is_open());
    h.close();  // closed even though it failed: nothing more
  }
  SUBCASE("try_close") {
    auto h = leash::make_must_close(r);
    static_assert(noexcept(h.try_close()));
    std::exception_ptr e = h.try_close();
    CHECK(e != nullptr);
    CHECK(h.try_close() == nullptr);
  }
  CHECK(*r.closes == 1);
  CHECK(capture.seen.empty());
}

TEST_CASE("a move leaves nothing to close in the moved-from handle") {
  unclosed_capture capture;
  counted r;
  {
    auto a = leash::make_must_close(r);
    leash::must_close<counted> b(std::move(a));
    CHECK_FALSE(a.valid());  // NOLINT(bugprone-use-after-move): the point of the test
    CHECK_FALSE(a.is_open());
    a.close();  // an empty handle: nothing happens
    CHECK(b.is_open());
    leash::must_close<counted> c;
    c = std::move(b);
    CHECK(c.is_open());
    c.close();
  }
  CHECK(*r.closes == 1);
  CHECK(capture.seen.empty());
}

TEST_CASE("move-assigning over an open handle drops it: closed and reported") {
  unclosed_capture capture;
  counted first;
  counted second;
  auto h = leash::make_must_close(first);
  h = leash::make_must_close(second);
  CHECK(*first.closes == 1);
  CHECK(capture.seen.size() == 1);
  h.close();
  CHECK(*second.closes == 1);
}

TEST_CASE("a throwing implicit close reaches the handler with its error, and the process lives") {
  unclosed_capture capture;
  counted r;
  r.fail = true;
  { auto h = leash::make_must_close(r); }
  CHECK(*r.closes == 1);
  REQUIRE(capture.seen.size() == 1);
  REQUIRE(capture.seen[0].close_error != nullptr);
  CHECK_THROWS_WITH_AS(std::rethrow_exception(capture.seen[0].close_error), "disk full",
                       std::runtime_error);
  CHECK(leash::to_string(capture.seen[0]).find("its close failed: disk full") != std::string::npos);
}

TEST_CASE("a handle dropped by an unwinding exception is closed and counted, not reported") {
  unclosed_capture capture;
  counted r;
  const auto before = leash::must_close_stats();
  try {
    auto h = leash::make_must_close(r);
    throw std::runtime_error("request failed");
  } catch (const std::runtime_error&) {
  }
  CHECK(*r.closes == 1);
  CHECK(capture.seen.empty());
  const auto d = delta(before, leash::must_close_stats());
  CHECK(d.closed_by_unwind == 1);
  CHECK(d.dropped_open == 0);
}

TEST_CASE("a handle opened inside a catch block and dropped there is still reported") {
  // std::uncaught_exceptions() is compared with its value at opening, so an
  // exception already in flight when the handle was made does not excuse it.
  unclosed_capture capture;
  counted r;
  struct opens_in_destructor {
    counted& r;
    ~opens_in_destructor() {
      auto h = leash::make_must_close(r);  // forgotten, while an exception unwinds
    }
  };
  try {
    opens_in_destructor o{r};
    throw std::runtime_error("x");
  } catch (const std::runtime_error&) {
  }
  CHECK(*r.closes == 1);
  CHECK(capture.seen.size() == 1);
}

TEST_CASE("the fast uncaught-exception count agrees with the standard one on every thread") {
  // detail::uncaught_exceptions() reads the C++ runtime's per-thread block
  // directly; a wrong block (another thread's, a stale one) would misfile
  // forgotten handles as unwound ones.
  auto agree_here = [] {
    bool same = leash::detail::uncaught_exceptions() == std::uncaught_exceptions() &&
                std::uncaught_exceptions() == 0;
    struct probe {
      bool& same;
      ~probe() {
        same = same && std::uncaught_exceptions() == 1 &&
               leash::detail::uncaught_exceptions() == std::uncaught_exceptions();
      }
    };
    try {
      probe p{same};
      throw std::runtime_error("unwinding");
    } catch (const std::runtime_error&) {
      same = same && leash::detail::uncaught_exceptions() == 0;
    }
    return same;
  };
  CHECK(agree_here());
  bool on_other_thread = false;
  std::thread([&] { on_other_thread = agree_here(); }).join();
  CHECK(on_other_thread);
}

TEST_CASE("release hands the resource back unclosed and leaves an empty handle") {
  unclosed_capture capture;
  counted r;
  const auto before = leash::must_close_stats();
  auto h = leash::make_must_close(r);
  counted back = std::move(h).release();
  CHECK(*back.closes == 0);
  CHECK_FALSE(h.valid());  // NOLINT(bugprone-use-after-move)
  CHECK_THROWS_AS((void)std::move(h).release(), leash::usage_error);
  CHECK_THROWS_AS(h.get(), leash::usage_error);
  CHECK(delta(before, leash::must_close_stats()).released == 1);
  CHECK(capture.seen.empty());
  back.close();
}

namespace {
// A resource that closes itself when read to its end (a body at EOF).
struct self_closing {
  std::shared_ptr<int> closes = std::make_shared<int>(0);
  bool at_end = false;
  void close() {
    if (!at_end) ++*closes;
    at_end = true;
  }
  bool closed() const { return at_end; }
};
}  // namespace

TEST_CASE("a resource that reached its end counts as closed: no report, no second close") {
  unclosed_capture capture;
  self_closing r;
  const auto before = leash::must_close_stats();
  {
    auto h = leash::make_must_close(r);
    h->at_end = true;  // read to the end
    CHECK_FALSE(h.is_open());
  }
  CHECK(capture.seen.empty());
  CHECK(*r.closes == 0);
  CHECK(delta(before, leash::must_close_stats()).closed == 1);
}

TEST_CASE("counters are always on: opened equals the sum of the outcomes") {
  unclosed_capture capture;
  counted r;
  const auto before = leash::must_close_stats();
  for (int i = 0; i < 100; ++i) {
    auto h = leash::make_must_close(r);
    if (i % 2 == 0) h.close();
  }
  const auto d = delta(before, leash::must_close_stats());
  CHECK(d.opened == 100);
  CHECK(d.closed == 50);
  CHECK(d.dropped_open == 50);
}

TEST_CASE("leak_check lists open handles with their opening lines, and only new ones") {
  counted r;
  auto old = leash::make_must_close(r);  // opened before the check: not its business
  leash::leak_check guard;
  const unsigned line = __LINE__ + 1;
  auto h = leash::make_must_close(r);
  const std::string report = guard.verify(20ms);
  CHECK(report.find("1 handle still open") != std::string::npos);
  CHECK(report.find("must_close<") != std::string::npos);
  CHECK(report.find("must_close_test.cpp:" + std::to_string(line)) != std::string::npos);
  CHECK(report.find("must_close_test.cpp:" + std::to_string(line - 3)) == std::string::npos);
  h.close();
  CHECK(guard.verify(20ms) == "");
  old.close();
}

TEST_CASE("leak_check's wait ends when the handle is closed on another thread") {
  counted r;
  leash::leak_check guard;
  auto h = leash::make_must_close(r);
  std::thread closer([&] { h.close(); });
  CHECK(guard.verify(10s) == "");
  closer.join();
}

TEST_CASE("the abort policy aborts with the report (child process)") {
  const auto r = leash_test::run_child(std::string(LEASH_DEATH_CASES) + " unclosed_abort");
  CHECK(r.signalled);
  CHECK(r.output.find("leash::must_close:") != std::string::npos);
  CHECK(r.output.find("death_cases.cpp:") != std::string::npos);
  CHECK(r.output.find("unclosed_policy::abort") != std::string::npos);
}

TEST_CASE("the default policy reports to stderr once per site, closes, and lives (child process)") {
  const auto r = leash_test::run_child(std::string(LEASH_DEATH_CASES) + " unclosed_report");
  CHECK_FALSE(r.signalled);
  CHECK(r.code == 0);
  std::size_t lines = 0;
  for (std::size_t p = r.output.find("leash::must_close:"); p != std::string::npos;
       p = r.output.find("leash::must_close:", p + 1))
    ++lines;
  CHECK(lines == 2);  // three drops at one site, one at another
  CHECK(r.output.find("closed 4") != std::string::npos);
}

TEST_CASE("the ignore policy closes and counts, and prints nothing (child process)") {
  const auto r = leash_test::run_child(std::string(LEASH_DEATH_CASES) + " unclosed_ignore");
  CHECK(r.code == 0);
  CHECK(r.output.rfind("closed 1, dropped 1\n", 0) == 0);
  CHECK(r.output.find("leash::must_close") == std::string::npos);
}

TEST_CASE("close racing close on two threads closes once") {
  for (int i = 0; i < 200; ++i) {
    counted r;
    auto h = leash::make_must_close(r);
    std::latch go(2);
    std::thread other([&] {
      go.arrive_and_wait();
      h.close();
    });
    go.arrive_and_wait();
    h.close();
    other.join();
    REQUIRE(*r.closes == 1);
  }
}
