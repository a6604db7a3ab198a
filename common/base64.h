#pragma once
// Strict base64 (RFC 4648 §4, padded) for kubeconfig *-data fields and Secret values.

#include <optional>
#include <string>
#include <string_view>

namespace datashare {

// Returns the decoded bytes, or nullopt when `text` is not valid padded base64. ASCII
// whitespace is ignored, as kubectl does for multi-line data.
std::optional<std::string> base64_decode(std::string_view text);

std::string base64_encode(std::string_view bytes);

}  // namespace datashare
