// Tests for leash/body.hpp: leash::body, a must-close handle over bytes.
#include <doctest/doctest.h>

#include <array>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <latch>
#include <leash/body.hpp>
#include <leash/leak_check.hpp>
#include <memory>
#include <mutex>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "support/captures.hpp"

using namespace std::chrono_literals;

using leash_test::unclosed_capture;

namespace {

// What a source saw of its close.
struct close_log {
  std::atomic<int> closes{0};
  std::atomic<bool> at_end{false};
};

// A source that serves `data` and then blocks (until stopped) or ends.
// Stands in for a socket: a transport implements body_source the same way.
class test_source final : public leash::body_source {
 public:
  test_source(std::string data, close_log& log, bool block_after_data = false,
              bool fail_close = false)
      : data_(std::move(data)), log_(log), block_(block_after_data), fail_close_(fail_close) {}

  std::size_t read(std::span<std::byte> out, std::stop_token stop) override {
    if (offset_ < data_.size()) {
      const std::size_t n = std::min(out.size(), data_.size() - offset_);
      std::memcpy(out.data(), data_.data() + offset_, n);
      offset_ += n;
      return n;
    }
    if (!block_) return 0;
    std::unique_lock lock(mutex_);
    entered.count_down();
    // leash's own stop-aware wait: returns when `stop` is stopped.
    leash::detail::wait(lock, cv_, stop, [] { return false; });
    return 0;  // ignored by leash: the read was stopped
  }

  void close(bool at_end) override {
    log_.at_end = at_end;
    ++log_.closes;
    if (fail_close_) throw std::runtime_error("connection reset");
  }

  std::latch entered{1};  // a read is blocked

 private:
  std::string data_;
  std::size_t offset_ = 0;
  close_log& log_;
  bool block_;
  bool fail_close_;
  std::mutex mutex_;
  std::condition_variable cv_;
};

}  // namespace

TEST_CASE("read returns the bytes, then 0 at EOF, and reaching EOF closes the body") {
  unclosed_capture capture;
  close_log log;
  const auto before = leash::must_close_stats();
  {
    leash::body b(std::make_unique<test_source>("hello", log));
    std::array<char, 3> buf;
    std::string got;
    while (std::size_t n = b.read(buf))
      got.append(buf.data(), n);
    CHECK(got == "hello");
    CHECK(b.closed());
    CHECK(log.closes == 1);
    CHECK(log.at_end);
    CHECK_THROWS_AS(b.read(buf), leash::body_closed);
    b.close();  // nothing more
  }
  CHECK(log.closes == 1);
  CHECK(capture.seen.empty());  // read to EOF is closed, not forgotten
  const auto after = leash::must_close_stats();
  CHECK(after.closed - before.closed == 1);
  CHECK(after.dropped_open == before.dropped_open);
}

TEST_CASE("a body read to EOF and then dropped is not reported") {
  unclosed_capture capture;
  {
    auto b = leash::memory_body("abc", 1);
    CHECK(b.read_all(100) == "abc");
  }
  CHECK(capture.seen.empty());
}

TEST_CASE("read_all over max_bytes throws body_too_large and closes the body before EOF") {
  close_log log;
  leash::body b(std::make_unique<test_source>(std::string(100, 'x'), log));
  CHECK_THROWS_AS(b.read_all(99), leash::body_too_large);
  CHECK(b.closed());
  CHECK(log.closes == 1);
  CHECK_FALSE(log.at_end);
  std::array<char, 4> buf;
  CHECK_THROWS_AS(b.read(buf), leash::body_closed);
}

TEST_CASE("read_all of exactly max_bytes succeeds") {
  auto b = leash::memory_body(std::string(64, 'y'), 7);
  CHECK(b.read_all(64) == std::string(64, 'y'));
  CHECK(b.closed());
}

TEST_CASE("discard reads to EOF and closes with at_end") {
  close_log log;
  leash::body b(std::make_unique<test_source>(std::string(40000, 'z'), log));
  CHECK(b.discard() == 40000);
  CHECK(b.closed());
  CHECK(log.closes == 1);
  CHECK(log.at_end);
}

TEST_CASE("close before EOF closes the source once, not at end, and then reads fail at once") {
  close_log log;
  leash::body b(std::make_unique<test_source>("0123456789", log));
  std::array<char, 4> buf;
  CHECK(b.read(buf) == 4);
  b.close();
  b.close();
  CHECK(log.closes == 1);
  CHECK_FALSE(log.at_end);
  CHECK_THROWS_WITH_AS(b.read(buf), "leash::body: read after close", leash::body_closed);
}

TEST_CASE("a read blocked in the source wakes with body_closed when another thread closes") {
  close_log log;
  auto source = std::make_unique<test_source>("", log, true);
  test_source& src = *source;
  leash::body b(std::move(source));
  std::thread closer([&] {
    src.entered.wait();  // the read is inside the source, blocked
    b.close();
  });
  std::array<char, 4> buf;
  CHECK_THROWS_AS(b.read(buf), leash::body_closed);
  closer.join();
  CHECK(log.closes == 1);
}

TEST_CASE("a read after close on a source that would block fails at once") {
  close_log log;
  leash::body b(std::make_unique<test_source>("", log, true));
  b.close();
  std::array<char, 4> buf;
  CHECK_THROWS_AS(b.read(buf), leash::body_closed);  // would hang forever if it reached the source
}

TEST_CASE("read racing close, many times: every read ends, with bytes or body_closed") {
  for (int i = 0; i < 300; ++i) {
    close_log log;
    leash::body b(std::make_unique<test_source>("ab", log, true));
    std::latch go(2);
    std::thread closer([&] {
      go.arrive_and_wait();
      b.close();
    });
    go.arrive_and_wait();
    std::array<char, 1> buf;
    try {
      while (b.read(buf) != 0) {
      }
      FAIL("the source never ends on its own");
    } catch (const leash::body_closed&) {
    }
    closer.join();
    REQUIRE(log.closes == 1);
  }
}

TEST_CASE("a blocked read is cancelled by the ambient scope's deadline") {
  close_log log;
  leash::body b(std::make_unique<test_source>("", log, true));
  std::array<char, 4> buf;
  CHECK_FALSE(leash::move_on_after(20ms, [&] { (void)b.read(buf); }));
  CHECK_FALSE(b.closed());  // cancelling a read does not close the body
  b.close();
}

TEST_CASE("the close error is thrown by the read that hit EOF, or by close()") {
  SUBCASE("implicit, at EOF") {
    close_log log;
    leash::body b(std::make_unique<test_source>("x", log, false, true));
    std::array<char, 4> buf;
    CHECK(b.read(buf) == 1);
    CHECK_THROWS_WITH_AS(b.read(buf), "connection reset", std::runtime_error);
    CHECK(b.closed());
  }
  SUBCASE("explicit") {
    close_log log;
    leash::body b(std::make_unique<test_source>("x", log, false, true));
    CHECK_THROWS_WITH_AS(b.close(), "connection reset", std::runtime_error);
    CHECK(b.closed());
    b.close();
    CHECK(log.closes == 1);
  }
}

TEST_CASE("a body dropped open is closed (not at end) and reported with its opening line") {
  unclosed_capture capture;
  close_log log;
  unsigned line = 0;
  {
    line = __LINE__ + 1;
    leash::body b(std::make_unique<test_source>("unread tail", log));
  }
  CHECK(log.closes == 1);
  CHECK_FALSE(log.at_end);
  REQUIRE(capture.seen.size() == 1);
  CHECK(capture.seen[0].type == "leash::body");
  CHECK(capture.seen[0].site.line == line);
}

TEST_CASE("leak_check lists an open body by its opening line") {
  leash::leak_check guard;
  const unsigned line = __LINE__ + 1;
  auto b = leash::memory_body("data");
  const std::string report = guard.verify(10ms);
  CHECK(report.find("must_close<leash::body> opened at") != std::string::npos);
  CHECK(report.find("body_test.cpp:" + std::to_string(line)) != std::string::npos);
  b.close();
  CHECK(guard.verify(10ms) == "");
}

TEST_CASE("an empty body reads nothing and closes quietly") {
  leash::body b;
  std::array<char, 4> buf;
  CHECK_THROWS_AS(b.read(buf), leash::body_closed);
  CHECK(b.closed());
  b.close();
}
