#include "sidecar/store/memory_kv.h"

#include <mutex>

namespace datashare::sidecar::store {

std::error_code memory_kv::get(std::string_view key, std::string& value) const {
  int f = read_failures_.load();
  while (f > 0) {
    if (read_failures_.compare_exchange_weak(f, f - 1)) return errc::io_error;
  }
  std::shared_lock lock(mu_);
  auto it = data_.find(key);
  if (it == data_.end()) return errc::not_found;
  value = it->second;
  return {};
}

std::error_code memory_kv::write(const write_batch& batch, bool sync) {
  int f = failures_.load();
  while (f > 0) {
    if (failures_.compare_exchange_weak(f, f - 1)) return errc::injected_failure;
  }
  std::unique_lock lock(mu_);
  for (const auto& op : batch.ops()) {
    if (op.is_delete) {
      auto it = data_.find(op.key);
      if (it != data_.end()) data_.erase(it);
    } else {
      data_.insert_or_assign(std::string(op.key), op.value);
    }
  }
  writes_.fetch_add(1);
  if (sync) synced_writes_.fetch_add(1);
  return {};
}

std::error_code memory_kv::scan(std::string_view begin, std::string_view end, std::size_t limit,
                                std::vector<entry>& out) const {
  std::shared_lock lock(mu_);
  for (auto it = data_.lower_bound(begin); it != data_.end() && out.size() < limit; ++it) {
    if (!end.empty() && it->first >= end) break;
    out.emplace_back(it->first, it->second);
  }
  return {};
}

std::size_t memory_kv::size() const {
  std::shared_lock lock(mu_);
  return data_.size();
}

}  // namespace datashare::sidecar::store
