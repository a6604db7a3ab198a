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
  std::size_t count = std::clamp<std::size_t>((bits + 511) / 512, 1, kMaxBytes / sizeof(block));
  blocks_.assign(count, block{});
}

std::size_t written_keys::block_of(std::uint64_t hash) const {
  // The high 32 bits scaled to the block count (no modulo).
  return static_cast<std::size_t>(((hash >> 32) * blocks_.size()) >> 32);
}

void written_keys::add(std::string_view key) {
  const std::uint64_t h = std::hash<std::string_view>{}(key);
  block& b = blocks_[block_of(h)];
  std::uint64_t bits = mix(h);
  for (int i = 0; i < kProbes; ++i, bits >>= 9) b.words[(bits >> 6) & 7] |= std::uint64_t{1} << (bits & 63);
}

bool written_keys::may_contain(std::string_view key) const {
  const std::uint64_t h = std::hash<std::string_view>{}(key);
  const block& b = blocks_[block_of(h)];
  std::uint64_t bits = mix(h);
  for (int i = 0; i < kProbes; ++i, bits >>= 9) {
    if ((b.words[(bits >> 6) & 7] & (std::uint64_t{1} << (bits & 63))) == 0) return false;
  }
  return true;
}

bool written_keys::test_and_add(std::string_view key) {
  const std::uint64_t h = std::hash<std::string_view>{}(key);
  block& b = blocks_[block_of(h)];
  std::uint64_t bits = mix(h);
  bool all = true;
  for (int i = 0; i < kProbes; ++i, bits >>= 9) {
    std::uint64_t& w = b.words[(bits >> 6) & 7];
    const std::uint64_t bit = std::uint64_t{1} << (bits & 63);
    all = all && (w & bit) != 0;
    w |= bit;
  }
  return all;
}

}  // namespace datashare::sidecar::replica
