#include "common/base64.h"

#include <array>
#include <cstdint>

namespace datashare {
namespace {

constexpr std::string_view alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

constexpr std::array<int8_t, 256> make_decode_table() {
  std::array<int8_t, 256> table{};
  table.fill(-1);
  for (size_t i = 0; i < alphabet.size(); ++i) table[static_cast<unsigned char>(alphabet[i])] = static_cast<int8_t>(i);
  return table;
}
constexpr auto decode_table = make_decode_table();

bool is_space(char c) {
  return c == ' ' || c == '\n' || c == '\r' || c == '\t';
}

}  // namespace

std::optional<std::string> base64_decode(std::string_view text) {
  std::string compact;
  compact.reserve(text.size());
  for (char c : text) {
    if (!is_space(c)) compact.push_back(c);
  }
  if (compact.size() % 4 != 0) return std::nullopt;
  std::string out;
  out.reserve(compact.size() / 4 * 3);
  for (size_t i = 0; i < compact.size(); i += 4) {
    uint32_t group = 0;
    int padding = 0;
    for (size_t j = 0; j < 4; ++j) {
      char c = compact[i + j];
      if (c == '=') {
        // Padding only in the last group, only in its last two places, and only trailing.
        if (i + 4 != compact.size() || j < 2) return std::nullopt;
        ++padding;
        group <<= 6;
        continue;
      }
      if (padding > 0) return std::nullopt;
      int8_t v = decode_table[static_cast<unsigned char>(c)];
      if (v < 0) return std::nullopt;
      group = (group << 6) | static_cast<uint32_t>(v);
    }
    out.push_back(static_cast<char>((group >> 16) & 0xff));
    if (padding < 2) out.push_back(static_cast<char>((group >> 8) & 0xff));
    if (padding < 1) out.push_back(static_cast<char>(group & 0xff));
  }
  return out;
}

std::string base64_encode(std::string_view bytes) {
  std::string out;
  out.reserve((bytes.size() + 2) / 3 * 4);
  size_t i = 0;
  for (; i + 3 <= bytes.size(); i += 3) {
    uint32_t g = (static_cast<uint8_t>(bytes[i]) << 16) | (static_cast<uint8_t>(bytes[i + 1]) << 8) |
                 static_cast<uint8_t>(bytes[i + 2]);
    out.push_back(alphabet[(g >> 18) & 63]);
    out.push_back(alphabet[(g >> 12) & 63]);
    out.push_back(alphabet[(g >> 6) & 63]);
    out.push_back(alphabet[g & 63]);
  }
  size_t rest = bytes.size() - i;
  if (rest > 0) {
    uint32_t g = static_cast<uint8_t>(bytes[i]) << 16;
    if (rest == 2) g |= static_cast<uint8_t>(bytes[i + 1]) << 8;
    out.push_back(alphabet[(g >> 18) & 63]);
    out.push_back(alphabet[(g >> 12) & 63]);
    out.push_back(rest == 2 ? alphabet[(g >> 6) & 63] : '=');
    out.push_back('=');
  }
  return out;
}

}  // namespace datashare
