#include "operator/runtime/conditions.h"

#include <stdexcept>

namespace datashare::runtime {
namespace {

// metav1.Condition's reason pattern: ^[A-Za-z]([A-Za-z0-9_,:]*[A-Za-z0-9_])?$, at most 1024.
bool valid_reason(std::string_view r) {
  auto alpha = [](char c) { return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z'); };
  auto word_char = [&](char c) { return alpha(c) || (c >= '0' && c <= '9') || c == '_'; };
  if (r.empty() || r.size() > 1024 || !alpha(r.front())) return false;
  if (r.size() > 1 && !word_char(r.back())) return false;
  for (char c : r) {
    if (!word_char(c) && c != ',' && c != ':') return false;
  }
  return true;
}

void validate(const condition& c) {
  if (c.type.empty()) throw std::invalid_argument("condition type is empty");
  if (c.status != kConditionTrue && c.status != kConditionFalse && c.status != kConditionUnknown) {
    throw std::invalid_argument("condition " + c.type + ": status must be True, False or Unknown, not \"" + c.status +
                                "\"");
  }
  if (!valid_reason(c.reason)) {
    throw std::invalid_argument("condition " + c.type + ": reason \"" + c.reason +
                                "\" is not CamelCase (letters, digits, _ , :; starting with a letter)");
  }
}

const kube::json* conditions_of(const kube::json& object) {
  if (!object.is_object()) return nullptr;
  auto status = object.find("status");
  if (status == object.end() || !status->is_object()) return nullptr;
  auto list = status->find("conditions");
  if (list == status->end() || !list->is_array()) return nullptr;
  return &*list;
}

std::string string_field(const kube::json& c, const char* name) {
  auto it = c.find(name);
  return it != c.end() && it->is_string() ? it->get<std::string>() : std::string();
}

bool has_type(const kube::json& c, std::string_view type) {
  return c.is_object() && string_field(c, "type") == type;
}

// Sets c[name] = value; returns whether it differed.
template <typename T>
bool assign(kube::json& c, const char* name, const T& value) {
  auto it = c.find(name);
  if (it != c.end() && *it == value) return false;
  c[name] = value;
  return true;
}

}  // namespace

bool set_condition(kube::json& object, const condition& desired, int64_t observed_generation, wall_time_point now) {
  validate(desired);
  if (!object.is_object()) throw std::invalid_argument("set_condition: the object is not a JSON object");
  kube::json& status = object["status"];
  if (status.is_null()) status = kube::json::object();
  if (!status.is_object()) throw std::invalid_argument("set_condition: status is not an object");
  kube::json& list = status["conditions"];
  if (!list.is_array()) list = kube::json::array();

  for (kube::json& c : list) {
    if (!has_type(c, desired.type)) continue;
    bool changed = false;
    if (string_field(c, "status") != desired.status || !c.contains("lastTransitionTime")) {
      c["status"] = desired.status;
      c["lastTransitionTime"] = format_rfc3339(now);
      changed = true;
    }
    changed |= assign(c, "reason", desired.reason);
    changed |= assign(c, "message", desired.message);
    changed |= assign(c, "observedGeneration", observed_generation);
    return changed;
  }
  list.push_back({{"type", desired.type},
                  {"status", desired.status},
                  {"observedGeneration", observed_generation},
                  {"lastTransitionTime", format_rfc3339(now)},
                  {"reason", desired.reason},
                  {"message", desired.message}});
  return true;
}

bool remove_condition(kube::json& object, std::string_view type) {
  if (conditions_of(object) == nullptr) return false;
  kube::json& list = object["status"]["conditions"];
  for (auto it = list.begin(); it != list.end(); ++it) {
    if (has_type(*it, type)) {
      list.erase(it);
      return true;
    }
  }
  return false;
}

std::optional<observed_condition> find_condition(const kube::json& object, std::string_view type) {
  const kube::json* list = conditions_of(object);
  if (list == nullptr) return std::nullopt;
  for (const kube::json& c : *list) {
    if (!has_type(c, type)) continue;
    observed_condition out{.type = std::string(type),
                           .status = string_field(c, "status"),
                           .reason = string_field(c, "reason"),
                           .message = string_field(c, "message"),
                           .last_transition_time = string_field(c, "lastTransitionTime")};
    if (auto g = c.find("observedGeneration"); g != c.end() && g->is_number_integer()) {
      out.observed_generation = g->get<int64_t>();
    }
    return out;
  }
  return std::nullopt;
}

bool has_condition_status(const kube::json& object, std::string_view type, std::string_view status) {
  auto c = find_condition(object, type);
  return c.has_value() && c->status == status;
}

}  // namespace datashare::runtime
