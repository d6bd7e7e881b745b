// SPDX-License-Identifier: BSL-1.0
// leash/version.hpp: which release of leash this is.
//
//   #if LEASH_VERSION >= 100   // 0.1.0 or later
//
// LEASH_VERSION is MAJOR * 10000 + MINOR * 100 + PATCH (fmt's convention), so
// it compares in the preprocessor. The major version is also the inline
// namespace every name lives in (leash::v0 for 0.x); docs/changelog.md says
// what a release may change.
#pragma once

#define LEASH_VERSION_MAJOR 0
#define LEASH_VERSION_MINOR 1
#define LEASH_VERSION_PATCH 0
#define LEASH_VERSION \
  (LEASH_VERSION_MAJOR * 10000 + LEASH_VERSION_MINOR * 100 + LEASH_VERSION_PATCH)
#define LEASH_VERSION_STRING "0.1.0"
