#pragma once
// Splitting one fuzz input into the parts a target needs, in a text shape that seed files can be
// written in by hand: "first line\nrest", "name=value" lines, blank-line separated sections.
#include <cstddef>
#include <cstdint>
#include <string_view>

namespace datashare::fuzz {

inline std::string_view as_text(const std::uint8_t* data, std::size_t size) {
  return {reinterpret_cast<const char*>(data), size};
}

// Cuts `text` at the first `separator`: returns what is before it and leaves the rest in `text`
// (all of it when there is no separator, leaving `text` empty).
inline std::string_view take_until(std::string_view& text, std::string_view separator) {
  auto at = text.find(separator);
  std::string_view head = text.substr(0, at);
  text = at == std::string_view::npos ? std::string_view() : text.substr(at + separator.size());
  return head;
}

}  // namespace datashare::fuzz
