# Compiles SOURCE with CXX twice: with -DLEASH_POSITIVE_CONTROL it must build
# (the accepted shape next to the misuse), without it it must fail. The second
# compiler output is printed for the test's PASS_REGULAR_EXPRESSION to match
# the expected static_assert message.
#   cmake -DCXX=... -DSOURCE=... -DINCLUDE_DIR=... -P check_compile_error.cmake
set(flags -std=c++20 -fsyntax-only -I${INCLUDE_DIR})
execute_process(COMMAND ${CXX} ${flags} -DLEASH_POSITIVE_CONTROL ${SOURCE}
  RESULT_VARIABLE control_rc OUTPUT_VARIABLE control_out ERROR_VARIABLE control_out)
if(NOT control_rc EQUAL 0)
  message(FATAL_ERROR "positive control failed: ${SOURCE} does not build with the accepted shape")
endif()
execute_process(COMMAND ${CXX} ${flags} ${SOURCE}
  RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE out)
if(rc EQUAL 0)
  message(FATAL_ERROR "misuse built: ${SOURCE} compiled without LEASH_POSITIVE_CONTROL")
endif()
message(STATUS "misuse rejected, as it must be:\n${out}")
