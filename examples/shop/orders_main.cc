// datashare-shop-orders --listen 127.0.0.1:8080 --sidecar http://127.0.0.1:8090 [--port-file FILE]
//
// The shop example's Order service (README.md): a consumer of the product data. Keeps orders in
// memory and shows each with its product's fields, read through the sidecar's localhost API at
// every read, whatever the policy's mode. Runs until SIGTERM or SIGINT.
#include <iostream>
#include <memory>

#include "examples/shop/shop.h"

int main(int argc, char** argv) {
  namespace http = datashare::sidecar::http;
  datashare::shop::service_options o;
  datashare::flag_set flags("datashare-shop-orders");
  o.add_to(flags);
  auto problems = flags.parse(argc, argv);
  if (flags.help_requested()) {
    std::cout << flags.usage();
    return 0;
  }
  o.check(problems);
  if (!problems.empty()) {
    for (const auto& p : problems) std::cerr << "datashare-shop-orders: " << p << "\n";
    std::cerr << flags.usage();
    return 2;
  }

  const sigset_t signals = http::block_stop_signals();
  http::server server(o.threads);
  datashare::shop::order_book book(datashare::shop::sidecar_reader(std::make_shared<http::client>(*o.sidecar_origin),
                                                                   o.product, std::chrono::seconds(2)));
  return http::serve_until_stopped(
      "datashare-shop-orders", server, *o.where, o.port_file,
      [&book](const http::request& req, const http::responder& respond) { respond(book.answer(req)); }, signals);
}
