// A kubeconfig file (--kubeconfig, $KUBECONFIG): any text either loads or throws config_error
// naming the field; nothing else escapes (no yaml-cpp exception, no crash). File references
// resolve against a directory that does not exist, so only absolute paths the input names are
// read.
#include "fuzz/input.h"
#include "operator/kube/config.h"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  std::string text(datashare::fuzz::as_text(data, size));
  try {
    (void)datashare::kube::parse_kubeconfig(text, "fuzz", "/nonexistent-datashare-fuzz");
  } catch (const datashare::kube::config_error&) {
  }
  return 0;
}
