#pragma once
// Request coalescing: concurrent misses for one key make one owner call. The first caller of a
// key becomes its leader and fetches; callers arriving meanwhile wait for the leader's result.
//
// Thread-safe (one mutex). Callbacks run outside the lock, on the thread that completes.

#include <functional>
#include <map>
#include <mutex>
#include <string>
#include <utility>
#include <vector>

namespace datashare::sidecar::proxy {

template <class Result>
class coalescer {
 public:
  using callback = std::function<void(const Result&)>;

  // Adds `cb` to the waiters of `key`; true when the caller is the leader and must fetch, then
  // call complete(key, ...). The leader's own callback is among the waiters.
  bool join(const std::string& key, callback cb) {
    std::lock_guard lock(mu_);
    auto [it, first] = waiting_.try_emplace(key);
    it->second.push_back(std::move(cb));
    return first;
  }

  // Hands `r` to every waiter of `key` (the leader's included) and forgets the key.
  void complete(const std::string& key, const Result& r) {
    std::vector<callback> waiters;
    {
      std::lock_guard lock(mu_);
      auto it = waiting_.find(key);
      if (it == waiting_.end()) return;
      waiters = std::move(it->second);
      waiting_.erase(it);
    }
    for (auto& w : waiters) w(r);
  }

  std::size_t pending_keys() const {
    std::lock_guard lock(mu_);
    return waiting_.size();
  }

 private:
  mutable std::mutex mu_;
  std::map<std::string, std::vector<callback>, std::less<>> waiting_;
};

}  // namespace datashare::sidecar::proxy
