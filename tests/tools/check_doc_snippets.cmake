# Extracts the ```cpp blocks of one Markdown page (tests/tools/doc_snippets.cpp)
# and compiles them against include/ with the test suite's warning flags.
#   -DTOOL= -DPAGE= -DOUT= -DCXX= -DFLAGS="a|b|c" -DINCLUDE_DIR= -DTESTS_DIR=
execute_process(COMMAND ${TOOL} ${PAGE} ${OUT} RESULT_VARIABLE rc)
if(NOT rc EQUAL 0)
  message(FATAL_ERROR "doc_snippets failed on ${PAGE} (${rc})")
endif()
string(REPLACE "|" ";" flags "${FLAGS}")
execute_process(
  COMMAND ${CXX} -std=c++20 -fsyntax-only ${flags} -I${INCLUDE_DIR} -I${TESTS_DIR} ${OUT}
  RESULT_VARIABLE rc)
if(NOT rc EQUAL 0)
  message(FATAL_ERROR "a code block of ${PAGE} does not compile (generated: ${OUT})")
endif()
