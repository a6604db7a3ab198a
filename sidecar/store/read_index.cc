#include "sidecar/store/read_index.h"

#include <algorithm>
#include <array>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <mutex>
#include <shared_mutex>

namespace datashare::sidecar::store {
namespace {

// One key and its value in a single allocation: a lookup's key comparison and the value's copy
// then touch one block (a std::unordered_map<std::string, std::string> costs a node, two string
// headers and a second allocation for any value beyond 15 bytes: about 90 B more per key).
struct entry_block {
  std::uint32_t key_size;
  std::uint32_t value_size;
  // key bytes, then value bytes

  std::string_view key() const { return {reinterpret_cast<const char*>(this + 1), key_size}; }
  std::string_view value() const { return {reinterpret_cast<const char*>(this + 1) + key_size, value_size}; }

  static entry_block* make(std::string_view key, std::string_view value) {
    auto* e = static_cast<entry_block*>(std::malloc(sizeof(entry_block) + key.size() + value.size()));
    if (e == nullptr) throw std::bad_alloc();
    e->key_size = static_cast<std::uint32_t>(key.size());
    e->value_size = static_cast<std::uint32_t>(value.size());
    auto* bytes = reinterpret_cast<char*>(e + 1);
    std::memcpy(bytes, key.data(), key.size());
    std::memcpy(bytes + key.size(), value.data(), value.size());
    return e;
  }
  static void destroy(entry_block* e) { std::free(e); }
};

// An open-addressing table (linear probing, deletion by backward shift: no tombstones) of one
// shard. Slots keep the key's hash beside the pointer, so a probe compares hashes without
// touching the entries it passes. Not thread-safe: its shard's lock guards it.
class hash_table {
 public:
  hash_table() = default;
  hash_table(const hash_table&) = delete;
  hash_table& operator=(const hash_table&) = delete;
  ~hash_table() {
    for (auto& s : slots_) {
      if (s.e != nullptr) entry_block::destroy(s.e);
    }
  }

  const entry_block* find(std::uint64_t h, std::string_view key) const {
    if (slots_.empty()) return nullptr;
    for (std::size_t i = h & mask_;; i = (i + 1) & mask_) {
      const slot& s = slots_[i];
      if (s.e == nullptr) return nullptr;
      if (s.hash == h && s.e->key() == key) return s.e;
    }
  }

  // Stores `e` (owned from now on); returns the entry it replaced, for the caller to free outside
  // the lock, or null.
  entry_block* put(std::uint64_t h, entry_block* e) {
    if ((size_ + 1) * 4 > slots_.size() * 3) grow();
    for (std::size_t i = h & mask_;; i = (i + 1) & mask_) {
      slot& s = slots_[i];
      if (s.e == nullptr) {
        s = {h, e};
        ++size_;
        bytes_ += footprint(e);
        return nullptr;
      }
      if (s.hash == h && s.e->key() == e->key()) {
        entry_block* old = s.e;
        bytes_ += footprint(e) - footprint(old);
        s.e = e;
        return old;
      }
    }
  }

  // Removes the key; returns its entry for the caller to free, or null.
  entry_block* erase(std::uint64_t h, std::string_view key) {
    if (slots_.empty()) return nullptr;
    std::size_t i = h & mask_;
    for (;; i = (i + 1) & mask_) {
      if (slots_[i].e == nullptr) return nullptr;
      if (slots_[i].hash == h && slots_[i].e->key() == key) break;
    }
    entry_block* old = slots_[i].e;
    --size_;
    bytes_ -= footprint(old);
    // Backward shift: move later entries of the run into the hole when their home slot allows it.
    for (std::size_t j = (i + 1) & mask_;; j = (j + 1) & mask_) {
      if (slots_[j].e == nullptr) break;
      const std::size_t home = slots_[j].hash & mask_;
      // Does j's probe sequence (home .. j, cyclically) pass through i? Then it may move to i.
      const bool passes = i <= j ? (home <= i || home > j) : (home <= i && home > j);
      if (passes) {
        slots_[i] = slots_[j];
        i = j;
      }
    }
    slots_[i] = {};
    return old;
  }

  void swap(hash_table& other) noexcept {
    slots_.swap(other.slots_);
    std::swap(mask_, other.mask_);
    std::swap(size_, other.size_);
    std::swap(bytes_, other.bytes_);
  }

  std::size_t size() const { return size_; }
  // Entries' allocations plus the slot array, for the index's memory property.
  std::size_t bytes() const { return bytes_ + slots_.size() * sizeof(slot); }

 private:
  struct slot {
    std::uint64_t hash = 0;
    entry_block* e = nullptr;
  };

  static std::size_t footprint(const entry_block* e) {
    // glibc rounds each allocation up to 16 bytes with an 8-byte header.
    return (sizeof(entry_block) + e->key_size + e->value_size + 8 + 15) & ~std::size_t{15};
  }

  void grow() {
    std::vector<slot> old = std::move(slots_);
    const std::size_t n = old.empty() ? 64 : old.size() * 2;
    slots_.assign(n, slot{});
    mask_ = n - 1;
    for (const auto& s : old) {
      if (s.e == nullptr) continue;
      std::size_t i = s.hash & mask_;
      while (slots_[i].e != nullptr) i = (i + 1) & mask_;
      slots_[i] = s;
    }
  }

  std::vector<slot> slots_;
  std::size_t mask_ = 0;
  std::size_t size_ = 0;
  std::size_t bytes_ = 0;
};

// 64 shards: two I/O threads and the apply workers rarely meet on one lock, and a shard's growth
// (a rehash of its part only) stalls 1/64 of the keys for a moment.
constexpr int kShardBits = 6;

class indexed_kv final : public kv {
 public:
  indexed_kv(std::unique_ptr<kv> inner, std::string prefix, read_index_options options)
      : inner_(std::move(inner)), prefix_(std::move(prefix)), options_(std::move(options)) {}

  std::error_code load() {
    // The prefix's keys in pages (a replica's million entries never sit in one vector twice).
    std::string end = prefix_;
    while (!end.empty() && static_cast<unsigned char>(end.back()) == 0xff) end.pop_back();
    if (!end.empty()) end.back() = static_cast<char>(static_cast<unsigned char>(end.back()) + 1);
    std::string from = prefix_;
    std::vector<entry> page;
    for (;;) {
      page.clear();
      if (auto ec = inner_->scan(from, end, 4096, page)) return ec;
      std::int64_t delta = 0;
      for (const auto& [k, v] : page) delta += set(k, v);
      account(delta);
      if (page.size() < 4096 || dropped_.load()) return {};
      from = page.back().first;
      from.push_back('\0');  // the next key after it
    }
  }

  std::error_code get(std::string_view key, std::string& value) const override {
    if (!indexed(key)) return inner_->get(key, value);
    const std::uint64_t h = hash(key);
    const shard& s = shards_[h >> (64 - kShardBits)];
    {
      std::shared_lock lock(s.mu);
      if (!s.dropped) {
        const entry_block* e = s.table.find(h, key);
        if (e == nullptr) return errc::not_found;
        value.assign(e->value());
        return {};
      }
    }
    return inner_->get(key, value);
  }

  void multi_get(const std::vector<std::string>& keys, std::vector<std::string>& values,
                 std::vector<std::error_code>& errors) const override {
    bool all_indexed = true;
    for (const auto& k : keys) all_indexed = all_indexed && indexed(k);
    if (!all_indexed || dropped_.load(std::memory_order_relaxed)) return inner_->multi_get(keys, values, errors);
    values.resize(keys.size());
    errors.assign(keys.size(), {});
    for (std::size_t i = 0; i < keys.size(); ++i) {
      errors[i] = get(keys[i], values[i]);
      if (errors[i]) values[i].clear();
    }
  }

  std::error_code write(const write_batch& batch, bool sync) override {
    auto ec = inner_->write(batch, sync);
    if (dropped_.load(std::memory_order_relaxed)) return ec;
    std::int64_t delta = 0;
    if (!ec) {
      // In batch order: a later operation on the same key wins, as in the inner store.
      for (std::size_t i = 0; i < batch.size(); ++i) {
        auto op = batch[i];
        if (!indexed(op.key)) continue;
        delta += op.is_delete ? erase(op.key) : set(op.key, op.value);
      }
      account(delta);
      return ec;
    }
    // A failed write may still have reached the inner store (RocksDB without a log: the batch is
    // in the memtable and only the flush a sync asked for failed). Whatever its reads now show
    // is what the index must hold.
    for (std::size_t i = 0; i < batch.size(); ++i) {
      auto op = batch[i];
      if (!indexed(op.key)) continue;
      std::string v;
      auto r = inner_->get(op.key, v);
      if (!r) {
        delta += set(op.key, v);
      } else if (r == errc::not_found) {
        delta += erase(op.key);
      }
    }
    account(delta);
    return ec;
  }

  std::error_code flush(bool wait) override { return inner_->flush(wait); }
  void expect_new_keys(bool on) override { inner_->expect_new_keys(on); }

  std::string property(const std::string& name) const override {
    if (name == "datashare.read-index.entries") {
      std::size_t entries = 0;
      for (const auto& s : shards_) {
        std::shared_lock lock(s.mu);
        entries += s.table.size();
      }
      return std::to_string(entries);
    }
    if (name == "datashare.read-index.bytes") return std::to_string(std::max<std::int64_t>(0, bytes_.load()));
    if (name == "datashare.read-index.dropped") return dropped_.load() ? "1" : "0";
    return inner_->property(name);
  }

  std::error_code scan(std::string_view begin, std::string_view end, std::size_t limit,
                       std::vector<entry>& out) const override {
    return inner_->scan(begin, end, limit, out);
  }

 private:
  struct shard {
    mutable std::shared_mutex mu;
    hash_table table;
    bool dropped = false;  // the budget dropped the index: reads go to the inner store
  };

  bool indexed(std::string_view key) const { return key.starts_with(prefix_); }

  static std::uint64_t hash(std::string_view key) {
    // libstdc++'s string hash (murmur-style) leaves its high bits as good as its low ones: the top
    // bits pick the shard, the low ones the slot.
    return std::hash<std::string_view>{}(key);
  }

  // set and erase return the change in the shard's bytes, for account().
  std::int64_t set(std::string_view key, std::string_view value) {
    const std::uint64_t h = hash(key);
    entry_block* e = entry_block::make(key, value);  // outside the lock
    entry_block* old = nullptr;
    std::int64_t delta = 0;
    {
      shard& s = shards_[h >> (64 - kShardBits)];
      std::unique_lock lock(s.mu);
      if (s.dropped) {
        old = e;
      } else {
        const std::size_t before = s.table.bytes();
        old = s.table.put(h, e);
        delta = static_cast<std::int64_t>(s.table.bytes()) - static_cast<std::int64_t>(before);
      }
    }
    if (old != nullptr) entry_block::destroy(old);
    return delta;
  }

  std::int64_t erase(std::string_view key) {
    const std::uint64_t h = hash(key);
    entry_block* old = nullptr;
    std::int64_t delta = 0;
    {
      shard& s = shards_[h >> (64 - kShardBits)];
      std::unique_lock lock(s.mu);
      if (s.dropped) return 0;
      const std::size_t before = s.table.bytes();
      old = s.table.erase(h, key);
      delta = static_cast<std::int64_t>(s.table.bytes()) - static_cast<std::int64_t>(before);
    }
    if (old != nullptr) entry_block::destroy(old);
    return delta;
  }

  // Adds a write's change in bytes to the index's and the budget's totals; drops the index when
  // the budget is exceeded. Exact without a lock: every byte a write added before its shard was
  // dropped is in the table the drop gives back, and the write adds it once, before or after.
  void account(std::int64_t delta) {
    if (delta == 0) return;
    bytes_.fetch_add(delta, std::memory_order_relaxed);
    if (options_.budget && !options_.budget->add(delta) && delta > 0) drop();
  }

  void drop() {
    if (dropped_.exchange(true)) return;
    std::int64_t freed = 0;
    for (auto& s : shards_) {
      hash_table old;  // freed outside the lock
      {
        std::unique_lock lock(s.mu);
        s.dropped = true;
        s.table.swap(old);
      }
      freed += static_cast<std::int64_t>(old.bytes());
    }
    bytes_.fetch_sub(freed, std::memory_order_relaxed);
    if (options_.budget) options_.budget->add(-freed);
    if (options_.on_drop) {
      options_.on_drop(static_cast<std::size_t>(freed), options_.budget ? options_.budget->used() + freed : freed);
    }
  }

  std::unique_ptr<kv> inner_;
  std::string prefix_;
  read_index_options options_;
  std::array<shard, std::size_t{1} << kShardBits> shards_;
  std::atomic<std::int64_t> bytes_{0};  // the tables' bytes (hash_table::bytes), as accounted
  std::atomic<bool> dropped_{false};
};

}  // namespace

std::unique_ptr<kv> with_read_index(std::unique_ptr<kv> inner, std::string prefix, std::error_code& error,
                                    read_index_options options) {
  auto out = std::make_unique<indexed_kv>(std::move(inner), std::move(prefix), std::move(options));
  if ((error = out->load())) return nullptr;
  return out;
}

}  // namespace datashare::sidecar::store
