#include "operator/kube/label_selector.h"

#include <cctype>
#include <vector>

namespace datashare::kube {
namespace {

std::string_view trim(std::string_view s) {
  while (!s.empty() && std::isspace(static_cast<unsigned char>(s.front()))) s.remove_prefix(1);
  while (!s.empty() && std::isspace(static_cast<unsigned char>(s.back()))) s.remove_suffix(1);
  return s;
}

bool alnum(char c) {
  return std::isalnum(static_cast<unsigned char>(c)) != 0;
}

// A name or value segment: at most 63 characters, alphanumerics with '-', '_' or '.' inside.
bool name_segment(std::string_view s, bool empty_ok) {
  if (s.empty()) return empty_ok;
  if (s.size() > 63 || !alnum(s.front()) || !alnum(s.back())) return false;
  for (char c : s) {
    if (!alnum(c) && c != '-' && c != '_' && c != '.') return false;
  }
  return true;
}

// A DNS subdomain prefix: lower-case labels separated by dots, at most 253 characters.
bool dns_prefix(std::string_view s) {
  if (s.empty() || s.size() > 253) return false;
  for (std::size_t start = 0; start <= s.size();) {
    const std::size_t dot = s.find('.', start);
    const std::string_view label = s.substr(start, dot == std::string_view::npos ? s.size() - start : dot - start);
    if (label.empty() || label.size() > 63 || !alnum(label.front()) || !alnum(label.back())) return false;
    for (char c : label) {
      if (!(std::islower(static_cast<unsigned char>(c)) || std::isdigit(static_cast<unsigned char>(c)) || c == '-'))
        return false;
    }
    if (dot == std::string_view::npos) break;
    start = dot + 1;
  }
  return true;
}

bool label_key(std::string_view k) {
  const std::size_t slash = k.find('/');
  if (slash == std::string_view::npos) return name_segment(k, false);
  return dns_prefix(k.substr(0, slash)) && name_segment(k.substr(slash + 1), false);
}

// Splits on the commas outside parentheses; nullopt when the parentheses do not pair.
std::optional<std::vector<std::string_view>> requirements(std::string_view s) {
  std::vector<std::string_view> out;
  int depth = 0;
  std::size_t start = 0;
  for (std::size_t i = 0; i < s.size(); ++i) {
    if (s[i] == '(') {
      if (++depth > 1) return std::nullopt;
    } else if (s[i] == ')') {
      if (--depth < 0) return std::nullopt;
    } else if (s[i] == ',' && depth == 0) {
      out.push_back(s.substr(start, i - start));
      start = i + 1;
    }
  }
  if (depth != 0) return std::nullopt;
  out.push_back(s.substr(start));
  return out;
}

std::optional<std::string> requirement_problem(std::string_view whole) {
  const std::string_view r = trim(whole);
  const std::string quoted = "\"" + std::string(r) + "\"";
  if (r.empty()) return "an empty requirement (two commas, or one at an end)";
  if (r.front() == '!') {
    if (!label_key(trim(r.substr(1)))) return quoted + ": not a label key after '!'";
    return std::nullopt;
  }
  // Set-based: key in (v1,v2) / key notin (v1,v2).
  if (const std::size_t open = r.find('('); open != std::string_view::npos) {
    if (r.back() != ')') return quoted + ": text after the closing parenthesis";
    const std::string_view head = trim(r.substr(0, open));
    const std::size_t space = head.find_last_of(" \t");
    if (space == std::string_view::npos) return quoted + ": expected <key> in (...) or <key> notin (...)";
    const std::string_view key = trim(head.substr(0, space)), op = head.substr(space + 1);
    if (op != "in" && op != "notin") return quoted + ": unknown operator \"" + std::string(op) + "\"";
    if (!label_key(key)) return quoted + ": \"" + std::string(key) + "\" is not a label key";
    const std::string_view values = r.substr(open + 1, r.size() - open - 2);
    if (trim(values).empty()) return quoted + ": an empty set of values";
    std::size_t start = 0;
    for (;;) {
      const std::size_t comma = values.find(',', start);
      const std::string_view v =
          trim(values.substr(start, comma == std::string_view::npos ? values.npos : comma - start));
      if (!name_segment(v, true)) return quoted + ": \"" + std::string(v) + "\" is not a label value";
      if (comma == std::string_view::npos) break;
      start = comma + 1;
    }
    return std::nullopt;
  }
  // Equality-based: key=value, key==value, key!=value, or a bare key (exists).
  for (std::string_view op : {"!=", "==", "="}) {
    const std::size_t at = r.find(op);
    if (at == std::string_view::npos) continue;
    const std::string_view key = trim(r.substr(0, at)), value = trim(r.substr(at + op.size()));
    if (!label_key(key)) return quoted + ": \"" + std::string(key) + "\" is not a label key";
    if (!name_segment(value, true)) return quoted + ": \"" + std::string(value) + "\" is not a label value";
    return std::nullopt;
  }
  if (!label_key(r)) return quoted + ": not a label key, nor <key>=<value>, <key>!=<value>, <key> in (...)";
  return std::nullopt;
}

}  // namespace

std::optional<std::string> label_selector_problem(std::string_view selector) {
  if (trim(selector).empty()) return std::nullopt;
  auto parts = requirements(selector);
  if (!parts) return "unbalanced parentheses in \"" + std::string(selector) + "\"";
  for (const auto& p : *parts) {
    if (auto problem = requirement_problem(p)) return problem;
  }
  return std::nullopt;
}

}  // namespace datashare::kube
