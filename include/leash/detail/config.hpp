// SPDX-License-Identifier: BSL-1.0
// leash/detail/config.hpp: rejects a language mode or standard library leash
// cannot build on, with one clear #error instead of a cascade of missing
// headers and names. Every public header includes it before anything else, so
// on such a library its #error is the first diagnostic.
//
// leash builds on C++20 stop tokens (std::stop_token, std::stop_callback,
// std::jthread): libstdc++ from GCC 11 on, libc++ from LLVM 18 on (before 18
// it lacks <stop_token> or leaves it experimental, without __cpp_lib_jthread).
#pragma once

#if __has_include(<version>)
#include <version>
#endif

#if defined(_MSVC_LANG) ? _MSVC_LANG < 202002L : __cplusplus < 202002L
#error "leash needs C++20: compile with -std=c++20 (MSVC: /std:c++20)"
#elif !__has_include(<stop_token>) || !defined(__cpp_lib_jthread)
// One line, so the diagnostic quotes the message whole.
// clang-format off
#error "leash needs <stop_token> and std::jthread (C++20 stop tokens): libstdc++ from GCC 11+ or libc++ 18+; this standard library lacks them"
// clang-format on
#endif
