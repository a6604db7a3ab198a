#pragma once
// A small HTTP service as a whole process: what `datashare-test-owner` and the shop example's
// services (examples/shop) share. Parse "HOST:PORT", serve one handler there, announce the bound
// port (stdout line and an optional port file, written whole by rename) and run until SIGTERM or
// SIGINT.
//
// Threading: call block_stop_signals() first thing in main(), before any thread exists, so the
// signals reach serve_until_stopped()'s sigwait and no other thread.

#include <csignal>
#include <cstdint>
#include <optional>
#include <string>

#include "sidecar/http/server.h"

namespace datashare::sidecar::http {

struct host_port {
  std::string host;
  std::uint16_t port = 0;
};

// "127.0.0.1:8080" → {127.0.0.1, 8080}; nullopt for anything else (no colon, empty host, a port
// outside 0..65535 or with trailing characters).
std::optional<host_port> parse_host_port(const std::string& text);

// {"error": message} with `status`: how these services answer what they refuse.
response json_error(unsigned status, const std::string& message);

// Blocks SIGTERM and SIGINT in the calling thread (and the threads it starts later).
sigset_t block_stop_signals();

// Listens on `where` with `h`, starts `srv`, writes the bound port to `port_file` (when not
// empty), prints "<name> listening on HOST:PORT" on stdout, waits for one of `signals`, stops
// `srv`. Returns the process's exit status: 0 after a signal, 1 when it could not start (the
// reason on stderr).
int serve_until_stopped(const std::string& name, server& srv, const host_port& where, const std::string& port_file,
                        handler h, const sigset_t& signals);

}  // namespace datashare::sidecar::http
