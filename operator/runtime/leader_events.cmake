# Leader election, events recorder, conditions and finalizers (issue 3). Included from
# CMakeLists.txt; a file of its own only so that parallel work on the runtime does not collide.

# Object helpers: RFC 3339 time, metav1.Condition on status.conditions, finalizers.
datashare_cc_library(NAME runtime_object_helpers
  SRCS rfc3339.cc conditions.cc finalizers.cc
  PUBLIC_DEPS datashare::kube nlohmann_json::nlohmann_json)

datashare_cc_test(NAME runtime_conditions_test SRCS conditions_test.cc DEPS datashare::runtime_object_helpers LABELS unit)
datashare_cc_test(NAME runtime_finalizers_test SRCS finalizers_test.cc DEPS datashare::runtime_object_helpers LABELS unit)

# Leader election on a coordination.k8s.io/v1 Lease.
datashare_cc_library(NAME runtime_leader
  SRCS leader_election.cc
  PUBLIC_DEPS datashare::kube datashare::runtime_clock datashare::runtime_object_helpers Threads::Threads)

datashare_cc_test(NAME runtime_leader_election_test SRCS leader_election_test.cc DEPS datashare::runtime_leader LABELS unit)

# A process that runs leader election and reports it line by line: for the integration tests,
# and for trying leader election against a cluster by hand.
datashare_cc_binary(NAME leader_election_probe SRCS leader_election_probe.cc DEPS datashare::runtime_leader)

datashare_cc_test(NAME runtime_leader_election_integration_test SRCS leader_election_integration_test.cc
  LABELS integration DEPS datashare::runtime_leader datashare::test_support)
add_dependencies(runtime_leader_election_integration_test leader_election_probe)
if(NOT DATASHARE_SANITIZE STREQUAL "thread")  # as runtime_manager_integration_test
  set_property(TEST runtime_leader_election_integration_test APPEND PROPERTY ENVIRONMENT DATASHARE_TEST_TIME_SCALE=2)
endif()

# Events recorder (events.k8s.io/v1), repeats folded into series.
datashare_cc_library(NAME runtime_events
  SRCS events.cc
  PUBLIC_DEPS datashare::kube datashare::runtime_clock datashare::runtime_object_helpers Threads::Threads)

datashare_cc_test(NAME runtime_events_test SRCS events_test.cc DEPS datashare::runtime_events LABELS unit)

datashare_cc_test(NAME runtime_events_integration_test SRCS events_integration_test.cc LABELS integration
  DEPS datashare::runtime_events datashare::runtime_object_helpers datashare::test_support)
