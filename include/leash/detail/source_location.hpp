// SPDX-License-Identifier: BSL-1.0
// leash/detail/source_location.hpp: where a task, scope or handle was created.
//
// clang 14 with libstdc++ 12 cannot compile <source_location> (it lacks
// __builtin_source_location), so leash uses this shim over the builtins that
// both g++ and clang have. As a defaulted argument, current() records the
// caller's position, exactly like std::source_location::current().
#pragma once

#include <cstdint>
#include <string>

namespace leash::inline v0 {

// A file, line and function captured at a call site. Trivially copyable; the
// strings are literals with static storage. An empty location has file "".
struct source_location {
  const char* file = "";
  std::uint_least32_t line = 0;
  const char* function = "";

  static constexpr source_location current(const char* file = __builtin_FILE(),
                                           std::uint_least32_t line = __builtin_LINE(),
                                           const char* function = __builtin_FUNCTION()) noexcept {
    return {file, line, function};
  }

  constexpr bool empty() const noexcept { return line == 0; }
};

// "file:line", or "unknown location" when empty.
inline std::string to_string(const source_location& loc) {
  if (loc.empty()) return "unknown location";
  return std::string(loc.file) + ":" + std::to_string(loc.line);
}

}  // namespace leash::inline v0
