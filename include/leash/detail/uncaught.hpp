// SPDX-License-Identifier: BSL-1.0
// leash/detail/uncaught.hpp: std::uncaught_exceptions(), read in under a nanosecond.
//
// must_close and nursery read it at every construction, to tell a handle
// dropped by an unwinding exception from a forgotten one. The standard call
// goes into the shared C++ runtime, which reaches its per-thread exception
// block through __tls_get_addr: 7 ns here, a quarter of a whole open+close of
// a 64-byte heap resource. The Itanium C++ ABI (section 2.2.2), which g++ and
// clang follow on Linux and the BSDs, fixes that block's first two fields and
// gives its address by __cxa_get_globals(); the address is the thread's for
// its whole life. So each thread asks once and then reads the count directly.
// Elsewhere: the standard call.
#pragma once

#include <exception>

#if defined(__GLIBCXX__) && __has_include(<cxxabi.h>)
#include <cxxabi.h>
#define LEASH_ITANIUM_EH_GLOBALS 1
#endif

namespace leash::inline v0::detail {

#if defined(LEASH_ITANIUM_EH_GLOBALS)
// The ABI's __cxa_eh_globals: the caught-exception stack, then the count of
// exceptions thrown and not yet caught.
struct itanium_eh_globals {
  void* caught_exceptions;
  unsigned int uncaught_exceptions;
};

inline int uncaught_exceptions() noexcept {
  thread_local const itanium_eh_globals* const globals =
      reinterpret_cast<const itanium_eh_globals*>(abi::__cxa_get_globals());
  return static_cast<int>(globals->uncaught_exceptions);
}
#else
inline int uncaught_exceptions() noexcept {
  return std::uncaught_exceptions();
}
#endif

}  // namespace leash::inline v0::detail
