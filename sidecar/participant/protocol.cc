#include "sidecar/participant/protocol.h"

#include <nlohmann/json.hpp>

namespace datashare::sidecar::participant {

bool is_valid_tx_id(std::string_view id) {
  if (id.empty() || id.size() > 64) return false;
  for (char c : id) {
    bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-' || c == '_';
    if (!ok) return false;
  }
  return true;
}

std::string encode_prepare(const prepare_request& r) {
  nlohmann::json j{{"product", r.product},
                   {"key", r.key},
                   {"op", r.deleted ? "delete" : "put"},
                   {"version", r.version},
                   {"peers", r.peers}};
  j["value"] = r.deleted ? nlohmann::json(nullptr) : nlohmann::json::parse(r.value);
  return j.dump();
}

std::string decode_prepare(std::string_view body, prepare_request& out) {
  auto j = nlohmann::json::parse(body, nullptr, false);
  if (j.is_discarded() || !j.is_object()) return "the body must be a JSON object";
  auto str = [&](const char* name, std::string& to) {
    auto it = j.find(name);
    if (it == j.end() || !it->is_string() || it->get_ref<const std::string&>().empty()) return false;
    to = it->get<std::string>();
    return true;
  };
  if (!str("product", out.product)) return "product: a non-empty string is required";
  if (!str("key", out.key)) return "key: a non-empty string is required";
  std::string op;
  if (!str("op", op) || (op != "put" && op != "delete")) return "op: put or delete";
  out.deleted = op == "delete";
  auto v = j.find("version");
  if (v == j.end() || !v->is_number_unsigned() || v->get<std::uint64_t>() == 0)
    return "version: a positive integer is required";
  out.version = v->get<std::uint64_t>();
  auto value = j.find("value");
  if (out.deleted) {
    out.value.clear();
  } else {
    if (value == j.end() || !value->is_object()) return "value: a JSON object is required with op put";
    out.value = value->dump();
  }
  out.peers.clear();
  if (auto p = j.find("peers"); p != j.end()) {
    if (!p->is_array()) return "peers: a list of URLs";
    for (const auto& u : *p) {
      if (!u.is_string()) return "peers: a list of URLs";
      out.peers.push_back(u.get<std::string>());
    }
  }
  return "";
}

std::string encode_product(std::string_view product) {
  return nlohmann::json{{"product", product}}.dump();
}

std::optional<std::string> decode_product(std::string_view body) {
  auto j = nlohmann::json::parse(body, nullptr, false);
  if (j.is_discarded() || !j.is_object()) return std::nullopt;
  auto it = j.find("product");
  if (it == j.end() || !it->is_string()) return std::nullopt;
  return it->get<std::string>();
}

std::string read_member(std::string_view body, const char* member) {
  auto j = nlohmann::json::parse(body, nullptr, false);
  if (j.is_discarded() || !j.is_object()) return "";
  auto it = j.find(member);
  if (it == j.end() || !it->is_string()) return "";
  return it->get<std::string>();
}

std::optional<tx_path> parse_tx_path(std::string_view path) {
  constexpr std::string_view kPrefix = "/v1/tx/";
  if (path.substr(0, kPrefix.size()) != kPrefix) return std::nullopt;
  path.remove_prefix(kPrefix.size());
  tx_path out;
  auto slash = path.find('/');
  out.id = std::string(path.substr(0, slash));
  if (slash != std::string_view::npos) {
    out.op = std::string(path.substr(slash + 1));
    if (out.op.empty()) return std::nullopt;
  }
  if (!is_valid_tx_id(out.id)) return std::nullopt;
  return out;
}

}  // namespace datashare::sidecar::participant
