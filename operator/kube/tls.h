#pragma once
// Turns a rest_config into cpprestsdk client settings: TLS trust, client certificate, and
// the Authorization header. Kept apart from the REST client so every HTTP user of the API
// server (client, watch, leader election) authenticates the same way.

#include <cpprest/http_client.h>

#include "operator/kube/config.h"

namespace datashare::kube {

// Client settings for `cfg`: CA (or the system store), client certificate and key, optional
// insecure-skip-verify, and the given request timeout.
web::http::client::http_client_config http_client_config_for(const rest_config& cfg,
                                                             std::chrono::seconds timeout = std::chrono::seconds(30));

// The value of the Authorization header for `cfg`, or "" when it authenticates by certificate.
// A token file is re-read on every call so rotated service-account tokens are picked up.
std::string authorization_header(const rest_config& cfg);

}  // namespace datashare::kube
