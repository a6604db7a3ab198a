#include "operator/runtime/finalizers.h"

namespace datashare::runtime {
namespace {

const kube::json* metadata_of(const kube::json& object) {
  if (!object.is_object()) return nullptr;
  auto m = object.find("metadata");
  return m != object.end() && m->is_object() ? &*m : nullptr;
}

kube::json finalizers_of(const kube::json& object) {
  const kube::json* m = metadata_of(object);
  if (m == nullptr) return kube::json::array();
  auto f = m->find("finalizers");
  return f != m->end() && f->is_array() ? *f : kube::json::array();
}

kube::json guarded_patch(const kube::json& object, kube::json finalizers) {
  kube::json patch = {{"metadata", {{"finalizers", std::move(finalizers)}}}};
  if (const kube::json* m = metadata_of(object)) {
    if (auto rv = m->find("resourceVersion");
        rv != m->end() && rv->is_string() && !rv->get_ref<const std::string&>().empty()) {
      patch["metadata"]["resourceVersion"] = *rv;
    }
  }
  return patch;
}

}  // namespace

bool has_finalizer(const kube::json& object, std::string_view finalizer) {
  for (const auto& f : finalizers_of(object)) {
    if (f.is_string() && f.get_ref<const std::string&>() == finalizer) return true;
  }
  return false;
}

bool is_being_deleted(const kube::json& object) {
  const kube::json* m = metadata_of(object);
  if (m == nullptr) return false;
  auto ts = m->find("deletionTimestamp");
  return ts != m->end() && ts->is_string() && !ts->get_ref<const std::string&>().empty();
}

std::optional<kube::json> add_finalizer(const kube::json& object, std::string_view finalizer) {
  if (has_finalizer(object, finalizer)) return std::nullopt;
  kube::json list = finalizers_of(object);
  list.push_back(std::string(finalizer));
  return guarded_patch(object, std::move(list));
}

std::optional<kube::json> remove_finalizer(const kube::json& object, std::string_view finalizer) {
  if (!has_finalizer(object, finalizer)) return std::nullopt;
  kube::json kept = kube::json::array();
  for (const auto& f : finalizers_of(object)) {
    if (!(f.is_string() && f.get_ref<const std::string&>() == finalizer)) kept.push_back(f);
  }
  return guarded_patch(object, kept.empty() ? kube::json(nullptr) : std::move(kept));
}

}  // namespace datashare::runtime
