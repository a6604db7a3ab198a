# Leader election, events recorder, conditions and finalizers (issue 3). Included from
# CMakeLists.txt; a file of its own only so that parallel work on the runtime does not collide.

# Object helpers: RFC 3339 time, metav1.Condition on status.conditions, finalizers.
datashare_cc_library(NAME runtime_object_helpers
  SRCS rfc3339.cc conditions.cc finalizers.cc
  PUBLIC_DEPS datashare::kube nlohmann_json::nlohmann_json)

datashare_cc_test(NAME runtime_conditions_test SRCS conditions_test.cc DEPS datashare::runtime_object_helpers LABELS unit)
datashare_cc_test(NAME runtime_finalizers_test SRCS finalizers_test.cc DEPS datashare::runtime_object_helpers LABELS unit)
