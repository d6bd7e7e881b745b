// Test support: whether this build runs under a sanitizer, and the stress
// scale that follows from it. The one place tests ask; g++ defines
// __SANITIZE_*__, clang answers __has_feature.
#pragma once

#include <concepts>

namespace leash_test {

#if defined(__has_feature)
#define LEASH_TEST_HAS_FEATURE(x) __has_feature(x)
#else
#define LEASH_TEST_HAS_FEATURE(x) 0
#endif

#if defined(__SANITIZE_THREAD__) || LEASH_TEST_HAS_FEATURE(thread_sanitizer)
inline constexpr bool under_tsan = true;
#else
inline constexpr bool under_tsan = false;
#endif

#if defined(__SANITIZE_ADDRESS__) || LEASH_TEST_HAS_FEATURE(address_sanitizer)
inline constexpr bool under_asan = true;
#else
inline constexpr bool under_asan = false;
#endif

#undef LEASH_TEST_HAS_FEATURE

// UBSan is not detected: it slows threads little, so no test scales for it.
inline constexpr bool under_any_sanitizer = under_tsan || under_asan;

// How much a sanitizer slows the threads of a stress test (5-20x): its
// iteration count is divided by this; the interleavings it checks stay the same.
inline constexpr int sanitizer_slowdown = 10;

// A stress test's iteration count: `n`, or n / sanitizer_slowdown (at least 1)
// under a sanitizer.
template <std::integral I>
constexpr I scaled(I n) {
  if (!under_any_sanitizer) return n;
  return n / sanitizer_slowdown > 0 ? static_cast<I>(n / sanitizer_slowdown) : I{1};
}

}  // namespace leash_test
