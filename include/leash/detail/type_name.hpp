// SPDX-License-Identifier: BSL-1.0
// leash/detail/type_name.hpp: a type's name as the compiler spells it, for
// reports ("must_close<file>", "blocked in channel<int>::recv").
#pragma once

#include <string_view>

namespace leash::inline v0::detail {

// From the compiler's signature of this function: g++ writes
// "... [with T = X; ...]", clang "... [T = X]", MSVC
// "... spelled_type_name<X>(void) noexcept". Empty when the compiler has none
// of these or the shape is not found (callers then print a generic name).
template <class T>
std::string_view spelled_type_name() noexcept {
#if defined(__GNUC__) || defined(__clang__)
  std::string_view f = __PRETTY_FUNCTION__;
  const auto start = f.find("T = ");
  if (start == std::string_view::npos) return {};
  f.remove_prefix(start + 4);
  return f.substr(0, f.find_first_of(";]"));
#elif defined(_MSC_VER)
  constexpr std::string_view prefix = "spelled_type_name<";
  std::string_view f = __FUNCSIG__;
  const auto start = f.find(prefix);
  const auto end = f.rfind(">(void)");
  if (start == std::string_view::npos || end == std::string_view::npos ||
      end < start + prefix.size())
    return {};
  return f.substr(start + prefix.size(), end - start - prefix.size());
#else
  return {};
#endif
}

}  // namespace leash::inline v0::detail
