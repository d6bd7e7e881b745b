// Test support: capture what leash reports to its process-wide handlers.
//
// Each capture installs a handler that records every report while it lives
// and restores the previous handler when it dies.
#pragma once

#include <leash/errors.hpp>
#include <leash/must_close.hpp>
#include <mutex>
#include <vector>

namespace leash_test {

// Records every unobserved task failure (leash::set_unobserved_failure_handler).
struct handler_capture {
  std::mutex mutex;
  std::vector<leash::unobserved_failure> seen;
  leash::unobserved_failure_handler previous;

  handler_capture() {
    previous = leash::set_unobserved_failure_handler([this](const leash::unobserved_failure& f) {
      std::lock_guard lock(mutex);
      seen.push_back(f);
    });
  }
  ~handler_capture() { leash::set_unobserved_failure_handler(previous); }
};

// Records every must-close handle destroyed open (leash::set_unclosed_handler).
struct unclosed_capture {
  std::mutex mutex;
  std::vector<leash::unclosed_handle> seen;
  leash::unclosed_handler previous;

  unclosed_capture() {
    previous = leash::set_unclosed_handler([this](const leash::unclosed_handle& h) {
      std::lock_guard lock(mutex);
      seen.push_back(h);
    });
  }
  ~unclosed_capture() { leash::set_unclosed_handler(previous); }
};

}  // namespace leash_test
