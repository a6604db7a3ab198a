#pragma once
// Checks a JSON entity against a product's field schema. The publisher rejects what fails
// (400, unknown fields included); the replica sends it to the dead-letter topic (unknown fields
// ignored there: an owner may add fields before consumers learn of them). Pure, no exceptions.

#include <nlohmann/json.hpp>
#include <string>

#include "sidecar/config/config.h"

namespace datashare::sidecar::event {

enum class unknown_fields { reject, ignore };

bool matches(const nlohmann::json& value, config::field_type type);

// Keys travel in JSON bodies and headers: they must be valid UTF-8.
// Bytes of the UTF-8 sequence starting at s[i] (1 for ASCII), or 0 when it is not valid UTF-8
// (truncated, overlong, a surrogate, past U+10FFFF).
std::size_t utf8_sequence_length(std::string_view s, std::size_t i);

bool is_valid_utf8(std::string_view s);

// "" when `object` conforms; otherwise the first problem, e.g.
// `field "price": expected number, got string`. Null values are allowed for every field.
std::string check_entity(const nlohmann::json& object, const config::product_schema& product, unknown_fields unknown);

}  // namespace datashare::sidecar::event
