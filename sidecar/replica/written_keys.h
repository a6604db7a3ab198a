#pragma once
// The keys a replica may have written since it started, as a bloom filter: no false negatives,
// so "not written" is an exact answer, and "maybe" sends the caller to the store.
//
// What it is for: a replica that starts on an empty store (first start, a lost volume) cannot
// find a stored version for a key it has not written in this run, so during its bootstrap (the
// whole topic from the beginning: nearly every key new) the store lookup of such a key is skipped.
// A false positive only costs that lookup. Blocked: the bits of a key sit in one 64-byte block, a
// single cache miss per key. Sized for a number of keys at ~10 bits each (about 1 % false
// positives), capped at kMaxBytes; beyond its size it only answers "maybe" more often.
//
// Thread-safe: the replica's workers add and test keys in parallel (relaxed atomic words; a key
// whose add returned is seen by any test that starts after it, through the replica's own hand-off).
// Two threads adding one key at once may both hear "maybe": a lookup more, never a wrong answer.

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string_view>

namespace datashare::sidecar::replica {

class written_keys {
 public:
  static constexpr std::size_t kMaxBytes = 8 << 20;

  // Empty, sized for `keys` keys (at least one block).
  explicit written_keys(std::size_t keys);

  void add(std::string_view key);
  // False only for a key that was never added.
  bool may_contain(std::string_view key) const;
  // may_contain(key) before add(key), with one hash and one block access.
  bool test_and_add(std::string_view key);
  std::size_t bytes() const { return count_ * sizeof(block); }

 private:
  struct alignas(64) block {
    std::atomic<std::uint64_t> words[8];
  };
  std::size_t block_of(std::uint64_t hash) const;

  std::unique_ptr<block[]> blocks_;
  std::size_t count_ = 0;
};

}  // namespace datashare::sidecar::replica
