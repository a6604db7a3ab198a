#pragma once
// metav1.Condition on any object's status.conditions, with apimachinery's SetStatusCondition
// rules: lastTransitionTime moves only when status changes; reason, message and
// observedGeneration are always brought up to date.
//
// These work on the JSON object in memory. Writing it back is the caller's choice: update_status
// with the object's resourceVersion (optimistic concurrency: a Conflict means re-read and
// reconcile again), or apply_status with the whole list when the CRD declares conditions as
// `x-kubernetes-list-type: map` keyed by type.

#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "operator/kube/client.h"
#include "operator/runtime/rfc3339.h"

namespace datashare::runtime {

inline constexpr std::string_view kConditionTrue = "True";
inline constexpr std::string_view kConditionFalse = "False";
inline constexpr std::string_view kConditionUnknown = "Unknown";

// What a controller asserts about one condition type.
struct condition {
  std::string type;     // "Ready"; CamelCase, unique in the list
  std::string status;   // "True" | "False" | "Unknown"
  std::string reason;   // "TopicCreated"; CamelCase, machine-readable, required
  std::string message;  // for humans; may be empty
};

// A condition as stored on an object.
struct observed_condition {
  std::string type;
  std::string status;
  std::string reason;
  std::string message;
  int64_t observed_generation = 0;  // 0 when absent
  std::string last_transition_time;
};

// Sets `desired` in object["status"]["conditions"] (creating status and the list if needed) and
// returns whether anything changed, so a controller writes status only when it must.
// `observed_generation` is the metadata.generation the controller acted on; `now` becomes
// lastTransitionTime when the condition is new or its status changed.
// Throws std::invalid_argument for an empty type, a status other than True/False/Unknown, a
// reason that is not CamelCase (the API server would reject it), or a status that is not an object.
bool set_condition(kube::json& object, const condition& desired, int64_t observed_generation, wall_time_point now);

// Removes the condition of `type`; returns whether it was there.
bool remove_condition(kube::json& object, std::string_view type);

std::optional<observed_condition> find_condition(const kube::json& object, std::string_view type);

// The condition exists and has this status.
bool has_condition_status(const kube::json& object, std::string_view type, std::string_view status);
inline bool is_true(const kube::json& object, std::string_view type) {
  return has_condition_status(object, type, kConditionTrue);
}
inline bool is_false(const kube::json& object, std::string_view type) {
  return has_condition_status(object, type, kConditionFalse);
}

}  // namespace datashare::runtime
