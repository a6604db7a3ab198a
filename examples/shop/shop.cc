#include "examples/shop/shop.h"

#include <nlohmann/json.hpp>
#include <string_view>

#include "common/url.h"

namespace datashare::shop {

namespace bhttp = boost::beast::http;
using sidecar::http::client_reply;
using sidecar::http::json_error;
using sidecar::http::response;

namespace {

std::string_view path_of(const sidecar::http::request& req) {
  const std::string_view target(req.target().data(), req.target().size());
  return target.substr(0, target.find('?'));
}

// The JSON of a sidecar's answer body, or the body as a string when it is not JSON.
nlohmann::json body_json(const std::string& body) {
  auto j = nlohmann::json::parse(body, nullptr, false);
  return j.is_discarded() ? nlohmann::json(body) : j;
}

}  // namespace

product_front::product_front(testing::owner_service& data, std::string key_field, publish_fn publish)
    : data_(data), key_field_(std::move(key_field)), publish_(std::move(publish)) {}

std::optional<response> product_front::answer(const sidecar::http::request& req) {
  constexpr std::string_view kPrefix = "/catalog/products/";
  const auto path = path_of(req);
  if (!path.starts_with(kPrefix)) return std::nullopt;
  const auto raw = path.substr(kPrefix.size());
  auto key = url::percent_decode(raw);
  if (!key || key->empty() || raw.find('/') != std::string_view::npos) return json_error(404, "no such product path");
  if (req.method() != bhttp::verb::put) return json_error(405, "PUT a product here");
  auto body = nlohmann::json::parse(req.body(), nullptr, false);
  if (body.is_discarded() || !body.is_object()) return json_error(400, "body must be a JSON object");
  if (!body.contains(key_field_)) body[key_field_] = *key;
  if (body[key_field_] != *key) {
    return json_error(400, "\"" + key_field_ + "\" is " + body[key_field_].dump() + ", the path says \"" + *key + "\"");
  }
  const std::string text = body.dump();
  data_.store(*key, text);
  const client_reply published = publish_(*key, text);
  if (published.status < 200 || published.status > 299) {
    const std::string why = published.status == 0
                                ? "the sidecar did not answer"
                                : "the sidecar answered " + std::to_string(published.status) + ": " + published.body;
    return json_error(503, "stored but not published (" + why + "); PUT it again");
  }
  return response{.body = nlohmann::json{{"stored", body}, {"published", body_json(published.body)}}.dump()};
}

order_book::order_book(read_fn read) : read_(std::move(read)) {}

std::string order_book::show(const std::string& id, const order& o) {
  nlohmann::json out{{"id", id}, {"product", o.product}, {"quantity", o.quantity}};
  const client_reply r = read_(o.product);
  auto data = body_json(r.body);
  if (r.status == 200 && data.is_object()) {
    out["productName"] = data.contains("name") ? data["name"] : nlohmann::json(nullptr);
    out["productData"] = data;
  } else {
    out["productName"] = nullptr;
    out["productError"] = r.status == 0 ? "the sidecar did not answer"
                                        : "the sidecar answered " + std::to_string(r.status) + ": " + r.body;
  }
  return out.dump();
}

response order_book::answer(const sidecar::http::request& req) {
  const auto path = path_of(req);
  const auto method = req.method();
  if (path == "/healthz") return response{.body = R"({"status":"ok"})"};
  if (path == "/orders" && method == bhttp::verb::post) {
    auto body = nlohmann::json::parse(req.body(), nullptr, false);
    if (body.is_discarded() || !body.is_object() || !body.contains("product") || !body["product"].is_string() ||
        body["product"].get<std::string>().empty()) {
      return json_error(400, R"(want {"product": "<key>", "quantity": <n>})");
    }
    order o{.product = body["product"].get<std::string>()};
    if (body.contains("quantity")) {
      if (!body["quantity"].is_number_integer() || body["quantity"].get<std::int64_t>() < 1) {
        return json_error(400, "quantity must be a positive integer");
      }
      o.quantity = body["quantity"].get<std::int64_t>();
    }
    std::string id;
    {
      std::lock_guard lock(mu_);
      id = "o-" + std::to_string(next_id_++);
      orders_[id] = o;
    }
    return response{.status = 201, .body = show(id, o)};
  }
  if (method != bhttp::verb::get) return json_error(405, "method not allowed");
  if (path == "/orders") {
    std::map<std::string, order> all;
    {
      std::lock_guard lock(mu_);
      all = orders_;
    }
    auto list = nlohmann::json::array();
    for (const auto& [id, o] : all) list.push_back(nlohmann::json::parse(show(id, o)));
    return response{.body = list.dump()};
  }
  if (path.starts_with("/orders/")) {
    const std::string id(path.substr(8));
    order o;
    {
      std::lock_guard lock(mu_);
      auto it = orders_.find(id);
      if (it == orders_.end()) return json_error(404, "no order " + id);
      o = it->second;
    }
    return response{.body = show(id, o)};
  }
  return json_error(404, "no such path: " + std::string(path));
}

void service_options::add_to(flag_set& flags) {
  flags.add("listen", &listen, "HOST:PORT to serve on");
  flags.add("port-file", &port_file, "file to write the bound port to, once listening");
  flags.add("sidecar", &sidecar, "the sidecar's data API, http://HOST:PORT");
  flags.add("product", &product, "the DataProduct's name (the sidecar's /v1/data/<product>/)");
  flags.add("threads", &threads, "HTTP threads (a call to the sidecar holds one until it answers)");
}

void service_options::check(std::vector<std::string>& problems) {
  where = sidecar::http::parse_host_port(listen);
  if (!where) problems.push_back("--listen: want HOST:PORT, got \"" + listen + "\"");
  sidecar_origin = sidecar::http::parse_origin(sidecar);
  if (!sidecar_origin) problems.push_back("--sidecar: want http://HOST:PORT, got \"" + sidecar + "\"");
  if (product.empty()) problems.push_back("--product: must not be empty");
  if (threads < 1 || threads > 64) problems.push_back("--threads: want 1..64");
}

namespace {

client_reply call_sidecar(sidecar::http::client& sidecar, bhttp::verb method, const std::string& product,
                          const std::string& key, const std::string& body, std::chrono::milliseconds timeout) {
  client_reply r;
  const std::string target = "/v1/data/" + product + "/" + url::percent_encode_segment(key);
  if (sidecar.call(method, target, body, std::chrono::steady_clock::now() + timeout, r)) r.status = 0;
  return r;
}

}  // namespace

order_book::read_fn sidecar_reader(std::shared_ptr<sidecar::http::client> sidecar, std::string product,
                                   std::chrono::milliseconds timeout) {
  return [sidecar = std::move(sidecar), product = std::move(product), timeout](const std::string& key) {
    return call_sidecar(*sidecar, bhttp::verb::get, product, key, "", timeout);
  };
}

product_front::publish_fn sidecar_publisher(std::shared_ptr<sidecar::http::client> sidecar, std::string product,
                                            std::chrono::milliseconds timeout) {
  return [sidecar = std::move(sidecar), product = std::move(product), timeout](const std::string& key,
                                                                               const std::string& body) {
    return call_sidecar(*sidecar, bhttp::verb::put, product, key, body, timeout);
  };
}

}  // namespace datashare::shop
