# Compiles SOURCE with CXX twice: with -DLEASH_USE_VALUE it must build (the
# positive control), without it it must fail with a nodiscard diagnostic.
#   cmake -DCXX=... -DSOURCE=... -DINCLUDE_DIR=... -P check_nodiscard.cmake
set(flags -std=c++20 -fsyntax-only -Wall -Wextra -Werror=unused-result -Werror=unused-value
          -I${INCLUDE_DIR})
execute_process(COMMAND ${CXX} ${flags} -DLEASH_USE_VALUE ${SOURCE}
  RESULT_VARIABLE used_rc OUTPUT_VARIABLE used_out ERROR_VARIABLE used_out)
if(NOT used_rc EQUAL 0)
  message(FATAL_ERROR "positive control failed: ${SOURCE} does not build with the value used:\n${used_out}")
endif()
execute_process(COMMAND ${CXX} ${flags} ${SOURCE}
  RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE out)
if(rc EQUAL 0)
  message(FATAL_ERROR "${SOURCE} built although its value is discarded")
endif()
if(NOT out MATCHES "nodiscard")
  message(FATAL_ERROR "${SOURCE} failed, but not with a nodiscard diagnostic:\n${out}")
endif()
message(STATUS "discarded value rejected, as it must be:\n${out}")
