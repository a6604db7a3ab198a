// The configuration files the operator renders and a person may edit: the sidecar's and the
// gateway's YAML (both through sidecar/config/yaml_reader.h), and the value parsers they use.
// Parsing must never throw or crash, and a result is either a config or problems, never both.
#include <arpa/inet.h>

#include <cstdlib>

#include "fuzz/input.h"
#include "gateway/config.h"
#include "sidecar/config/config.h"

namespace {

// Whether `address` is an IP literal outside loopback (what the data API must never bind to);
// checked with the C library, independently of the config's own rule.
bool binds_beyond_loopback(const std::string& address) {
  in_addr v4{};
  in6_addr v6{};
  if (inet_pton(AF_INET, address.c_str(), &v4) == 1) return (ntohl(v4.s_addr) >> 24) != 127;
  if (inet_pton(AF_INET6, address.c_str(), &v6) == 1) return !IN6_IS_ADDR_LOOPBACK(&v6);
  return false;  // not an IP literal: the server refuses to bind it
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  using namespace datashare;
  std::string_view text = fuzz::as_text(data, size);
  auto sidecar = sidecar::config::parse_config(text);
  if (sidecar.config.has_value() == !sidecar.problems.empty()) std::abort();
  if (sidecar.config && binds_beyond_loopback(sidecar.config->listen.data.address)) std::abort();
  (void)sidecar::config::format_problems(sidecar.problems);
  auto gateway = gateway::parse_config(text);
  if (gateway.config.has_value() == !gateway.problems.empty()) std::abort();
  // The scalar parsers on their own, with the whole input as the value.
  (void)sidecar::config::parse_duration(text);
  (void)sidecar::config::parse_http_origin(text);
  return 0;
}
