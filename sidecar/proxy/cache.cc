#include "sidecar/proxy/cache.h"

#include <functional>

namespace datashare::sidecar::proxy {

ttl_cache::ttl_cache(std::uint64_t max_entries, std::chrono::milliseconds ttl) : ttl_(ttl) {
  // Small caches get one shard so the bound is exact; large ones 16, each a 16th of the bound.
  const std::size_t count = max_entries >= 1024 ? 16 : 1;
  for (std::size_t i = 0; i < count; ++i) {
    shards_.push_back(std::make_unique<shard>());
    shards_.back()->capacity = static_cast<std::size_t>(max_entries / count);
  }
}

ttl_cache::shard& ttl_cache::shard_of(std::string_view key) {
  return *shards_[std::hash<std::string_view>{}(key) % shards_.size()];
}

std::optional<ttl_cache::hit> ttl_cache::get(std::string_view key, time_point now) {
  auto& s = shard_of(key);
  std::lock_guard lock(s.mu);
  auto it = s.index.find(key);
  if (it == s.index.end()) return std::nullopt;
  s.lru.splice(s.lru.begin(), s.lru, it->second);
  const auto age = std::chrono::duration_cast<std::chrono::milliseconds>(now - it->second->fetched_at);
  return hit{it->second->value, age < std::chrono::milliseconds(0) ? std::chrono::milliseconds(0) : age, age < ttl_};
}

void ttl_cache::put(const std::string& key, std::string value, time_point fetched_at) {
  auto& s = shard_of(key);
  if (s.capacity == 0) return;
  std::lock_guard lock(s.mu);
  auto it = s.index.find(key);
  if (it != s.index.end()) {
    // An older fetch finishing after a newer one must not replace it.
    if (it->second->fetched_at <= fetched_at) {
      it->second->value = std::move(value);
      it->second->fetched_at = fetched_at;
    }
    s.lru.splice(s.lru.begin(), s.lru, it->second);
    return;
  }
  s.lru.push_front(entry{key, std::move(value), fetched_at});
  s.index.emplace(s.lru.front().key, s.lru.begin());
  while (s.lru.size() > s.capacity) {
    s.index.erase(s.lru.back().key);
    s.lru.pop_back();
  }
}

void ttl_cache::erase(std::string_view key) {
  auto& s = shard_of(key);
  std::lock_guard lock(s.mu);
  auto it = s.index.find(key);
  if (it == s.index.end()) return;
  auto pos = it->second;
  s.index.erase(it);
  s.lru.erase(pos);
}

std::size_t ttl_cache::size() const {
  std::size_t n = 0;
  for (const auto& s : shards_) {
    std::lock_guard lock(s->mu);
    n += s->lru.size();
  }
  return n;
}

}  // namespace datashare::sidecar::proxy
