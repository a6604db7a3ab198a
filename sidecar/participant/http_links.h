#pragma once
// The participant's outside calls over HTTP (sidecar/http/client.h): the owner's writePath, the
// coordinator's and the peers' transaction state. Each call has its own deadline.
//
// The owner's async calls (an owner's prepare and abort) go through a non-blocking client
// (sidecar/http/async_client.h) per HTTP I/O thread, each with its pool of keep-alive
// connections: a call made on an I/O thread stays on it and is answered there; one made
// elsewhere (the group writer's thread) goes to the clients in turn. Until a call has been made
// on an I/O thread there is no such client, and the async calls run the blocking form.
//
// Threading: any thread; the clients pool their connections. The async clients must outlive
// their pending calls: the server's I/O threads stop before this goes.

#include <atomic>
#include <chrono>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <utility>
#include <vector>

#include "sidecar/http/async_client.h"
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
  void get_async(const std::string& key, callback done) override;
  void put_async(const std::string& key, const std::string& value, callback done) override;
  void del_async(const std::string& key, callback done) override;

 private:
  std::string path(const std::string& key) const;
  // The caller's I/O thread's client (made on first use), else one of those made so far in
  // turn, else nullptr.
  http::async_client* pick();
  // PUT (with `body`) or DELETE of `key` on `c`, its answer read as the blocking form reads it.
  void change_async(http::async_client& c, boost::beast::http::verb verb, const std::string& key,
                    const std::string& body, callback done);
  http::client client_;
  std::mutex async_mu_;  // guards async_
  std::vector<std::pair<boost::asio::io_context*, std::unique_ptr<http::async_client>>> async_;
  std::atomic<std::size_t> next_{0};
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
