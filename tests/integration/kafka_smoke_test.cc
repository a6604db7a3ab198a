// The toolchain talks to the real Kafka broker: librdkafka creates a topic, produces 1,000
// keyed messages and consumes them back with each key's messages in the order produced.
#include <gtest/gtest.h>
#include <librdkafka/rdkafka.h>
#include <librdkafka/rdkafkacpp.h>

#include <chrono>
#include <map>
#include <memory>
#include <string>

#include "tests/support/cluster_env.h"

namespace datashare {
namespace {

constexpr int kMessages = 1000;
constexpr int kKeys = 25;
constexpr int kPartitions = 3;

std::unique_ptr<RdKafka::Conf> make_conf(const std::string& bootstrap) {
  std::unique_ptr<RdKafka::Conf> conf(RdKafka::Conf::create(RdKafka::Conf::CONF_GLOBAL));
  std::string err;
  EXPECT_EQ(conf->set("bootstrap.servers", bootstrap, err), RdKafka::Conf::CONF_OK) << err;
  return conf;
}

// Creates `topic` with the admin API of librdkafka's C interface (the C++ one has none).
void create_topic(const std::string& bootstrap, const std::string& topic) {
  char err[512];
  rd_kafka_conf_t* conf = rd_kafka_conf_new();
  ASSERT_EQ(rd_kafka_conf_set(conf, "bootstrap.servers", bootstrap.c_str(), err, sizeof err), RD_KAFKA_CONF_OK) << err;
  rd_kafka_t* rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, err, sizeof err);
  ASSERT_NE(rk, nullptr) << err;
  rd_kafka_NewTopic_t* nt = rd_kafka_NewTopic_new(topic.c_str(), kPartitions, 1, err, sizeof err);
  ASSERT_NE(nt, nullptr) << err;
  rd_kafka_queue_t* q = rd_kafka_queue_new(rk);
  rd_kafka_CreateTopics(rk, &nt, 1, nullptr, q);
  rd_kafka_event_t* ev = rd_kafka_queue_poll(q, 30000);
  ASSERT_NE(ev, nullptr) << "no CreateTopics result within 30 s";
  const rd_kafka_CreateTopics_result_t* res = rd_kafka_event_CreateTopics_result(ev);
  ASSERT_NE(res, nullptr) << rd_kafka_event_error_string(ev);
  size_t n = 0;
  const rd_kafka_topic_result_t** results = rd_kafka_CreateTopics_result_topics(res, &n);
  ASSERT_EQ(n, 1u);
  EXPECT_EQ(rd_kafka_topic_result_error(results[0]), RD_KAFKA_RESP_ERR_NO_ERROR)
      << rd_kafka_topic_result_error_string(results[0]);
  rd_kafka_event_destroy(ev);
  rd_kafka_queue_destroy(q);
  rd_kafka_NewTopic_destroy(nt);
  rd_kafka_destroy(rk);
}

TEST(KafkaSmokeTest, ProducesAndConsumesKeyedMessagesInPerKeyOrder) {
  const std::string bootstrap = testing::require_env("DATASHARE_KAFKA_BOOTSTRAP");
  const std::string topic = "smoke." + std::to_string(std::chrono::system_clock::now().time_since_epoch().count());
  create_topic(bootstrap, topic);

  std::string err;
  auto pconf = make_conf(bootstrap);
  ASSERT_EQ(pconf->set("enable.idempotence", "true", err), RdKafka::Conf::CONF_OK) << err;
  std::unique_ptr<RdKafka::Producer> producer(RdKafka::Producer::create(pconf.get(), err));
  ASSERT_TRUE(producer) << err;
  for (int i = 0; i < kMessages; ++i) {
    std::string key = "key-" + std::to_string(i % kKeys);
    std::string value = std::to_string(i / kKeys);  // sequence number within the key
    RdKafka::ErrorCode rc;
    while ((rc = producer->produce(topic, RdKafka::Topic::PARTITION_UA, RdKafka::Producer::RK_MSG_COPY, value.data(),
                                   value.size(), key.data(), key.size(), 0, nullptr)) == RdKafka::ERR__QUEUE_FULL) {
      producer->poll(10);
    }
    ASSERT_EQ(rc, RdKafka::ERR_NO_ERROR) << RdKafka::err2str(rc);
  }
  ASSERT_EQ(producer->flush(30000), RdKafka::ERR_NO_ERROR);

  auto cconf = make_conf(bootstrap);
  ASSERT_EQ(cconf->set("group.id", topic + ".reader", err), RdKafka::Conf::CONF_OK) << err;
  ASSERT_EQ(cconf->set("auto.offset.reset", "earliest", err), RdKafka::Conf::CONF_OK) << err;
  std::unique_ptr<RdKafka::KafkaConsumer> consumer(RdKafka::KafkaConsumer::create(cconf.get(), err));
  ASSERT_TRUE(consumer) << err;
  ASSERT_EQ(consumer->subscribe({topic}), RdKafka::ERR_NO_ERROR);

  std::map<std::string, int> next_seq;
  int received = 0;
  auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(60);
  while (received < kMessages && std::chrono::steady_clock::now() < deadline) {
    std::unique_ptr<RdKafka::Message> msg(consumer->consume(200));
    if (msg->err() == RdKafka::ERR__TIMED_OUT || msg->err() == RdKafka::ERR__PARTITION_EOF) continue;
    ASSERT_EQ(msg->err(), RdKafka::ERR_NO_ERROR) << msg->errstr();
    ASSERT_NE(msg->key(), nullptr);
    std::string value(static_cast<const char*>(msg->payload()), msg->len());
    int& expected = next_seq[*msg->key()];
    ASSERT_EQ(std::stoi(value), expected) << "key " << *msg->key() << " out of order";
    ++expected;
    ++received;
  }
  consumer->close();
  EXPECT_EQ(received, kMessages);
  EXPECT_EQ(next_seq.size(), static_cast<size_t>(kKeys));
  for (const auto& [key, seq] : next_seq) EXPECT_EQ(seq, kMessages / kKeys) << key;
}

}  // namespace
}  // namespace datashare
