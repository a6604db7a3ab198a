#include "sidecar/store/kv.h"

#include <algorithm>

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

void sort_by_key(const write_batch& batch, std::vector<std::pair<std::string_view, std::uint32_t>>& order) {
  order.clear();
  order.reserve(batch.size());
  for (std::size_t i = 0; i < batch.size(); ++i) order.emplace_back(batch[i].key, static_cast<std::uint32_t>(i));
  std::sort(order.begin(), order.end());  // by key, then position
}

}  // namespace datashare::sidecar::store
