// datashare-test-proxy: the tests' TCP proxy (tests/support/tcp_proxy.h) as a process, for
// shell tests that take a server away from the code under test without stopping the server.
//
//   datashare-test-proxy HOST:PORT    prints its own port on the first line of stdout, then
//                                     forwards until SIGTERM/SIGINT
//   SIGUSR1: cut every connection and refuse new ones (the server looks unreachable)
//   SIGUSR2: accept connections again
#include <signal.h>

#include <charconv>
#include <cstdio>
#include <iostream>
#include <string>

#include "tests/support/tcp_proxy.h"

int main(int argc, char** argv) {
  std::string target = argc == 2 ? argv[1] : "";
  auto colon = target.rfind(':');
  uint16_t port = 0;
  if (colon == std::string::npos ||
      std::from_chars(target.data() + colon + 1, target.data() + target.size(), port).ec != std::errc{} || port == 0) {
    std::cerr << "usage: datashare-test-proxy HOST:PORT\n";
    return 2;
  }
  sigset_t signals;
  sigemptyset(&signals);
  for (int s : {SIGUSR1, SIGUSR2, SIGTERM, SIGINT}) sigaddset(&signals, s);
  // Blocked before the proxy's thread starts, so it inherits the mask and sigwait gets them all.
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);
  datashare::testing::tcp_proxy proxy(target.substr(0, colon), port);
  std::cout << proxy.port() << std::endl;
  for (;;) {
    int sig = 0;
    if (sigwait(&signals, &sig) != 0) return 1;
    if (sig == SIGUSR1) {
      proxy.set_refusing(true);
      proxy.cut();
    } else if (sig == SIGUSR2) {
      proxy.set_refusing(false);
    } else {
      return 0;
    }
  }
}
