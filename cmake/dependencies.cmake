# Every third-party library of the project, all from Debian 12 packages
# (hack/install-deps.sh installs them). Found once here; components link the imported targets.
find_package(PkgConfig REQUIRED)
find_package(Threads REQUIRED)
find_package(OpenSSL REQUIRED)
find_package(Boost 1.74 REQUIRED COMPONENTS system)
find_package(cpprestsdk REQUIRED)
find_package(yaml-cpp REQUIRED)
find_package(nlohmann_json 3.10 REQUIRED)
find_package(prometheus-cpp REQUIRED)
find_package(RocksDB REQUIRED)
find_package(GTest REQUIRED)
find_package(benchmark REQUIRED)
pkg_check_modules(RDKAFKA REQUIRED IMPORTED_TARGET rdkafka)
pkg_check_modules(RDKAFKAXX REQUIRED IMPORTED_TARGET rdkafka++)
add_library(datashare_rdkafka INTERFACE)
target_link_libraries(datashare_rdkafka INTERFACE PkgConfig::RDKAFKAXX PkgConfig::RDKAFKA)
add_library(rdkafka::rdkafka ALIAS datashare_rdkafka)

# cpprestsdk defines a macro `U` that breaks GoogleTest and other templates; nothing here uses it.
target_compile_definitions(datashare_options INTERFACE _TURN_OFF_PLATFORM_STRING)
