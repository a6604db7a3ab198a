#include "sidecar/config/yaml_reader.h"

#include <cctype>
#include <set>

namespace datashare::sidecar::config {

bool is_dns_label_like(std::string_view s) {
  if (s.empty() || s.size() > 253) return false;
  for (char c : s) {
    if (!(std::islower(static_cast<unsigned char>(c)) != 0 || std::isdigit(static_cast<unsigned char>(c)) != 0 ||
          c == '-' || c == '.')) {
      return false;
    }
  }
  return std::isalnum(static_cast<unsigned char>(s.front())) != 0 &&
         std::isalnum(static_cast<unsigned char>(s.back())) != 0;
}

bool is_loopback(std::string_view address) {
  return address == "::1" || address.rfind("127.", 0) == 0;
}

std::optional<field_type> parse_field_type(std::string_view s) {
  for (auto t : {field_type::string, field_type::number, field_type::integer, field_type::boolean, field_type::object,
                 field_type::array}) {
    if (to_string(t) == s) return t;
  }
  return std::nullopt;
}

std::optional<endpoint> read_endpoint(reader& r, const YAML::Node& node, const std::string& path) {
  if (!r.map(node, path, {"address", "port"})) return std::nullopt;
  endpoint e;
  e.address = r.string(node, path, "address", true).value_or("");
  e.port = static_cast<std::uint16_t>(r.integer(node, path, "port", true, 0, 65535).value_or(0));
  return e;
}

void read_product(reader& r, const YAML::Node& node, const std::string& path, product_schema& p) {
  if (!r.map(node, path, {"name", "namespace", "key", "fields"})) return;
  p.name = r.string(node, path, "name", true).value_or("");
  if (!p.name.empty() && !is_dns_label_like(p.name)) {
    r.add(reader::join(path, "name"), "must be a lowercase DNS name (a-z, 0-9, '-', '.'), got \"" + p.name + "\"");
  }
  p.namespace_name = r.string(node, path, "namespace", true).value_or("");
  p.key = r.string(node, path, "key", true).value_or("");
  std::string fp = reader::join(path, "fields");
  if (!r.present(node, "fields")) {
    r.add(fp, "is required");
    return;
  }
  const YAML::Node fields = node["fields"];
  if (!fields.IsSequence() || fields.size() == 0) {
    r.add(fp, "must be a non-empty list of {name, type, restricted}");
    return;
  }
  std::set<std::string> seen;
  for (std::size_t i = 0; i < fields.size(); ++i) {
    std::string ip = reader::index(fp, i);
    if (!r.map(fields[i], ip, {"name", "type", "restricted"})) continue;
    field f;
    f.name = r.string(fields[i], ip, "name", true).value_or("");
    if (auto t = r.string(fields[i], ip, "type", true)) {
      if (auto ft = parse_field_type(*t)) {
        f.type = *ft;
      } else {
        r.add(reader::join(ip, "type"),
              "unknown type \"" + *t + "\" (types: string, number, integer, boolean, object, array)");
      }
    }
    f.restricted = r.boolean(fields[i], ip, "restricted").value_or(false);
    if (!f.name.empty() && !seen.insert(f.name).second)
      r.add(reader::join(ip, "name"), "duplicate field \"" + f.name + "\"");
    p.fields.push_back(std::move(f));
  }
  if (!p.key.empty()) {
    const field* k = p.find(p.key);
    if (k == nullptr) {
      r.add(reader::join(path, "key"),
            "key field \"" + p.key + "\" is not one of the fields (" + p.field_names() + ")");
    } else if (k->restricted) {
      r.add(reader::join(path, "key"), "key field \"" + p.key + "\" cannot be restricted");
    }
  }
}

bool is_http_url(std::string_view s) {
  for (std::string_view scheme : {"http://", "https://"}) {
    if (s.size() > scheme.size() && s.substr(0, scheme.size()) == scheme) return true;
  }
  return false;
}

}  // namespace datashare::sidecar::config
