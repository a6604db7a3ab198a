#pragma once
// Checks a JSON entity against a product's field schema. The publisher rejects what fails
// (400, unknown fields included); the replica sends it to the dead-letter topic (unknown fields
// ignored there: an owner may add fields before consumers learn of them). Pure, no exceptions.

#include <nlohmann/json.hpp>
#include <string>
#include <string_view>

#include "sidecar/config/config.h"

namespace datashare::sidecar::event {

enum class unknown_fields { reject, ignore };

bool matches(const nlohmann::json& value, config::field_type type);

// Keys travel in JSON bodies and headers: they must be valid UTF-8.
// Bytes of the UTF-8 sequence starting at s[i] (1 for ASCII), or 0 when it is not valid UTF-8
// (truncated, overlong, a surrogate, past U+10FFFF).
std::size_t utf8_sequence_length(std::string_view s, std::size_t i);

bool is_valid_utf8(std::string_view s);

// The value a product's key field holds for the key `key` (a path's or a message's key): the
// string itself, or for an integer key the number it spells, written as JSON writes it ("42",
// "-7"; not "042", "+7", "4.2e1", nor past 64 bits); discarded when it spells none. The gateway,
// the publisher and the replica's applier all hold a body's key field to it.
nlohmann::json key_field_value(config::field_type key_type, std::string_view key);

// "" when `object` conforms; otherwise the first problem, e.g.
// `field "price": expected number, got string`. Null values are allowed for every field.
std::string check_entity(const nlohmann::json& object, const config::product_schema& product, unknown_fields unknown);

}  // namespace datashare::sidecar::event
