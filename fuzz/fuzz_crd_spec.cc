// DataProduct and DataSharingPolicy objects as the API server hands them over: the operator must
// not trust the CRD's validation, so parsing any JSON object is total (a value or problems).
#include <cstdlib>

#include "controllers/api/spec.h"
#include "fuzz/input.h"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  using namespace datashare::controllers;
  auto object = json::parse(datashare::fuzz::as_text(data, size), nullptr, /*allow_exceptions=*/false);
  if (object.is_discarded()) return 0;
  auto product = parse_data_product(object);
  if (product.value.has_value() == !product.problems.empty()) std::abort();
  if (product.value) {
    (void)product.value->owner_url();
    (void)product.value->allows("fuzz");
  }
  (void)describe(product.problems);
  auto policy = parse_data_sharing_policy(object);
  if (policy.value.has_value() == !policy.problems.empty()) std::abort();
  if (policy.value) (void)policy.value->consumer_group();
  (void)meta_of(object);
  return 0;
}
