// A sidecar stops promptly on SIGTERM whatever Kafka is doing: the kubelet waits for it (a native
// sidecar is stopped after the app, within the pod's grace period) and a sidecar stuck in a
// broker call would hold every rollout. Each case: SIGTERM, then exit status 0 within 10 s.
#include <gtest/gtest.h>

#include <csignal>

#include "sidecar/integration/harness.h"

namespace datashare::sidecar::itest {
namespace {

constexpr auto kStopBudget = std::chrono::seconds(10);

std::string replica_config(const std::string& kafka, std::uint16_t port, const std::string& topic) {
  return "version: 1\nkafka: {bootstrapServers: \"" + kafka +
         "\"}\nlisten: {data: {address: 127.0.0.1, port: " + std::to_string(port) +
         "}}\nsubscribe:\n  - policy: stopping\n    namespace: orders\n    product: " + products_yaml() +
         "\n    topic: " + topic + "\n    group: " + topic +
         ".g\n    mode: event\n    fields: [id, name, price]\n    store: memory\n";
}

void expect_prompt_stop(sidecar_process& sidecar) {
  auto began = std::chrono::steady_clock::now();
  sidecar.kill(SIGTERM);
  auto status = sidecar.wait_for(kStopBudget);
  auto took = std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - began);
  ASSERT_TRUE(status.has_value()) << "still running " << kStopBudget.count() << " s after SIGTERM\n" << sidecar.log();
  EXPECT_EQ(*status, 0) << sidecar.log();
  std::cout << "stopped in " << took.count() << " ms\n";
}

TEST(SidecarShutdownTest, StopsPromptlyAfterItsTopicWasDeleted) {
  const std::string kafka = bootstrap();
  const std::string topic = unique_name("itest.stop.products");
  create_topic(kafka, topic, 3);
  const scoped_dir tmp("stop-deleted");
  const std::uint16_t port = free_port();
  sidecar_process sidecar(tmp.path(), replica_config(kafka, port, topic));
  sidecar.start();
  ASSERT_TRUE(wait_until([&] { return http_call(port, "GET", "/readyz").status == 200; }, std::chrono::seconds(60)))
      << sidecar.log();
  delete_topic(kafka, topic);
  std::this_thread::sleep_for(std::chrono::seconds(3));  // the replica meets the missing topic
  expect_prompt_stop(sidecar);
}

TEST(SidecarShutdownTest, StopsPromptlyWhileWaitingForItsTopic) {
  const std::string kafka = bootstrap();
  const scoped_dir tmp("stop-missing");
  const std::uint16_t port = free_port();
  sidecar_process sidecar(tmp.path(), replica_config(kafka, port, unique_name("itest.stop.never")));
  sidecar.start();
  ASSERT_TRUE(wait_until([&] { return sidecar.log().find("retrying") != std::string::npos; }, std::chrono::seconds(60)))
      << sidecar.log();
  expect_prompt_stop(sidecar);
}

TEST(SidecarShutdownTest, StopsPromptlyWhenTheBrokerIsUnreachable) {
  const scoped_dir tmp("stop-nobroker");
  const std::uint16_t port = free_port();
  // A port nobody listens on: every metadata request waits for its timeout.
  const std::string nowhere = "127.0.0.1:" + std::to_string(free_port());
  sidecar_process sidecar(tmp.path(), replica_config(nowhere, port, unique_name("itest.stop.nobroker")));
  sidecar.start();
  ASSERT_TRUE(wait_until([&] { return http_call(port, "GET", "/healthz").status == 200; }, std::chrono::seconds(60)))
      << sidecar.log();
  std::this_thread::sleep_for(std::chrono::seconds(1));  // inside its first metadata request
  expect_prompt_stop(sidecar);
  // Stopped by itself, not by the stop watchdog (kStopBudget of main.cc, 6 s): the replica's
  // start makes its broker calls in short slices and gives up when the sidecar stops.
  EXPECT_EQ(sidecar.log().find("exiting without waiting"), std::string::npos) << sidecar.log();
}

}  // namespace
}  // namespace datashare::sidecar::itest
