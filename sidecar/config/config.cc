#include "sidecar/config/config.h"

#include <algorithm>
#include <cctype>
#include <charconv>
#include <cmath>
#include <fstream>
#include <set>
#include <sstream>

#include "sidecar/config/yaml_reader.h"

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

std::string_view to_string(participant_role r) {
  return r == participant_role::owner ? "owner" : "copy";
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

std::optional<http_origin> parse_http_origin(std::string_view url) {
  if (!url.starts_with("http://")) return std::nullopt;
  std::string_view rest = url.substr(7);
  if (rest.ends_with('/')) rest.remove_suffix(1);
  if (rest.empty() || rest.find_first_of("/?#@ ") != std::string_view::npos) return std::nullopt;
  http_origin o;
  const auto colon = rest.rfind(':');
  if (colon == std::string_view::npos) {
    o.host = std::string(rest);
    return o;
  }
  o.host = std::string(rest.substr(0, colon));
  const auto digits = rest.substr(colon + 1);
  unsigned port = 0;
  auto [end, ec] = std::from_chars(digits.data(), digits.data() + digits.size(), port);
  if (o.host.empty() || digits.empty() || ec != std::errc{} || end != digits.data() + digits.size() || port == 0 ||
      port > 65535) {
    return std::nullopt;
  }
  o.port = static_cast<std::uint16_t>(port);
  return o;
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

constexpr std::uint64_t kMinMemoryLimit = std::uint64_t{16} << 20;

// A size as Kubernetes writes memory: digits and an optional suffix, binary (Ki, Mi, Gi, Ti) or
// decimal (k, M, G, T). Nothing on any other text or past 2^63.
std::optional<std::uint64_t> parse_bytes(std::string_view text) {
  std::size_t digits = 0;
  while (digits < text.size() && text[digits] >= '0' && text[digits] <= '9') ++digits;
  if (digits == 0 || digits > 18) return std::nullopt;
  std::uint64_t n = 0;
  for (std::size_t i = 0; i < digits; ++i) n = n * 10 + static_cast<std::uint64_t>(text[i] - '0');
  static constexpr std::pair<std::string_view, std::uint64_t> kUnits[] = {
      {"", 1},        {"Ki", 1ULL << 10}, {"Mi", 1ULL << 20},   {"Gi", 1ULL << 30},     {"Ti", 1ULL << 40},
      {"k", 1000ULL}, {"M", 1000000ULL},  {"G", 1000000000ULL}, {"T", 1000000000000ULL}};
  for (const auto& [suffix, unit] : kUnits) {
    if (text.substr(digits) != suffix) continue;
    if (n > (std::uint64_t{1} << 63) / unit) return std::nullopt;
    return n * unit;
  }
  return std::nullopt;
}

bool is_topic_name(std::string_view s) {
  if (s.empty() || s.size() > 249 || s == "." || s == "..") return false;
  return std::all_of(s.begin(), s.end(), [](char c) {
    return std::isalnum(static_cast<unsigned char>(c)) != 0 || c == '.' || c == '_' || c == '-';
  });
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
  if (!r.map(node, path, {"data", "admin", "participant", "threads", "busyPollMicros"})) return;
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
  if (r.present(node, "participant"))
    l.participant = read_endpoint(r, node["participant"], reader::join(path, "participant"));
  if (auto t = r.integer(node, path, "threads", false, 1, 64)) l.threads = static_cast<int>(*t);
  if (auto t = r.integer(node, path, "busyPollMicros", false, 0, 1000)) l.busy_poll_us = static_cast<int>(*t);
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
  if (!r.map(node, path, {"timeout", "retries", "circuitBreaker", "cache", "maxInFlight"})) return;
  if (auto d = r.duration(node, path, "timeout")) {
    if (d->count() <= 0) {
      r.add(reader::join(path, "timeout"), "must be above 0");
    } else {
      s.timeout = *d;
    }
  }
  if (auto m = r.integer(node, path, "maxInFlight", false, 1, 100000)) s.max_in_flight = static_cast<std::uint32_t>(*m);
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
              "store", "readIndex", "maxEventBytes", "applyWorkers", "sync"})) {
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
    if (r.map(o, op, {"url", "readPath"})) {
      s.owner_url = r.string(o, op, "url", true).value_or("");
      if (!s.owner_url.empty() && !parse_http_origin(s.owner_url)) {
        r.add(reader::join(op, "url"),
              "must be http://host[:port] (no path: it goes in readPath), got \"" + s.owner_url + "\"");
      }
      s.owner_read_path = r.string(o, op, "readPath", false).value_or("");
      if (!s.owner_read_path.empty()) {
        const auto at = s.owner_read_path.find("{key}");
        if (s.owner_read_path.front() != '/' || at == std::string::npos ||
            s.owner_read_path.find("{key}", at + 1) != std::string::npos) {
          r.add(reader::join(op, "readPath"),
                "must start with / and contain {key} exactly once, got \"" + s.owner_read_path + "\"");
        }
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
  if (auto ri = r.string(node, path, "readIndex", false)) {
    if (*ri == "none") {
      s.read_index = read_index_kind::none;
    } else if (*ri == "memory") {
      s.read_index = read_index_kind::memory;
      if (s.store == store_kind::memory) r.add(reader::join(path, "readIndex"), "memory needs store: rocksdb");
    } else if (*ri == "auto") {
      s.read_index = read_index_kind::automatic;  // a memory store is in memory already: nothing to index
    } else {
      r.add(reader::join(path, "readIndex"), "must be auto, none or memory, got \"" + *ri + "\"");
    }
  }
  if (auto m = r.integer(node, path, "maxEventBytes", false, 64, 64 << 20))
    s.max_event_bytes = static_cast<std::uint64_t>(*m);
  if (auto m = r.integer(node, path, "applyWorkers", false, 0, 64)) s.apply_workers = static_cast<std::uint32_t>(*m);
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
      if (s.owner_read_path.empty())
        r.add(reader::join(path, "owner.readPath"), "is required in " + std::string(to_string(s.mode)) + " mode");
      break;
  }
}

void read_participate(reader& r, const YAML::Node& node, const std::string& path, participate_spec& p) {
  if (!r.map(node, path, {"product", "namespace", "role", "coordinatorUrl", "lockTimeout", "owner", "policy"})) return;
  p.product = r.string(node, path, "product", true).value_or("");
  p.namespace_name = r.string(node, path, "namespace", true).value_or("");
  bool role_known = false;
  if (auto role = r.string(node, path, "role", true)) {
    if (*role == "owner" || *role == "copy") {
      p.role = *role == "owner" ? participant_role::owner : participant_role::copy;
      role_known = true;
    } else {
      r.add(reader::join(path, "role"), "must be owner or copy, got \"" + *role + "\"");
    }
  }
  p.coordinator_url = r.string(node, path, "coordinatorUrl", true).value_or("");
  if (!p.coordinator_url.empty() && !is_http_url(p.coordinator_url))
    r.add(reader::join(path, "coordinatorUrl"), "must start with http:// or https://");
  if (auto d = r.duration(node, path, "lockTimeout")) {
    if (d->count() < 100) {
      r.add(reader::join(path, "lockTimeout"), "must be at least 100ms");
    } else {
      p.lock_timeout = *d;
    }
  }
  if (r.present(node, "owner")) {
    std::string op = reader::join(path, "owner");
    const YAML::Node o = node["owner"];
    if (r.map(o, op, {"url", "writePath"})) {
      p.owner_url = r.string(o, op, "url", true).value_or("");
      if (!p.owner_url.empty() && !is_http_url(p.owner_url))
        r.add(reader::join(op, "url"), "must start with http:// or https://");
      p.owner_write_path = r.string(o, op, "writePath", true).value_or("");
      if (!p.owner_write_path.empty() &&
          (p.owner_write_path.front() != '/' || p.owner_write_path.find("{key}") == std::string::npos)) {
        r.add(reader::join(op, "writePath"),
              "must be a path starting with / and holding {key}, got \"" + p.owner_write_path + "\"");
      }
    }
  }
  p.policy = r.string(node, path, "policy", false).value_or("");
  if (!role_known) return;
  if (p.role == participant_role::owner) {
    if (!r.present(node, "owner")) r.add(reader::join(path, "owner"), "is required with role owner");
    if (!p.policy.empty()) r.add(reader::join(path, "policy"), "is for role copy only");
  } else {
    if (p.policy.empty()) r.add(reader::join(path, "policy"), "is required with role copy");
    if (r.present(node, "owner")) r.add(reader::join(path, "owner"), "is for role owner only");
  }
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

void validate_whole(reader& r, sidecar_config& c) {
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
  std::set<std::string> participating;
  for (std::size_t i = 0; i < c.participate.size(); ++i) {
    const auto& p = c.participate[i];
    std::string path = reader::index("participate", i);
    if (p.product.empty()) continue;
    if (!participating.insert(p.product).second) {
      r.add(path + ".product", "product \"" + p.product + "\" appears twice: one participant per product");
    }
    if (p.role == participant_role::owner) {
      auto pub = std::find_if(c.publish.begin(), c.publish.end(),
                              [&](const publish_spec& s) { return s.product.name == p.product; });
      if (pub == c.publish.end()) {
        r.add(path + ".product",
              "role owner publishes the committed value: no publish[] entry for product \"" + p.product + "\"");
      } else if (!p.namespace_name.empty() && pub->product.namespace_name != p.namespace_name) {
        r.add(path + ".namespace", "\"" + p.namespace_name + "\" differs from the publish[] entry's namespace \"" +
                                       pub->product.namespace_name + "\"");
      }
    } else if (!p.policy.empty()) {
      auto sub = std::find_if(c.subscribe.begin(), c.subscribe.end(),
                              [&](const subscribe_spec& s) { return s.policy == p.policy; });
      if (sub == c.subscribe.end()) {
        r.add(path + ".policy", "no subscribe[] entry has policy \"" + p.policy + "\"");
      } else {
        if (sub->product.name != p.product || sub->product.namespace_name != p.namespace_name) {
          r.add(path + ".policy", "policy \"" + p.policy + "\" shares " + sub->product.namespace_name + "/" +
                                      sub->product.name + ", not " + p.namespace_name + "/" + p.product);
        }
        if (sub->mode != sharing_mode::sync || sub->fields.empty()) {
          r.add(path + ".policy",
                "policy \"" + p.policy + "\" must be a sync-mode policy with fields (the copy kept by the gateway)");
        }
      }
    }
  }
  if (!c.participate.empty() && c.data_dir.empty()) r.add("dataDir", "is required for the participant's store");
  if (c.listen.participant && c.listen.participant->port != 0) {
    const auto& pe = *c.listen.participant;
    if ((pe.port == c.listen.data.port) || (c.listen.admin && pe.port == c.listen.admin->port))
      r.add("listen.participant.port", "must differ from the data and admin ports");
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
    if (!r.map(root, "",
               {"version", "dataDir", "memoryLimit", "kafka", "listen", "publish", "subscribe", "participate"})) {
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
    if (r.present(root, "memoryLimit")) {
      const std::string text = root["memoryLimit"].Scalar();
      if (auto bytes = parse_bytes(text); bytes && *bytes >= kMinMemoryLimit) {
        c.memory_limit_bytes = *bytes;
      } else {
        r.add("memoryLimit", "must be a size of at least 16Mi such as 512Mi, 2Gi or 536870912, got \"" + text + "\"");
      }
    }
    if (r.present(root, "kafka")) read_kafka(r, root["kafka"], "kafka", c.kafka);
    if (r.present(root, "listen")) read_listen(r, root["listen"], "listen", c.listen);
    read_list(r, root, "publish", c.publish, read_publish);
    read_list(r, root, "subscribe", c.subscribe, read_subscribe);
    read_list(r, root, "participate", c.participate, read_participate);
    if (!c.participate.empty() && !c.listen.participant)
      c.listen.participant = endpoint{"0.0.0.0", kDefaultParticipantPort};
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
