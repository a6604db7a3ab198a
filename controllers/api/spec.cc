#include "controllers/api/spec.h"

#include <algorithm>
#include <regex>
#include <set>

#include "common/flags.h"

namespace datashare::controllers {
namespace {

// Reads typed values out of a JSON object, recording a problem (with the path) for every value
// of the wrong type. Absent values keep the caller's default.
class reader {
 public:
  explicit reader(std::vector<spec_problem>& problems) : problems_(problems) {}

  const json* child(const json& parent, const char* key, const std::string& path, json::value_t type, bool required) {
    if (!parent.is_object()) {
      // Only the resource itself can be a non-object here (nested parents are checked on the way
      // down): a bare `9` or `[]` still gets a problem, never "neither a value nor a reason".
      add(path, std::string("expected the enclosing value to be an object, got ") + parent.type_name());
      return nullptr;
    }
    auto it = parent.find(key);
    if (it == parent.end() || it->is_null()) {
      if (required) add(path, "required value is missing");
      return nullptr;
    }
    bool ok = it->type() == type ||
              (type == json::value_t::number_integer && (it->is_number_unsigned() || it->is_number_integer()));
    if (!ok) {
      add(path, std::string("expected ") + type_name(type) + ", got " + it->type_name());
      return nullptr;
    }
    return &*it;
  }

  void string(const json& parent, const char* key, const std::string& path, std::string& out, bool required = false) {
    if (const json* v = child(parent, key, path, json::value_t::string, required)) out = v->get<std::string>();
    if (required && out.empty() && parent.is_object() && parent.contains(key)) add(path, "must not be empty");
  }

  template <typename Int>
  void integer(const json& parent, const char* key, const std::string& path, Int& out, int64_t min, int64_t max) {
    if (const json* v = child(parent, key, path, json::value_t::number_integer, false)) {
      int64_t n = v->is_number_unsigned() && v->get<uint64_t>() > static_cast<uint64_t>(INT64_MAX) ? INT64_MAX
                                                                                                   : v->get<int64_t>();
      if (n < min || n > max) {
        add(path,
            "must be between " + std::to_string(min) + " and " + std::to_string(max) + ", got " + std::to_string(n));
      } else {
        out = static_cast<Int>(n);
      }
    }
  }

  void boolean(const json& parent, const char* key, const std::string& path, bool& out) {
    if (const json* v = child(parent, key, path, json::value_t::boolean, false)) out = v->get<bool>();
  }

  void strings(const json& parent, const char* key, const std::string& path, std::vector<std::string>& out) {
    const json* v = child(parent, key, path, json::value_t::array, false);
    if (v == nullptr) return;
    std::set<std::string> seen;
    for (size_t i = 0; i < v->size(); ++i) {
      const json& item = (*v)[i];
      std::string p = path + "[" + std::to_string(i) + "]";
      if (!item.is_string()) {
        add(p, std::string("expected string, got ") + item.type_name());
        continue;
      }
      if (!seen.insert(item.get<std::string>()).second) {
        add(p, "duplicate value \"" + item.get<std::string>() + "\"");
        continue;
      }
      out.push_back(item.get<std::string>());
    }
  }

  void duration(const json& parent, const char* key, const std::string& path, std::string& out, bool positive) {
    string(parent, key, path, out);
    std::chrono::milliseconds d{};
    if (!parse_duration(out, d)) {
      add(path, "not a duration: \"" + out + "\" (examples: 300ms, 5s, 1m30s)");
    } else if (positive && d.count() <= 0) {
      add(path, "must be greater than 0");
    }
  }

  void add(const std::string& path, std::string message) { problems_.push_back({path, std::move(message)}); }

 private:
  static const char* type_name(json::value_t t) {
    switch (t) {
      case json::value_t::string:
        return "string";
      case json::value_t::number_integer:
        return "integer";
      case json::value_t::boolean:
        return "boolean";
      case json::value_t::array:
        return "array";
      case json::value_t::object:
        return "object";
      default:
        return "value";
    }
  }
  std::vector<spec_problem>& problems_;
};

const std::regex& dns_label() {
  static const std::regex re("^[a-z0-9]([-a-z0-9]*[a-z0-9])?$");
  return re;
}

const std::regex& field_name_re() {
  static const std::regex re("^[A-Za-z_][A-Za-z0-9_]*$");
  return re;
}

void parse_workload(reader& r, const json& parent, const std::string& path, workload_ref& out) {
  const json* w = r.child(parent, "workload", path + ".workload", json::value_t::object, true);
  if (w == nullptr) return;
  r.string(*w, "kind", path + ".workload.kind", out.kind);
  if (out.kind != "Deployment" && out.kind != "StatefulSet") {
    r.add(path + ".workload.kind", "unsupported kind \"" + out.kind + "\" (supported: Deployment, StatefulSet)");
  }
  r.string(*w, "name", path + ".workload.name", out.name, true);
}

void check_path_template(reader& r, const std::string& value, const std::string& path) {
  if (value.empty()) return;
  if (value.front() != '/') r.add(path, "must start with \"/\"");
  auto first = value.find("{key}");
  if (first == std::string::npos) {
    r.add(path, "must contain {key}");
  } else if (value.find("{key}", first + 1) != std::string::npos) {
    r.add(path, "must contain {key} exactly once");
  }
}

}  // namespace

std::string describe(const std::vector<spec_problem>& problems) {
  std::string out;
  for (const auto& p : problems) {
    if (!out.empty()) out += "; ";
    out += p.path.empty() ? p.message : p.path + ": " + p.message;
  }
  return out;
}

object_meta meta_of(const json& object) {
  object_meta m;
  const json& md = object.contains("metadata") && object["metadata"].is_object() ? object["metadata"] : json::object();
  auto str = [&](const char* k) {
    auto it = md.find(k);
    return it != md.end() && it->is_string() ? it->get<std::string>() : std::string();
  };
  m.ns = str("namespace");
  m.name = str("name");
  m.uid = str("uid");
  m.creation_timestamp = str("creationTimestamp");
  if (auto it = md.find("generation"); it != md.end() && it->is_number_integer()) m.generation = it->get<int64_t>();
  m.deleting = md.contains("deletionTimestamp") && !md["deletionTimestamp"].is_null();
  return m;
}

const product_field* data_product::find_field(const std::string& field_name) const {
  for (const auto& f : fields)
    if (f.name == field_name) return &f;
  return nullptr;
}

bool data_product::allows(const std::string& consumer_ns) const {
  if (consumer_ns == meta.ns) return true;
  return std::any_of(access_namespaces.begin(), access_namespaces.end(),
                     [&](const std::string& n) { return n == "*" || n == consumer_ns; });
}

std::string data_product::owner_url() const {
  if (endpoint_service.empty() || endpoint_port == 0) return "";
  return endpoint_scheme + "://" + endpoint_service + "." + meta.ns + ".svc:" + std::to_string(endpoint_port);
}

parsed<data_product> parse_data_product(const json& object) {
  parsed<data_product> out;
  reader r(out.problems);
  data_product p;
  p.meta = meta_of(object);
  const json* spec = r.child(object, "spec", "spec", json::value_t::object, true);
  if (spec == nullptr) return out;

  if (const json* owner = r.child(*spec, "owner", "spec.owner", json::value_t::object, true)) {
    parse_workload(r, *owner, "spec.owner", p.owner);
    if (const json* ep = r.child(*owner, "endpoint", "spec.owner.endpoint", json::value_t::object, false)) {
      r.string(*ep, "service", "spec.owner.endpoint.service", p.endpoint_service, true);
      r.integer(*ep, "port", "spec.owner.endpoint.port", p.endpoint_port, 1, 65535);
      if (p.endpoint_port == 0) r.add("spec.owner.endpoint.port", "required value is missing");
      r.string(*ep, "scheme", "spec.owner.endpoint.scheme", p.endpoint_scheme);
      if (p.endpoint_scheme != "http" && p.endpoint_scheme != "https")
        r.add("spec.owner.endpoint.scheme", "must be http or https");
      r.string(*ep, "readPath", "spec.owner.endpoint.readPath", p.read_path);
      r.string(*ep, "writePath", "spec.owner.endpoint.writePath", p.write_path);
      check_path_template(r, p.read_path, "spec.owner.endpoint.readPath");
      check_path_template(r, p.write_path, "spec.owner.endpoint.writePath");
    }
    if (const json* ob = r.child(*owner, "outbox", "spec.owner.outbox", json::value_t::object, false)) {
      r.integer(*ob, "maxEntries", "spec.owner.outbox.maxEntries", p.outbox_max_entries, 1, 1000000000);
    }
  }

  r.string(*spec, "key", "spec.key", p.key, true);
  if (const json* fields = r.child(*spec, "fields", "spec.fields", json::value_t::array, true)) {
    std::set<std::string> seen;
    for (size_t i = 0; i < fields->size(); ++i) {
      std::string path = "spec.fields[" + std::to_string(i) + "]";
      const json& f = (*fields)[i];
      if (!f.is_object()) {
        r.add(path, "expected object");
        continue;
      }
      product_field pf;
      r.string(f, "name", path + ".name", pf.name, true);
      r.string(f, "type", path + ".type", pf.type);
      r.boolean(f, "restricted", path + ".restricted", pf.restricted);
      static const std::set<std::string> types{"string", "number", "integer", "boolean", "object", "array"};
      if (!types.contains(pf.type)) r.add(path + ".type", "unknown type \"" + pf.type + "\"");
      if (!pf.name.empty() && !std::regex_match(pf.name, field_name_re()))
        r.add(path + ".name", "\"" + pf.name + "\" is not a valid field name");
      if (!pf.name.empty() && !seen.insert(pf.name).second)
        r.add(path + ".name", "duplicate field \"" + pf.name + "\"");
      p.fields.push_back(pf);
    }
    if (fields->empty()) r.add("spec.fields", "at least one field is required");
  }
  if (!p.key.empty() && !p.fields.empty()) {
    const product_field* k = p.find_field(p.key);
    if (k == nullptr) {
      r.add("spec.key", "\"" + p.key + "\" is not one of spec.fields");
    } else if (k->restricted) {
      r.add("spec.key", "the key field cannot be restricted");
    } else if (k->type != "string" && k->type != "integer") {
      r.add("spec.key", "the key field must be a string or an integer");
    }
  }

  if (const json* t = r.child(*spec, "topic", "spec.topic", json::value_t::object, true)) {
    r.string(*t, "name", "spec.topic.name", p.topic.name, true);
    static const std::regex topic_re("^[a-zA-Z0-9._-]{1,249}$");
    if (!p.topic.name.empty() &&
        (!std::regex_match(p.topic.name, topic_re) || p.topic.name == "." || p.topic.name == ".."))
      r.add("spec.topic.name", "\"" + p.topic.name + "\" is not a valid Kafka topic name");
    r.integer(*t, "partitions", "spec.topic.partitions", p.topic.partitions, 1, 10000);
    r.integer(*t, "replicationFactor", "spec.topic.replicationFactor", p.topic.replication_factor, 1, 32);
    r.string(*t, "deletionPolicy", "spec.topic.deletionPolicy", p.topic.deletion_policy);
    if (p.topic.deletion_policy != "Retain" && p.topic.deletion_policy != "Delete")
      r.add("spec.topic.deletionPolicy", "must be Retain or Delete");
    if (const json* cfg = r.child(*t, "config", "spec.topic.config", json::value_t::object, false)) {
      for (const auto& [k, v] : cfg->items()) {
        if (!v.is_string()) {
          r.add("spec.topic.config." + k, "expected string, got " + std::string(v.type_name()));
          continue;
        }
        p.topic.config[k] = v.get<std::string>();
      }
    }
  }

  if (const json* a = r.child(*spec, "access", "spec.access", json::value_t::object, false)) {
    r.strings(*a, "namespaces", "spec.access.namespaces", p.access_namespaces);
  }

  if (out.problems.empty()) out.value = std::move(p);
  return out;
}

parsed<data_sharing_policy> parse_data_sharing_policy(const json& object) {
  parsed<data_sharing_policy> out;
  reader r(out.problems);
  data_sharing_policy p;
  p.meta = meta_of(object);
  const json* spec = r.child(object, "spec", "spec", json::value_t::object, true);
  if (spec == nullptr) return out;

  if (const json* prod = r.child(*spec, "product", "spec.product", json::value_t::object, true)) {
    r.string(*prod, "name", "spec.product.name", p.product_name, true);
    r.string(*prod, "namespace", "spec.product.namespace", p.product_namespace);
    if (!p.product_name.empty() && !std::regex_match(p.product_name, dns_label()))
      r.add("spec.product.name", "\"" + p.product_name + "\" is not a valid resource name");
  }
  if (p.product_namespace.empty()) p.product_namespace = p.meta.ns;
  if (const json* consumer = r.child(*spec, "consumer", "spec.consumer", json::value_t::object, true)) {
    parse_workload(r, *consumer, "spec.consumer", p.consumer);
  }
  r.string(*spec, "mode", "spec.mode", p.mode, true);
  if (!p.mode.empty() && p.mode != "sync" && p.mode != "event" && p.mode != "hybrid")
    r.add("spec.mode", "unknown mode \"" + p.mode + "\" (sync, event or hybrid)");
  r.strings(*spec, "fields", "spec.fields", p.fields);
  r.strings(*spec, "syncFields", "spec.syncFields", p.sync_fields);
  if (p.mode == "event" && !p.sync_fields.empty())
    r.add("spec.syncFields", "event mode reads nothing through the owner");
  if (p.mode == "event" && p.fields.empty()) r.add("spec.fields", "event mode needs at least one field");
  if (p.mode == "hybrid" && (p.fields.empty() || p.sync_fields.empty()))
    r.add("spec", "hybrid mode needs both fields and syncFields");
  if (p.mode == "sync" && p.fields.empty() && p.sync_fields.empty())
    r.add("spec", "sync mode needs fields (a copy kept by the gateway) or syncFields");
  for (size_t i = 0; i < p.sync_fields.size(); ++i) {
    if (std::find(p.fields.begin(), p.fields.end(), p.sync_fields[i]) != p.fields.end())
      r.add("spec.syncFields[" + std::to_string(i) + "]",
            "\"" + p.sync_fields[i] + "\" is also in spec.fields: a field is either local or read through the owner");
  }

  if (const json* c = r.child(*spec, "consistency", "spec.consistency", json::value_t::object, false)) {
    r.duration(*c, "maxLag", "spec.consistency.maxLag", p.max_lag, true);
  }
  parse_duration(p.max_lag, p.max_lag_duration);

  if (const json* s = r.child(*spec, "sync", "spec.sync", json::value_t::object, false)) {
    r.duration(*s, "timeout", "spec.sync.timeout", p.sync.timeout, true);
    r.integer(*s, "maxInFlight", "spec.sync.maxInFlight", p.sync.max_in_flight, 1, 100000);
    if (const json* rt = r.child(*s, "retries", "spec.sync.retries", json::value_t::object, false)) {
      r.integer(*rt, "attempts", "spec.sync.retries.attempts", p.sync.retry_attempts, 0, 10);
      r.duration(*rt, "backoff", "spec.sync.retries.backoff", p.sync.retry_backoff, false);
    }
    if (const json* cb = r.child(*s, "circuitBreaker", "spec.sync.circuitBreaker", json::value_t::object, false)) {
      r.integer(*cb, "consecutiveFailures", "spec.sync.circuitBreaker.consecutiveFailures",
                p.sync.breaker_consecutive_failures, 1, 1000);
      r.duration(*cb, "openFor", "spec.sync.circuitBreaker.openFor", p.sync.breaker_open_for, true);
    }
    if (const json* ca = r.child(*s, "cache", "spec.sync.cache", json::value_t::object, false)) {
      r.duration(*ca, "ttl", "spec.sync.cache.ttl", p.sync.cache_ttl, true);
      r.integer(*ca, "maxEntries", "spec.sync.cache.maxEntries", p.sync.cache_max_entries, 0, 100000000);
      r.boolean(*ca, "serveStaleOnError", "spec.sync.cache.serveStaleOnError", p.sync.serve_stale_on_error);
    }
  }
  if (const json* rep = r.child(*spec, "replica", "spec.replica", json::value_t::object, false)) {
    r.string(*rep, "store", "spec.replica.store", p.store);
    if (p.store != "rocksdb" && p.store != "memory") r.add("spec.replica.store", "must be rocksdb or memory");
    r.string(*rep, "readIndex", "spec.replica.readIndex", p.read_index);
    if (p.read_index != "auto" && p.read_index != "none" && p.read_index != "memory")
      r.add("spec.replica.readIndex", "must be auto, none or memory");
    if (p.read_index == "memory" && p.store != "rocksdb") r.add("spec.replica.readIndex", "memory needs store rocksdb");
    r.integer(*rep, "maxEventBytes", "spec.replica.maxEventBytes", p.max_event_bytes, 64, 67108864);
    r.integer(*rep, "applyWorkers", "spec.replica.applyWorkers", p.apply_workers, 1, 64);
  }

  if (out.problems.empty()) out.value = std::move(p);
  return out;
}

}  // namespace datashare::controllers
