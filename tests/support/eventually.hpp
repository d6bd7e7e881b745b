// Test support: a bounded poll for states that no event announces.
//
// Only for conditions nothing can be waited on for: thread counts, open file
// descriptors, stats counters a background thread updates. A test that can
// wait on a latch, a channel or a counter does that instead; this never
// orders events between threads.
#pragma once

#include <chrono>
#include <thread>

namespace leash_test {

// How long a poll keeps trying: far beyond any expected settling time, so a
// slow machine or a sanitizer build fails only when the state never comes.
inline constexpr std::chrono::seconds eventually_bound{10};
// Pause between tries: short, so a passing test ends soon after the state holds.
inline constexpr std::chrono::milliseconds eventually_pause{1};

// Polls `ok` until it returns true (then true) or eventually_bound passed
// (then false, for CHECK to report).
template <class Pred>
bool eventually(Pred&& ok) {
  const auto give_up = std::chrono::steady_clock::now() + eventually_bound;
  while (!ok()) {
    if (std::chrono::steady_clock::now() > give_up) return false;
    std::this_thread::sleep_for(eventually_pause);
  }
  return true;
}

}  // namespace leash_test
