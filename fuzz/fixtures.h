#pragma once
// The product every fuzz target works with: one field of each type, one restricted.
#include "sidecar/config/config.h"

namespace datashare::fuzz {

inline sidecar::config::product_schema products() {
  using sidecar::config::field_type;
  sidecar::config::product_schema p;
  p.name = "products";
  p.namespace_name = "catalog";
  p.key = "id";
  p.fields = {{"id", field_type::string, false},      {"name", field_type::string, false},
              {"price", field_type::number, false},   {"stock", field_type::integer, false},
              {"active", field_type::boolean, false}, {"tags", field_type::array, false},
              {"dims", field_type::object, false},    {"supplierEmail", field_type::string, true}};
  return p;
}

}  // namespace datashare::fuzz
