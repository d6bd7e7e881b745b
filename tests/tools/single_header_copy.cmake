# Sets up OUT_DIR the way a user of the single headers does: the generated
# headers in SINGLE_DIR copied into an otherwise empty folder, beside a copy of
# SOURCE whose leash includes (<leash.hpp>, <leash/...>) become one
# `#include "leash_http.hpp"`.
file(REMOVE_RECURSE ${OUT_DIR})
file(MAKE_DIRECTORY ${OUT_DIR})
file(GLOB headers ${SINGLE_DIR}/*.hpp)
file(COPY ${headers} DESTINATION ${OUT_DIR})

file(READ ${SOURCE} text)
set(leash_include "#include <leash[./][^>\n]*>\n")
string(REGEX MATCH "${leash_include}" first "${text}")
if(NOT first)
  message(FATAL_ERROR "${SOURCE} includes no leash header: nothing to rewrite")
endif()
string(FIND "${text}" "${first}" at)
string(SUBSTRING "${text}" 0 ${at} head)
string(SUBSTRING "${text}" ${at} -1 tail)
string(REGEX REPLACE "${leash_include}" "" tail "${tail}")
file(WRITE ${OUT_DIR}/leash_demo.cpp "${head}#include \"leash_http.hpp\"\n${tail}")
