// Tests for leash/cursor.hpp: leash::cursor, a must-close handle over rows.
#include <doctest/doctest.h>

#include <leash/cursor.hpp>
#include <leash/leak_check.hpp>
#include <memory>
#include <mutex>
#include <optional>
#include <stdexcept>
#include <string>
#include <vector>

#include "support/captures.hpp"

using namespace std::chrono_literals;

using leash_test::unclosed_capture;

namespace {

struct source_log {
  int closes = 0;
  int fetched = 0;
};

// Rows 1..n; throws at row `fail_at` (0: never); close throws if asked.
leash::cursor<int> numbers(source_log& log, int n, int fail_at = 0, bool fail_close = false,
                           leash::source_location site = leash::source_location::current()) {
  auto i = std::make_shared<int>(0);
  return leash::cursor<int>(
      [&log, i, n, fail_at]() -> std::optional<int> {
        if (*i == n) return std::nullopt;
        ++*i;
        if (*i == fail_at) throw std::runtime_error("row " + std::to_string(*i) + " is corrupt");
        ++log.fetched;
        return *i;
      },
      [&log, fail_close] {
        ++log.closes;
        if (fail_close) throw std::runtime_error("finalize failed");
      },
      site);
}

}  // namespace

TEST_CASE("next yields the rows, then nullopt, and exhausting the cursor closes it") {
  unclosed_capture capture;
  source_log log;
  {
    auto c = numbers(log, 3);
    CHECK(c.next() == 1);
    CHECK(c.next() == 2);
    CHECK(c.next() == 3);
    CHECK_FALSE(c.closed());
    CHECK(c.next() == std::nullopt);
    CHECK(c.closed());
    CHECK(log.closes == 1);
    CHECK(c.next() == std::nullopt);  // stays exhausted
  }
  CHECK(log.closes == 1);
  CHECK(capture.seen.empty());  // exhausted is closed, not forgotten
}

TEST_CASE("range-for reads every row and closes at the end") {
  source_log log;
  std::vector<int> rows;
  auto c = numbers(log, 4);
  for (int r : c)
    rows.push_back(r);
  CHECK(rows == std::vector<int>{1, 2, 3, 4});
  CHECK(log.closes == 1);
}

TEST_CASE("breaking out of a range-for early still closes the source (the Mongo cursor bug)") {
  unclosed_capture capture;
  source_log log;
  unsigned line = 0;
  {
    line = __LINE__ + 1;
    auto c = numbers(log, 1000);
    for (int r : c) {
      if (r == 2) break;
    }
    CHECK(log.closes == 0);
  }
  CHECK(log.closes == 1);
  CHECK(log.fetched == 2);
  REQUIRE(capture.seen.size() == 1);  // and the forgotten close is reported
  CHECK(capture.seen[0].type == "leash::cursor");
  CHECK(capture.seen[0].site.line == line);
}

TEST_CASE("an early close() closes once, quietly, and the cursor then yields nothing") {
  unclosed_capture capture;
  source_log log;
  {
    auto c = numbers(log, 10);
    CHECK(c.next() == 1);
    c.close();
    c.close();
    CHECK(c.next() == std::nullopt);
  }
  CHECK(log.closes == 1);
  CHECK(capture.seen.empty());
}

TEST_CASE("an error in the middle is thrown by next() after the good rows, and closes") {
  source_log log;
  auto c = numbers(log, 10, 3);
  CHECK(c.next() == 1);
  CHECK(c.next() == 2);
  CHECK_THROWS_WITH_AS(c.next(), "row 3 is corrupt", std::runtime_error);
  CHECK(c.closed());
  CHECK(log.closes == 1);
  CHECK(c.next() == std::nullopt);
}

TEST_CASE("collect reads all and closes, and an error stops it and is thrown") {
  source_log log;
  CHECK(numbers(log, 5).collect() == std::vector<int>{1, 2, 3, 4, 5});
  CHECK(log.closes == 1);
  source_log failing;
  auto c = numbers(failing, 5, 4);
  CHECK_THROWS_AS(c.collect(), std::runtime_error);
  CHECK(failing.closes == 1);
}

TEST_CASE("a close error is thrown by the next() that reached the end, or by close()") {
  SUBCASE("at the end") {
    source_log log;
    auto c = numbers(log, 1, 0, true);
    CHECK(c.next() == 1);
    CHECK_THROWS_WITH_AS(c.next(), "finalize failed", std::runtime_error);
    CHECK(c.closed());
  }
  SUBCASE("early close") {
    source_log log;
    auto c = numbers(log, 3, 0, true);
    CHECK_THROWS_WITH_AS(c.close(), "finalize failed", std::runtime_error);
    CHECK(c.closed());
    c.close();
    CHECK(log.closes == 1);
  }
}

TEST_CASE("a cursor over a cursor_source subclass works the same") {
  struct letters final : leash::cursor_source<std::string> {
    int i = 0;
    int* closes;
    explicit letters(int* c) : closes(c) {}
    std::optional<std::string> next() override {
      if (i == 2) return std::nullopt;
      return std::string(1, static_cast<char>('a' + i++));
    }
    void close() override { ++*closes; }
  };
  int closes = 0;
  leash::cursor<std::string> c(std::make_unique<letters>(&closes));
  CHECK(c.collect() == std::vector<std::string>{"a", "b"});
  CHECK(closes == 1);
}

TEST_CASE("leak_check lists an open cursor by its opening line") {
  source_log log;
  leash::leak_check guard;
  const unsigned line = __LINE__ + 1;
  auto c = numbers(log, 3);
  const std::string report = guard.verify(10ms);
  CHECK(report.find("must_close<leash::cursor> opened at ") != std::string::npos);
  CHECK(report.find("cursor_test.cpp:" + std::to_string(line)) != std::string::npos);
  c.close();
  CHECK(guard.verify(10ms) == "");
}

TEST_CASE("a default cursor is empty and closed") {
  leash::cursor<int> c;
  CHECK(c.closed());
  CHECK(c.next() == std::nullopt);
  CHECK(c.collect().empty());
}
