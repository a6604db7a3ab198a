#pragma once
// A strict, allocation-light JSON scanner for the replica's hot path: it validates a whole JSON
// text (RFC 8259: strings with valid escapes and UTF-8, numbers, literals, nesting up to a depth
// limit) and, when it is an object, returns each top-level member as slices of the input. The
// replica checks field types and projects a policy's fields from these slices without building a
// document (nlohmann::json stays for the control plane and the publisher's 400 messages).
// Pure, no exceptions, no I/O.

#include <string>
#include <string_view>
#include <vector>

namespace datashare::sidecar::event {

enum class json_kind { string, integer, number, boolean, null, object, array };

struct json_member {
  std::string_view name;  // the name's characters between the quotes, escapes not decoded
  bool name_has_escapes = false;
  std::string_view value;  // the value's full text (strings with their quotes)
  json_kind kind = json_kind::null;
};

enum class json_scan_result { object, not_an_object, invalid };

inline constexpr int kMaxJsonDepth = 64;

// Validates `text`; when it is an object, fills `members` in order of appearance.
json_scan_result scan_json_object(std::string_view text, std::vector<json_member>& members);

// Decodes the characters of a string literal (between its quotes, already validated).
std::string unescape_json_string(std::string_view body);

// The last member called `name` (escaped names compared decoded), or null: a repeated name counts
// with its last value, as JSON parsers have it.
const json_member* last_member(const std::vector<json_member>& members, std::string_view name);

// `s` as a JSON string literal, quotes included, as nlohmann::json writes it (invalid UTF-8
// replaced by U+FFFD): for the names of a projection.
std::string quote_json_string(std::string_view s);

}  // namespace datashare::sidecar::event
