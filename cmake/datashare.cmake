# One shape for every component of the project.
#
#   datashare_cc_library(NAME kube SRCS a.cc b.cc DEPS datashare::common PUBLIC_DEPS yaml-cpp)
#     -> static library target `datashare_kube`, alias `datashare::kube`. Headers are included
#        by their path from the repository root: #include "operator/kube/config.h".
#   datashare_cc_test(NAME kube_config_test SRCS config_test.cc DEPS datashare::kube LABELS unit)
#     -> GoogleTest executable registered with ctest under the given labels (unit | integration | e2e).
#        Integration and e2e tests require the `cluster` ctest fixture (the local control plane and
#        Kafka, started once by tests/CMakeLists.txt) unless FIXTURES is given.
#   datashare_cc_binary(NAME datashare-operator SRCS main.cc DEPS datashare::runtime)

# No -Wnull-dereference: at -O2 GCC 12 reports it inside header-only libraries we instantiate
# (nlohmann::json iterators, Boost.Asio) where no null is dereferenced; ASan and UBSan check the real thing.
set(DATASHARE_WARNINGS -Wall -Wextra -Wpedantic -Wshadow -Wnon-virtual-dtor -Wold-style-cast -Wcast-align
    -Woverloaded-virtual -Wimplicit-fallthrough
    # Aggregates with default member initializers are meant to be built with designated
    # initializers naming only what differs; -Wextra would flag every omitted member.
    -Wno-missing-field-initializers)
if(CMAKE_CXX_COMPILER_ID STREQUAL "GNU" AND CMAKE_CXX_COMPILER_VERSION VERSION_LESS 13 AND
   CMAKE_BUILD_TYPE STREQUAL "Release")
  # GCC 12 at -O3 reports -Wrestrict inside libstdc++'s inlined std::string code (an "overlap"
  # of 2^63 bytes in char_traits::copy, GCC bug 105329): `make bench`'s release build of the
  # tests failed. The other presets (-O1/-O2) do not see it and keep the warning.
  list(APPEND DATASHARE_WARNINGS -Wno-restrict)
endif()

add_library(datashare_options INTERFACE)
target_compile_options(datashare_options INTERFACE ${DATASHARE_WARNINGS})
if(DATASHARE_WERROR)
  target_compile_options(datashare_options INTERFACE -Werror)
endif()
target_include_directories(datashare_options INTERFACE ${PROJECT_SOURCE_DIR})
if(DATASHARE_SANITIZE)
  target_compile_options(datashare_options INTERFACE -fsanitize=${DATASHARE_SANITIZE} -fno-omit-frame-pointer -g)
  if(DATASHARE_SANITIZE MATCHES "thread")
    # GCC warns that TSan does not model std::atomic_thread_fence, which Boost.Asio uses; the
    # fences sit next to atomics TSan does see, so the warning is not a hole in our checks.
    target_compile_options(datashare_options INTERFACE -Wno-tsan)
  endif()
  target_link_options(datashare_options INTERFACE -fsanitize=${DATASHARE_SANITIZE})
  if(DATASHARE_SANITIZE MATCHES "undefined")
    # vptr is off: cpprestsdk's stream buffers are instantiated both in its shared library
    # (built with hidden visibility) and in our objects, so their type_info differs and every
    # body read is reported as a wrong dynamic type. The rest of UBSan stays on and fatal.
    target_compile_options(datashare_options INTERFACE -fno-sanitize-recover=undefined -fno-sanitize=vptr)
    target_link_options(datashare_options INTERFACE -fno-sanitize=vptr)
  endif()
endif()

if(DATASHARE_FUZZ)
  # Every library the fuzz targets link is instrumented for libFuzzer's coverage feedback; the
  # targets themselves link the fuzzer's main (fuzz/CMakeLists.txt).
  target_compile_options(datashare_options INTERFACE -fsanitize=fuzzer-no-link)
endif()

function(datashare_cc_library)
  cmake_parse_arguments(A "" "NAME" "SRCS;DEPS;PUBLIC_DEPS" ${ARGN})
  add_library(datashare_${A_NAME} STATIC ${A_SRCS})
  add_library(datashare::${A_NAME} ALIAS datashare_${A_NAME})
  target_link_libraries(datashare_${A_NAME} PUBLIC datashare_options ${A_PUBLIC_DEPS} PRIVATE ${A_DEPS})
endfunction()

function(datashare_cc_binary)
  cmake_parse_arguments(A "" "NAME" "SRCS;DEPS" ${ARGN})
  add_executable(${A_NAME} ${A_SRCS})
  target_link_libraries(${A_NAME} PRIVATE datashare_options ${A_DEPS})
  set_target_properties(${A_NAME} PROPERTIES RUNTIME_OUTPUT_DIRECTORY ${PROJECT_BINARY_DIR}/bin)
endfunction()

function(datashare_cc_test)
  cmake_parse_arguments(A "" "NAME;TIMEOUT" "SRCS;DEPS;LABELS;FIXTURES;ENVIRONMENT" ${ARGN})
  if(NOT A_LABELS)
    set(A_LABELS unit)
  endif()
  if(NOT A_TIMEOUT)
    set(A_TIMEOUT 300)
  endif()
  add_executable(${A_NAME} ${A_SRCS})
  target_link_libraries(${A_NAME} PRIVATE datashare_options ${A_DEPS} GTest::gmock GTest::gtest_main)
  set_target_properties(${A_NAME} PROPERTIES RUNTIME_OUTPUT_DIRECTORY ${PROJECT_BINARY_DIR}/tests)
  add_test(NAME ${A_NAME} COMMAND ${A_NAME})
  set_tests_properties(${A_NAME} PROPERTIES LABELS "${A_LABELS}" TIMEOUT ${A_TIMEOUT})
  datashare_require_cluster(${A_NAME} LABELS ${A_LABELS} FIXTURES ${A_FIXTURES} ENVIRONMENT ${A_ENVIRONMENT})
endfunction()

# Integration and e2e tests run inside the `cluster` fixture and see its environment file.
function(datashare_require_cluster test)
  cmake_parse_arguments(A "" "" "LABELS;FIXTURES;ENVIRONMENT" ${ARGN})
  set(env ${A_ENVIRONMENT})
  if("integration" IN_LIST A_LABELS OR "e2e" IN_LIST A_LABELS)
    if(NOT A_FIXTURES)
      set(A_FIXTURES cluster)
    endif()
    list(APPEND env "DATASHARE_ENV_FILE=${DATASHARE_TEST_ENV_FILE}")
  endif()
  list(APPEND env "DATASHARE_SOURCE_DIR=${PROJECT_SOURCE_DIR}" "DATASHARE_BINARY_DIR=${PROJECT_BINARY_DIR}"
    "LSAN_OPTIONS=suppressions=${PROJECT_SOURCE_DIR}/tests/sanitizers/lsan.supp:print_suppressions=0"
    "UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1"
    "TSAN_OPTIONS=halt_on_error=1:second_deadlock_stack=1:suppressions=${PROJECT_SOURCE_DIR}/tests/sanitizers/tsan.supp")
  if(A_FIXTURES)
    set_tests_properties(${test} PROPERTIES FIXTURES_REQUIRED "${A_FIXTURES}")
  endif()
  set_tests_properties(${test} PROPERTIES ENVIRONMENT "${env}")
endfunction()

# A test written as a script (bash) with the same labels and fixture rules.
function(datashare_script_test)
  cmake_parse_arguments(A "" "NAME;SCRIPT;TIMEOUT" "LABELS;FIXTURES;ENVIRONMENT;ARGS" ${ARGN})
  if(NOT A_TIMEOUT)
    set(A_TIMEOUT 300)
  endif()
  add_test(NAME ${A_NAME} COMMAND bash ${A_SCRIPT} ${A_ARGS})
  set_tests_properties(${A_NAME} PROPERTIES LABELS "${A_LABELS}" TIMEOUT ${A_TIMEOUT})
  datashare_require_cluster(${A_NAME} LABELS ${A_LABELS} FIXTURES ${A_FIXTURES} ENVIRONMENT ${A_ENVIRONMENT})
endfunction()
