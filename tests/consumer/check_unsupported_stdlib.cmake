# Compiles SOURCE (a TU including <leash.hpp>) with CXX against libc++ before
# 18, which lacks C++20 stop tokens. It must fail, and leash's #error must be
# the first error and appear once; the output is printed for the test's
# PASS_REGULAR_EXPRESSION to match the message.
#   cmake -DCXX=... -DINCLUDE_DIR=... -DSOURCE=... -P check_unsupported_stdlib.cmake
execute_process(
  COMMAND ${CXX} -std=c++20 -stdlib=libc++ -fsyntax-only -I${INCLUDE_DIR} ${SOURCE}
  RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE out)
message(STATUS "compiler output:\n${out}")
if(rc EQUAL 0)
  message(FATAL_ERROR "unsupported-stdlib check failed: leash.hpp compiled against libc++ before 18")
endif()

# One line per error; notes, "In file included from" and the quoted source
# line have no "error: ". The count stops each match before the message's
# ";", which would split a CMake list.
string(REGEX MATCH "[^\n]*error: [^\n]*" first_error "${out}")
string(REGEX MATCHALL "error: [^\n;]*leash needs <stop_token>" leash_errors "${out}")
list(LENGTH leash_errors leash_error_count)

if(NOT first_error MATCHES "leash needs <stop_token>")
  message(FATAL_ERROR "unsupported-stdlib check failed: the first error is not leash's #error")
endif()
if(NOT leash_error_count EQUAL 1)
  message(FATAL_ERROR
    "unsupported-stdlib check failed: leash's #error appears ${leash_error_count} times")
endif()
