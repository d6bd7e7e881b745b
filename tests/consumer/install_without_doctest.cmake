# Configures leash (from LEASH_SOURCE_DIR) with doctest hidden, as on a machine
# without it, and checks: with LEASH_BUILD_TESTS left to its default the tests
# are skipped with a message and `cmake --install` yields a usable package
# (the consumer project builds against it and runs); with LEASH_BUILD_TESTS=ON
# configuring fails and says why.
file(REMOVE_RECURSE ${WORK_DIR})
set(hide_doctest -DCMAKE_DISABLE_FIND_PACKAGE_doctest=ON -DCMAKE_CXX_COMPILER=${CXX})

function(run what)
  execute_process(COMMAND ${ARGN} RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE err)
  if(NOT rc EQUAL 0)
    message(FATAL_ERROR "${what} failed:\n${out}\n${err}")
  endif()
  set(out "${out}${err}" PARENT_SCOPE)
endfunction()

run("configuring leash without doctest"
    ${CMAKE_COMMAND} -S ${LEASH_SOURCE_DIR} -B ${WORK_DIR}/leash ${hide_doctest})
if(NOT out MATCHES "doctest not found, so leash's tests are skipped")
  message(FATAL_ERROR "configuring without doctest did not say the tests are skipped:\n${out}")
endif()
run("cmake --install" ${CMAKE_COMMAND} --install ${WORK_DIR}/leash --prefix ${WORK_DIR}/prefix)
foreach(installed include/leash.hpp include/leash/version.hpp include/leash/single/leash.hpp
                  include/leash/single/leash_http.hpp share/cmake/leash/leashConfig.cmake
                  share/doc/leash/LICENSE)
  if(NOT EXISTS ${WORK_DIR}/prefix/${installed})
    message(FATAL_ERROR "the install lacks ${installed}")
  endif()
endforeach()

run("configuring the consumer against the install"
    ${CMAKE_COMMAND} -S ${CMAKE_CURRENT_LIST_DIR} -B ${WORK_DIR}/consumer -DMODE=find_package
    -DCMAKE_PREFIX_PATH=${WORK_DIR}/prefix -DCMAKE_CXX_COMPILER=${CXX})
run("building the consumer" ${CMAKE_COMMAND} --build ${WORK_DIR}/consumer)
run("running the consumer" ${WORK_DIR}/consumer/consumer)
if(NOT out MATCHES "consumer ok: 42")
  message(FATAL_ERROR "the consumer did not run correctly:\n${out}")
endif()

execute_process(
  COMMAND ${CMAKE_COMMAND} -S ${LEASH_SOURCE_DIR} -B ${WORK_DIR}/leash-tests-on ${hide_doctest}
          -DLEASH_BUILD_TESTS=ON
  RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE err)
if(rc EQUAL 0)
  message(FATAL_ERROR "-DLEASH_BUILD_TESTS=ON without doctest configured; it must fail")
endif()
if(NOT err MATCHES "LEASH_BUILD_TESTS is ON but doctest was not found")
  message(FATAL_ERROR "-DLEASH_BUILD_TESTS=ON without doctest failed without saying why:\n${err}")
endif()
message("install without doctest: ok")
