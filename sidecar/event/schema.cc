#include "sidecar/event/schema.h"

namespace datashare::sidecar::event {

bool matches(const nlohmann::json& v, config::field_type type) {
  using config::field_type;
  switch (type) {
    case field_type::string: return v.is_string();
    case field_type::number: return v.is_number();
    case field_type::integer: return v.is_number_integer();
    case field_type::boolean: return v.is_boolean();
    case field_type::object: return v.is_object();
    case field_type::array: return v.is_array();
  }
  return false;
}

namespace {

const char* json_type_name(const nlohmann::json& v) {
  if (v.is_number_integer()) return "integer";
  if (v.is_number()) return "number";
  return v.type_name();
}

}  // namespace

std::string check_entity(const nlohmann::json& object, const config::product_schema& product, unknown_fields unknown) {
  if (!object.is_object()) return std::string("expected a JSON object, got ") + json_type_name(object);
  for (auto it = object.begin(); it != object.end(); ++it) {
    const config::field* f = product.find(it.key());
    if (f == nullptr) {
      if (unknown == unknown_fields::reject) {
        return "unknown field \"" + it.key() + "\" (product fields: " + product.field_names() + ")";
      }
      continue;
    }
    if (!it.value().is_null() && !matches(it.value(), f->type)) {
      return "field \"" + it.key() + "\": expected " + std::string(config::to_string(f->type)) + ", got " +
             json_type_name(it.value());
    }
  }
  return {};
}

}  // namespace datashare::sidecar::event
