#include "sidecar/event/json_scan.h"

#include <cstdint>
#include <cstring>
#include <nlohmann/json.hpp>

#include "sidecar/event/schema.h"

namespace datashare::sidecar::event {
namespace {

class scanner {
 public:
  explicit scanner(std::string_view t) : t_(t) {}

  void ws() {
    while (i_ < t_.size() && (t_[i_] == ' ' || t_[i_] == '\t' || t_[i_] == '\n' || t_[i_] == '\r')) ++i_;
  }
  bool at_end() const { return i_ >= t_.size(); }
  char peek() const { return i_ < t_.size() ? t_[i_] : '\0'; }
  std::size_t pos() const { return i_; }

  // A string literal starting at the opening quote; `escapes` tells whether it holds any.
  bool string(bool& escapes) {
    escapes = false;
    if (peek() != '"') return false;
    ++i_;
    while (i_ < t_.size()) {
      // Eight plain bytes at a time: most of a value's text needs no look at each byte.
      while (i_ + 8 <= t_.size() && plain8(t_.data() + i_)) i_ += 8;
      if (i_ >= t_.size()) break;
      auto c = static_cast<unsigned char>(t_[i_]);
      if (c == '"') {
        ++i_;
        return true;
      }
      if (c < 0x20) return false;
      if (c == '\\') {
        escapes = true;
        if (++i_ >= t_.size()) return false;
        char e = t_[i_];
        if (e == 'u') {
          for (int k = 0; k < 4; ++k) {
            if (++i_ >= t_.size() || !is_hex(t_[i_])) return false;
          }
          ++i_;
        } else if (e == '"' || e == '\\' || e == '/' || e == 'b' || e == 'f' || e == 'n' || e == 'r' || e == 't') {
          ++i_;
        } else {
          return false;
        }
        continue;
      }
      if (c < 0x80) {
        ++i_;
        continue;
      }
      if (!utf8_sequence()) return false;
    }
    return false;
  }

  bool number(bool& integer) {
    integer = true;
    if (peek() == '-') ++i_;
    if (peek() == '0') {
      ++i_;
    } else if (peek() >= '1' && peek() <= '9') {
      while (peek() >= '0' && peek() <= '9') ++i_;
    } else {
      return false;
    }
    if (peek() == '.') {
      integer = false;
      ++i_;
      if (!(peek() >= '0' && peek() <= '9')) return false;
      while (peek() >= '0' && peek() <= '9') ++i_;
    }
    if (peek() == 'e' || peek() == 'E') {
      integer = false;
      ++i_;
      if (peek() == '+' || peek() == '-') ++i_;
      if (!(peek() >= '0' && peek() <= '9')) return false;
      while (peek() >= '0' && peek() <= '9') ++i_;
    }
    return true;
  }

  bool literal(std::string_view word) {
    if (t_.substr(i_, word.size()) != word) return false;
    i_ += word.size();
    return true;
  }

  // Any value; sets its kind.
  bool value(json_kind& kind, int depth) {
    if (depth > kMaxJsonDepth) return false;
    char c = peek();
    bool flag = false;
    switch (c) {
      case '"':
        kind = json_kind::string;
        return string(flag);
      case '{':
        kind = json_kind::object;
        return container('}', depth, true);
      case '[':
        kind = json_kind::array;
        return container(']', depth, false);
      case 't':
        kind = json_kind::boolean;
        return literal("true");
      case 'f':
        kind = json_kind::boolean;
        return literal("false");
      case 'n':
        kind = json_kind::null;
        return literal("null");
      default:
        if (!number(flag)) return false;
        kind = flag ? json_kind::integer : json_kind::number;
        return true;
    }
  }

  // The members of an object (at '{'), reported when `out` is given (top level only).
  bool object_members(std::vector<json_member>* out, int depth) {
    ++i_;  // '{'
    ws();
    if (peek() == '}') {
      ++i_;
      return true;
    }
    for (;;) {
      json_member m;
      std::size_t name_start = i_ + 1;
      if (!string(m.name_has_escapes)) return false;
      m.name = t_.substr(name_start, i_ - 1 - name_start);
      ws();
      if (peek() != ':') return false;
      ++i_;
      ws();
      std::size_t value_start = i_;
      if (!value(m.kind, depth + 1)) return false;
      m.value = t_.substr(value_start, i_ - value_start);
      if (out != nullptr) out->push_back(m);
      ws();
      if (peek() == ',') {
        ++i_;
        ws();
        continue;
      }
      if (peek() == '}') {
        ++i_;
        return true;
      }
      return false;
    }
  }

 private:
  // No quote, backslash, control character (< 0x20) or non-ASCII byte among the eight at `p`.
  // Each test sets a byte's high bit when the byte matches (the borrows of a subtraction can
  // only reach bytes above a match, so "any" is exact).
  static bool plain8(const char* p) {
    constexpr std::uint64_t kOnes = 0x0101010101010101ULL, kHighs = 0x8080808080808080ULL;
    std::uint64_t x = 0;
    std::memcpy(&x, p, sizeof x);
    auto has_zero = [](std::uint64_t v) { return (v - kOnes) & ~v & kHighs; };
    const std::uint64_t special =
        has_zero(x ^ (kOnes * '"')) | has_zero(x ^ (kOnes * '\\')) | ((x - kOnes * 0x20) & ~x & kHighs) | (x & kHighs);
    return special == 0;
  }
  static bool is_hex(char c) { return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F'); }

  bool utf8_sequence() {
    std::size_t n = utf8_sequence_length(t_, i_);
    if (n == 0) return false;
    i_ += n;
    return true;
  }

  bool container(char close, int depth, bool is_object) {
    if (is_object) return object_members(nullptr, depth);
    ++i_;  // '['
    ws();
    if (peek() == close) {
      ++i_;
      return true;
    }
    for (;;) {
      json_kind k;
      if (!value(k, depth + 1)) return false;
      ws();
      if (peek() == ',') {
        ++i_;
        ws();
        continue;
      }
      if (peek() == close) {
        ++i_;
        return true;
      }
      return false;
    }
  }

  std::string_view t_;
  std::size_t i_ = 0;
};

void append_utf8(std::string& out, std::uint32_t cp) {
  if (cp < 0x80) {
    out.push_back(static_cast<char>(cp));
  } else if (cp < 0x800) {
    out.push_back(static_cast<char>(0xc0 | (cp >> 6)));
    out.push_back(static_cast<char>(0x80 | (cp & 0x3f)));
  } else if (cp < 0x10000) {
    out.push_back(static_cast<char>(0xe0 | (cp >> 12)));
    out.push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3f)));
    out.push_back(static_cast<char>(0x80 | (cp & 0x3f)));
  } else {
    out.push_back(static_cast<char>(0xf0 | (cp >> 18)));
    out.push_back(static_cast<char>(0x80 | ((cp >> 12) & 0x3f)));
    out.push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3f)));
    out.push_back(static_cast<char>(0x80 | (cp & 0x3f)));
  }
}

std::uint32_t hex4(std::string_view s) {
  std::uint32_t v = 0;
  for (char c : s.substr(0, 4)) {
    v <<= 4;
    if (c >= '0' && c <= '9')
      v |= static_cast<std::uint32_t>(c - '0');
    else if (c >= 'a' && c <= 'f')
      v |= static_cast<std::uint32_t>(c - 'a' + 10);
    else
      v |= static_cast<std::uint32_t>(c - 'A' + 10);
  }
  return v;
}

}  // namespace

json_scan_result scan_json_object(std::string_view text, std::vector<json_member>& members) {
  scanner s(text);
  s.ws();
  if (s.peek() == '{') {
    if (!s.object_members(&members, 1)) return json_scan_result::invalid;
    s.ws();
    return s.at_end() ? json_scan_result::object : json_scan_result::invalid;
  }
  json_kind k;
  if (s.at_end() || !s.value(k, 1)) return json_scan_result::invalid;
  s.ws();
  return s.at_end() ? json_scan_result::not_an_object : json_scan_result::invalid;
}

std::string unescape_json_string(std::string_view b) {
  std::string out;
  out.reserve(b.size());
  for (std::size_t i = 0; i < b.size(); ++i) {
    if (b[i] != '\\' || i + 1 >= b.size()) {
      out.push_back(b[i]);
      continue;
    }
    char e = b[++i];
    switch (e) {
      case 'b':
        out.push_back('\b');
        break;
      case 'f':
        out.push_back('\f');
        break;
      case 'n':
        out.push_back('\n');
        break;
      case 'r':
        out.push_back('\r');
        break;
      case 't':
        out.push_back('\t');
        break;
      case 'u': {
        std::uint32_t cp = hex4(b.substr(i + 1));
        i += 4;
        // A surrogate pair makes one code point; a lone surrogate becomes U+FFFD.
        if (cp >= 0xd800 && cp <= 0xdbff && i + 6 < b.size() && b.substr(i + 1, 2) == "\\u") {
          std::uint32_t lo = hex4(b.substr(i + 3));
          if (lo >= 0xdc00 && lo <= 0xdfff) {
            cp = 0x10000 + ((cp - 0xd800) << 10) + (lo - 0xdc00);
            i += 6;
          } else {
            cp = 0xfffd;
          }
        } else if (cp >= 0xd800 && cp <= 0xdfff) {
          cp = 0xfffd;
        }
        append_utf8(out, cp);
        break;
      }
      default:
        out.push_back(e);
        break;  // '"', '\\', '/'
    }
  }
  return out;
}

const json_member* last_member(const std::vector<json_member>& members, std::string_view name) {
  const json_member* found = nullptr;
  for (const auto& m : members) {
    if (m.name_has_escapes ? unescape_json_string(m.name) == name : m.name == name) found = &m;
  }
  return found;
}

std::string quote_json_string(std::string_view s) {
  return nlohmann::json(std::string(s)).dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
}

}  // namespace datashare::sidecar::event
