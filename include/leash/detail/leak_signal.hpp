// SPDX-License-Identifier: BSL-1.0
// leash/detail/leak_signal.hpp: how a waiting leak check hears that something ended.
//
// leak_check::verify() waits until everything outside its baseline is gone.
// Whatever can end (a task, a nursery, a ticker, a must-close handle, a timer
// entry) calls notify() when it does; verify() waits for the generation to
// change. Only while a check lives does notify() take the lock, so the cost
// otherwise is one relaxed-enough atomic load. This header depends on nothing
// else in leash: the timer service includes it.
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <mutex>

namespace leash::inline v0::detail {

class leak_signal {
 public:
  // Immortal: objects may end during static destruction.
  static leak_signal& instance() {
    static auto* s = new leak_signal;
    return *s;
  }

  // True while at least one leak_check lives: then registries record details.
  bool checking() const noexcept { return checks_.load(std::memory_order_acquire) != 0; }

  void check_started() noexcept { checks_.fetch_add(1, std::memory_order_acq_rel); }
  void check_ended() noexcept { checks_.fetch_sub(1, std::memory_order_acq_rel); }

  // Something ended; wakes waiting checks, if any.
  void notify() noexcept {
    if (!checking()) return;
    std::lock_guard lock(mutex_);
    ++generation_;
    changed_.notify_all();
  }

  std::uint64_t generation() const {
    std::lock_guard lock(mutex_);
    return generation_;
  }

  // Waits until the generation differs from `seen` or `deadline` passes.
  void wait_changed(std::uint64_t seen, std::chrono::steady_clock::time_point deadline) {
    std::unique_lock lock(mutex_);
    changed_.wait_until(lock, deadline, [&] { return generation_ != seen; });
  }

 private:
  leak_signal() = default;

  mutable std::mutex mutex_;
  std::condition_variable changed_;
  std::uint64_t generation_ = 0;  // bumped by every notify() while a check lives
  std::atomic<int> checks_{0};    // live leak checks
};

}  // namespace leash::inline v0::detail
