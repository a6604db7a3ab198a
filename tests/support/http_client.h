#pragma once
// One blocking HTTP/1.1 call on loopback, for tests (a new connection per call, bounded in time).

#include <chrono>
#include <cstdint>
#include <map>
#include <string>

namespace datashare::testing {

struct http_reply {
  int status = 0;                              // 0: no answer (refused, closed, timed out)
  std::map<std::string, std::string> headers;  // lower-case names
  std::string body;
  std::string error;  // why status is 0
};

http_reply http_call(std::uint16_t port, const std::string& method, const std::string& target,
                     const std::string& body = "", std::chrono::milliseconds timeout = std::chrono::seconds(10));

}  // namespace datashare::testing
