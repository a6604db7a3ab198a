// The replica's consumer keeps fetching while it catches up: librdkafka 2.0 parks a partition's
// fetcher when the prefetch queue passes queued.min.messages and looks at it again only when its
// broker thread next wakes up, up to a second later; the consumer wakes it when a full batch
// leaves the queue low (rdkafka_client.cc). Here the queue is made tiny (1,000 messages, fetches
// of 64 KiB, which the broker rounds up to whole record batches of ~3,000 of these messages) so
// that, without the wake-up, reading 60,000 events pauses for most of a second after nearly
// every fetch: ~18 pauses (0 with it).
#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <iostream>

#include "sidecar/integration/harness.h"
#include "sidecar/kafka/rdkafka_client.h"

namespace datashare::sidecar::itest {
namespace {

constexpr int kEvents = 60'000;

TEST(SidecarFetchTest, ACatchingUpConsumerIsNotParkedWhenItsQueueFills) {
  const std::string kafka = bootstrap();
  const std::string topic = unique_name("itest.fetch");
  create_topic(kafka, topic, 1, {});
  {
    test_producer producer(kafka);
    ASSERT_EQ(producer.error(), "");
    const std::string value(300, 'v');
    for (int i = 0; i < kEvents; ++i) {
      auto ec = producer.produce(topic, "k" + std::to_string(i), value);
      ASSERT_FALSE(ec) << ec.message();
    }
    ASSERT_FALSE(producer.flush(std::chrono::seconds(60)));
    ASSERT_EQ(producer.failed_deliveries(), 0);
  }
  config::kafka_settings s;
  s.bootstrap_servers = kafka;

  // The config's kafka properties override the consumer's own fetch settings.
  s.properties = {{"queued.min.messages", "1000"}, {"max.partition.fetch.bytes", "65536"}};
  auto factory = kafka::make_rdkafka_factory(s);
  std::string error;
  auto consumer = factory->make_consumer(topic + ".group", error);
  ASSERT_TRUE(consumer) << error;
  ASSERT_FALSE(consumer->assign(topic, {{0, kafka::kOffsetBeginning}}));
  std::vector<kafka::message> batch;
  int read = 0, pauses = 0;
  auto last = std::chrono::steady_clock::now();
  const auto deadline = last + std::chrono::seconds(120);
  while (read < kEvents && std::chrono::steady_clock::now() < deadline) {
    (void)consumer->poll(std::chrono::milliseconds(100), 100, batch);
    if (batch.empty()) continue;
    auto now = std::chrono::steady_clock::now();
    // The first fetch (connection, metadata) is not a pause of the stream.
    if (read > 0 && now - last > std::chrono::milliseconds(700)) ++pauses;
    last = now;
    read += static_cast<int>(batch.size());
  }
  std::cout << "read " << read << " events with " << pauses << " pauses over 700 ms\n";
  ASSERT_EQ(read, kEvents);
  // Without the wake-up: ~18. A loaded machine may delay a wake-up now and then.
  EXPECT_LE(pauses, 3);
  delete_topic(kafka, topic);
}

}  // namespace
}  // namespace datashare::sidecar::itest
