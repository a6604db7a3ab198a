// datashare-test-owner --listen 127.0.0.1:0 --port-file FILE --path /products/{key}
//
// A small owner service for tests and benchmarks (README.md): serves and stores JSON objects
// under --path, and can be slowed down, made to fail and inspected through /control/. Prints
// "datashare-test-owner listening on HOST:PORT" on stdout and writes PORT to --port-file (whole,
// by rename) once it accepts connections; runs until SIGTERM or SIGINT.
#include <signal.h>
#include <sys/prctl.h>

#include <iostream>

#include "common/flags.h"
#include "sidecar/http/server.h"
#include "sidecar/http/standalone.h"
#include "tests/support/test_owner/owner_service.h"

int main(int argc, char** argv) {
  std::string listen = "127.0.0.1:0";
  std::string port_file;
  std::string path = "/products/{key}";
  int threads = 2;
  bool die_with_parent = false;
  datashare::flag_set flags("datashare-test-owner");
  flags.add("listen", &listen, "HOST:PORT to serve on (port 0: any free port)");
  flags.add("port-file", &port_file, "file to write the bound port to, once listening");
  flags.add("path", &path, "path template of the data, with {key} exactly once");
  flags.add("threads", &threads, "HTTP I/O threads (delays are timers: they never hold one)");
  flags.add("die-with-parent", &die_with_parent, "exit when the parent process dies (tests)");
  auto problems = flags.parse(argc, argv);
  if (flags.help_requested()) {
    std::cout << flags.usage();
    return 0;
  }
  const auto where = datashare::sidecar::http::parse_host_port(listen);
  if (!where) problems.push_back("--listen: want HOST:PORT, got \"" + listen + "\"");
  std::string error;
  auto tmpl = datashare::testing::path_template::parse(path, error);
  if (!tmpl) problems.push_back("--path: " + error);
  if (threads < 1 || threads > 64) problems.push_back("--threads: want 1..64");
  if (!problems.empty()) {
    for (const auto& p : problems) std::cerr << "datashare-test-owner: " << p << "\n";
    std::cerr << flags.usage();
    return 2;
  }
  if (die_with_parent) ::prctl(PR_SET_PDEATHSIG, SIGTERM);

  const sigset_t signals = datashare::sidecar::http::block_stop_signals();
  // The server outlives the service: delayed answers still queued on the service's timers hold
  // the server's sessions.
  datashare::sidecar::http::server server(threads);
  datashare::testing::owner_service service(*tmpl, 2);
  return datashare::sidecar::http::serve_until_stopped(
      "datashare-test-owner", server, *where, port_file,
      [&service](const datashare::sidecar::http::request& req, const datashare::sidecar::http::responder& r) {
        service.handle(req, r);
      },
      signals);
}
