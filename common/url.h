#pragma once
// Percent-encoding of one URL path segment (RFC 3986): what the sync proxy does to a key before
// it substitutes `{key}` in an owner's readPath, and what the owner side undoes.

#include <optional>
#include <string>
#include <string_view>

namespace datashare::url {

// Every byte but the unreserved ones (ALPHA DIGIT - . _ ~) becomes %XX (upper-case hex), so the
// result is one path segment whatever the key holds ('/', '?', '%', spaces, UTF-8).
std::string percent_encode_segment(std::string_view s);

// "%41b+c" → "Ab+c" ('+' stays: path segments are not form data); nullopt when a '%' is not
// followed by two hex digits.
std::optional<std::string> percent_decode(std::string_view s);

// The value of `name` in a query string "a=1&b=2" (percent-decoded), nullopt when absent.
std::optional<std::string> query_param(std::string_view query, std::string_view name);

}  // namespace datashare::url
