#pragma once
// store::kv — the seam between the sidecar and its local storage (STYLE.md, Envoy's note): the
// replica's copy and the publisher's outbox are written through this interface. The real one
// wraps RocksDB (rocksdb_kv.h); the in-memory one (memory_kv.h) serves `store: memory` and the
// unit tests, with failure injection.
//
// Hot-path calls (get, write, scan) report errors as std::error_code and never throw. All methods
// are safe to call from several threads at once; a write_batch is applied atomically (all or
// nothing, also across a crash for the RocksDB store).

#include <algorithm>
#include <cstddef>
#include <cstdint>
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

// Puts and deletes applied together by kv::write. Not thread-safe; owned by its builder. The
// keys and values are copied into one buffer (no allocation per operation: the replica builds
// batches of thousands); clear() keeps the buffer for the next batch.
class write_batch {
 public:
  struct op {
    bool is_delete = false;
    std::string_view key;  // points into the batch, valid until it is changed
    std::string_view value;
  };

  void put(std::string_view key, std::string_view value) { add(false, key, value); }
  void del(std::string_view key) { add(true, key, {}); }
  void clear() {
    bytes_.clear();
    refs_.clear();
  }
  bool empty() const { return refs_.empty(); }
  // Room for `ops` operations of `bytes` bytes of keys and values in all (no reallocation while
  // they are added).
  void reserve(std::size_t bytes, std::size_t ops) {
    bytes_.reserve(bytes);
    refs_.reserve(ops);
  }
  std::size_t size() const { return refs_.size(); }
  // The bytes of every key and value together (to size a store's own batch).
  std::size_t payload_bytes() const { return bytes_.size(); }
  op operator[](std::size_t i) const {
    const ref& r = refs_[i];
    std::string_view all(bytes_);
    return {r.is_delete, all.substr(r.offset, r.key_size), all.substr(r.offset + r.key_size, r.value_size)};
  }
  // Every operation in order (views into the batch).
  std::vector<op> ops() const {
    std::vector<op> out;
    out.reserve(refs_.size());
    for (std::size_t i = 0; i < refs_.size(); ++i) out.push_back((*this)[i]);
    return out;
  }

 private:
  struct ref {
    std::size_t offset;
    std::uint32_t key_size;
    std::uint32_t value_size;
    bool is_delete;
  };
  void add(bool is_delete, std::string_view key, std::string_view value) {
    refs_.push_back(
        {bytes_.size(), static_cast<std::uint32_t>(key.size()), static_cast<std::uint32_t>(value.size()), is_delete});
    bytes_.append(key);
    bytes_.append(value);
  }

  std::string bytes_;
  std::vector<ref> refs_;
};

using entry = std::pair<std::string, std::string>;

// The batch's operations by key (bytewise, RocksDB's order), a key's own in the batch's order:
// `order` gets their indexes in the batch. Stores write in this order (rocksdb_kv: a skip list
// inserts key-ordered runs cheaply; staged_writes keeps sorted runs).
void sort_by_key(const write_batch& batch, std::vector<std::uint32_t>& order);

// Fast comparison of many keys that mostly share a first byte and a long prefix (a replica's data
// records: "d", a product's key space, then the distinguishing digits; a few offset and counter
// keys beside them). For the keys that start with `group` (the byte of a sample key), word() is the
// eight bytes after the prefix all of them share, big-endian: two such keys compare as their words
// wherever the words differ, so sorting and merging compare cached integers and read the keys
// themselves (memcmp, a memory access) only on equal words. Other keys compare in full.
struct key_words {
  // Fitted around `sample` to the `n` keys key_at(0..n-1) (string_views), the sample among them.
  template <typename KeyAt>
  static key_words fit(std::string_view sample, std::size_t n, const KeyAt& key_at) {
    key_words w;
    if (sample.empty()) return w;
    w.grouped = true;
    w.group = static_cast<unsigned char>(sample[0]);
    w.shared = sample.size();
    for (std::size_t i = 0; i < n; ++i) {
      std::string_view k = key_at(i);
      if (!k.empty() && static_cast<unsigned char>(k[0]) == w.group) w.shared = std::min(w.shared, prefix(sample, k));
    }
    return w;
  }
  std::uint64_t word(std::string_view key) const;
  // <0, 0, >0 as bytewise comparison; wa and wb are word(a) and word(b).
  int compare(std::string_view a, std::uint64_t wa, std::string_view b, std::uint64_t wb) const {
    const int fa = a.empty() ? -1 : static_cast<unsigned char>(a[0]);
    const int fb = b.empty() ? -1 : static_cast<unsigned char>(b[0]);
    if (fa != fb) return fa < fb ? -1 : 1;
    if (grouped && fa == group && wa != wb) return wa < wb ? -1 : 1;
    return a.compare(b);
  }
  static std::size_t prefix(std::string_view a, std::string_view b);  // bytes a and b share

  bool grouped = false;
  unsigned char group = 0;
  std::size_t shared = 0;
};

class kv {
 public:
  virtual ~kv() = default;

  // The value stored at `key`, or errc::not_found.
  virtual std::error_code get(std::string_view key, std::string& value) const = 0;

  // Applies the batch atomically. `sync`: the write is on stable storage (fsync) before it
  // returns; without it a process crash still loses nothing that returned, a machine crash may
  // lose a suffix of whole batches. A store without a write-ahead log (rocksdb_options::wal off)
  // loses the suffix since its last flush on any crash, process or machine: whole batches again.
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

  // Makes every write that returned durable without a log (a store opened without one, see
  // rocksdb_options::wal): `wait` returns once it is on stable storage, otherwise it only starts.
  // A store that logs its writes has nothing to do.
  virtual std::error_code flush(bool wait) {
    (void)wait;
    return {};
  }

  // A writer's hint that it is loading keys in bulk, mostly new to the store, and will seldom ask
  // for absent keys until told otherwise (a replica's bootstrap, which keeps its own filter of the
  // keys it wrote). The store may then write differently: rocksdb_kv stages the writes in memory
  // and ingests them as whole table files instead of inserting each into its memtable. Reads stay
  // correct either way (a point read or a scan sees every write that returned); telling it false
  // makes what is staged part of the store before the next write. Called by one thread at a time
  // (a replica's loop); writes and reads may run beside it. The default does nothing.
  virtual void expect_new_keys(bool on) { (void)on; }

  // A store's own description of itself (RocksDB: GetProperty, e.g. "rocksdb.stats",
  // "rocksdb.num-files-at-level0"), empty when it has none. For benchmarks and diagnostics.
  virtual std::string property(const std::string& name) const {
    (void)name;
    return {};
  }

  // Up to `limit` entries with begin <= key < end (an empty `end`: no upper bound), in key order.
  virtual std::error_code scan(std::string_view begin, std::string_view end, std::size_t limit,
                               std::vector<entry>& out) const = 0;
};

}  // namespace datashare::sidecar::store

template <>
struct std::is_error_code_enum<datashare::sidecar::store::errc> : std::true_type {};
