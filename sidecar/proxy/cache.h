#pragma once
// The bounded TTL cache of one sync policy: values read through the owner, by key. An entry is
// fresh for `ttl` after it was fetched; expired entries stay (until pushed out) so they can be
// served, marked stale, when the owner fails (serveStaleOnError). At most `max_entries`, the
// least recently used one goes first; 0 disables the cache.
//
// Time is passed in (a manual clock in tests). Thread-safe: keys are spread over shards, each
// with its own mutex, list and map, so concurrent readers of different keys rarely meet.

#include <chrono>
#include <cstdint>
#include <list>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

namespace datashare::sidecar::proxy {

class ttl_cache {
 public:
  using time_point = std::chrono::steady_clock::time_point;

  struct hit {
    std::string value;
    std::chrono::milliseconds age{0};
    bool fresh = false;
  };

  ttl_cache(std::uint64_t max_entries, std::chrono::milliseconds ttl);

  // The entry of `key`, fresh or not (check `fresh`); nullopt when absent. Marks it used.
  std::optional<hit> get(std::string_view key, time_point now);
  void put(const std::string& key, std::string value, time_point fetched_at);
  void erase(std::string_view key);
  std::size_t size() const;

 private:
  struct entry {
    std::string key;
    std::string value;
    time_point fetched_at;
  };
  struct shard {
    mutable std::mutex mu;
    std::list<entry> lru;                                                    // most recently used first
    std::unordered_map<std::string_view, std::list<entry>::iterator> index;  // views into lru's keys
    std::size_t capacity = 0;
  };
  shard& shard_of(std::string_view key);

  std::chrono::milliseconds ttl_;
  std::vector<std::unique_ptr<shard>> shards_;
};

}  // namespace datashare::sidecar::proxy
