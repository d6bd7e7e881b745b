// Test support: wait until tasks are parked in a given leash call.
//
// Orders events without sleeping: a test that must know "the sender is now
// blocked in send" polls leash::live_tasks(), which every blocking leash call
// updates. Yields between polls; gives up (and fails the test) after 30 s.
#pragma once

#include <doctest/doctest.h>

#include <chrono>
#include <cstddef>
#include <leash/leak_check.hpp>
#include <string>
#include <thread>

#include "sanitizer.hpp"  // leash_test::scaled, for the stress tests that include this

namespace leash_test {

// Number of live tasks currently blocked in a call whose name ends with `what`
// ("channel<int>::send", or ">::send" for a channel of any type, "select").
inline std::size_t blocked_in(const std::string& what) {
  std::size_t n = 0;
  for (const auto& t : leash::live_tasks()) {
    if (t.blocked_in == nullptr) continue;
    const std::string name = t.blocked_in;
    if (name.size() >= what.size() &&
        name.compare(name.size() - what.size(), what.size(), what) == 0)
      ++n;
  }
  return n;
}

// Waits until at least `count` live tasks are blocked in `what`.
inline void wait_blocked(const std::string& what, std::size_t count = 1) {
  const auto give_up = std::chrono::steady_clock::now() + std::chrono::seconds(30);
  while (blocked_in(what) < count) {
    if (std::chrono::steady_clock::now() > give_up) FAIL("tasks never blocked in " << what);
    std::this_thread::yield();
  }
}

}  // namespace leash_test
