#pragma once
// The two services of the shop example (README.md), as request → response logic the binaries
// serve and the unit tests call directly.
//
//   product_front  the Product service's own write path (the owner): PUT /catalog/products/<key>
//                  stores the product, then publishes it through the sidecar
//   order_book     the Order service (a consumer): keeps orders, each holding a product key, and
//                  shows the product's name read through its sidecar's localhost API on every read
//
// Threading: answer() may be called from several threads at once (one mutex inside each); the
// sidecar calls (publish_fn, read_fn) block the calling thread.

#include <cstdint>
#include <functional>
#include <map>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "common/flags.h"
#include "sidecar/http/client.h"
#include "sidecar/http/server.h"
#include "sidecar/http/standalone.h"
#include "tests/support/test_owner/owner_service.h"

namespace datashare::shop {

// The product service's data is the test owner's (GET/PUT/DELETE /products/<key>: what the
// DataProduct names as readPath and writePath, and what the gateway's owner participant writes).
// On top of it, the catalog's own edits, which must reach the consumers:
//
//   PUT /catalog/products/<key> + JSON object  → stored, then published with the sidecar's
//       PUT /v1/data/<product>/<key>; 200 {"stored":..., "published":...}; 400 for a body that is
//       not an object or whose key field differs from the path; 503 when the sidecar did not
//       take it (the product is stored: the PUT can be repeated, it is idempotent).
class product_front {
 public:
  // (key, JSON body) → the sidecar's answer (status 0: no answer).
  using publish_fn = std::function<sidecar::http::client_reply(const std::string& key, const std::string& body)>;
  product_front(testing::owner_service& data, std::string key_field, publish_fn publish);

  // The answer to a request of this front's path, nullopt for any other path (the data API's).
  std::optional<sidecar::http::response> answer(const sidecar::http::request& req);

 private:
  testing::owner_service& data_;
  std::string key_field_;
  publish_fn publish_;
};

// The Order service: orders in memory, each holding a product key and a quantity; the product's
// fields are read through the sidecar at every read of an order, so what an order shows is
// exactly what the sidecar serves in its mode.
//
//   POST /orders {"product": "<key>", "quantity": n}   → 201 + the order as shown below
//   GET  /orders/<id>   → 200 {"id","product","quantity","productName","productData"}, or with
//                         "productName": null and "productError" when the sidecar had no answer
//   GET  /orders        → 200 [every order, shown the same way]
//   GET  /healthz       → 200
class order_book {
 public:
  // product key → the sidecar's answer to GET /v1/data/<product>/<key> (status 0: no answer).
  using read_fn = std::function<sidecar::http::client_reply(const std::string& key)>;
  explicit order_book(read_fn read);

  sidecar::http::response answer(const sidecar::http::request& req);

 private:
  struct order {
    std::string product;
    std::int64_t quantity = 1;
  };
  std::string show(const std::string& id, const order& o);

  read_fn read_;
  std::mutex mu_;
  std::map<std::string, order> orders_;
  std::uint64_t next_id_ = 1;
};

// The flags both binaries take, and their checks.
struct service_options {
  std::string listen = "127.0.0.1:8080";
  std::string port_file;
  std::string sidecar = "http://127.0.0.1:8090";
  std::string product = "products";
  int threads = 4;
  std::optional<sidecar::http::host_port> where;        // set by check()
  std::optional<sidecar::http::origin> sidecar_origin;  // set by check()

  void add_to(flag_set& flags);
  // Appends every problem of the values to `problems`.
  void check(std::vector<std::string>& problems);
};

// A read_fn / publish_fn calling `sidecar` (its data port) for
// `product`, each call within `timeout`.
order_book::read_fn sidecar_reader(std::shared_ptr<sidecar::http::client> sidecar, std::string product,
                                   std::chrono::milliseconds timeout);
product_front::publish_fn sidecar_publisher(std::shared_ptr<sidecar::http::client> sidecar, std::string product,
                                            std::chrono::milliseconds timeout);

}  // namespace datashare::shop
