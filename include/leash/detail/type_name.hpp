// SPDX-License-Identifier: BSL-1.0
// leash/detail/type_name.hpp: a type's name as the compiler spells it, for
// reports ("must_close<file>", "blocked in channel<int>::recv").
#pragma once

#include <string_view>

namespace leash::inline v0::detail {

// From __PRETTY_FUNCTION__: g++ writes "... [with T = X; ...]", clang
// "... [T = X]". Empty when neither shape is found.
template <class T>
std::string_view spelled_type_name() noexcept {
  std::string_view f = __PRETTY_FUNCTION__;
  const auto start = f.find("T = ");
  if (start == std::string_view::npos) return {};
  f.remove_prefix(start + 4);
  return f.substr(0, f.find_first_of(";]"));
}

}  // namespace leash::inline v0::detail
