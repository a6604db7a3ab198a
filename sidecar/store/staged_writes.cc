#include "sidecar/store/staged_writes.h"

#include <algorithm>

namespace datashare::sidecar::store {
namespace {

constexpr std::size_t kMaxRunOps = 65535;  // an operation's index in its run: 16 bits
constexpr std::size_t kFirstSlots = 1 << 12;

std::uint32_t tag_of(std::string_view key) {
  // libstdc++'s hash of bytes (murmur-like): the low 32 bits place the key and are kept to
  // place it again when the table grows.
  return static_cast<std::uint32_t>(std::hash<std::string_view>{}(key));
}

std::uint32_t slot_run(std::uint64_t s) {
  return static_cast<std::uint32_t>((s >> 16) & 0xffff) - 1;
}
std::uint32_t slot_op(std::uint64_t s) {
  return static_cast<std::uint32_t>(s & 0xffff);
}
std::uint32_t slot_tag(std::uint64_t s) {
  return static_cast<std::uint32_t>(s >> 32);
}

}  // namespace

std::size_t staged_writes::probe(std::uint32_t tag, std::string_view key, bool& hit) const {
  const std::size_t mask = slots_.size() - 1;
  for (std::size_t i = tag & mask;; i = (i + 1) & mask) {
    const std::uint64_t s = slots_[i];
    if (s == 0 || (slot_tag(s) == tag && runs_[slot_run(s)][slot_op(s)].key == key)) {
      hit = s != 0;
      return i;
    }
  }
}

void staged_writes::grow() {
  std::vector<std::uint64_t> old(slots_.empty() ? kFirstSlots : slots_.size() * 2, 0);
  old.swap(slots_);
  const std::size_t mask = slots_.size() - 1;
  for (std::uint64_t s : old) {
    if (s == 0) continue;
    std::size_t i = slot_tag(s) & mask;
    while (slots_[i] != 0) i = (i + 1) & mask;
    slots_[i] = s;
  }
}

void staged_writes::index(std::uint32_t run, std::uint32_t op, std::uint32_t tag) {
  bool hit = false;
  const std::size_t i = probe(tag, runs_[run][op].key, hit);
  if (!hit) ++used_;
  slots_[i] = static_cast<std::uint64_t>(tag) << 32 | static_cast<std::uint64_t>(run + 1) << 16 | op;
}

void staged_writes::add(const write_batch& batch) {
  if (batch.empty()) return;
  thread_local std::vector<std::uint32_t> order;
  sort_by_key(batch, order);
  std::size_t i = 0;
  while (i < order.size()) {
    const auto run = static_cast<std::uint32_t>(runs_.size());
    write_batch& out = runs_.emplace_back();
    const std::size_t ops = std::min(order.size() - i, kMaxRunOps);
    out.reserve(ops == order.size() ? batch.payload_bytes() : 0, ops);
    for (; i < order.size() && out.size() < kMaxRunOps; ++i) {
      auto op = batch[order[i]];
      // Equal keys sit together, a batch's later operation last: only that one is kept.
      if (i + 1 < order.size() && batch[order[i + 1]].key == op.key) continue;
      if (op.is_delete) {
        out.del(op.key);
      } else {
        out.put(op.key, op.value);
      }
    }
    bytes_ += out.payload_bytes() + out.size() * 32;
    keys_ += out.size();
    // Room for the whole run first (load factor at most 0.7), then its keys entered with the
    // slot of the key a few places ahead prefetched: each insert is a cache miss in a table of
    // megabytes, and the misses of several keys then overlap.
    while (slots_.empty() || (used_ + out.size()) * 10 > slots_.size() * 7) grow();
    thread_local std::vector<std::uint32_t> tags;
    tags.resize(out.size());
    for (std::size_t k = 0; k < out.size(); ++k) tags[k] = tag_of(out[k].key);
    constexpr std::size_t kAhead = 8;
    const std::size_t mask = slots_.size() - 1;
    for (std::size_t k = 0; k < out.size(); ++k) {
      if (k + kAhead < out.size()) __builtin_prefetch(&slots_[tags[k + kAhead] & mask], 1);
      index(run, static_cast<std::uint32_t>(k), tags[k]);
    }
  }
}

staged_writes::found staged_writes::find(std::string_view key, std::string& value) const {
  if (slots_.empty()) return found::absent;
  bool hit = false;
  const std::size_t i = probe(tag_of(key), key, hit);
  if (!hit) return found::absent;
  auto op = runs_[slot_run(slots_[i])][slot_op(slots_[i])];
  if (op.is_delete) return found::deleted;
  value.assign(op.value);
  return found::value;
}

void staged_writes::for_each_last(const std::function<void(std::string_view, bool, std::string_view)>& f) const {
  // A k-way merge of the runs (each in key order, no key twice): a heap of the runs by their
  // next key, the older run first on equal keys, so the last of equal keys popped is the newest.
  std::vector<std::uint32_t> next(runs_.size(), 0);
  // Keys compared by their words (key_words), fitted around the middle key of the largest run:
  // every key that can share the group's prefix lies between a run's first and last key of the
  // group, so those bound the prefix.
  std::size_t largest = 0;
  for (std::size_t r = 0; r < runs_.size(); ++r) {
    if (runs_[r].size() > runs_[largest].size()) largest = r;
  }
  if (runs_.empty() || runs_[largest].empty()) return;  // nothing staged
  const std::string_view sample = runs_[largest][runs_[largest].size() / 2].key;
  std::vector<std::string_view> bounds;
  for (const auto& run : runs_) {
    if (sample.empty()) break;  // no group: every comparison in full
    auto in_group = [&](std::size_t i) { return !run[i].key.empty() && run[i].key[0] == sample[0]; };
    std::size_t a = 0, b = run.size();
    while (a < b && !in_group(a)) ++a;
    while (b > a && !in_group(b - 1)) --b;
    if (a < b) {
      bounds.push_back(run[a].key);
      bounds.push_back(run[b - 1].key);
    }
  }
  const auto words = key_words::fit(sample, bounds.size(), [&bounds](std::size_t i) { return bounds[i]; });
  std::vector<std::uint64_t> word(runs_.size(), 0);
  for (std::uint32_t r = 0; r < runs_.size(); ++r) {
    if (!runs_[r].empty()) word[r] = words.word(runs_[r][0].key);
  }
  std::vector<std::uint32_t> heap;
  heap.reserve(runs_.size());
  // std::*_heap keep the greatest on top: "a after b" puts the smallest key, oldest run there.
  auto after = [&](std::uint32_t a, std::uint32_t b) {
    int c = words.compare(runs_[a][next[a]].key, word[a], runs_[b][next[b]].key, word[b]);
    return c != 0 ? c > 0 : a > b;
  };
  for (std::uint32_t r = 0; r < runs_.size(); ++r) {
    if (!runs_[r].empty()) heap.push_back(r);
  }
  std::make_heap(heap.begin(), heap.end(), after);
  while (!heap.empty()) {
    std::pop_heap(heap.begin(), heap.end(), after);
    std::uint32_t r = heap.back();
    auto op = runs_[r][next[r]];
    // Any newer run with the same key replaces it before it is passed on.
    for (;;) {
      if (++next[r] < runs_[r].size()) {
        word[r] = words.word(runs_[r][next[r]].key);
        std::push_heap(heap.begin(), heap.end(), after);
      } else {
        heap.pop_back();
      }
      if (heap.empty() || runs_[heap.front()][next[heap.front()]].key != op.key) break;
      std::pop_heap(heap.begin(), heap.end(), after);
      r = heap.back();
      op = runs_[r][next[r]];
    }
    f(op.key, op.is_delete, op.value);
  }
}

}  // namespace datashare::sidecar::store
