#include "operator/kube/config.h"

#include <yaml-cpp/yaml.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <sstream>

#include "common/base64.h"

namespace datashare::kube {
namespace fs = std::filesystem;

config_error::config_error(std::string source, std::string field, const std::string& problem)
    : std::runtime_error(source + ": " + (field.empty() ? "" : field + ": ") + problem),
      source_(std::move(source)),
      field_(std::move(field)) {}

namespace {

std::optional<std::string> read_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return std::nullopt;
  std::ostringstream out;
  out << in.rdbuf();
  return out.str();
}

// One named entry of a kubeconfig list (clusters, users, contexts) with where it came from.
struct named_entry {
  YAML::Node body;
  std::string source;
  std::string base_dir;
  std::string path;  // e.g. "users[1].user"
};

// The merged view of one or more kubeconfig files.
struct merged_kubeconfig {
  std::map<std::string, named_entry> clusters, users, contexts;
  std::optional<std::string> current_context;
  std::string current_context_source;
};

std::string scalar(const YAML::Node& node, const std::string& key, const std::string& source, const std::string& path) {
  const YAML::Node v = node[key];
  if (!v) return {};
  if (!v.IsScalar()) throw config_error(source, path + "." + key, "must be a string");
  return v.as<std::string>();
}

bool boolean(const YAML::Node& node, const std::string& key, const std::string& source, const std::string& path) {
  const YAML::Node v = node[key];
  if (!v) return false;
  try {
    return v.as<bool>();
  } catch (const YAML::Exception&) {
    throw config_error(source, path + "." + key, "must be true or false");
  }
}

void merge_list(const YAML::Node& root, const std::string& list, const std::string& inner, const std::string& source,
                const std::string& base_dir, std::map<std::string, named_entry>& into) {
  const YAML::Node items = root[list];
  if (!items || items.IsNull()) return;
  if (!items.IsSequence()) throw config_error(source, list, "must be a list");
  for (size_t i = 0; i < items.size(); ++i) {
    const std::string path = list + "[" + std::to_string(i) + "]";
    const YAML::Node item = items[i];
    if (!item.IsMap()) throw config_error(source, path, "must be a mapping");
    const std::string name = scalar(item, "name", source, path);
    if (name.empty()) throw config_error(source, path + ".name", "is required");
    const YAML::Node body = item[inner];
    if (body && !body.IsMap() && !body.IsNull()) throw config_error(source, path + "." + inner, "must be a mapping");
    // client-go: the first file that defines a name wins.
    into.try_emplace(name,
                     named_entry{body ? body : YAML::Node(YAML::NodeType::Map), source, base_dir, path + "." + inner});
  }
}

void merge_file(const std::string& text, const std::string& source, const std::string& base_dir, merged_kubeconfig& m) {
  YAML::Node root;
  try {
    root = YAML::Load(text);
  } catch (const YAML::Exception& e) {
    throw config_error(source, "", "not valid YAML (line " + std::to_string(e.mark.line + 1) + "): " + e.msg);
  }
  if (root.IsNull()) return;  // an empty file contributes nothing
  if (!root.IsMap()) throw config_error(source, "", "must be a mapping (apiVersion: v1, kind: Config)");
  const std::string kind = scalar(root, "kind", source, "");
  if (!kind.empty() && kind != "Config") throw config_error(source, "kind", "must be Config, not " + kind);
  merge_list(root, "clusters", "cluster", source, base_dir, m.clusters);
  merge_list(root, "users", "user", source, base_dir, m.users);
  merge_list(root, "contexts", "context", source, base_dir, m.contexts);
  const std::string current = scalar(root, "current-context", source, "");
  if (!m.current_context && !current.empty()) {
    m.current_context = current;
    m.current_context_source = source;
  }
}

// A PEM that comes either from "<key>-data" (base64) or from "<key>" (a file path).
std::string pem_from(const named_entry& e, const std::string& key) {
  const std::string data = scalar(e.body, key + "-data", e.source, e.path);
  if (!data.empty()) {
    auto decoded = base64_decode(data);
    if (!decoded) throw config_error(e.source, e.path + "." + key + "-data", "not valid base64");
    return *decoded;
  }
  std::string file = scalar(e.body, key, e.source, e.path);
  if (file.empty()) return {};
  fs::path p(file);
  if (p.is_relative()) p = fs::path(e.base_dir) / p;
  auto contents = read_file(p.string());
  if (!contents) throw config_error(e.source, e.path + "." + key, "cannot read file " + p.string());
  return *contents;
}

rest_config build(const merged_kubeconfig& m, const std::string& source, const std::optional<std::string>& context) {
  std::string context_name;
  if (context) {
    context_name = *context;
  } else if (m.current_context) {
    context_name = *m.current_context;
  } else {
    throw config_error(source, "current-context", "not set, and no context was asked for");
  }
  auto ctx_it = m.contexts.find(context_name);
  if (ctx_it == m.contexts.end()) {
    throw config_error(context ? source : m.current_context_source, context ? "contexts" : "current-context",
                       "context \"" + context_name + "\" not found");
  }
  const named_entry& ctx = ctx_it->second;
  const std::string cluster_name = scalar(ctx.body, "cluster", ctx.source, ctx.path);
  const std::string user_name = scalar(ctx.body, "user", ctx.source, ctx.path);
  if (cluster_name.empty()) throw config_error(ctx.source, ctx.path + ".cluster", "is required");

  auto cl_it = m.clusters.find(cluster_name);
  if (cl_it == m.clusters.end()) {
    throw config_error(ctx.source, ctx.path + ".cluster", "cluster \"" + cluster_name + "\" not found");
  }
  const named_entry& cluster = cl_it->second;

  rest_config cfg;
  cfg.source = source + " (context " + context_name + ")";
  cfg.server = scalar(cluster.body, "server", cluster.source, cluster.path);
  if (cfg.server.empty()) throw config_error(cluster.source, cluster.path + ".server", "is required");
  if (cfg.server.rfind("https://", 0) != 0 && cfg.server.rfind("http://", 0) != 0) {
    throw config_error(cluster.source, cluster.path + ".server",
                       "must start with https:// or http://, got " + cfg.server);
  }
  while (cfg.server.size() > 1 && cfg.server.back() == '/') cfg.server.pop_back();
  cfg.tls.ca_pem = pem_from(cluster, "certificate-authority");
  cfg.tls.insecure_skip_verify = boolean(cluster.body, "insecure-skip-tls-verify", cluster.source, cluster.path);
  cfg.tls.server_name = scalar(cluster.body, "tls-server-name", cluster.source, cluster.path);
  if (cfg.tls.insecure_skip_verify && !cfg.tls.ca_pem.empty()) {
    throw config_error(cluster.source, cluster.path + ".insecure-skip-tls-verify",
                       "cannot be combined with a certificate authority");
  }

  const std::string ns = scalar(ctx.body, "namespace", ctx.source, ctx.path);
  if (!ns.empty()) cfg.default_namespace = ns;

  if (!user_name.empty()) {
    auto us_it = m.users.find(user_name);
    if (us_it == m.users.end()) {
      throw config_error(ctx.source, ctx.path + ".user", "user \"" + user_name + "\" not found");
    }
    const named_entry& user = us_it->second;
    cfg.tls.client_cert_pem = pem_from(user, "client-certificate");
    cfg.tls.client_key_pem = pem_from(user, "client-key");
    if (cfg.tls.client_cert_pem.empty() != cfg.tls.client_key_pem.empty()) {
      throw config_error(user.source,
                         user.path + (cfg.tls.client_cert_pem.empty() ? ".client-certificate" : ".client-key"),
                         "a client certificate needs both the certificate and its key");
    }
    cfg.bearer_token = scalar(user.body, "token", user.source, user.path);
    std::string token_file = scalar(user.body, "tokenFile", user.source, user.path);
    if (!token_file.empty()) {
      fs::path p(token_file);
      if (p.is_relative()) p = fs::path(user.base_dir) / p;
      cfg.bearer_token_file = p.string();
      if (cfg.bearer_token.empty()) {
        auto t = read_file(cfg.bearer_token_file);
        if (!t) throw config_error(user.source, user.path + ".tokenFile", "cannot read file " + cfg.bearer_token_file);
        cfg.bearer_token = *t;
        while (!cfg.bearer_token.empty() && (cfg.bearer_token.back() == '\n' || cfg.bearer_token.back() == '\r')) {
          cfg.bearer_token.pop_back();
        }
      }
    }
    cfg.username = scalar(user.body, "username", user.source, user.path);
    cfg.password = scalar(user.body, "password", user.source, user.path);
    if (user.body["exec"] || user.body["auth-provider"]) {
      throw config_error(user.source, user.path + (user.body["exec"] ? ".exec" : ".auth-provider"),
                         "credential plugins are not supported; use a client certificate or a token");
    }
  }
  return cfg;
}

}  // namespace

rest_config parse_kubeconfig(const std::string& yaml_text, const std::string& source, const std::string& base_dir,
                             const std::optional<std::string>& context) {
  merged_kubeconfig m;
  merge_file(yaml_text, source, base_dir, m);
  return build(m, source, context);
}

rest_config load_kubeconfig(const std::vector<std::string>& paths, const std::optional<std::string>& context) {
  merged_kubeconfig m;
  std::string sources;
  for (const auto& path : paths) {
    const std::string source = "kubeconfig " + path;
    auto text = read_file(path);
    if (!text) throw config_error(source, "", "cannot read file");
    merge_file(*text, source, fs::path(path).parent_path().string(), m);
    sources += (sources.empty() ? "" : ":") + path;
  }
  if (paths.empty()) throw config_error("kubeconfig", "", "no file given");
  return build(m, "kubeconfig " + sources, context);
}

rest_config in_cluster_config(const std::string& sa_dir) {
  const std::string source = "in-cluster config";
  const char* host = std::getenv("KUBERNETES_SERVICE_HOST");
  const char* port = std::getenv("KUBERNETES_SERVICE_PORT");
  if (host == nullptr || port == nullptr || *host == '\0' || *port == '\0') {
    throw config_error(source, "KUBERNETES_SERVICE_HOST",
                       "not running in a cluster (KUBERNETES_SERVICE_HOST/PORT unset)");
  }
  rest_config cfg;
  cfg.source = source;
  std::string h = host;
  if (h.find(':') != std::string::npos) h = "[" + h + "]";  // IPv6 literal
  cfg.server = "https://" + h + ":" + port;
  cfg.bearer_token_file = sa_dir + "/token";
  auto token = read_file(cfg.bearer_token_file);
  if (!token) throw config_error(source, cfg.bearer_token_file, "cannot read the service-account token");
  cfg.bearer_token = *token;
  auto ca = read_file(sa_dir + "/ca.crt");
  if (!ca) throw config_error(source, sa_dir + "/ca.crt", "cannot read the cluster CA");
  cfg.tls.ca_pem = *ca;
  if (auto ns = read_file(sa_dir + "/namespace")) cfg.default_namespace = *ns;
  return cfg;
}

config_environment process_environment() {
  config_environment env;
  env.getenv = [](const std::string& name) -> std::optional<std::string> {
    const char* v = std::getenv(name.c_str());
    if (v == nullptr) return std::nullopt;
    return std::string(v);
  };
  env.file_exists = [](const std::string& path) {
    std::error_code ec;
    return fs::exists(path, ec);
  };
  return env;
}

rest_config resolve_config(const std::optional<std::string>& kubeconfig_flag, const std::optional<std::string>& context,
                           const config_environment& env) {
  if (kubeconfig_flag && !kubeconfig_flag->empty()) return load_kubeconfig({*kubeconfig_flag}, context);
  if (auto list = env.getenv("KUBECONFIG"); list && !list->empty()) {
    std::vector<std::string> paths;
    std::stringstream ss(*list);
    for (std::string item; std::getline(ss, item, ':');) {
      // client-go skips entries that do not exist; a list where none exists is an error.
      if (!item.empty() && env.file_exists(item)) paths.push_back(item);
    }
    if (paths.empty()) throw config_error("KUBECONFIG", "", "none of the files exist: " + *list);
    return load_kubeconfig(paths, context);
  }
  if (env.getenv("KUBERNETES_SERVICE_HOST") && env.file_exists(env.service_account_dir + "/token")) {
    return in_cluster_config(env.service_account_dir);
  }
  if (auto home = env.getenv("HOME")) {
    const std::string path = *home + "/.kube/config";
    if (env.file_exists(path)) return load_kubeconfig({path}, context);
  }
  throw config_error(
      "kubeconfig", "",
      "no configuration found: pass --kubeconfig, set KUBECONFIG, run in a cluster, or create ~/.kube/config");
}

}  // namespace datashare::kube
