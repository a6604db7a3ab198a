#include "sidecar/store/read_index.h"

#include <algorithm>
#include <array>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <mutex>
#include <shared_mutex>
#include <thread>
#include <vector>

#include "common/memory.h"

namespace datashare::sidecar::store {
namespace {

// One key and its value in a single allocation: a lookup's key comparison and the value's copy
// then touch one block (a std::unordered_map<std::string, std::string> costs a node, two string
// headers and a second allocation for any value beyond 15 bytes: about 90 B more per key).
// While the index is being built, a deleted key is kept as a tombstone: an entry without a value
// (value_size kDeleted), which the build's older copy of the key must not replace.
struct entry_block {
  static constexpr std::uint32_t kDeleted = 0xffffffff;
  std::uint32_t key_size;
  std::uint32_t value_size;
  // key bytes, then value bytes

  bool deleted() const { return value_size == kDeleted; }
  std::string_view key() const { return {reinterpret_cast<const char*>(this + 1), key_size}; }
  std::string_view value() const {
    return {reinterpret_cast<const char*>(this + 1) + key_size, deleted() ? 0 : value_size};
  }

  static entry_block* make(std::string_view key, std::string_view value, bool deleted = false) {
    if (deleted) value = {};
    auto* e = static_cast<entry_block*>(std::malloc(sizeof(entry_block) + key.size() + value.size()));
    if (e == nullptr) throw std::bad_alloc();
    e->key_size = static_cast<std::uint32_t>(key.size());
    e->value_size = deleted ? kDeleted : static_cast<std::uint32_t>(value.size());
    auto* bytes = reinterpret_cast<char*>(e + 1);
    if (!key.empty()) std::memcpy(bytes, key.data(), key.size());
    if (!value.empty()) std::memcpy(bytes + key.size(), value.data(), value.size());
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

  // Stores `e` (owned from now on) and returns null, or finds its key there (a value or a
  // tombstone) and then, if `replace`, stores `e` in its place and returns the entry it replaced,
  // else returns `e`: what it returns is the caller's to free, outside the lock.
  entry_block* put(std::uint64_t h, entry_block* e, bool replace = true) {
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
        if (!replace) return e;
        entry_block* old = s.e;
        bytes_ += footprint(e) - footprint(old);
        s.e = e;
        return old;
      }
    }
  }

  // Removes the tombstones; returns them for the caller to free.
  std::vector<entry_block*> purge_tombstones() {
    std::vector<std::pair<std::uint64_t, entry_block*>> found;
    for (const auto& s : slots_) {
      if (s.e != nullptr && s.e->deleted()) found.emplace_back(s.hash, s.e);
    }
    std::vector<entry_block*> out;
    out.reserve(found.size());
    for (const auto& [h, e] : found) out.push_back(erase(h, e->key()));
    return out;
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
    return (sizeof(entry_block) + e->key_size + e->value().size() + 8 + 15) & ~std::size_t{15};
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

// The index's life: built by a scan of the inner store on its own thread (at open, and after a
// bulk load), while writes go on; ready, answering point reads; suspended during a bulk load (the
// writes of a bootstrap skip it: a copy per write cost a fifth of the apply rate, P1); dropped for
// good when the budget is crossed or the build's scan fails.
enum class state { building, ready, suspended, dropped };

const char* to_string(state s) {
  switch (s) {
    case state::building:
      return "building";
    case state::ready:
      return "ready";
    case state::suspended:
      return "suspended";
    case state::dropped:
      return "dropped";
  }
  return "?";
}

class indexed_kv final : public kv {
 public:
  indexed_kv(std::unique_ptr<kv> inner, std::string prefix, read_index_options options)
      : inner_(std::move(inner)), prefix_(std::move(prefix)), options_(std::move(options)) {
    start_build();
  }

  ~indexed_kv() override { stop_build(); }

  std::error_code get(std::string_view key, std::string& value) const override {
    if (!indexed(key) || state_.load(std::memory_order_acquire) != state::ready) return inner_->get(key, value);
    const std::uint64_t h = hash(key);
    const shard& s = shards_[h >> (64 - kShardBits)];
    {
      std::shared_lock lock(s.mu);
      if (!s.dropped) {
        const entry_block* e = s.table.find(h, key);
        if (e == nullptr || e->deleted()) return errc::not_found;
        value.assign(e->value());
        return {};
      }
    }
    return inner_->get(key, value);
  }

  void multi_get(const std::vector<std::string>& keys, std::vector<std::string>& values,
                 std::vector<std::error_code>& errors) const override {
    bool all_indexed = state_.load(std::memory_order_acquire) == state::ready;
    for (const auto& k : keys) all_indexed = all_indexed && indexed(k);
    if (!all_indexed) return inner_->multi_get(keys, values, errors);
    values.resize(keys.size());
    errors.assign(keys.size(), {});
    for (std::size_t i = 0; i < keys.size(); ++i) {
      errors[i] = get(keys[i], values[i]);
      if (errors[i]) values[i].clear();
    }
  }

  std::error_code write(const write_batch& batch, bool sync) override {
    auto ec = inner_->write(batch, sync);
    std::shared_lock writes(writes_mu_);  // no change of state while this batch updates the index
    const state now = state_.load(std::memory_order_acquire);
    if (now != state::building && now != state::ready) return ec;
    // While building, a delete leaves a tombstone: the build's scan may hold the key's older value.
    const bool tombstones = now == state::building;
    std::int64_t delta = 0;
    if (!ec) {
      // In batch order: a later operation on the same key wins, as in the inner store.
      for (std::size_t i = 0; i < batch.size(); ++i) {
        auto op = batch[i];
        if (!indexed(op.key)) continue;
        delta += op.is_delete ? erase(op.key, tombstones) : set(op.key, op.value);
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
        delta += erase(op.key, tombstones);
      }
    }
    account(delta);
    return ec;
  }

  std::error_code flush(bool wait) override { return inner_->flush(wait); }

  // Called by one thread at a time (the replica's loop), as kv::expect_new_keys says.
  void expect_new_keys(bool on) override {
    if (on) {
      stop_build();
      {
        std::unique_lock lock(writes_mu_);
        if (dropped_.load()) return inner_->expect_new_keys(true);
        state_.store(state::suspended, std::memory_order_release);
      }
      empty_shards(false);
      inner_->expect_new_keys(true);
      return;
    }
    inner_->expect_new_keys(false);  // the staged writes are in the store: the scan sees them
    if (state_.load() == state::suspended) start_build();
  }

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
    if (name == "datashare.read-index.state") return to_string(state_.load());
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
    bool dropped = false;  // the index is dropped: reads go to the inner store
  };

  bool indexed(std::string_view key) const { return key.starts_with(prefix_); }

  static std::uint64_t hash(std::string_view key) {
    // libstdc++'s string hash (murmur-style) leaves its high bits as good as its low ones: the top
    // bits pick the shard, the low ones the slot.
    return std::hash<std::string_view>{}(key);
  }

  // set, erase and insert_if_absent return the change in the shard's bytes, for account().
  std::int64_t set(std::string_view key, std::string_view value) {
    return change(key, entry_block::make(key, value), false);
  }
  std::int64_t erase(std::string_view key, bool tombstone) {
    if (tombstone) return change(key, entry_block::make(key, {}, true), false);
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
  std::int64_t insert_if_absent(std::string_view key, std::string_view value) {
    return change(key, entry_block::make(key, value), true);
  }
  // Stores `e` (made outside the lock), replacing the key's entry unless `if_absent`.
  std::int64_t change(std::string_view key, entry_block* e, bool if_absent) {
    const std::uint64_t h = hash(key);
    entry_block* old = nullptr;
    std::int64_t delta = 0;
    {
      shard& s = shards_[h >> (64 - kShardBits)];
      std::unique_lock lock(s.mu);
      if (s.dropped) {
        old = e;
      } else {
        const std::size_t before = s.table.bytes();
        old = s.table.put(h, e, !if_absent);
        delta = static_cast<std::int64_t>(s.table.bytes()) - static_cast<std::int64_t>(before);
      }
    }
    if (old != nullptr) entry_block::destroy(old);
    return delta;
  }

  // Adds a write's change in bytes to the index's and the budget's totals; drops the index when
  // the budget is exceeded. Exact without a lock: every byte a write added before its shard was
  // emptied is in the table given back, and the write adds it once, before or after.
  void account(std::int64_t delta) {
    if (delta == 0) return;
    bytes_.fetch_add(delta, std::memory_order_relaxed);
    if (options_.budget && !options_.budget->add(delta) && delta > 0) {
      drop("the read indexes sharing its budget would hold " + std::to_string(options_.budget->used()) +
           " bytes, over the budget of " + std::to_string(options_.budget->limit()));
    }
  }

  // Empties every shard (marking it dropped if `drop`), giving its bytes back.
  std::int64_t empty_shards(bool drop) {
    std::int64_t freed = 0;
    for (auto& s : shards_) {
      hash_table old;  // freed outside the lock
      {
        std::unique_lock lock(s.mu);
        if (drop) s.dropped = true;
        s.table.swap(old);
      }
      freed += static_cast<std::int64_t>(old.bytes());
    }
    bytes_.fetch_sub(freed, std::memory_order_relaxed);
    if (options_.budget) options_.budget->add(-freed);
    return freed;
  }

  // Any thread (a writer crossing the budget, the build). Once: the state never leaves dropped.
  void drop(const std::string& why) {
    if (dropped_.exchange(true)) return;
    const std::int64_t freed = empty_shards(true);  // readers go to the inner store from here
    if (options_.on_drop) options_.on_drop(static_cast<std::size_t>(freed), why);
    state_.store(state::dropped, std::memory_order_release);  // after on_drop: who sees it sees that
  }

  // On the thread that owns the build (the constructor's, expect_new_keys').
  void start_build() {
    {
      std::unique_lock lock(writes_mu_);
      if (dropped_.load()) return;
      state_.store(state::building, std::memory_order_release);
    }
    stop_build_ = false;
    builder_ = std::thread([this] { build(); });
  }
  void stop_build() {
    stop_build_ = true;
    if (builder_.joinable()) builder_.join();
  }

  // The scan of the inner store, in pages (a replica's million entries never sit in one vector
  // twice), each entry stored unless a write got there first: a write's value is at least as new
  // as the page's, and a tombstone stands for a delete the page may predate.
  void build() {
    std::string end = prefix_;
    while (!end.empty() && static_cast<unsigned char>(end.back()) == 0xff) end.pop_back();
    if (!end.empty()) end.back() = static_cast<char>(static_cast<unsigned char>(end.back()) + 1);
    std::string from = prefix_;
    std::vector<entry> page;
    for (;;) {
      if (stop_build_.load() || dropped_.load()) return;
      page.clear();
      if (auto ec = inner_->scan(from, end, 4096, page)) {
        drop("its build could not read the store: " + ec.message());
        return;
      }
      std::int64_t delta = 0;
      for (const auto& [k, v] : page) delta += insert_if_absent(k, v);
      account(delta);
      if (page.size() < 4096) break;
      from = page.back().first;
      from.push_back('\0');  // the next key after it
    }
    // Complete: the tombstones have done their work. Writers wait while they go (one pass over the
    // tables) and the index turns ready, so none leaves a tombstone after it.
    std::unique_lock writes(writes_mu_);
    if (stop_build_.load() || dropped_.load()) return;
    std::int64_t delta = 0;
    for (auto& s : shards_) {
      std::vector<entry_block*> purged;
      {
        std::unique_lock lock(s.mu);
        const std::size_t before = s.table.bytes();
        purged = s.table.purge_tombstones();
        delta += static_cast<std::int64_t>(s.table.bytes()) - static_cast<std::int64_t>(before);
      }
      for (auto* e : purged) entry_block::destroy(e);
    }
    account(delta);                    // negative: never drops, never waits for writes_mu_
    state expected = state::building;  // not if dropped meanwhile
    state_.compare_exchange_strong(expected, state::ready, std::memory_order_acq_rel);
    writes.unlock();
    // What the build left free: the scan's pages, the smaller slot arrays each growth replaced
    // (~90 MiB after a million records, P7).
    release_free_memory();
  }

  std::unique_ptr<kv> inner_;
  std::string prefix_;
  read_index_options options_;
  std::array<shard, std::size_t{1} << kShardBits> shards_;
  std::atomic<std::int64_t> bytes_{0};  // the tables' bytes (hash_table::bytes), as accounted
  std::atomic<state> state_{state::building};
  std::atomic<bool> dropped_{false};
  // Writes hold it shared while they update the index; a change of state (build start, suspend,
  // the end of a build) holds it exclusively, so no write decides by a state changing under it.
  std::shared_mutex writes_mu_;
  std::thread builder_;
  std::atomic<bool> stop_build_{false};
};

}  // namespace

std::unique_ptr<kv> with_read_index(std::unique_ptr<kv> inner, std::string prefix, read_index_options options) {
  return std::make_unique<indexed_kv>(std::move(inner), std::move(prefix), std::move(options));
}

}  // namespace datashare::sidecar::store
