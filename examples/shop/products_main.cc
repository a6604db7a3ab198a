// datashare-shop-products --listen 127.0.0.1:8080 --sidecar http://127.0.0.1:8090 [--port-file FILE]
//
// The shop example's Product service (README.md): the owner of the product data. Serves it on
// /products/<key> (GET, PUT, DELETE: the DataProduct's readPath and writePath) and takes the
// catalog's own edits on PUT /catalog/products/<key>, which it stores and publishes through its
// sidecar. Runs until SIGTERM or SIGINT.
#include <iostream>
#include <memory>

#include "examples/shop/shop.h"

int main(int argc, char** argv) {
  namespace http = datashare::sidecar::http;
  datashare::shop::service_options o;
  std::string key_field = "id";
  datashare::flag_set flags("datashare-shop-products");
  o.add_to(flags);
  flags.add("key-field", &key_field, "the DataProduct's key field");
  auto problems = flags.parse(argc, argv);
  if (flags.help_requested()) {
    std::cout << flags.usage();
    return 0;
  }
  o.check(problems);
  if (key_field.empty()) problems.push_back("--key-field: must not be empty");
  if (!problems.empty()) {
    for (const auto& p : problems) std::cerr << "datashare-shop-products: " << p << "\n";
    std::cerr << flags.usage();
    return 2;
  }

  const sigset_t signals = http::block_stop_signals();
  http::server server(o.threads);
  std::string error;
  datashare::testing::owner_service data(*datashare::testing::path_template::parse("/products/{key}", error), 1);
  datashare::shop::product_front front(
      data, key_field,
      datashare::shop::sidecar_publisher(std::make_shared<http::client>(*o.sidecar_origin), o.product,
                                         std::chrono::seconds(5)));
  return http::serve_until_stopped(
      "datashare-shop-products", server, *o.where, o.port_file,
      [&](const http::request& req, const http::responder& respond) {
        if (auto answer = front.answer(req)) {
          respond(std::move(*answer));
        } else {
          data.handle(req, respond);
        }
      },
      signals);
}
