#include "sidecar/store/kv.h"

#include <algorithm>
#include <cstring>

namespace datashare::sidecar::store {
namespace {

class category : public std::error_category {
 public:
  const char* name() const noexcept override { return "datashare.store"; }
  std::string message(int c) const override {
    switch (static_cast<errc>(c)) {
      case errc::not_found:
        return "not found";
      case errc::io_error:
        return "I/O error";
      case errc::corruption:
        return "corruption";
      case errc::invalid_argument:
        return "invalid argument";
      case errc::injected_failure:
        return "injected failure";
    }
    return "unknown store error";
  }
};

}  // namespace

const std::error_category& store_category() {
  static const category instance;
  return instance;
}

std::error_code make_error_code(errc e) {
  return {static_cast<int>(e), store_category()};
}

std::size_t common_prefix(std::string_view a, std::string_view b) {
  const std::size_t n = std::min(a.size(), b.size());
  std::size_t i = 0;
  while (i + 8 <= n && std::memcmp(a.data() + i, b.data() + i, 8) == 0) i += 8;
  while (i < n && a[i] == b[i]) ++i;
  return i;
}

std::uint64_t key_word(std::string_view key, std::size_t offset) {
  std::uint64_t w = 0;
  for (std::size_t i = 0; i < 8; ++i) {
    w <<= 8;
    if (offset + i < key.size()) w |= static_cast<unsigned char>(key[offset + i]);
  }
  return w;
}

void sort_by_key(const write_batch& batch, std::vector<std::uint32_t>& order) {
  // Keys compared by their word after the prefix every key of the batch shares, and in full only
  // where those words are equal (the same key, or keys that differ only further on).
  struct item {
    std::uint64_t word;
    std::uint32_t index;
  };
  thread_local std::vector<item> items;
  const std::size_t n = batch.size();
  order.clear();
  items.clear();
  if (n == 0) return;
  const std::string_view first = batch[0].key;
  std::size_t shared = first.size();
  for (std::size_t i = 1; i < n && shared > 0; ++i) shared = std::min(shared, common_prefix(first, batch[i].key));
  items.reserve(n);
  for (std::size_t i = 0; i < n; ++i) items.push_back({key_word(batch[i].key, shared), static_cast<std::uint32_t>(i)});
  std::sort(items.begin(), items.end(), [&batch](const item& a, const item& b) {
    if (a.word != b.word) return a.word < b.word;
    if (int c = batch[a.index].key.compare(batch[b.index].key); c != 0) return c < 0;
    return a.index < b.index;
  });
  order.reserve(n);
  for (const item& it : items) order.push_back(it.index);
}

}  // namespace datashare::sidecar::store
