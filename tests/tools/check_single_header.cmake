# Regenerates the single header into FRESH and fails if the committed copy differs.
execute_process(COMMAND ${TOOL} ${INCLUDE_DIR} ${FRESH} RESULT_VARIABLE rc)
if(NOT rc EQUAL 0)
  message(FATAL_ERROR "amalgamate failed (${rc})")
endif()
execute_process(COMMAND ${CMAKE_COMMAND} -E compare_files ${COMMITTED} ${FRESH} RESULT_VARIABLE diff)
if(NOT diff EQUAL 0)
  message(FATAL_ERROR "include/leash/single/leash.hpp is stale: build the `leash_single_header` "
                      "target and commit the result")
endif()
