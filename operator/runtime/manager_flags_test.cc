#include "operator/runtime/manager_flags.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "operator/kube/config.h"

namespace datashare::runtime {
namespace {
using ::testing::Contains;
using ::testing::HasSubstr;

TEST(ManagerFlags, TakesControllerRuntimeStyleFlags) {
  manager_flags m;
  flag_set f("datashare-operator");
  m.register_on(f);
  const char* argv[] = {"op",
                        "--kubeconfig=/k",
                        "--leader-elect",
                        "--metrics-bind-address=127.0.0.1:9090",
                        "--health-probe-bind-address",
                        ":9091",
                        "--zap-log-level=debug",
                        "--leader-elect-lease-duration=30s"};
  EXPECT_TRUE(f.parse(8, argv).empty());
  EXPECT_TRUE(m.validate().empty());
  EXPECT_EQ(m.kubeconfig, "/k");
  EXPECT_TRUE(m.leader_elect);
  EXPECT_EQ(m.metrics_bind_address, "127.0.0.1:9090");
  EXPECT_EQ(m.health_probe_bind_address, ":9091");
  EXPECT_EQ(m.lease_duration, std::chrono::seconds(30));
}

TEST(ManagerFlags, RejectsContradictions) {
  manager_flags m;
  m.leader_elect = true;
  m.renew_deadline = std::chrono::seconds(20);
  m.log_level = "chatty";
  m.log_format = "xml";
  auto problems = m.validate();
  EXPECT_THAT(problems, Contains(HasSubstr("renew-deadline must be shorter")));
  EXPECT_THAT(problems, Contains(HasSubstr("--zap-log-level: not a level: chatty")));
  EXPECT_THAT(problems, Contains(HasSubstr("--log-format")));
}

TEST(ManagerFlags, ABadKubeconfigIsNamed) {
  manager_flags m;
  m.kubeconfig = "/nonexistent/kubeconfig";
  m.metrics_bind_address = "0";
  m.health_probe_bind_address = "0";
  try {
    setup_manager(m);
    FAIL();
  } catch (const kube::config_error& e) {
    EXPECT_THAT(e.what(), HasSubstr("/nonexistent/kubeconfig"));
  }
}

}  // namespace
}  // namespace datashare::runtime
