# Regenerates the single headers (HEADERS) into FRESH_DIR and fails if a
# committed copy in COMMITTED_DIR differs.
file(REMOVE_RECURSE ${FRESH_DIR})
execute_process(COMMAND ${TOOL} ${INCLUDE_DIR} ${LICENSE} ${FRESH_DIR} RESULT_VARIABLE rc)
if(NOT rc EQUAL 0)
  message(FATAL_ERROR "amalgamate failed (${rc})")
endif()
set(stale "")
foreach(header ${HEADERS})
  execute_process(COMMAND ${CMAKE_COMMAND} -E compare_files
                          ${COMMITTED_DIR}/${header} ${FRESH_DIR}/${header}
                  RESULT_VARIABLE diff)
  if(NOT diff EQUAL 0)
    list(APPEND stale include/leash/single/${header})
  endif()
endforeach()
if(stale)
  list(JOIN stale ", " stale)
  message(FATAL_ERROR "${stale} stale or missing: build the `leash_single_header` target and "
                      "commit the result")
endif()
