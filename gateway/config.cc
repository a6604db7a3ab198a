#include "gateway/config.h"

#include <fstream>
#include <set>
#include <sstream>

#include "sidecar/config/yaml_reader.h"
#include "sidecar/http/client.h"

namespace datashare::gateway {
namespace cfg = sidecar::config;

namespace {

void read_listen(cfg::reader& r, const YAML::Node& node, gateway_config& c) {
  if (!r.map(node, "listen", {"data", "admin", "threads"})) return;
  if (r.present(node, "data")) {
    if (auto e = cfg::read_endpoint(r, node["data"], "listen.data")) c.data = *e;
  }
  if (r.present(node, "admin")) {
    if (auto e = cfg::read_endpoint(r, node["admin"], "listen.admin")) c.admin = *e;
  }
  if (auto t = r.integer(node, "listen", "threads", false, 1, 64)) c.threads = static_cast<int>(*t);
  if (c.admin.port != 0 && c.admin.port == c.data.port) r.add("listen.admin.port", "must differ from listen.data.port");
}

void read_participants(cfg::reader& r, const YAML::Node& node, gateway_config& c) {
  if (!node.IsSequence() || node.size() == 0) {
    r.add("participants", "must be a non-empty list of {name, role, url}");
    return;
  }
  std::set<std::string> names, urls;
  int owners = 0;
  for (std::size_t i = 0; i < node.size(); ++i) {
    std::string path = cfg::reader::index("participants", i);
    if (!r.map(node[i], path, {"name", "role", "url"})) continue;
    participant_spec p;
    p.name = r.string(node[i], path, "name", true).value_or("");
    if (!p.name.empty() && !names.insert(p.name).second)
      r.add(path + ".name", "participant \"" + p.name + "\" appears twice");
    if (auto role = r.string(node[i], path, "role", true)) {
      if (*role == "owner") {
        p.role = cfg::participant_role::owner;
        ++owners;
      } else if (*role == "copy") {
        p.role = cfg::participant_role::copy;
      } else {
        r.add(path + ".role", "must be owner or copy, got \"" + *role + "\"");
      }
    }
    p.url = r.string(node[i], path, "url", true).value_or("");
    if (!p.url.empty()) {
      if (!sidecar::http::parse_origin(p.url)) {
        r.add(path + ".url", "must be http://host[:port] (no path), got \"" + p.url + "\"");
      } else if (!urls.insert(p.url).second) {
        r.add(path + ".url", "\"" + p.url + "\" is named twice");
      }
    }
    c.participants.push_back(std::move(p));
  }
  if (owners != 1)
    r.add("participants", "exactly one participant must have role owner, found " + std::to_string(owners));
}

}  // namespace

load_result parse_config(std::string_view yaml_text) {
  load_result result;
  YAML::Node root;
  try {
    root = YAML::Load(std::string(yaml_text));
  } catch (const YAML::Exception& e) {
    result.problems.push_back({"", "not valid YAML at line " + std::to_string(e.mark.line + 1) + ", column " +
                                       std::to_string(e.mark.column + 1) + ": " + e.msg});
    return result;
  }
  cfg::reader r(result.problems);
  gateway_config c;
  try {
    if (!r.map(root, "", {"version", "product", "dataDir", "listen", "transaction", "participants"})) {
      result.problems.back().message = "the file must be a YAML mapping (version, product, participants, ...)";
      return result;
    }
    if (auto v = r.integer(root, "", "version", true, 0, 1'000'000); v && *v != kSchemaVersion) {
      r.add("version", "unsupported schema version " + std::to_string(*v) + " (this gateway reads version " +
                           std::to_string(kSchemaVersion) + ")");
    }
    if (r.present(root, "product")) {
      cfg::read_product(r, root["product"], "product", c.product);
    } else {
      r.add("product", "is required");
    }
    c.data_dir = r.string(root, "", "dataDir", true).value_or("");
    if (r.present(root, "listen")) read_listen(r, root["listen"], c);
    if (r.present(root, "transaction")) {
      const YAML::Node t = root["transaction"];
      if (r.map(t, "transaction", {"timeout"})) {
        if (auto d = r.duration(t, "transaction", "timeout")) {
          if (d->count() < 10) {
            r.add("transaction.timeout", "must be at least 10ms");
          } else {
            c.timeout = *d;
          }
        }
      }
    }
    if (r.present(root, "participants")) {
      read_participants(r, root["participants"], c);
    } else {
      r.add("participants", "is required");
    }
  } catch (const YAML::Exception& e) {
    r.add("", std::string("unexpected structure: ") + e.what());
  }
  if (result.problems.empty()) result.config = std::move(c);
  return result;
}

load_result load_config_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    load_result r;
    r.problems.push_back({"", "cannot read config file " + path});
    return r;
  }
  std::stringstream ss;
  ss << in.rdbuf();
  return parse_config(ss.str());
}

}  // namespace datashare::gateway
