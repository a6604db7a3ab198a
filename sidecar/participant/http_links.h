#pragma once
// The participant's outside calls over HTTP (sidecar/http/client.h): the owner's writePath, the
// coordinator's and the peers' transaction state. Each call has its own deadline.
//
// Threading: any thread; the clients pool their connections.

#include <chrono>
#include <map>
#include <memory>
#include <mutex>
#include <string>

#include "sidecar/http/client.h"
#include "sidecar/participant/participant.h"

namespace datashare::sidecar::participant {

class http_owner : public owner_api {
 public:
  // `write_path` holds "{key}"; errors name the URL.
  http_owner(http::origin where, std::string write_path, std::chrono::milliseconds timeout);
  std::error_code get(const std::string& key, bool& found, std::string& value, std::string& error) override;
  std::error_code put(const std::string& key, const std::string& value, std::string& error) override;
  std::error_code del(const std::string& key, std::string& error) override;

 private:
  std::string path(const std::string& key) const;
  http::client client_;
  std::string write_path_;
  std::chrono::milliseconds timeout_;
};

class http_outcomes : public outcome_api {
 public:
  http_outcomes(std::string coordinator_url, std::chrono::milliseconds timeout);
  std::string ask_coordinator(const std::string& tx) override;
  std::string ask_peer(const std::string& url, const std::string& product, const std::string& tx,
                       std::uint64_t version) override;

 private:
  std::string ask(const std::string& url, const std::string& target, const char* member);
  std::chrono::milliseconds timeout_;
  std::string coordinator_url_;
  std::mutex mu_;
  std::map<std::string, std::unique_ptr<http::client>> clients_;  // by URL
};

}  // namespace datashare::sidecar::participant
