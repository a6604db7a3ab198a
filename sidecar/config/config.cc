#include "sidecar/config/config.h"

#include <yaml-cpp/yaml.h>

#include <algorithm>
#include <cctype>
#include <charconv>
#include <cmath>
#include <fstream>
#include <set>
#include <sstream>

namespace datashare::sidecar::config {

std::string_view to_string(field_type t) {
  switch (t) {
    case field_type::string:
      return "string";
    case field_type::number:
      return "number";
    case field_type::integer:
      return "integer";
    case field_type::boolean:
      return "boolean";
    case field_type::object:
      return "object";
    case field_type::array:
      return "array";
  }
  return "?";
}

std::string_view to_string(sharing_mode m) {
  switch (m) {
    case sharing_mode::event:
      return "event";
    case sharing_mode::sync:
      return "sync";
    case sharing_mode::hybrid:
      return "hybrid";
  }
  return "?";
}

const field* product_schema::find(std::string_view field_name) const {
  for (const auto& f : fields) {
    if (f.name == field_name) return &f;
  }
  return nullptr;
}

std::string product_schema::field_names() const {
  std::string out;
  for (const auto& f : fields) {
    if (!out.empty()) out += ", ";
    out += f.name;
  }
  return out;
}

std::optional<std::chrono::milliseconds> parse_duration(std::string_view text) {
  if (text == "0") return std::chrono::milliseconds(0);
  if (text.empty()) return std::nullopt;
  double total_ms = 0;
  std::size_t i = 0;
  while (i < text.size()) {
    std::size_t start = i;
    while (i < text.size() && (std::isdigit(static_cast<unsigned char>(text[i])) != 0 || text[i] == '.')) ++i;
    if (i == start) return std::nullopt;
    double value = 0;
    auto [ptr, ec] = std::from_chars(text.data() + start, text.data() + i, value);
    if (ec != std::errc() || ptr != text.data() + i) return std::nullopt;
    std::size_t unit_start = i;
    while (i < text.size() && std::isalpha(static_cast<unsigned char>(text[i])) != 0) ++i;
    std::string_view unit = text.substr(unit_start, i - unit_start);
    double scale = 0;
    if (unit == "ms") {
      scale = 1;
    } else if (unit == "s") {
      scale = 1000;
    } else if (unit == "m") {
      scale = 60'000;
    } else if (unit == "h") {
      scale = 3'600'000;
    } else {
      return std::nullopt;  // also "us"/"ns": finer than the sidecar can act on
    }
    total_ms += value * scale;
  }
  if (!std::isfinite(total_ms) || total_ms > 1e12) return std::nullopt;
  return std::chrono::milliseconds(static_cast<std::int64_t>(std::llround(total_ms)));
}

namespace {

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

bool is_topic_name(std::string_view s) {
  if (s.empty() || s.size() > 249 || s == "." || s == "..") return false;
  return std::all_of(s.begin(), s.end(), [](char c) {
    return std::isalnum(static_cast<unsigned char>(c)) != 0 || c == '.' || c == '_' || c == '-';
  });
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

void read_kafka(reader& r, const YAML::Node& node, const std::string& path, kafka_settings& k) {
  if (!r.map(node, path, {"bootstrapServers", "clientId", "security", "properties"})) return;
  k.bootstrap_servers = r.string(node, path, "bootstrapServers", true).value_or("");
  if (auto c = r.string(node, path, "clientId", false)) k.client_id = *c;
  if (r.present(node, "security")) {
    std::string sp = reader::join(path, "security");
    const YAML::Node s = node["security"];
    if (r.map(s, sp, {"protocol", "tls", "sasl"})) {
      auto& sec = k.security;
      if (auto p = r.string(s, sp, "protocol", false)) {
        if (*p != "PLAINTEXT" && *p != "SSL" && *p != "SASL_PLAINTEXT" && *p != "SASL_SSL") {
          r.add(reader::join(sp, "protocol"),
                "must be one of PLAINTEXT, SSL, SASL_PLAINTEXT, SASL_SSL, got \"" + *p + "\"");
        } else {
          sec.protocol = *p;
        }
      }
      if (r.present(s, "tls")) {
        std::string tp = reader::join(sp, "tls");
        const YAML::Node t = s["tls"];
        if (r.map(t, tp, {"caFile", "certFile", "keyFile", "keyPasswordFile"})) {
          sec.ca_file = r.string(t, tp, "caFile", false).value_or("");
          sec.cert_file = r.string(t, tp, "certFile", false).value_or("");
          sec.key_file = r.string(t, tp, "keyFile", false).value_or("");
          sec.key_password_file = r.string(t, tp, "keyPasswordFile", false).value_or("");
          if (sec.cert_file.empty() != sec.key_file.empty()) r.add(tp, "certFile and keyFile go together");
        }
      }
      bool sasl_protocol = sec.protocol.rfind("SASL_", 0) == 0;
      if (r.present(s, "sasl")) {
        std::string ap = reader::join(sp, "sasl");
        const YAML::Node a = s["sasl"];
        if (r.map(a, ap, {"mechanism", "username", "passwordFile", "passwordEnv"})) {
          sec.sasl_mechanism = r.string(a, ap, "mechanism", true).value_or("");
          if (!sec.sasl_mechanism.empty() && sec.sasl_mechanism != "PLAIN" && sec.sasl_mechanism != "SCRAM-SHA-256" &&
              sec.sasl_mechanism != "SCRAM-SHA-512") {
            r.add(reader::join(ap, "mechanism"), "must be one of PLAIN, SCRAM-SHA-256, SCRAM-SHA-512");
          }
          sec.sasl_username = r.string(a, ap, "username", true).value_or("");
          sec.sasl_password_file = r.string(a, ap, "passwordFile", false).value_or("");
          sec.sasl_password_env = r.string(a, ap, "passwordEnv", false).value_or("");
          if (sec.sasl_password_file.empty() == sec.sasl_password_env.empty()) {
            r.add(ap, "exactly one of passwordFile and passwordEnv is required");
          }
        }
        if (!sasl_protocol) r.add(ap, "needs protocol SASL_PLAINTEXT or SASL_SSL");
      } else if (sasl_protocol) {
        r.add(reader::join(sp, "sasl"), "is required with protocol " + sec.protocol);
      }
    }
  }
  if (r.present(node, "properties")) {
    std::string pp = reader::join(path, "properties");
    const YAML::Node p = node["properties"];
    if (!p.IsMap()) {
      r.add(pp, "must be a mapping of librdkafka properties to strings");
    } else {
      for (auto it = p.begin(); it != p.end(); ++it) {
        std::string key = it->first.Scalar();
        std::string kp = reader::join(pp, key);
        if (!it->second.IsScalar()) {
          r.add(kp, "must be a string");
          continue;
        }
        if (key.find("password") != std::string::npos || key.find("secret") != std::string::npos ||
            key == "ssl.key.pem" || key == "sasl.oauthbearer.config") {
          r.add(kp,
                "secrets cannot be given inline: use security.tls / security.sasl with a file or environment variable");
          continue;
        }
        if (key == "bootstrap.servers" || key == "group.id" || key == "enable.idempotence" || key == "acks" ||
            key == "enable.auto.commit" || key == "auto.offset.reset") {
          r.add(kp, "is set by the sidecar (its guarantees depend on it) and cannot be overridden");
          continue;
        }
        k.properties.emplace_back(key, it->second.Scalar());
      }
    }
  }
}

void read_listen(reader& r, const YAML::Node& node, const std::string& path, listen_settings& l) {
  if (!r.map(node, path, {"data", "admin", "threads"})) return;
  if (r.present(node, "data")) {
    std::string dp = reader::join(path, "data");
    if (auto e = read_endpoint(r, node["data"], dp)) {
      if (!e->address.empty() && !is_loopback(e->address)) {
        r.add(reader::join(dp, "address"),
              "the data API binds to loopback only (127.0.0.1 or ::1), got \"" + e->address + "\"");
      }
      l.data = *e;
    }
  }
  if (r.present(node, "admin")) l.admin = read_endpoint(r, node["admin"], reader::join(path, "admin"));
  if (auto t = r.integer(node, path, "threads", false, 1, 64)) l.threads = static_cast<int>(*t);
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

void read_topic(reader& r, const YAML::Node& node, const std::string& path, std::string& topic) {
  topic = r.string(node, path, "topic", true).value_or("");
  if (!topic.empty() && !is_topic_name(topic)) {
    r.add(reader::join(path, "topic"),
          "not a valid Kafka topic name (a-z, A-Z, 0-9, '.', '_', '-'): \"" + topic + "\"");
  }
}

void read_publish(reader& r, const YAML::Node& node, const std::string& path, publish_spec& p) {
  if (!r.map(node, path, {"product", "topic", "outbox"})) return;
  if (r.present(node, "product")) {
    read_product(r, node["product"], reader::join(path, "product"), p.product);
  } else {
    r.add(reader::join(path, "product"), "is required");
  }
  read_topic(r, node, path, p.topic);
  if (r.present(node, "outbox")) {
    std::string op = reader::join(path, "outbox");
    const YAML::Node o = node["outbox"];
    if (r.map(o, op, {"maxEntries"})) {
      if (auto m = r.integer(o, op, "maxEntries", false, 1, 1'000'000'000))
        p.outbox.max_entries = static_cast<std::uint64_t>(*m);
    }
  }
}

void read_sync_policy(reader& r, const YAML::Node& node, const std::string& path, sync_policy& s) {
  if (!r.map(node, path, {"timeout", "retries", "circuitBreaker", "cache"})) return;
  if (auto d = r.duration(node, path, "timeout")) s.timeout = *d;
  if (r.present(node, "retries")) {
    std::string p = reader::join(path, "retries");
    const YAML::Node n = node["retries"];
    if (r.map(n, p, {"attempts", "backoff"})) {
      if (auto a = r.integer(n, p, "attempts", false, 0, 10)) s.retry_attempts = static_cast<int>(*a);
      if (auto d = r.duration(n, p, "backoff")) s.retry_backoff = *d;
    }
  }
  if (r.present(node, "circuitBreaker")) {
    std::string p = reader::join(path, "circuitBreaker");
    const YAML::Node n = node["circuitBreaker"];
    if (r.map(n, p, {"consecutiveFailures", "openFor"})) {
      if (auto a = r.integer(n, p, "consecutiveFailures", false, 1, 1000))
        s.breaker_consecutive_failures = static_cast<int>(*a);
      if (auto d = r.duration(n, p, "openFor")) s.breaker_open_for = *d;
    }
  }
  if (r.present(node, "cache")) {
    std::string p = reader::join(path, "cache");
    const YAML::Node n = node["cache"];
    if (r.map(n, p, {"ttl", "maxEntries", "serveStaleOnError"})) {
      if (auto d = r.duration(n, p, "ttl")) s.cache_ttl = *d;
      if (auto m = r.integer(n, p, "maxEntries", false, 0, 100'000'000))
        s.cache_max_entries = static_cast<std::uint64_t>(*m);
      if (auto b = r.boolean(n, p, "serveStaleOnError")) s.serve_stale_on_error = *b;
    }
  }
}

void read_subscribe(reader& r, const YAML::Node& node, const std::string& path, subscribe_spec& s) {
  if (!r.map(node, path,
             {"policy", "namespace", "product", "topic", "group", "mode", "fields", "syncFields", "owner", "maxLag",
              "store", "maxEventBytes", "sync"})) {
    return;
  }
  s.policy = r.string(node, path, "policy", true).value_or("");
  if (!s.policy.empty() && !is_dns_label_like(s.policy)) {
    r.add(reader::join(path, "policy"), "must be a lowercase DNS name (a-z, 0-9, '-', '.'), got \"" + s.policy + "\"");
  }
  s.namespace_name = r.string(node, path, "namespace", true).value_or("");
  bool have_product = r.present(node, "product");
  if (have_product) {
    read_product(r, node["product"], reader::join(path, "product"), s.product);
  } else {
    r.add(reader::join(path, "product"), "is required");
  }
  read_topic(r, node, path, s.topic);
  s.group = r.string(node, path, "group", true).value_or("");
  if (auto m = r.string(node, path, "mode", true)) {
    if (*m == "event") {
      s.mode = sharing_mode::event;
    } else if (*m == "sync") {
      s.mode = sharing_mode::sync;
    } else if (*m == "hybrid") {
      s.mode = sharing_mode::hybrid;
    } else {
      r.add(reader::join(path, "mode"), "must be one of event, sync, hybrid, got \"" + *m + "\"");
    }
  }
  s.fields = r.string_list(node, path, "fields");
  s.sync_fields = r.string_list(node, path, "syncFields");
  if (r.present(node, "owner")) {
    std::string op = reader::join(path, "owner");
    const YAML::Node o = node["owner"];
    if (r.map(o, op, {"url"})) {
      s.owner_url = r.string(o, op, "url", true).value_or("");
      if (!s.owner_url.empty() && s.owner_url.rfind("http://", 0) != 0 && s.owner_url.rfind("https://", 0) != 0) {
        r.add(reader::join(op, "url"), "must start with http:// or https://");
      }
    }
  }
  if (auto d = r.duration(node, path, "maxLag")) s.max_lag = *d;
  if (auto st = r.string(node, path, "store", false)) {
    if (*st == "rocksdb") {
      s.store = store_kind::rocksdb;
    } else if (*st == "memory") {
      s.store = store_kind::memory;
    } else {
      r.add(reader::join(path, "store"), "must be rocksdb or memory, got \"" + *st + "\"");
    }
  }
  if (auto m = r.integer(node, path, "maxEventBytes", false, 64, 64 << 20))
    s.max_event_bytes = static_cast<std::uint64_t>(*m);
  if (r.present(node, "sync")) read_sync_policy(r, node["sync"], reader::join(path, "sync"), s.sync);

  // Cross-field rules: every field named must exist in the product; a field is local or
  // synchronous, not both; restricted fields never leave the owner except by sync reads.
  std::set<std::string> local;
  auto check_fields = [&](const std::vector<std::string>& names, const char* key, bool local_copy) {
    if (!have_product || s.product.fields.empty()) return;
    std::string lp = reader::join(path, key);
    for (std::size_t i = 0; i < names.size(); ++i) {
      const field* f = s.product.find(names[i]);
      if (f == nullptr) {
        r.add(reader::index(lp, i),
              "unknown field \"" + names[i] + "\" (product fields: " + s.product.field_names() + ")");
      } else if (local_copy && f->restricted) {
        r.add(reader::index(lp, i), "field \"" + names[i] + "\" is restricted: it can only be read with syncFields");
      } else if (local_copy && !local.insert(names[i]).second) {
        r.add(reader::index(lp, i), "duplicate field \"" + names[i] + "\"");
      } else if (!local_copy && local.count(names[i]) != 0) {
        r.add(reader::index(lp, i),
              "field \"" + names[i] + "\" is already in fields: a field is local or sync, not both");
      }
    }
  };
  check_fields(s.fields, "fields", true);
  check_fields(s.sync_fields, "syncFields", false);
  switch (s.mode) {
    case sharing_mode::event:
      if (s.fields.empty()) r.add(reader::join(path, "fields"), "event mode needs at least one field");
      if (!s.sync_fields.empty())
        r.add(reader::join(path, "syncFields"), "event mode reads nothing from the owner: remove syncFields");
      break;
    case sharing_mode::hybrid:
      if (s.fields.empty()) r.add(reader::join(path, "fields"), "hybrid mode needs at least one local field");
      if (s.sync_fields.empty()) r.add(reader::join(path, "syncFields"), "hybrid mode needs at least one sync field");
      [[fallthrough]];
    case sharing_mode::sync:
      if (s.owner_url.empty())
        r.add(reader::join(path, "owner.url"), "is required in " + std::string(to_string(s.mode)) + " mode");
      break;
  }
}

void read_participate(reader& r, const YAML::Node& node, const std::string& path, participate_spec& p) {
  if (!r.map(node, path, {"product", "coordinatorUrl"})) return;
  p.product = r.string(node, path, "product", true).value_or("");
  p.coordinator_url = r.string(node, path, "coordinatorUrl", false).value_or("");
}

template <typename T, typename Fn>
void read_list(reader& r, const YAML::Node& root, const char* key, std::vector<T>& out, Fn fn) {
  if (!r.present(root, key)) return;
  const YAML::Node n = root[key];
  if (!n.IsSequence()) {
    r.add(key, "must be a list");
    return;
  }
  for (std::size_t i = 0; i < n.size(); ++i) {
    T item;
    fn(r, n[i], reader::index(key, i), item);
    out.push_back(std::move(item));
  }
}

void validate_whole(reader& r, const sidecar_config& c) {
  bool needs_kafka = !c.publish.empty() || !c.subscribe.empty();
  if (needs_kafka && c.kafka.bootstrap_servers.empty())
    r.add("kafka.bootstrapServers", "is required with publish or subscribe");
  bool needs_data_dir =
      !c.publish.empty() || std::any_of(c.subscribe.begin(), c.subscribe.end(), [](const subscribe_spec& s) {
        return s.store == store_kind::rocksdb && s.mode != sharing_mode::sync;
      });
  if (needs_data_dir && c.data_dir.empty()) r.add("dataDir", "is required for the outbox and rocksdb stores");
  if (c.publish.empty() && c.subscribe.empty() && c.participate.empty()) {
    r.add("", "nothing to do: publish, subscribe and participate are all empty");
  }
  std::set<std::string> products;
  for (std::size_t i = 0; i < c.publish.size(); ++i) {
    if (!c.publish[i].product.name.empty() && !products.insert(c.publish[i].product.name).second) {
      r.add(reader::index("publish", i) + ".product.name",
            "product \"" + c.publish[i].product.name + "\" is published twice");
    }
  }
  std::set<std::string> subscribed, policies;
  for (std::size_t i = 0; i < c.subscribe.size(); ++i) {
    const auto& s = c.subscribe[i];
    if (!s.product.name.empty() && !subscribed.insert(s.product.name).second) {
      r.add(reader::index("subscribe", i) + ".product.name",
            "product \"" + s.product.name + "\" is subscribed twice: one policy per product and workload");
    }
    if (!s.policy.empty() && !policies.insert(s.policy).second) {
      r.add(reader::index("subscribe", i) + ".policy", "policy \"" + s.policy + "\" appears twice");
    }
  }
  if (c.listen.admin && c.listen.admin->port != 0 && c.listen.admin->port == c.listen.data.port &&
      c.listen.admin->address == c.listen.data.address) {
    r.add("listen.admin.port", "must differ from listen.data.port");
  }
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
  reader r(result.problems);
  sidecar_config c;
  try {
    if (!r.map(root, "", {"version", "dataDir", "kafka", "listen", "publish", "subscribe", "participate"})) {
      result.problems.back().message =
          "the file must be a YAML mapping (version, kafka, listen, publish, subscribe, ...)";
      return result;
    }
    if (auto v = r.integer(root, "", "version", true, 0, 1'000'000)) {
      if (*v != kSchemaVersion) {
        r.add("version", "unsupported schema version " + std::to_string(*v) + " (this sidecar reads version " +
                             std::to_string(kSchemaVersion) + ")");
      }
    }
    c.data_dir = r.string(root, "", "dataDir", false).value_or("");
    if (r.present(root, "kafka")) read_kafka(r, root["kafka"], "kafka", c.kafka);
    if (r.present(root, "listen")) read_listen(r, root["listen"], "listen", c.listen);
    read_list(r, root, "publish", c.publish, read_publish);
    read_list(r, root, "subscribe", c.subscribe, read_subscribe);
    read_list(r, root, "participate", c.participate, read_participate);
    validate_whole(r, c);
  } catch (const YAML::Exception& e) {
    // yaml-cpp throws on shapes the reader did not anticipate (e.g. a key that is itself a map).
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

std::string format_problems(const std::vector<problem>& problems) {
  std::string out;
  for (const auto& p : problems) {
    out += p.path.empty() ? "(file)" : p.path;
    out += ": ";
    out += p.message;
    out += '\n';
  }
  return out;
}

}  // namespace datashare::sidecar::config
