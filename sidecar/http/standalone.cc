#include "sidecar/http/standalone.h"

#include <pthread.h>

#include <filesystem>
#include <fstream>
#include <iostream>
#include <nlohmann/json.hpp>

namespace datashare::sidecar::http {

std::optional<host_port> parse_host_port(const std::string& text) {
  const auto colon = text.rfind(':');
  if (colon == std::string::npos || colon == 0 || colon + 1 == text.size()) return std::nullopt;
  unsigned long port = 0;
  for (std::size_t i = colon + 1; i < text.size(); ++i) {
    if (text[i] < '0' || text[i] > '9') return std::nullopt;
    port = port * 10 + static_cast<unsigned long>(text[i] - '0');
    if (port > 65535) return std::nullopt;
  }
  return host_port{text.substr(0, colon), static_cast<std::uint16_t>(port)};
}

response json_error(unsigned status, const std::string& message) {
  return response{.status = status, .body = nlohmann::json{{"error", message}}.dump()};
}

sigset_t block_stop_signals() {
  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGTERM);
  sigaddset(&signals, SIGINT);
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);
  return signals;
}

int serve_until_stopped(const std::string& name, server& srv, const host_port& where, const std::string& port_file,
                        handler h, const sigset_t& signals) {
  std::uint16_t bound = 0;
  if (auto ec = srv.listen(where.host, where.port, std::move(h), bound)) {
    std::cerr << name << ": cannot listen on " << where.host << ":" << where.port << ": " << ec.message() << "\n";
    return 1;
  }
  srv.start();
  if (!port_file.empty()) {
    const std::string tmp = port_file + ".tmp";
    std::ofstream(tmp) << bound << "\n";
    std::error_code ec;
    std::filesystem::rename(tmp, port_file, ec);
    if (ec) {
      std::cerr << name << ": cannot write " << port_file << ": " << ec.message() << "\n";
      srv.stop();
      return 1;
    }
  }
  std::cout << name << " listening on " << where.host << ":" << bound << std::endl;
  int sig = 0;
  sigwait(&signals, &sig);
  srv.stop();
  return 0;
}

}  // namespace datashare::sidecar::http
