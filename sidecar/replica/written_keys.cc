#include "sidecar/replica/written_keys.h"

#include <algorithm>
#include <functional>

namespace datashare::sidecar::replica {
namespace {

constexpr int kProbes = 6;  // bits per key inside its block; ~10 bits of filter per key

// A second, independent-enough stream of bits for the positions inside the block (the block is
// chosen by the high half of the string hash).
std::uint64_t mix(std::uint64_t h) {
  h ^= h >> 33;
  h *= 0xff51afd7ed558ccdULL;
  h ^= h >> 33;
  h *= 0xc4ceb9fe1a85ec53ULL;
  h ^= h >> 33;
  return h;
}

}  // namespace

written_keys::written_keys(std::size_t keys) {
  std::size_t bits = std::max<std::size_t>(keys, 1) * 10;
  count_ = std::clamp<std::size_t>((bits + 511) / 512, 1, kMaxBytes / sizeof(block));
  blocks_ = std::make_unique<block[]>(count_);  // value-initialized: every word zero
}

std::size_t written_keys::block_of(std::uint64_t hash) const {
  // The high 32 bits scaled to the block count (no modulo).
  return static_cast<std::size_t>(((hash >> 32) * count_) >> 32);
}

void written_keys::add(std::string_view key) {
  const std::uint64_t h = std::hash<std::string_view>{}(key);
  block& b = blocks_[block_of(h)];
  std::uint64_t bits = mix(h);
  for (int i = 0; i < kProbes; ++i, bits >>= 9) {
    b.words[(bits >> 6) & 7].fetch_or(std::uint64_t{1} << (bits & 63), std::memory_order_relaxed);
  }
}

bool written_keys::may_contain(std::string_view key) const {
  const std::uint64_t h = std::hash<std::string_view>{}(key);
  const block& b = blocks_[block_of(h)];
  std::uint64_t bits = mix(h);
  for (int i = 0; i < kProbes; ++i, bits >>= 9) {
    if ((b.words[(bits >> 6) & 7].load(std::memory_order_relaxed) & (std::uint64_t{1} << (bits & 63))) == 0) {
      return false;
    }
  }
  return true;
}

bool written_keys::test_and_add(std::string_view key) {
  const std::uint64_t h = std::hash<std::string_view>{}(key);
  block& b = blocks_[block_of(h)];
  std::uint64_t bits = mix(h);
  // The key's bits word by word, then one read of the block and, for a key not all there, one
  // atomic or per word that lacks bits (a bootstrap's keys are nearly all new).
  std::uint64_t masks[8] = {};
  for (int i = 0; i < kProbes; ++i, bits >>= 9) masks[(bits >> 6) & 7] |= std::uint64_t{1} << (bits & 63);
  bool all = true;
  for (int w = 0; w < 8; ++w) {
    if (masks[w] == 0) continue;
    if ((b.words[w].load(std::memory_order_relaxed) & masks[w]) == masks[w]) continue;
    all = false;
    b.words[w].fetch_or(masks[w], std::memory_order_relaxed);
  }
  return all;
}

}  // namespace datashare::sidecar::replica
