// The replica's consumer keeps fetching while it catches up: librdkafka 2.0 parks a partition's
// fetcher when the prefetch queue passes queued.min.messages and looks at it again only when its
// broker thread next wakes up, up to a second later; the consumer wakes it when a full batch
// leaves the queue low (rdkafka_client.cc). Here the queue is made tiny (1,000 messages, fetches
// of 64 KiB, which the broker rounds up to whole record batches of ~3,000 of these messages) so
// that, without the wake-up, reading 60,000 events pauses for most of a second after nearly
// every fetch: ~18 pauses (0 with it).
#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdlib>
#include <iostream>
#include <thread>

#include "sidecar/integration/harness.h"
#include "sidecar/kafka/rdkafka_client.h"

namespace datashare::sidecar::itest {
namespace {

constexpr int kEvents = 60'000;

// Keys k0..k<n-1>, each with a value of `value_bytes`, all delivered.
void produce_events(const std::string& kafka, const std::string& topic, int n, std::size_t value_bytes) {
  test_producer producer(kafka);
  ASSERT_EQ(producer.error(), "");
  const std::string value(value_bytes, 'v');
  for (int i = 0; i < n; ++i) {
    auto ec = producer.produce(topic, "k" + std::to_string(i), value);
    ASSERT_FALSE(ec) << ec.message();
  }
  ASSERT_FALSE(producer.flush(std::chrono::seconds(60)));
  ASSERT_EQ(producer.failed_deliveries(), 0);
}

// A new topic of one partition holding `events` small events, a client factory for the local
// broker and a consumer of it (not assigned yet).
void filled_topic_and_consumer(const std::string& kafka, const std::string& topic, int events,
                               std::unique_ptr<kafka::client_factory>& factory,
                               std::unique_ptr<kafka::consumer>& consumer) {
  create_topic(kafka, topic, 1, {});
  ASSERT_NO_FATAL_FAILURE(produce_events(kafka, topic, events, 10));
  config::kafka_settings s;
  s.bootstrap_servers = kafka;
  factory = kafka::make_rdkafka_factory(s);
  std::string error;
  consumer = factory->make_consumer(topic + ".group", error);
  ASSERT_TRUE(consumer) << error;
}

TEST(SidecarFetchTest, ACatchingUpConsumerIsNotParkedWhenItsQueueFills) {
  const std::string kafka = bootstrap();
  const std::string topic = unique_name("itest.fetch");
  create_topic(kafka, topic, 1, {});
  ASSERT_NO_FATAL_FAILURE(produce_events(kafka, topic, kEvents, 300));
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
  // Normally 1–2 s; a stall ends in this test's own failure (how far it got), not in ctest's timeout.
  const auto deadline = last + std::chrono::seconds(60);
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

// A batch takes from every partition in turn (each partition's messages stay in a queue of their
// own), so that the replica's workers, a partition each, share a round: from the consumer's one
// queue, which holds each partition's fetch in a run of thousands, a batch of 2,000 came nearly
// all from one partition (the busiest partition's share ~0.9 here, ~0.34 now). A partition's own
// order holds.
TEST(SidecarFetchTest, ABatchTakesEveryPartitionInTurn) {
  const std::string kafka = bootstrap();
  const std::string topic = unique_name("itest.fetch3");
  constexpr int kPartitions = 3, kTotal = 30'000;
  constexpr std::size_t kMax = 2'000;
  create_topic(kafka, topic, kPartitions, {});
  ASSERT_NO_FATAL_FAILURE(produce_events(kafka, topic, kTotal, 200));
  config::kafka_settings s;
  s.bootstrap_servers = kafka;
  auto factory = kafka::make_rdkafka_factory(s);
  std::string error;
  auto consumer = factory->make_consumer(topic + ".group", error);
  ASSERT_TRUE(consumer) << error;
  std::vector<kafka::partition_offset> start;
  std::vector<std::int64_t> high(kPartitions, 0);
  for (int p = 0; p < kPartitions; ++p) {
    start.push_back({p, kafka::kOffsetBeginning});
    ASSERT_FALSE(consumer->query_high_watermark(topic, p, std::chrono::seconds(10), high[p]));
    ASSERT_GT(high[p], static_cast<std::int64_t>(kMax)) << "partition " << p << " holds too few events for the test";
  }
  ASSERT_FALSE(consumer->assign(topic, start));
  // The test is about how a batch is taken from the queues, not about which fetch lands first:
  // give every partition's first fetch time to arrive (a loaded machine delays some by a lot).
  std::this_thread::sleep_for(std::chrono::seconds(1));
  std::vector<kafka::message> batch;
  std::vector<std::int64_t> next(kPartitions, 0);
  int read = 0;
  std::vector<double> shares;
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(120);
  while (read < kTotal && std::chrono::steady_clock::now() < deadline) {
    (void)consumer->poll(std::chrono::milliseconds(100), kMax, batch);
    std::vector<std::size_t> per(kPartitions, 0);
    for (const auto& m : batch) {
      ASSERT_GE(m.partition, 0);
      ASSERT_LT(m.partition, kPartitions);
      ASSERT_EQ(m.offset, next[m.partition]) << "partition " << m.partition << " out of order";
      next[m.partition] = m.offset + 1;
      ++per[m.partition];
    }
    read += static_cast<int>(batch.size());
    // Full batches while every partition still had more than a batch's share left to read.
    bool all_left = true;
    for (int p = 0; p < kPartitions; ++p) all_left = all_left && high[p] - next[p] >= static_cast<std::int64_t>(kMax);
    if (batch.size() == kMax && all_left) {
      shares.push_back(static_cast<double>(*std::max_element(per.begin(), per.end())) / static_cast<double>(kMax));
    }
  }
  ASSERT_EQ(read, kTotal);
  for (int p = 0; p < kPartitions; ++p) EXPECT_EQ(next[p], high[p]) << "partition " << p;
  ASSERT_FALSE(shares.empty());
  std::sort(shares.begin(), shares.end());
  const double share = shares[shares.size() / 2];
  std::cout << shares.size() << " full batches, the busiest partition's share " << share << " (median)\n";
  // Even is 1/3 (one partition's run of ~4,500 messages, as librdkafka hands them in one queue,
  // gives 1.0). The median: a batch that comes while a partition's next fetch is still on its
  // way leans to the others, and a loaded machine makes a few of those.
  EXPECT_LT(share, 0.6);
  delete_topic(kafka, topic);
}

// A consumer whose topic was deleted while it was not polling: librdkafka puts an error for the
// vanished partition in the partition's queue, which holds a reference to the partition, and the
// consumer reads its partitions' queues itself (not forwarded to the consumer queue, which is
// purged on close). Left there, the error kept the partition, and with it rd_kafka_destroy,
// alive for good: a CI run's fetch test hung in its consumer's destructor after deleting its
// topic (3 runs in 200 in a loop), and so would a sidecar stopping, or replacing a stalled
// consumer, after its topic was deleted. The consumer now empties its queues when it closes.
TEST(SidecarFetchTest, AConsumerWhoseTopicWasDeletedUnderItClosesPromptly) {
  const std::string kafka = bootstrap();
  const std::string topic = unique_name("itest.gone");
  std::unique_ptr<kafka::client_factory> factory;
  std::unique_ptr<kafka::consumer> consumer;
  ASSERT_NO_FATAL_FAILURE(filled_topic_and_consumer(kafka, topic, 100, factory, consumer));
  ASSERT_FALSE(consumer->assign(topic, {{0, kafka::kOffsetBeginning}}));
  std::vector<kafka::message> batch;
  int read = 0;
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(60);
  while (read < 100 && std::chrono::steady_clock::now() < deadline) {
    (void)consumer->poll(std::chrono::milliseconds(100), 100, batch);
    read += static_cast<int>(batch.size());
  }
  ASSERT_EQ(read, 100);
  delete_topic(kafka, topic);
  // Not polling while its fetches fail and its metadata refresh finds the topic gone (~1 s).
  std::this_thread::sleep_for(std::chrono::seconds(4));
  std::atomic<bool> closed{false};
  std::thread closer([&] {
    consumer.reset();
    closed = true;
  });
  const auto since = std::chrono::steady_clock::now();
  while (!closed.load() && std::chrono::steady_clock::now() - since < std::chrono::seconds(30))
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  if (!closed.load()) {
    // A destructor that never returns cannot be joined: report and end here, not in ctest's timeout.
    std::cerr << "FAILED: the consumer of a deleted topic did not close within 30 s\n" << std::flush;
    std::_Exit(1);
  }
  closer.join();
  std::cout << "closed in "
            << std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - since).count()
            << " ms\n";
}

// A topic that vanishes from the broker's metadata and comes back (deleted and created again by
// the operator, or a broker that answers "unknown topic" for a moment). The consumer's partition
// queues must still be the ones fetched into once the partition is known again, and a partition
// known before it was assigned (the replica asks for the partitions first) must be fetched
// again. Reading resumes at the position handed out so far, past the end of the new, shorter
// log: the consumer starts that log from its beginning.
TEST(SidecarFetchTest, AConsumerFollowsItsTopicWhenItIsDeletedAndCreatedAgain) {
  const std::string kafka = bootstrap();
  const std::string topic = unique_name("itest.recreate");
  std::unique_ptr<kafka::client_factory> factory;
  std::unique_ptr<kafka::consumer> consumer;
  ASSERT_NO_FATAL_FAILURE(filled_topic_and_consumer(kafka, topic, 100, factory, consumer));
  std::string error;
  std::vector<std::int32_t> parts;
  ASSERT_FALSE(consumer->partitions(topic, std::chrono::seconds(10), parts));
  ASSERT_EQ(parts, std::vector<std::int32_t>{0});
  ASSERT_FALSE(consumer->assign(topic, {{0, kafka::kOffsetBeginning}}));
  std::vector<kafka::message> batch;
  auto read_keys = [&](int want, std::chrono::seconds within) {
    std::vector<std::string> keys;
    const auto deadline = std::chrono::steady_clock::now() + within;
    while (static_cast<int>(keys.size()) < want && std::chrono::steady_clock::now() < deadline) {
      (void)consumer->poll(std::chrono::milliseconds(100), 100, batch);
      for (const auto& m : batch) keys.push_back(m.key.value_or(""));
    }
    return keys;
  };
  ASSERT_EQ(read_keys(100, std::chrono::seconds(60)).size(), 100u);

  delete_topic(kafka, topic);
  // Gone from the metadata (the deletion completes after the answer), then made again.
  auto admin = factory->make_admin(error);
  ASSERT_TRUE(admin) << error;
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(60);
  bool created = false;
  while (!created && std::chrono::steady_clock::now() < deadline) {
    std::vector<std::int32_t> left;
    auto probe = factory->make_consumer(topic + ".probe", error);
    ASSERT_TRUE(probe) << error;
    if (!probe->partitions(topic, std::chrono::seconds(2), left)) {
      std::this_thread::sleep_for(std::chrono::milliseconds(200));
      continue;
    }
    // Long enough for the consumer to see it gone (its fetches fail, its metadata says so).
    std::this_thread::sleep_for(std::chrono::seconds(5));
    std::string detail;
    created = !admin->ensure_topic(topic, 1, {}, std::chrono::seconds(10), detail);
    if (!created) std::this_thread::sleep_for(std::chrono::milliseconds(200));
  }
  ASSERT_TRUE(created) << "the topic was not deleted and created again within 60 s";
  test_producer producer(kafka);
  ASSERT_EQ(producer.error(), "");
  for (int i = 0; i < 10; ++i) ASSERT_FALSE(producer.produce(topic, "n" + std::to_string(i), "v"));
  ASSERT_FALSE(producer.flush(std::chrono::seconds(30)));

  const auto keys = read_keys(10, std::chrono::seconds(60));
  ASSERT_EQ(keys.size(), 10u) << "the consumer stopped reading when its topic came back";
  for (int i = 0; i < 10; ++i) EXPECT_EQ(keys[static_cast<std::size_t>(i)], "n" + std::to_string(i));
  delete_topic(kafka, topic);
}

}  // namespace
}  // namespace datashare::sidecar::itest
