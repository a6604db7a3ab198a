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

std::size_t key_words::prefix(std::string_view a, std::string_view b) {
  const std::size_t n = std::min(a.size(), b.size());
  std::size_t i = 0;
  while (i + 8 <= n && std::memcmp(a.data() + i, b.data() + i, 8) == 0) i += 8;
  while (i < n && a[i] == b[i]) ++i;
  return i;
}

std::uint64_t key_words::word(std::string_view key) const {
  if (!grouped || key.empty() || static_cast<unsigned char>(key[0]) != group) return 0;
  std::uint64_t w = 0;
  for (std::size_t i = 0; i < 8; ++i) {
    w <<= 8;
    if (shared + i < key.size()) w |= static_cast<unsigned char>(key[shared + i]);
  }
  return w;
}

void sort_by_key(const write_batch& batch, std::vector<std::uint32_t>& order) {
  struct item {
    std::uint64_t word;
    std::uint32_t index;
  };
  thread_local std::vector<item> items;
  const std::size_t n = batch.size();
  order.clear();
  items.clear();
  if (n == 0) return;
  // A batch's middle operation: a replica's batches end with their few offset and counter keys.
  const auto words = key_words::fit(batch[n / 2].key, n, [&batch](std::size_t i) { return batch[i].key; });
  items.reserve(n);
  for (std::size_t i = 0; i < n; ++i) items.push_back({words.word(batch[i].key), static_cast<std::uint32_t>(i)});
  std::sort(items.begin(), items.end(), [&](const item& a, const item& b) {
    if (int c = words.compare(batch[a.index].key, a.word, batch[b.index].key, b.word); c != 0) return c < 0;
    return a.index < b.index;
  });
  order.reserve(n);
  for (const item& it : items) order.push_back(it.index);
}

}  // namespace datashare::sidecar::store
