#include "tests/support/cluster_env.h"

#include <cstdlib>
#include <fstream>
#include <stdexcept>

namespace datashare::testing {

void load_cluster_env() {
  const char* file = std::getenv("DATASHARE_ENV_FILE");
  if (file == nullptr || *file == '\0') return;
  std::ifstream in(file);
  if (!in) return;  // require_env reports what is missing
  for (std::string line; std::getline(in, line);) {
    if (line.rfind("export ", 0) == 0) line.erase(0, 7);
    auto eq = line.find('=');
    if (eq == std::string::npos || eq == 0) continue;
    ::setenv(line.substr(0, eq).c_str(), line.substr(eq + 1).c_str(), /*overwrite=*/0);
  }
}

std::string require_env(const std::string& name) {
  load_cluster_env();
  const char* v = std::getenv(name.c_str());
  if (v == nullptr || *v == '\0') {
    throw std::runtime_error(name +
                             " is not set: this test needs the real local cluster and Kafka. Run it through "
                             "`make test` / ctest (which start them), or `hack/local-cluster.sh up` and "
                             "`source <(hack/local-cluster.sh env)`, or point KUBECONFIG and "
                             "DATASHARE_KAFKA_BOOTSTRAP at your own.");
  }
  return v;
}

int time_scale() {
  const char* v = std::getenv("DATASHARE_TEST_TIME_SCALE");
  int n = v != nullptr ? std::atoi(v) : 1;
  return n > 0 ? n : 1;
}

}  // namespace datashare::testing
