#include "sidecar/event/schema.h"

#include <charconv>
#include <cstdint>

namespace datashare::sidecar::event {

bool matches(const nlohmann::json& v, config::field_type type) {
  using config::field_type;
  switch (type) {
    case field_type::string:
      return v.is_string();
    case field_type::number:
      return v.is_number();
    case field_type::integer:
      return v.is_number_integer();
    case field_type::boolean:
      return v.is_boolean();
    case field_type::object:
      return v.is_object();
    case field_type::array:
      return v.is_array();
  }
  return false;
}

std::size_t utf8_sequence_length(std::string_view s, std::size_t i) {
  auto c = static_cast<unsigned char>(s[i]);
  std::size_t n = 0;
  std::uint32_t cp = 0;
  if (c < 0x80) {
    return 1;
  } else if ((c & 0xe0) == 0xc0) {
    n = 1;
    cp = c & 0x1f;
  } else if ((c & 0xf0) == 0xe0) {
    n = 2;
    cp = c & 0x0f;
  } else if ((c & 0xf8) == 0xf0) {
    n = 3;
    cp = c & 0x07;
  } else {
    return 0;
  }
  if (i + n >= s.size()) return 0;
  for (std::size_t k = 1; k <= n; ++k) {
    auto cc = static_cast<unsigned char>(s[i + k]);
    if ((cc & 0xc0) != 0x80) return 0;
    cp = (cp << 6) | (cc & 0x3f);
  }
  // Overlong forms, surrogates and values past U+10FFFF are not UTF-8.
  if ((n == 1 && cp < 0x80) || (n == 2 && cp < 0x800) || (n == 3 && cp < 0x10000) || cp > 0x10ffff ||
      (cp >= 0xd800 && cp <= 0xdfff)) {
    return 0;
  }
  return n + 1;
}

bool is_valid_utf8(std::string_view s) {
  for (std::size_t i = 0; i < s.size();) {
    std::size_t n = utf8_sequence_length(s, i);
    if (n == 0) return false;
    i += n;
  }
  return true;
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

nlohmann::json key_field_value(config::field_type key_type, std::string_view key) {
  if (key_type != config::field_type::integer) return std::string(key);
  std::int64_t n = 0;
  auto [end, ec] = std::from_chars(key.data(), key.data() + key.size(), n);
  if (ec != std::errc{} || end != key.data() + key.size() || std::to_string(n) != key) {
    return nlohmann::json::value_t::discarded;
  }
  return n;
}

}  // namespace datashare::sidecar::event
