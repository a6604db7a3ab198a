#pragma once
// Reading members of objects the API server (or anything on the wire) sent, without trusting
// their types: nlohmann's json::value("k", default) throws type_error when the member exists with
// another type, and an exception escaping a watch or an informer's thread ends the process
// (found with fuzz/fuzz_watch_stream: a Status with "code":"410", "resourceVersion": 5).
#include <cstdint>
#include <nlohmann/json.hpp>
#include <string>
#include <string_view>

namespace datashare::kube {

// The string member `key` of `object`, or `fallback` when `object` is not an object or the member
// is absent or not a string.
inline std::string string_member(const nlohmann::json& object, const char* key, const std::string& fallback = "") {
  if (!object.is_object()) return fallback;
  auto it = object.find(key);
  return it != object.end() && it->is_string() ? it->get<std::string>() : fallback;
}

// The integer member `key`, or `fallback` when absent, not an integer or out of int's range.
inline int int_member(const nlohmann::json& object, const char* key, int fallback) {
  if (!object.is_object()) return fallback;
  auto it = object.find(key);
  if (it == object.end() || !it->is_number_integer()) return fallback;
  auto v = it->get<std::int64_t>();
  return v < INT32_MIN || v > INT32_MAX ? fallback : static_cast<int>(v);
}

// The boolean member `key`, or `fallback` when absent or not a boolean.
inline bool bool_member(const nlohmann::json& object, const char* key, bool fallback) {
  if (!object.is_object()) return fallback;
  auto it = object.find(key);
  return it != object.end() && it->is_boolean() ? it->get<bool>() : fallback;
}

// Kubernetes objects nest a few tens of levels; parsing deeper JSON is fine (nlohmann's parser
// is iterative) but dumping it, or packing it into the informer's cache (to_msgpack), recurses
// once per level and overflows the stack (found with fuzz/fuzz_watch_stream: 100000 '[').
inline constexpr int kMaxJsonDepth = 256;

// Whether the JSON text `text` opens more than `limit` arrays/objects inside one another
// (brackets inside strings do not count). Linear, no allocation; run before parsing.
inline bool nested_deeper_than(std::string_view text, int limit) {
  int depth = 0;
  bool in_string = false;
  for (std::size_t i = 0; i < text.size(); ++i) {
    const char c = text[i];
    if (in_string) {
      if (c == '\\') {
        ++i;
      } else if (c == '"') {
        in_string = false;
      }
    } else if (c == '"') {
      in_string = true;
    } else if (c == '[' || c == '{') {
      if (++depth > limit) return true;
    } else if (c == ']' || c == '}') {
      --depth;
    }
  }
  return false;
}

}  // namespace datashare::kube
