#include "sidecar/api/router.h"

#include <algorithm>
#include <charconv>
#include <initializer_list>
#include <nlohmann/json.hpp>

#include "sidecar/replica/layout.h"

namespace datashare::sidecar::api {
namespace bhttp = boost::beast::http;

std::optional<std::string> percent_decode(std::string_view s) {
  std::string out;
  out.reserve(s.size());
  auto hex = [](char c) -> int {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
  };
  for (std::size_t i = 0; i < s.size(); ++i) {
    if (s[i] != '%') {
      out.push_back(s[i]);
      continue;
    }
    if (i + 2 >= s.size()) return std::nullopt;
    int hi = hex(s[i + 1]), lo = hex(s[i + 2]);
    if (hi < 0 || lo < 0) return std::nullopt;
    out.push_back(static_cast<char>(hi * 16 + lo));
    i += 2;
  }
  return out;
}

namespace {

// JSON text of a string that may not be valid UTF-8 (keys come from URLs and Kafka): invalid
// bytes become U+FFFD instead of an exception.
std::string json_string(std::string_view s) {
  return nlohmann::json(s).dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
}

http::response json_error(unsigned status, std::string_view message) {
  http::response r;
  r.status = status;
  r.body = R"({"error":)" + json_string(message) + "}";
  return r;
}

// The value of query parameter `name` (raw, not decoded), or nullopt.
std::optional<std::string_view> query_param(std::string_view query, std::string_view name) {
  while (!query.empty()) {
    auto amp = query.find('&');
    std::string_view pair = query.substr(0, amp);
    auto eq = pair.find('=');
    if (pair.substr(0, eq) == name) return eq == std::string_view::npos ? std::string_view() : pair.substr(eq + 1);
    if (amp == std::string_view::npos) break;
    query.remove_prefix(amp + 1);
  }
  return std::nullopt;
}

// The first query parameter whose name is not one of `known`, or nullopt.
std::optional<std::string_view> unknown_param(std::string_view query, std::initializer_list<std::string_view> known) {
  while (!query.empty()) {
    auto amp = query.find('&');
    std::string_view name = query.substr(0, amp);
    name = name.substr(0, name.find('='));
    if (std::find(known.begin(), known.end(), name) == known.end()) return name;
    if (amp == std::string_view::npos) break;
    query.remove_prefix(amp + 1);
  }
  return std::nullopt;
}

std::string staleness(const replica::replica& r) {
  return std::to_string(r.status().staleness_ms);
}

void append_item(std::string& out, const replica::item& it) {
  out += R"({"key":)";
  out += json_string(it.key);
  out += R"(,"version":)";
  out += std::to_string(it.version);
  out += R"(,"value":)";
  out += it.value;  // stored as JSON already
  out += '}';
}

}  // namespace

router::router(metrics::registry& metrics, const std::vector<replica::replica*>& replicas,
               const std::vector<publisher::publisher*>& publishers, const std::vector<proxy::sync_proxy*>& proxies)
    : metrics_(metrics) {
  for (auto* r : replicas) replicas_.emplace(r->spec().product.name, r);
  for (auto* p : publishers) publishers_.emplace(p->spec().product.name, p);
  for (auto* p : proxies) proxies_.emplace(p->spec().product.name, p);
}

void router::add_copy(const std::string& product, const store::kv* copy, held_ms_fn held_ms, released_fn released) {
  copies_[product] = gateway_copy{copy, std::move(held_ms), std::move(released)};
}

bool router::ready() const {
  for (const auto& [name, r] : replicas_) {
    if (!r->status().ready) return false;
  }
  return true;
}

http::response router::readiness() const {
  nlohmann::json body;
  body["ready"] = ready();
  body["replicas"] = nlohmann::json::array();
  for (const auto& [name, r] : replicas_) {
    auto s = r->status();
    // building, ready, suspended (a bootstrap) or dropped (readIndex auto past its budget); none.
    std::string index = r->store().property("datashare.read-index.state");
    body["replicas"].push_back({{"policy", r->spec().policy},
                                {"product", name},
                                {"ready", s.ready},
                                {"caughtUpToStart", s.caught_up_to_start},
                                {"lagEvents", s.lag_events},
                                {"stalenessMs", s.staleness_ms},
                                {"maxLagMs", r->spec().max_lag.count()},
                                {"appliedTotal", s.applied_total},
                                {"staleTotal", s.stale_total},
                                {"dlqTotal", s.dlq_total},
                                {"readIndex", index.empty() ? "none" : index}});
  }
  body["publishers"] = nlohmann::json::array();
  for (const auto& [name, p] : publishers_)
    body["publishers"].push_back({{"product", name}, {"outboxDepth", p->depth()}});
  http::response r;
  r.status = body["ready"].get<bool>() ? 200 : 503;
  r.body = body.dump();
  return r;
}

void router::handle_admin(const http::request& req, const http::responder& respond) const {
  try {
    route_admin(req, respond);
  } catch (const std::exception& e) {
    respond(json_error(500, std::string("internal error: ") + e.what()));
  }
}

void router::route_admin(const http::request& req, const http::responder& respond) const {
  std::string_view target(req.target().data(), req.target().size());
  std::string_view path = target.substr(0, target.find('?'));
  if (req.method() != bhttp::verb::get && req.method() != bhttp::verb::head) {
    auto r = json_error(405, "only GET here");
    r.headers.emplace_back("Allow", "GET");
    respond(std::move(r));
    return;
  }
  if (path == "/healthz") {
    respond({200, R"({"status":"ok"})", "application/json", {}});
  } else if (path == "/readyz") {
    respond(readiness());
  } else if (path == "/metrics") {
    respond({200, metrics_.serialize(), "text/plain; version=0.0.4", {}});
  } else {
    respond(json_error(404, "no such path: try /healthz, /readyz, /metrics"));
  }
}

void router::handle_data(const http::request& req, const http::responder& respond) const {
  // Nothing below should throw; if something does (allocation), the caller gets a 500 and the
  // sidecar goes on. Every path answers as its last step, so an answer is never given twice.
  try {
    route_data(req, respond);
  } catch (const std::exception& e) {
    respond(json_error(500, std::string("internal error: ") + e.what()));
  }
}

void router::route_data(const http::request& req, const http::responder& respond) const {
  std::string_view target(req.target().data(), req.target().size());
  auto qpos = target.find('?');
  std::string_view path = target.substr(0, qpos);
  std::string_view query = qpos == std::string_view::npos ? std::string_view() : target.substr(qpos + 1);
  constexpr std::string_view kPrefix = "/v1/data/";
  if (path.rfind(kPrefix, 0) != 0) {
    route_admin(req, respond);
    return;
  }
  std::string_view rest = path.substr(kPrefix.size());
  auto slash = rest.find('/');
  std::string_view product = rest.substr(0, slash);
  std::string_view key_raw = slash == std::string_view::npos ? std::string_view() : rest.substr(slash + 1);
  bool has_key = slash != std::string_view::npos;
  if (product.empty()) {
    respond(json_error(400, "missing product: /v1/data/<product>/<key>"));
    return;
  }
  auto method = req.method();
  if (method == bhttp::verb::put || method == bhttp::verb::delete_) {
    auto p = publishers_.find(product);
    if (p == publishers_.end()) {
      respond(json_error(404, "this sidecar publishes no product \"" + std::string(product) + "\""));
      return;
    }
    auto key = percent_decode(key_raw);
    if (!has_key || !key || key->empty()) {
      respond(json_error(400, "missing or malformed key: /v1/data/<product>/<key>"));
      return;
    }
    std::optional<std::string> body;
    if (method == bhttp::verb::put) body = req.body();
    p->second->submit(std::move(*key), std::move(body), [respond](publisher::publish_result r) {
      http::response out;
      out.status = r.status;
      out.body = std::move(r.body);
      if (r.version != 0) out.headers.emplace_back("Datashare-Version", std::to_string(r.version));
      if (r.retry_after_s > 0) out.headers.emplace_back("Retry-After", std::to_string(r.retry_after_s));
      respond(std::move(out));
    });
    return;
  }
  if (method != bhttp::verb::get && method != bhttp::verb::head) {
    auto r = json_error(405, "method not allowed: GET, PUT, DELETE");
    r.headers.emplace_back("Allow", "GET, PUT, DELETE");
    respond(std::move(r));
    return;
  }
  // `/v1/data/<product>/` is a key left out, not a scan (that is `/v1/data/<product>`).
  if (has_key && key_raw.empty()) {
    respond(json_error(400,
                       "missing key: /v1/data/<product>/<key> (batch and scan reads: /v1/data/<product>?keys=a,b "
                       "or ?limit=n&after=k)"));
    return;
  }
  // A misspelt parameter (`?key=a`) would otherwise read as a scan of everything.
  if (!has_key) {
    if (auto name = unknown_param(query, {"keys", "limit", "after"})) {
      respond(json_error(400, "unknown query parameter \"" + std::string(*name) + "\" (known: keys, limit, after)"));
      return;
    }
  }
  auto r = replicas_.find(product);
  auto p = proxies_.find(product);
  auto c = copies_.find(product);
  // A copy kept by the gateway answers alone when the policy reads nothing through the owner.
  bool copy_alone = c != copies_.end() && (p == proxies_.end() || p->second->spec().sync_fields.empty());
  if (p != proxies_.end() && has_key && !copy_alone) {
    std::optional<local_copy> local;
    if (r != replicas_.end()) {
      auto s = r->second->status();
      local = local_copy{&r->second->store(), s.ready, s.staleness_ms};
    } else if (c != copies_.end()) {
      local = local_copy{c->second.kv, true, 0};  // always current: written by the gateway's commits
    }
    read_through(*p->second, local ? &*local : nullptr, key_raw, respond);
    return;
  }
  if (r == replicas_.end()) {
    if (c != copies_.end()) {
      const auto& copy = c->second;
      respond(read(*copy.kv, "0", product, has_key ? key_raw : std::string_view(), has_key ? std::string_view() : query,
                   copy.held_ms ? &copy.held_ms : nullptr, copy.released ? &copy.released : nullptr));
      return;
    }
    if (p != proxies_.end()) {
      respond(json_error(501, "batch and scan reads of \"" + std::string(product) +
                                  "\" are not available in sync mode: read one key at a time"));
      return;
    }
    respond(json_error(404, "this sidecar keeps no copy of product \"" + std::string(product) + "\""));
    return;
  }
  respond(read(r->second->store(), staleness(*r->second), product, has_key ? key_raw : std::string_view(),
               has_key ? std::string_view() : query));
}

namespace {

std::string join_fields(const std::vector<std::string>& names) {
  std::string out;
  for (const auto& n : names) {
    if (!out.empty()) out += ',';
    out += n;
  }
  return out;
}

// One element of Datashare-Sources: `replica;fields="id,name";staleness-ms=12`.
std::string source_entry(std::string_view from, const std::vector<std::string>& fields, std::int64_t staleness_ms,
                         std::string_view fallback = {}) {
  std::string e(from);
  e += ";fields=\"" + join_fields(fields) + "\";staleness-ms=" + std::to_string(staleness_ms);
  if (!fallback.empty()) e += ";fallback=" + std::string(fallback);
  return e;
}

}  // namespace

void router::read_through(proxy::sync_proxy& p, const local_copy* local, std::string_view key_raw,
                          const http::responder& respond) const {
  auto key = percent_decode(key_raw);
  if (!key || key->empty()) {
    respond(json_error(400, "missing or malformed key: /v1/data/<product>/<key>"));
    return;
  }
  const auto& spec = p.spec();
  auto answer_error = [respond](const proxy::sync_result& res) {
    http::response out;
    out.status = res.status;
    out.body = res.body;
    respond(std::move(out));
  };

  // Sync mode, or hybrid falling back: every field through the proxy.
  auto whole_from_owner = [&p, respond, answer_error](const std::string& k, std::string_view fallback,
                                                      std::optional<std::chrono::milliseconds> max_age) {
    p.read(
        k,
        [&p, respond, answer_error, fallback = std::string(fallback)](const proxy::sync_result& res) {
          if (res.status != 200) {
            answer_error(res);
            return;
          }
          http::response out;
          out.body = res.body;
          out.headers.emplace_back("Datashare-Sources",
                                   source_entry(proxy::to_string(res.from), p.fields(), res.age.count(), fallback));
          out.headers.emplace_back("Datashare-Staleness-Ms", std::to_string(res.age.count()));
          respond(std::move(out));
        },
        max_age);
  };

  if (local == nullptr) {
    whole_from_owner(*key, {}, std::nullopt);
    return;
  }
  if (!local->ready) {
    // Outside the staleness budget: serving the copy would silently break maxLag.
    p.probe().fell_back(metrics::fallback_reason::max_lag);
    whole_from_owner(*key, "max-lag", spec.max_lag);
    return;
  }
  replica::item it;
  auto ec = replica::lookup(*local->kv, *key, it);
  if (ec == store::errc::not_found) {
    // Maybe newer than the copy: the owner decides (a 404 from it is a 404).
    p.probe().fell_back(metrics::fallback_reason::not_in_copy);
    whole_from_owner(*key, "not-in-copy", spec.max_lag);
    return;
  }
  if (ec) {
    respond(json_error(500, "store read failed: " + ec.message()));
    return;
  }
  p.read(*key, [&p, respond, answer_error, it = std::move(it),
                staleness = local->staleness_ms](const proxy::sync_result& res) {
    if (res.status != 200) {
      answer_error(res);
      return;
    }
    auto merged = nlohmann::json::parse(it.value, nullptr, false);
    auto remote = nlohmann::json::parse(res.body, nullptr, false);
    if (!merged.is_object() || !remote.is_object()) {
      respond(json_error(500, "stored value is not a JSON object"));
      return;
    }
    for (const auto& f : p.spec().sync_fields) {
      if (auto v = remote.find(f); v != remote.end()) merged[f] = *v;
    }
    http::response out;
    out.body = merged.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
    out.headers.emplace_back("Datashare-Version", std::to_string(it.version));
    out.headers.emplace_back("Datashare-Sources",
                             source_entry("replica", p.spec().fields, staleness) + ", " +
                                 source_entry(proxy::to_string(res.from), p.spec().sync_fields, res.age.count()));
    out.headers.emplace_back("Datashare-Staleness-Ms",
                             std::to_string(std::max<std::int64_t>(staleness, res.age.count())));
    respond(std::move(out));
  });
}

http::response router::read(const store::kv& kv, const std::string& staleness_ms, std::string_view product,
                            std::string_view key_raw, std::string_view query, const held_ms_fn* held,
                            const released_fn* released) const {
  http::response out;
  // A gateway copy is current for every key no transaction holds here (none can commit without
  // this copy's vote); a held one may have been committed elsewhere since this copy prepared it.
  std::int64_t held_most = 0;
  auto held_of = [&](const std::string& k) {
    if (held != nullptr) held_most = std::max(held_most, (*held)(k));
  };
  auto staleness_of = [&] { return held_most > 0 ? std::to_string(held_most) : staleness_ms; };
  if (!key_raw.empty()) {
    // The hot path of P2: no copy of the key unless it is percent-encoded, and the stored record
    // becomes the body in place (its header cut off) instead of being copied twice.
    std::optional<std::string> decoded;
    std::string_view key = key_raw;
    if (key_raw.find('%') != std::string_view::npos) {
      decoded = percent_decode(key_raw);
      if (!decoded) return json_error(400, "malformed percent-encoding in the key");
      key = *decoded;
    }
    out.headers.reserve(2);
    // Held or not is asked before the value is read: a commit landing between the two then
    // shows its new value, never the old one said current (a copy frees the key once the
    // value is in its store, sidecar/participant/README.md).
    if (held != nullptr) held_of(std::string(key));
    std::string bytes;
    auto ec = kv.get(replica::data_key(key), bytes);
    std::optional<replica::record> rec;
    if (!ec) {
      rec = replica::decode_record(bytes);
      if (!rec) {
        ec = store::errc::corruption;
      } else if (rec->deleted) {
        ec = store::errc::not_found;
      }
    }
    if (ec == store::errc::not_found) {
      out = json_error(404, "no such key in " + std::string(product));
    } else if (ec) {
      out = json_error(500, "store read failed: " + ec.message());
    } else {
      const auto at = static_cast<std::size_t>(rec->value.data() - bytes.data());
      const auto size = rec->value.size();
      out.headers.emplace_back("Datashare-Version", std::to_string(rec->version));
      bytes.erase(0, at);
      bytes.resize(size);
      out.body = std::move(bytes);
    }
    out.headers.emplace_back("Datashare-Staleness-Ms", staleness_of());
    return out;
  }
  if (auto keys = query_param(query, "keys")) {
    std::vector<std::string> list;
    std::string_view rest = *keys;
    while (!rest.empty() || list.empty()) {
      auto comma = rest.find(',');
      auto k = percent_decode(rest.substr(0, comma));
      if (!k || k->empty()) return json_error(400, "keys: a comma-separated list of non-empty, well-encoded keys");
      list.push_back(std::move(*k));
      if (list.size() > kMaxBatchKeys) return json_error(400, "keys: at most " + std::to_string(kMaxBatchKeys));
      if (comma == std::string_view::npos) break;
      rest.remove_prefix(comma + 1);
      if (rest.empty()) return json_error(400, "keys: empty key after ','");
    }
    std::string body = R"({"items":[)";
    std::string missing;
    bool first = true;
    for (const auto& k : list) {
      held_of(k);
      replica::item it;
      auto ec = replica::lookup(kv, k, it);
      if (ec == store::errc::not_found) {
        missing += missing.empty() ? "" : ",";
        missing += json_string(k);
        continue;
      }
      if (ec) return json_error(500, "store read failed: " + ec.message());
      if (!first) body += ',';
      first = false;
      append_item(body, it);
    }
    body += R"(],"missing":[)" + missing + "]}";
    out.body = std::move(body);
    out.headers.emplace_back("Datashare-Staleness-Ms", staleness_of());
    return out;
  }
  std::size_t limit = kDefaultPage;
  if (auto l = query_param(query, "limit")) {
    std::size_t v = 0;
    auto [ptr, ec] = std::from_chars(l->data(), l->data() + l->size(), v);
    if (ec != std::errc() || ptr != l->data() + l->size() || v == 0 || v > kMaxPage) {
      return json_error(400, "limit: an integer from 1 to " + std::to_string(kMaxPage));
    }
    limit = v;
  }
  std::string after;
  if (auto a = query_param(query, "after")) {
    auto d = percent_decode(*a);
    if (!d) return json_error(400, "after: malformed percent-encoding");
    after = std::move(*d);
  }
  std::vector<replica::item> items;
  bool more = false;
  // A page's keys are known only once it is read, so "held?" is asked after: a key freed between
  // the two (its commit landed) would read old and current. The count of keys freed tells it.
  const std::uint64_t released_before = released != nullptr ? (*released)() : 0;
  if (auto ec = replica::scan(kv, after, limit, items, more))
    return json_error(500, "store read failed: " + ec.message());
  std::string body = R"({"items":[)";
  for (std::size_t i = 0; i < items.size(); ++i) {
    if (i != 0) body += ',';
    append_item(body, items[i]);
    held_of(items[i].key);
  }
  if (released != nullptr && (*released)() != released_before) held_most = std::max<std::int64_t>(held_most, 1);
  body += "]";
  if (more) body += R"(,"next":)" + json_string(items.back().key);
  body += "}";
  out.body = std::move(body);
  out.headers.emplace_back("Datashare-Staleness-Ms", staleness_of());
  return out;
}

}  // namespace datashare::sidecar::api
