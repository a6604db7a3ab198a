#include "operator/kube/tls.h"

#include <boost/asio/ssl.hpp>
#include <fstream>
#include <sstream>

#include "common/base64.h"

namespace datashare::kube {

web::http::client::http_client_config http_client_config_for(const rest_config& cfg, std::chrono::seconds timeout) {
  web::http::client::http_client_config out;
  out.set_timeout(timeout);
  out.set_validate_certificates(!cfg.tls.insecure_skip_verify);
  // Copies: the callback runs on cpprestsdk's threads, possibly after `cfg` is gone.
  tls_config tls = cfg.tls;
  out.set_ssl_context_callback([tls](boost::asio::ssl::context& ctx) {
    if (!tls.ca_pem.empty()) {
      ctx.add_certificate_authority(boost::asio::buffer(tls.ca_pem.data(), tls.ca_pem.size()));
    } else {
      ctx.set_default_verify_paths();
    }
    if (!tls.client_cert_pem.empty()) {
      ctx.use_certificate_chain(boost::asio::buffer(tls.client_cert_pem.data(), tls.client_cert_pem.size()));
      ctx.use_private_key(boost::asio::buffer(tls.client_key_pem.data(), tls.client_key_pem.size()),
                          boost::asio::ssl::context::pem);
    }
  });
  return out;
}

std::string authorization_header(const rest_config& cfg) {
  if (!cfg.bearer_token_file.empty()) {
    std::ifstream in(cfg.bearer_token_file);
    if (in) {
      std::ostringstream s;
      s << in.rdbuf();
      std::string token = s.str();
      while (!token.empty() && (token.back() == '\n' || token.back() == '\r')) token.pop_back();
      if (!token.empty()) return "Bearer " + token;
    }
  }
  if (!cfg.bearer_token.empty()) return "Bearer " + cfg.bearer_token;
  if (!cfg.username.empty()) return "Basic " + base64_encode(cfg.username + ":" + cfg.password);
  return {};
}

}  // namespace datashare::kube
