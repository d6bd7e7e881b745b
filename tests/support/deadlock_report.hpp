// Test support: cases that expect a leash::deadlock report.
#pragma once

#include <doctest/doctest.h>
#include <unistd.h>

#include <leash/errors.hpp>
#include <string>

namespace leash_test {

// A missed deadlock would hang the case: this ends the process instead
// (SIGALRM's default action), without a thread or timer that would itself
// keep a watch from reporting.
class hang_guard {
 public:
  hang_guard() { ::alarm(hang_limit_seconds); }
  ~hang_guard() { ::alarm(0); }
  hang_guard(const hang_guard&) = delete;
  hang_guard& operator=(const hang_guard&) = delete;

 private:
  static constexpr unsigned hang_limit_seconds = 120;  // far beyond any machine's run
};

inline bool contains(const std::string& s, const std::string& part) {
  return s.find(part) != std::string::npos;
}

// The what() of the leash::deadlock that f throws, or "" if none.
template <class F>
std::string deadlock_of(F f) {
  try {
    f();
  } catch (const leash::deadlock& e) {
    MESSAGE(std::string(e.what()));
    return e.what();
  }
  return {};
}

}  // namespace leash_test
