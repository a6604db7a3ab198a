#pragma once
// store::kv — the seam between the sidecar and its local storage (STYLE.md, Envoy's note): the
// replica's copy and the publisher's outbox are written through this interface. The real one
// wraps RocksDB (rocksdb_kv.h); the in-memory one (memory_kv.h) serves `store: memory` and the
// unit tests, with failure injection.
//
// Hot-path calls (get, write, scan) report errors as std::error_code and never throw. All methods
// are safe to call from several threads at once; a write_batch is applied atomically (all or
// nothing, also across a crash for the RocksDB store).

#include <cstddef>
#include <memory>
#include <string>
#include <string_view>
#include <system_error>
#include <utility>
#include <vector>

namespace datashare::sidecar::store {

enum class errc {
  not_found = 1,
  io_error,
  corruption,
  invalid_argument,
  injected_failure,  // memory_kv's failure injection
};

const std::error_category& store_category();
std::error_code make_error_code(errc e);

// Puts and deletes applied together by kv::write. Not thread-safe; owned by its builder.
class write_batch {
 public:
  struct op {
    bool is_delete = false;
    std::string key;
    std::string value;
  };

  void put(std::string_view key, std::string_view value) {
    ops_.push_back({false, std::string(key), std::string(value)});
  }
  void del(std::string_view key) { ops_.push_back({true, std::string(key), {}}); }
  void clear() { ops_.clear(); }
  bool empty() const { return ops_.empty(); }
  std::size_t size() const { return ops_.size(); }
  const std::vector<op>& ops() const { return ops_; }

 private:
  std::vector<op> ops_;
};

using entry = std::pair<std::string, std::string>;

class kv {
 public:
  virtual ~kv() = default;

  // The value stored at `key`, or errc::not_found.
  virtual std::error_code get(std::string_view key, std::string& value) const = 0;

  // Applies the batch atomically. `sync`: the write is on stable storage (fsync) before it
  // returns; without it a process crash still loses nothing that returned, a machine crash may
  // lose a suffix of whole batches.
  virtual std::error_code write(const write_batch& batch, bool sync) = 0;

  // Looks up several keys at once (one pass through memtables and files for the whole set, where
  // the store can): values[i] and errors[i] answer keys[i], errc::not_found when absent. The
  // default asks get() for each.
  virtual void multi_get(const std::vector<std::string>& keys, std::vector<std::string>& values,
                         std::vector<std::error_code>& errors) const {
    values.assign(keys.size(), {});
    errors.assign(keys.size(), {});
    for (std::size_t i = 0; i < keys.size(); ++i) errors[i] = get(keys[i], values[i]);
  }

  // Up to `limit` entries with begin <= key < end (an empty `end`: no upper bound), in key order.
  virtual std::error_code scan(std::string_view begin, std::string_view end, std::size_t limit,
                               std::vector<entry>& out) const = 0;
};

}  // namespace datashare::sidecar::store

template <>
struct std::is_error_code_enum<datashare::sidecar::store::errc> : std::true_type {};
