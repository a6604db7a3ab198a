#pragma once
// The YAML reading shared by every datashare config file (the sidecar's, the gateway's): a reader
// that records every problem with its path instead of stopping at the first, and the sections
// whose shape is the same everywhere (a product schema, an endpoint). Used inside the parse_*
// functions, which catch yaml-cpp's exceptions for shapes nobody anticipated.

#include <yaml-cpp/yaml.h>

#include <algorithm>
#include <charconv>
#include <chrono>
#include <cstdint>
#include <initializer_list>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "sidecar/config/config.h"

namespace datashare::sidecar::config {

// Walks the YAML tree, filling the config and recording every problem with its path. Nothing
// here stops at the first problem: a value that cannot be read is reported and left at default.
class reader {
 public:
  explicit reader(std::vector<problem>& problems) : problems_(problems) {}

  void add(const std::string& path, std::string message) { problems_.push_back({path, std::move(message)}); }

  static std::string join(const std::string& path, std::string_view key) {
    return path.empty() ? std::string(key) : path + "." + std::string(key);
  }
  static std::string index(const std::string& path, std::size_t i) { return path + "[" + std::to_string(i) + "]"; }

  // Checks that `node` is a map and reports the keys it does not know, so typos are caught.
  bool map(const YAML::Node& node, const std::string& path, std::initializer_list<std::string_view> known) {
    if (!node.IsMap()) {
      add(path, "must be a mapping");
      return false;
    }
    for (auto it = node.begin(); it != node.end(); ++it) {
      std::string key = it->first.Scalar();
      if (std::find(known.begin(), known.end(), key) == known.end()) {
        std::string list;
        for (auto k : known) list += (list.empty() ? "" : ", ") + std::string(k);
        add(join(path, key), "unknown key (known: " + list + ")");
      }
    }
    return true;
  }

  bool present(const YAML::Node& map, const char* key) { return map.IsMap() && map[key] && !map[key].IsNull(); }

  std::optional<std::string> string(const YAML::Node& map, const std::string& path, const char* key, bool required) {
    std::string p = join(path, key);
    if (!present(map, key)) {
      if (required) add(p, "is required");
      return std::nullopt;
    }
    const YAML::Node n = map[key];
    if (!n.IsScalar()) {
      add(p, "must be a string");
      return std::nullopt;
    }
    if (required && n.Scalar().empty()) {
      add(p, "must not be empty");
      return std::nullopt;
    }
    return n.Scalar();
  }

  std::optional<std::int64_t> integer(const YAML::Node& map, const std::string& path, const char* key, bool required,
                                      std::int64_t min, std::int64_t max) {
    std::string p = join(path, key);
    if (!present(map, key)) {
      if (required) add(p, "is required");
      return std::nullopt;
    }
    const YAML::Node n = map[key];
    std::int64_t v = 0;
    const std::string& s = n.IsScalar() ? n.Scalar() : std::string();
    auto [ptr, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
    if (!n.IsScalar() || s.empty() || ec != std::errc() || ptr != s.data() + s.size()) {
      add(p, "must be an integer");
      return std::nullopt;
    }
    if (v < min || v > max) {
      add(p, "must be between " + std::to_string(min) + " and " + std::to_string(max) + ", got " + s);
      return std::nullopt;
    }
    return v;
  }

  std::optional<bool> boolean(const YAML::Node& map, const std::string& path, const char* key) {
    if (!present(map, key)) return std::nullopt;
    const YAML::Node n = map[key];
    if (n.IsScalar() && (n.Scalar() == "true" || n.Scalar() == "false")) return n.Scalar() == "true";
    add(join(path, key), "must be true or false");
    return std::nullopt;
  }

  std::optional<std::chrono::milliseconds> duration(const YAML::Node& map, const std::string& path, const char* key) {
    auto s = string(map, path, key, false);
    if (!s) return std::nullopt;
    auto d = parse_duration(*s);
    if (!d) add(join(path, key), "not a duration: \"" + *s + "\" (examples: 300ms, 5s, 1m30s)");
    return d;
  }

  std::vector<std::string> string_list(const YAML::Node& map, const std::string& path, const char* key) {
    std::vector<std::string> out;
    if (!present(map, key)) return out;
    const YAML::Node n = map[key];
    std::string p = join(path, key);
    if (!n.IsSequence()) {
      add(p, "must be a list of strings");
      return out;
    }
    for (std::size_t i = 0; i < n.size(); ++i) {
      if (!n[i].IsScalar() || n[i].Scalar().empty()) {
        add(index(p, i), "must be a non-empty string");
        continue;
      }
      out.push_back(n[i].Scalar());
    }
    return out;
  }

 private:
  std::vector<problem>& problems_;
};

bool is_dns_label_like(std::string_view s);
bool is_loopback(std::string_view address);
bool is_http_url(std::string_view s);  // http:// or https:// followed by something
std::optional<field_type> parse_field_type(std::string_view s);

std::optional<endpoint> read_endpoint(reader& r, const YAML::Node& node, const std::string& path);
// {name, namespace, key, fields: [{name, type, restricted}]}: the key must be a non-restricted field.
void read_product(reader& r, const YAML::Node& node, const std::string& path, product_schema& p);

}  // namespace datashare::sidecar::config
