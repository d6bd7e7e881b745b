// SPDX-License-Identifier: BSL-1.0
// Tests for leash/version.hpp: the version macros, reached through leash.hpp,
// agree with the project version CMake was given (LEASH_PROJECT_VERSION*).
#include <doctest/doctest.h>

#include <leash.hpp>
#include <string_view>
#include <type_traits>

#ifndef LEASH_PROJECT_VERSION
#error "the build passes CMake's PROJECT_VERSION as LEASH_PROJECT_VERSION"
#endif

TEST_CASE("the version macros match the CMake project version") {
  CHECK(std::string_view(LEASH_VERSION_STRING) == LEASH_PROJECT_VERSION);
  CHECK(LEASH_VERSION_MAJOR == LEASH_PROJECT_VERSION_MAJOR);
  CHECK(LEASH_VERSION_MINOR == LEASH_PROJECT_VERSION_MINOR);
  CHECK(LEASH_VERSION_PATCH == LEASH_PROJECT_VERSION_PATCH);
}

TEST_CASE("LEASH_VERSION is major * 10000 + minor * 100 + patch, usable in #if") {
  CHECK(LEASH_VERSION ==
        LEASH_VERSION_MAJOR * 10000 + LEASH_VERSION_MINOR * 100 + LEASH_VERSION_PATCH);
#if LEASH_VERSION < 100
  FAIL("LEASH_VERSION does not compare in the preprocessor");
#endif
}

TEST_CASE("the inline namespace names the major version") {
  // A breaking release bumps LEASH_VERSION_MAJOR and renames the namespace
  // with it; this case then names the new one.
  static_assert(LEASH_VERSION_MAJOR == 0);
  static_assert(std::is_same_v<leash::v0::channel<int>, leash::channel<int>>);
  CHECK(LEASH_VERSION_MAJOR == 0);
}
