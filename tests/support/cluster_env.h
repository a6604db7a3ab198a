#pragma once
// How integration and e2e tests find the real servers they run against.
//
// ctest runs them inside the `cluster` fixture (tests/fixtures/cluster.sh), which starts the
// local control plane and Kafka and points DATASHARE_ENV_FILE at the env file it wrote. A test
// can also be run by hand after `source <(hack/local-cluster.sh env)`, or against an existing
// cluster and broker through KUBECONFIG and DATASHARE_KAFKA_BOOTSTRAP.
//
// A missing server is always a failure here, never a skip: these tests exist to talk to it.

#include <string>

namespace datashare::testing {

// Loads DATASHARE_ENV_FILE (lines of `export NAME=value`) into the environment, without
// overriding variables already set. Safe to call more than once.
void load_cluster_env();

// The value of `name` after load_cluster_env(); throws std::runtime_error naming the variable
// and how to provide it when it is unset, which fails the calling test.
std::string require_env(const std::string& name);

// DATASHARE_TEST_TIME_SCALE (default 1): what the timings of a time-bound scenario (lease
// durations, hand-over bounds) are multiplied by. The ThreadSanitizer build of the suites runs
// several times slower, and there a leader that cannot renew within its deadline rightly steps
// down; the `tsan` test preset (`make test-tsan`) sets 3, and the lease scenarios of `make test`
// (ASan) run with 2.
int time_scale();

}  // namespace datashare::testing
