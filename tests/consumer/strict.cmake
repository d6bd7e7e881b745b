# Consumer builds under strict warnings, included from tests/CMakeLists.txt.
#
# Users include leash into builds with many more warnings than leash's own
# tests use, as errors. For each compiler found (g++, clang++):
#   - every public header, and the single header, compiles ALONE (a one-line
#     TU that includes just it) warning-free: self-contained and clean;
#   - every doc example compiles warning-free, so the templates a program
#     instantiates are clean too, not only what a bare include parses.
# And a standard library without C++20 stop tokens (libc++ before 18) must be
# rejected by leash's one #error, before any other error.

set(leash_strict_flags -std=c++20 -Wall -Wextra -Wpedantic -Wshadow -Wnon-virtual-dtor
    -Wold-style-cast -Wconversion -Wsign-conversion -Werror -fsyntax-only)
set(leash_include_dir ${PROJECT_SOURCE_DIR}/include)

file(GLOB leash_public_headers CONFIGURE_DEPENDS RELATIVE ${leash_include_dir}
  ${leash_include_dir}/leash.hpp
  ${leash_include_dir}/leash/*.hpp
  ${leash_include_dir}/leash/http/*.hpp)
file(GLOB leash_strict_examples CONFIGURE_DEPENDS ${PROJECT_SOURCE_DIR}/docs/examples/*.cpp)
list(FILTER leash_strict_examples EXCLUDE REGEX "/sqlite_cursor\\.cpp$")  # needs sqlite3.h

# One TU per header: `#include <leash/channel.hpp>`.
set(leash_strict_dir ${CMAKE_CURRENT_BINARY_DIR}/strict)
foreach(header ${leash_public_headers})
  string(MAKE_C_IDENTIFIER ${header} id)
  file(CONFIGURE OUTPUT ${leash_strict_dir}/${id}.cpp CONTENT "#include <${header}>\n")
endforeach()
# The single header, found through its own directory alone.
file(CONFIGURE OUTPUT ${leash_strict_dir}/single.cpp CONTENT "#include <leash.hpp>\n")

foreach(compiler g++ clang++)
  find_program(leash_strict_${compiler} NAMES ${compiler})
  set(cxx ${leash_strict_${compiler}})
  if(NOT cxx)
    message(STATUS "leash: ${compiler} not found; its strict header checks are skipped")
    continue()
  endif()
  foreach(header ${leash_public_headers})
    string(MAKE_C_IDENTIFIER ${header} id)
    add_test(NAME "strict header: ${header} (${compiler})"
      COMMAND ${cxx} ${leash_strict_flags} -I${leash_include_dir} ${leash_strict_dir}/${id}.cpp)
  endforeach()
  add_test(NAME "strict header: leash/single/leash.hpp (${compiler})"
    COMMAND ${cxx} ${leash_strict_flags} -I${leash_include_dir}/leash/single
            ${leash_strict_dir}/single.cpp)
  foreach(example ${leash_strict_examples})
    get_filename_component(name ${example} NAME)
    add_test(NAME "strict example: ${name} (${compiler})"
      COMMAND ${cxx} ${leash_strict_flags} -I${leash_include_dir} ${example})
    set_tests_properties("strict example: ${name} (${compiler})" PROPERTIES TIMEOUT 120)
  endforeach()
endforeach()

# libc++ is only tested when clang++ can compile against it (Debian:
# libc++-14-dev libc++abi-14-dev). Before 18 it must be rejected clearly;
# from 18 on leash.hpp must compile with it.
if(leash_strict_clang++)
  set(leash_probe_dir ${CMAKE_CURRENT_BINARY_DIR}/libcxx-probe)
  file(WRITE ${leash_probe_dir}/probe.cpp
    "#include <version>\n#if !defined(_LIBCPP_VERSION)\n#error not libc++\n#endif\n"
    "#if _LIBCPP_VERSION >= 18000\n#error libc++ 18 or later\n#endif\n")
  execute_process(
    COMMAND ${leash_strict_clang++} -std=c++20 -stdlib=libc++ -fsyntax-only ${leash_probe_dir}/probe.cpp
    RESULT_VARIABLE leash_probe_rc OUTPUT_VARIABLE leash_probe_out ERROR_VARIABLE leash_probe_out)
  if(leash_probe_rc EQUAL 0)
    add_test(NAME "unsupported stdlib: libc++ before 18 rejected by one #error (clang++)"
      COMMAND ${CMAKE_COMMAND}
        -DCXX=${leash_strict_clang++}
        -DINCLUDE_DIR=${leash_include_dir}
        -DSOURCE=${leash_strict_dir}/leash_hpp.cpp
        -P ${CMAKE_CURRENT_SOURCE_DIR}/consumer/check_unsupported_stdlib.cmake)
    set_tests_properties("unsupported stdlib: libc++ before 18 rejected by one #error (clang++)"
      PROPERTIES
        PASS_REGULAR_EXPRESSION "leash needs <stop_token> and std::jthread \\(C\\+\\+20 stop tokens\\): libstdc\\+\\+ from GCC 11\\+ or libc\\+\\+ 18\\+"
        FAIL_REGULAR_EXPRESSION "unsupported-stdlib check failed")
  elseif(leash_probe_out MATCHES "libc\\+\\+ 18 or later")
    add_test(NAME "strict header: leash.hpp (clang++ -stdlib=libc++)"
      COMMAND ${leash_strict_clang++} ${leash_strict_flags} -stdlib=libc++ -I${leash_include_dir}
              ${leash_strict_dir}/leash_hpp.cpp)
  else()
    message(STATUS "leash: clang++ finds no libc++; the libc++ checks are skipped")
  endif()
endif()
