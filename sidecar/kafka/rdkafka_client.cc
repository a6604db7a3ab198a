#include "sidecar/kafka/rdkafka_client.h"

#include <librdkafka/rdkafka.h>
#include <librdkafka/rdkafkacpp.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdlib>
#include <fstream>
#include <functional>
#include <map>
#include <mutex>
#include <nlohmann/json.hpp>
#include <sstream>
#include <string_view>
#include <thread>
#include <utility>
#include <vector>

#include "common/clock.h"

namespace datashare::sidecar::kafka {
namespace {

class category : public std::error_category {
 public:
  const char* name() const noexcept override { return "datashare.kafka"; }
  std::string message(int c) const override { return rd_kafka_err2str(static_cast<rd_kafka_resp_err_t>(c)); }
};

bool read_secret(const std::string& file, const std::string& env, std::string& out, std::string& error) {
  if (!file.empty()) {
    std::ifstream in(file);
    if (!in) {
      error = "cannot read secret file " + file;
      return false;
    }
    std::stringstream ss;
    ss << in.rdbuf();
    out = ss.str();
    while (!out.empty() && (out.back() == '\n' || out.back() == '\r')) out.pop_back();
    return true;
  }
  const char* v = std::getenv(env.c_str());
  if (v == nullptr) {
    error = "environment variable " + env + " (Kafka SASL password) is not set";
    return false;
  }
  out = v;
  return true;
}

class conf_builder {
 public:
  explicit conf_builder(RdKafka::Conf::ConfType type = RdKafka::Conf::CONF_GLOBAL)
      : conf_(RdKafka::Conf::create(type)) {}

  // Errors name the property but never its value (it may be a secret).
  bool set(const std::string& name, const std::string& value, std::string& error) {
    std::string err;
    if (conf_->set(name, value, err) != RdKafka::Conf::CONF_OK) {
      error = "kafka property " + name + ": " + err;
      return false;
    }
    return true;
  }
  std::unique_ptr<RdKafka::Conf> release() { return std::move(conf_); }
  RdKafka::Conf* get() { return conf_.get(); }

 private:
  std::unique_ptr<RdKafka::Conf> conf_;
};

using property_setter = std::function<bool(const std::string&, const std::string&, std::string&)>;

// Applies the config's connection and security settings through `set`, for either API.
bool apply_settings(const property_setter& set, const config::kafka_settings& s, std::string& error) {
  if (!set("bootstrap.servers", s.bootstrap_servers, error) || !set("client.id", s.client_id, error)) return false;
  const auto& sec = s.security;
  if (!set("security.protocol", sec.protocol, error)) return false;
  if (!sec.ca_file.empty() && !set("ssl.ca.location", sec.ca_file, error)) return false;
  if (!sec.cert_file.empty() && !set("ssl.certificate.location", sec.cert_file, error)) return false;
  if (!sec.key_file.empty() && !set("ssl.key.location", sec.key_file, error)) return false;
  if (!sec.key_password_file.empty()) {
    std::string pw;
    if (!read_secret(sec.key_password_file, "", pw, error) || !set("ssl.key.password", pw, error)) return false;
  }
  if (!sec.sasl_mechanism.empty()) {
    std::string pw;
    if (!set("sasl.mechanisms", sec.sasl_mechanism, error) || !set("sasl.username", sec.sasl_username, error) ||
        !read_secret(sec.sasl_password_file, sec.sasl_password_env, pw, error) || !set("sasl.password", pw, error)) {
      return false;
    }
  }
  for (const auto& [k, v] : s.properties) {
    if (!set(k, v, error)) return false;
  }
  return true;
}

bool apply_settings(conf_builder& c, const config::kafka_settings& s, std::string& error) {
  return apply_settings([&](const std::string& k, const std::string& v, std::string& e) { return c.set(k, v, e); }, s,
                        error);
}

// A C-API configuration (the admin interface exists only there) with the settings and then
// `extra` applied; nullptr and `error` set when librdkafka refuses one.
rd_kafka_conf_t* c_conf(const config::kafka_settings& settings,
                        const std::vector<std::pair<std::string, std::string>>& extra, std::string& error) {
  rd_kafka_conf_t* cc = rd_kafka_conf_new();
  auto set = [cc](const std::string& k, const std::string& v, std::string& e) {
    char err[512];
    if (rd_kafka_conf_set(cc, k.c_str(), v.c_str(), err, sizeof err) != RD_KAFKA_CONF_OK) {
      e = "kafka property " + k + ": " + err;
      return false;
    }
    return true;
  };
  bool ok = apply_settings(set, settings, error);
  for (const auto& [k, v] : extra) ok = ok && set(k, v, error);
  if (!ok) {
    rd_kafka_conf_destroy(cc);
    return nullptr;
  }
  return cc;
}

void assign_bytes(std::optional<std::string>& to, const void* data, std::size_t size) {
  if (data == nullptr) {
    to.reset();
  } else if (to) {
    to->assign(static_cast<const char*>(data), size);  // keeps the capacity it had
  } else {
    to.emplace(static_cast<const char*>(data), size);
  }
}

// Fills `out` (a message polled before, whose strings are reused) from a librdkafka message.
void convert(const rd_kafka_message_t& m, message& out) {
  const char* topic = rd_kafka_topic_name(m.rkt);
  if (out.topic != topic) out.topic.assign(topic);
  out.partition = m.partition;
  out.offset = m.offset;
  assign_bytes(out.key, m.key, m.key_len);
  assign_bytes(out.value, m.payload, m.len);
  rd_kafka_timestamp_type_t type{};
  out.timestamp_ms = rd_kafka_message_timestamp(&m, &type);
  rd_kafka_headers_t* headers = nullptr;
  std::size_t n = 0;
  // Not const in librdkafka's signature; it parses the headers into the message on first use.
  if (rd_kafka_message_headers(const_cast<rd_kafka_message_t*>(&m), &headers) == RD_KAFKA_RESP_ERR_NO_ERROR) {
    n = rd_kafka_header_cnt(headers);
  }
  if (out.headers.size() > n) out.headers.resize(n);
  for (std::size_t i = 0; i < n; ++i) {
    const char* name = nullptr;
    const void* value = nullptr;
    std::size_t size = 0;
    if (rd_kafka_header_get_all(headers, i, &name, &value, &size) != RD_KAFKA_RESP_ERR_NO_ERROR) continue;
    if (i == out.headers.size()) out.headers.emplace_back();
    header& h = out.headers[i];
    h.name.assign(name);
    assign_bytes(h.value, value, size);
  }
}

class rdkafka_consumer;

// librdkafka hands its statistics (statistics.interval.ms) to a C callback with the handle
// only: consumers register here, by handle, to be found. Holding the lock keeps a registered
// consumer alive while its statistics are read.
std::mutex statistics_mu;
std::map<const rd_kafka_t*, rdkafka_consumer*>& statistics_sinks() {
  static std::map<const rd_kafka_t*, rdkafka_consumer*> sinks;
  return sinks;
}
int on_statistics(rd_kafka_t* rk, char* json, std::size_t size, void* /*opaque*/);

class rdkafka_consumer final : public consumer {
 public:
  explicit rdkafka_consumer(std::unique_ptr<RdKafka::KafkaConsumer> c) : c_(std::move(c)) {
    {
      std::lock_guard lock(statistics_mu);
      statistics_sinks()[c_->c_ptr()] = this;
    }
    const rd_kafka_conf_t* conf = rd_kafka_conf(c_->c_ptr());
    auto number = [conf](const char* name, std::size_t fallback) {
      char buf[64];
      std::size_t size = sizeof buf;
      if (rd_kafka_conf_get(conf, name, buf, &size) != RD_KAFKA_CONF_OK) return fallback;
      return static_cast<std::size_t>(std::strtoull(buf, nullptr, 10));
    };
    queued_min_messages_ = number("queued.min.messages", 100000);
    queued_max_bytes_ = number("queued.max.messages.kbytes", 65536) * 1024;
  }
  ~rdkafka_consumer() override {
    {
      std::lock_guard lock(statistics_mu);
      statistics_sinks().erase(c_->c_ptr());
    }
    {
      std::lock_guard lock(waker_mu_);
      waker_stop_ = true;
    }
    waker_cv_.notify_all();
    if (waker_.joinable()) waker_.join();
    for (auto& pq : partition_queues_) rd_kafka_queue_cb_event_enable(pq.queue, nullptr, nullptr);
    // close() leaves the group cleanly; with assigned partitions it only commits nothing and stops.
    c_->close();
    // What is left in the partitions' queues goes first: each message or error there holds a
    // reference to its partition, and these queues are not forwarded to the consumer queue that
    // librdkafka purges itself. An error left there (the partition vanished from the metadata: its
    // topic deleted while nobody polled) kept the partition, and rd_kafka_destroy with it, alive
    // for good (AConsumerWhoseTopicWasDeletedUnderItClosesPromptly).
    for (auto& pq : partition_queues_) {
      fetched_.resize(std::max<std::size_t>(fetched_.size(), 256));
      for (;;) {
        const ssize_t got = rd_kafka_consume_batch_queue(pq.queue, 0, fetched_.data(), fetched_.size());
        if (got <= 0) break;
        for (ssize_t k = 0; k < got; ++k) rd_kafka_message_destroy(fetched_[static_cast<std::size_t>(k)]);
      }
      rd_kafka_queue_destroy(pq.queue);
    }
  }

  std::error_code partitions(const std::string& topic, std::chrono::milliseconds timeout,
                             std::vector<std::int32_t>& out) override {
    std::string err;
    std::unique_ptr<RdKafka::Topic> t(RdKafka::Topic::create(c_.get(), topic, nullptr, err));
    if (!t) return make_error(RD_KAFKA_RESP_ERR__INVALID_ARG);
    RdKafka::Metadata* raw = nullptr;
    auto ec = c_->metadata(false, t.get(), &raw, static_cast<int>(timeout.count()));
    std::unique_ptr<RdKafka::Metadata> md(raw);
    if (ec != RdKafka::ERR_NO_ERROR) return make_error(ec);
    for (const auto* tm : *md->topics()) {
      if (tm->topic() != topic) continue;
      if (tm->err() != RdKafka::ERR_NO_ERROR) return make_error(tm->err());
      for (const auto* pm : *tm->partitions()) out.push_back(pm->id());
    }
    if (out.empty()) return make_error(RD_KAFKA_RESP_ERR_UNKNOWN_TOPIC_OR_PART);
    std::sort(out.begin(), out.end());
    return {};
  }

  std::error_code assign(const std::string& topic, const std::vector<partition_offset>& start) override {
    {
      std::lock_guard lock(statistics_mu);
      answer_topic_ = topic;
    }
    std::vector<RdKafka::TopicPartition*> tps;
    tps.reserve(start.size());
    for (const auto& p : start) tps.push_back(RdKafka::TopicPartition::create(topic, p.partition, p.offset));
    // Each partition's messages stay in its own queue (not forwarded to the consumer queue), set
    // before the assignment starts fetching: librdkafka then never forwards it (poll).
    for (const auto& p : start) {
      if (std::any_of(partition_queues_.begin(), partition_queues_.end(),
                      [&](const partition_queue& q) { return q.partition == p.partition; })) {
        continue;
      }
      rd_kafka_queue_t* q = rd_kafka_queue_get_partition(c_->c_ptr(), topic.c_str(), p.partition);
      if (q == nullptr) continue;  // its messages then come through the consumer queue
      rd_kafka_queue_forward(q, nullptr);
      rd_kafka_queue_cb_event_enable(q, &rdkafka_consumer::on_arrival, this);
      partition_queues_.push_back({p.partition, q});
    }
    auto ec = c_->assign(tps);
    RdKafka::TopicPartition::destroy(tps);
    return ec == RdKafka::ERR_NO_ERROR ? std::error_code() : make_error(ec);
  }

  std::error_code query_high_watermark(const std::string& topic, std::int32_t partition,
                                       std::chrono::milliseconds timeout, std::int64_t& high) override {
    std::int64_t low = 0;
    auto ec = c_->query_watermark_offsets(topic, partition, &low, &high, static_cast<int>(timeout.count()));
    return ec == RdKafka::ERR_NO_ERROR ? std::error_code() : make_error(ec);
  }

  std::int64_t cached_high_watermark(const std::string& topic, std::int32_t partition) override {
    std::int64_t low = -1, high = -1;
    if (c_->get_watermark_offsets(topic, partition, &low, &high) != RdKafka::ERR_NO_ERROR) return -1;
    return high;
  }

  std::int64_t last_answer_us(const std::string& topic) override {
    std::lock_guard lock(statistics_mu);
    return topic == answer_topic_ ? answered_at_us_ : -1;
  }

  // From librdkafka's statistics (statistics_mu held): the time since each broker last sent
  // anything (`rxidle`; an idle consumer's fetch requests are answered every fetch.wait.max.ms),
  // taken for the leaders of the assigned partitions of the topic; the oldest of them, as of
  // when the statistics were made (`ts`, librdkafka's monotonic clock), is when the topic was
  // last heard from. A partition without a leader, or a leader never heard from, tells nothing.
  void take_statistics(std::string_view text) {
    if (answer_topic_.empty()) return;
    const auto j = nlohmann::json::parse(text, nullptr, false);
    if (j.is_discarded() || !j.contains("brokers") || !j.contains("topics")) return;
    const auto topic = j["topics"].find(answer_topic_);
    if (topic == j["topics"].end() || !topic->contains("partitions")) return;
    std::map<std::int64_t, std::int64_t> rxidle;  // node id → microseconds since it last sent
    for (const auto& b : j["brokers"])
      rxidle[b.value("nodeid", std::int64_t{-1})] = b.value("rxidle", std::int64_t{-1});
    std::int64_t oldest = -1;
    for (const auto& [id, p] : (*topic)["partitions"].items()) {
      if (id == "-1" || !p.value("desired", false)) continue;  // the unassigned-messages partition
      const auto it = rxidle.find(p.value("leader", std::int64_t{-1}));
      if (it == rxidle.end() || it->first < 0 || it->second < 0) return;
      oldest = std::max(oldest, it->second);
    }
    if (oldest < 0) return;
    const std::int64_t made_us_ago =
        std::chrono::duration_cast<std::chrono::microseconds>(std::chrono::steady_clock::now().time_since_epoch())
            .count() -
        j.value("ts", std::int64_t{0});
    answered_at_us_ =
        std::max(answered_at_us_, common::wall_now_us() - std::max<std::int64_t>(made_us_ago, 0) - oldest);
  }

  std::error_code poll(std::chrono::milliseconds timeout, std::size_t max, std::vector<message>& out) override {
    // librdkafka's C interface: the C++ one wraps each message in an object of its own and
    // copies its topic name and headers into new strings, allocations that cost more than the
    // rest of the replica's work per event. What `out` held is overwritten in place.
    //
    // A batch takes from every partition's queue in turn, about max / partitions from each:
    // the consumer queue holds a partition's fetched messages in runs of ~4,500 (one fetch), so a
    // batch of 5,000 from it was mostly one partition, and of the replica's workers (a partition
    // each) one worked while the others waited (docs/benchmarks.md, P1).
    std::error_code last;
    std::size_t n = 0;
    rd_kafka_t* rk = c_->c_ptr();
    const auto deadline = std::chrono::steady_clock::now() + timeout;
    for (int looks = 0;; ++looks) {
      arrived_.store(false);
      // The consumer queue first: its errors, and any message fetched before a partition had its
      // own queue (older than that queue's, so a partition's order holds).
      while (n < max) {
        rd_kafka_message_t* m = rd_kafka_consumer_poll(rk, 0);
        if (m == nullptr) break;
        take(m, out, n, last);
      }
      if (n == 0) {
        // Rounds over the partition queues, each taking an even share of what is left.
        for (bool took = true; took && n < max;) {
          took = false;
          const std::size_t share = std::max<std::size_t>(
              (max - n + partition_queues_.size() - 1) / std::max<std::size_t>(partition_queues_.size(), 1), 1);
          for (auto& pq : partition_queues_) {
            const std::size_t want = std::min(share, max - n);
            if (want == 0) break;
            fetched_.resize(std::max(fetched_.size(), want));
            ssize_t got = rd_kafka_consume_batch_queue(pq.queue, 0, fetched_.data(), want);
            for (ssize_t k = 0; k < got; ++k) take(fetched_[static_cast<std::size_t>(k)], out, n, last);
            took = took || got > 0;
          }
        }
      }
      if (n > 0 || std::chrono::steady_clock::now() >= deadline) break;
      // Nothing yet: wait for a message to arrive in any queue (on_arrival), or the deadline. A
      // queue that holds something without having signalled it is looked at again at once.
      if (looks < 2 && queued() > 0) continue;
      std::unique_lock lock(arrival_mu_);
      arrival_cv_.wait_until(lock, deadline, [this] { return arrived_.load(); });
    }
    out.resize(n);
    if (n == max) wake_fetcher_when_low();
    return last;
  }

  void commit(const std::string& topic, const std::vector<partition_offset>& offsets) override {
    std::vector<RdKafka::TopicPartition*> tps;
    tps.reserve(offsets.size());
    for (const auto& p : offsets) tps.push_back(RdKafka::TopicPartition::create(topic, p.partition, p.offset));
    (void)c_->commitAsync(tps);
    RdKafka::TopicPartition::destroy(tps);
  }

 private:
  // librdkafka 2.0 stops fetching a partition while the prefetch queue holds more than
  // queued.min.messages or queued.max.messages.kbytes, and looks at it again only when its broker
  // thread next wakes up: on an otherwise quiet connection up to a second later (newer versions
  // have fetch.queue.backoff.ms for it). A reader faster than that second's worth of queue then
  // drains it and waits: a catching-up replica applied ~120 k events/s, one queue-full per
  // second (docs/benchmarks.md, P1). So while batches come full (catching up) and the queue is
  // down to a quarter of those bounds, the broker threads are woken by a small request of their
  // own (the assigned partitions' latest offsets, answered from the broker's index), and they
  // fetch again before the queue is empty. The request is made by a thread of its own (started
  // by the first one), so that the loop never waits for the broker's round trip; requests asked
  // for while one is in flight make one more. A replica that is caught up polls small batches
  // and never asks.
  void wake_fetcher_when_low() {
    if (polled_ == 0) return;
    // The queue's bound in messages: its own, or its bytes' at the size of the messages so far.
    const std::size_t average = std::max<std::size_t>(polled_bytes_ / polled_, 1);
    // Per partition: each has a queue of its own (poll), which librdkafka bounds on its own.
    const std::size_t bound = std::min(queued_min_messages_, queued_max_bytes_ / average) *
                              std::max<std::size_t>(partition_queues_.size(), 1);
    if (queued() >= bound / 4) return;
    {
      std::lock_guard lock(waker_mu_);
      waker_pending_ = true;
    }
    if (!waker_.joinable()) waker_ = std::thread([this] { waker_loop(); });
    waker_cv_.notify_one();
  }

  void waker_loop() {
    rd_kafka_t* rk = c_->c_ptr();
    std::unique_lock lock(waker_mu_);
    for (;;) {
      waker_cv_.wait(lock, [this] { return waker_stop_ || waker_pending_; });
      if (waker_stop_) return;
      waker_pending_ = false;
      lock.unlock();
      rd_kafka_topic_partition_list_t* parts = nullptr;
      if (rd_kafka_assignment(rk, &parts) == RD_KAFKA_RESP_ERR_NO_ERROR && parts != nullptr) {
        for (int i = 0; i < parts->cnt; ++i) parts->elems[i].offset = RD_KAFKA_OFFSET_END;  // "latest"
        if (parts->cnt > 0) (void)rd_kafka_offsets_for_times(rk, parts, 500);
        rd_kafka_topic_partition_list_destroy(parts);
      }
      lock.lock();
    }
  }

  // One polled message into out[n] (a message) or `last` (an error), then back to librdkafka.
  void take(rd_kafka_message_t* m, std::vector<message>& out, std::size_t& n, std::error_code& last) {
    if (m->err == RD_KAFKA_RESP_ERR_NO_ERROR) {
      polled_bytes_ += m->len + m->key_len;
      ++polled_;
      if (n == out.size()) out.emplace_back();
      convert(*m, out[n++]);
    } else if (m->err != RD_KAFKA_RESP_ERR__TIMED_OUT && m->err != RD_KAFKA_RESP_ERR__PARTITION_EOF) {
      last = make_error(m->err);
    }
    rd_kafka_message_destroy(m);
  }

  // Messages waiting in the partitions' queues.
  std::size_t queued() const {
    std::size_t total = 0;
    for (const auto& pq : partition_queues_) total += rd_kafka_queue_length(pq.queue);
    return total;
  }

  // librdkafka's thread, a message in a partition queue that was empty (its lock held: no
  // librdkafka call here, and poll never calls librdkafka under arrival_mu_).
  static void on_arrival(rd_kafka_t*, void* opaque) {
    auto* self = static_cast<rdkafka_consumer*>(opaque);
    {
      std::lock_guard lock(self->arrival_mu_);
      self->arrived_.store(true);
    }
    self->arrival_cv_.notify_one();
  }

  struct partition_queue {
    std::int32_t partition;
    rd_kafka_queue_t* queue;
  };

  std::unique_ptr<RdKafka::KafkaConsumer> c_;
  std::string answer_topic_;                       // under statistics_mu
  std::int64_t answered_at_us_ = -1;               // under statistics_mu
  std::vector<partition_queue> partition_queues_;  // every partition assigned so far
  std::vector<rd_kafka_message_t*> fetched_;       // one queue's take
  std::mutex arrival_mu_;
  std::condition_variable arrival_cv_;
  std::atomic<bool> arrived_{false};
  std::thread waker_;  // the wake-up requests
  std::mutex waker_mu_;
  std::condition_variable waker_cv_;
  bool waker_pending_ = false, waker_stop_ = false;
  std::size_t queued_min_messages_ = 0, queued_max_bytes_ = 0;
  std::uint64_t polled_ = 0, polled_bytes_ = 0;  // messages and key + value bytes so far
};

int on_statistics(rd_kafka_t* rk, char* json, std::size_t size, void* /*opaque*/) {
  std::lock_guard lock(statistics_mu);
  auto it = statistics_sinks().find(rk);
  if (it != statistics_sinks().end()) it->second->take_statistics(std::string_view(json, size));
  return 0;  // librdkafka frees the text
}

// Bridges librdkafka's delivery report callback to ours; the token travels as msg_opaque.
class delivery_bridge final : public RdKafka::DeliveryReportCb {
 public:
  explicit delivery_bridge(delivery_callback cb) : cb_(std::move(cb)) {}
  void dr_cb(RdKafka::Message& m) override {
    delivery d;
    d.token = reinterpret_cast<std::uintptr_t>(m.msg_opaque());
    if (m.err() != RdKafka::ERR_NO_ERROR) d.error = make_error(m.err());
    d.partition = m.partition();
    d.offset = m.offset();
    cb_(d);
  }

 private:
  delivery_callback cb_;
};

class rdkafka_producer final : public producer {
 public:
  rdkafka_producer(std::unique_ptr<delivery_bridge> bridge, std::unique_ptr<RdKafka::Producer> p)
      : bridge_(std::move(bridge)), p_(std::move(p)) {}
  ~rdkafka_producer() override {
    p_->flush(2000);  // best effort; undelivered messages stay in their owner's outbox
    p_.reset();
  }

  std::error_code produce(const std::string& topic, std::optional<std::string_view> key,
                          std::optional<std::string_view> value, const std::vector<header>& headers,
                          std::int64_t timestamp_ms, std::uint64_t token) override {
    RdKafka::Headers* h = RdKafka::Headers::create();
    for (const auto& x : headers) {
      if (x.value) {
        h->add(x.name, x.value->data(), x.value->size());
      } else {
        h->add(x.name, nullptr, 0);
      }
    }
    auto ec =
        p_->produce(topic, RdKafka::Topic::PARTITION_UA, RdKafka::Producer::RK_MSG_COPY,
                    value ? const_cast<char*>(value->data()) : nullptr, value ? value->size() : 0,
                    key ? key->data() : nullptr, key ? key->size() : 0, timestamp_ms, h,
                    // librdkafka carries a void* per message; ours is an integer token.
                    reinterpret_cast<void*>(static_cast<std::uintptr_t>(token)));  // NOLINT(performance-no-int-to-ptr)
    if (ec != RdKafka::ERR_NO_ERROR) {
      delete h;  // not taken over by librdkafka on failure
      return make_error(ec);
    }
    return {};
  }

  void poll(std::chrono::milliseconds timeout) override { p_->poll(static_cast<int>(timeout.count())); }

  std::error_code flush(std::chrono::milliseconds timeout) override {
    auto ec = p_->flush(static_cast<int>(timeout.count()));
    return ec == RdKafka::ERR_NO_ERROR ? std::error_code() : make_error(ec);
  }

  std::error_code fatal_error() override {
    std::string detail;
    auto ec = p_->fatal_error(detail);
    return ec == RdKafka::ERR_NO_ERROR ? std::error_code() : make_error(ec);
  }

 private:
  std::unique_ptr<delivery_bridge> bridge_;  // outlives the producer that calls it
  std::unique_ptr<RdKafka::Producer> p_;
};

class rdkafka_admin final : public admin {
 public:
  explicit rdkafka_admin(rd_kafka_t* rk) : rk_(rk) {}
  ~rdkafka_admin() override { rd_kafka_destroy(rk_); }

  std::error_code ensure_topic(const std::string& topic, int partitions,
                               const std::vector<std::pair<std::string, std::string>>& config,
                               std::chrono::milliseconds timeout, std::string& detail) override {
    char err[512];
    rd_kafka_NewTopic_t* nt = rd_kafka_NewTopic_new(topic.c_str(), partitions, -1, err, sizeof err);
    if (nt == nullptr) {
      detail = err;
      return make_error(RD_KAFKA_RESP_ERR__INVALID_ARG);
    }
    for (const auto& [k, v] : config) rd_kafka_NewTopic_set_config(nt, k.c_str(), v.c_str());
    rd_kafka_queue_t* q = rd_kafka_queue_new(rk_);
    rd_kafka_CreateTopics(rk_, &nt, 1, nullptr, q);
    auto result = await_result(q, timeout, RD_KAFKA_RESP_ERR_TOPIC_ALREADY_EXISTS, detail,
                               [](rd_kafka_event_t* ev, std::size_t* n) {
                                 const auto* res = rd_kafka_event_CreateTopics_result(ev);
                                 return res == nullptr ? nullptr : rd_kafka_CreateTopics_result_topics(res, n);
                               });
    rd_kafka_NewTopic_destroy(nt);
    return result;
  }

  std::error_code add_partitions(const std::string& topic, int total, std::chrono::milliseconds timeout,
                                 std::string& detail) override {
    char err[512];
    rd_kafka_NewPartitions_t* np =
        rd_kafka_NewPartitions_new(topic.c_str(), static_cast<std::size_t>(total), err, sizeof err);
    if (np == nullptr) {
      detail = err;
      return make_error(RD_KAFKA_RESP_ERR__INVALID_ARG);
    }
    rd_kafka_queue_t* q = rd_kafka_queue_new(rk_);
    rd_kafka_CreatePartitions(rk_, &np, 1, nullptr, q);
    auto result =
        await_result(q, timeout, RD_KAFKA_RESP_ERR_NO_ERROR, detail, [](rd_kafka_event_t* ev, std::size_t* n) {
          const auto* res = rd_kafka_event_CreatePartitions_result(ev);
          return res == nullptr ? nullptr : rd_kafka_CreatePartitions_result_topics(res, n);
        });
    rd_kafka_NewPartitions_destroy(np);
    return result;
  }

 private:
  // Waits on `q` (then destroys it) for the result of one admin request about one topic.
  // `topics_of` extracts the per-topic results from the event (null: the request failed as a
  // whole). `also_fine`: a per-topic error that counts as success (e.g. "already exists").
  template <typename TopicsOf>
  static std::error_code await_result(rd_kafka_queue_t* q, std::chrono::milliseconds timeout,
                                      rd_kafka_resp_err_t also_fine, std::string& detail, TopicsOf topics_of) {
    rd_kafka_event_t* ev = rd_kafka_queue_poll(q, static_cast<int>(timeout.count()));
    std::error_code result = make_error(RD_KAFKA_RESP_ERR__TIMED_OUT);
    if (ev != nullptr) {
      std::size_t n = 0;
      const rd_kafka_topic_result_t** topics = topics_of(ev, &n);
      if (topics == nullptr) {
        result = make_error(rd_kafka_event_error(ev));
        if (const char* s = rd_kafka_event_error_string(ev)) detail = s;
      } else {
        rd_kafka_resp_err_t e = n == 1 ? rd_kafka_topic_result_error(topics[0]) : RD_KAFKA_RESP_ERR__FAIL;
        if (n == 1 && rd_kafka_topic_result_error_string(topics[0]) != nullptr) {
          detail = rd_kafka_topic_result_error_string(topics[0]);
        }
        result = (e == RD_KAFKA_RESP_ERR_NO_ERROR || e == also_fine) ? std::error_code() : make_error(e);
      }
      rd_kafka_event_destroy(ev);
    }
    rd_kafka_queue_destroy(q);
    return result;
  }

  rd_kafka_t* rk_;
};

class rdkafka_factory final : public client_factory {
 public:
  explicit rdkafka_factory(config::kafka_settings s) : settings_(std::move(s)) {}

  std::unique_ptr<consumer> make_consumer(const std::string& group, std::string& error) override {
    conf_builder c;
    // Fetch tuning first, so that the config's kafka properties can override it: a prefetch
    // queue per partition (poll) bounded at 4 MiB (librdkafka's default is 64 MiB; 16 MiB in all
    // for four partitions, the one queue's bound before each partition had its own), refilled
    // before it runs dry (wake_fetcher_when_low); librdkafka's 1 MiB fetches per partition (4 MiB
    // made no difference once the fetcher is woken, and cost RSS: docs/benchmarks.md, P1).
    if (!c.set("queued.max.messages.kbytes", "4096", error) || !c.set("fetch.wait.max.ms", "100", error)) {
      return nullptr;
    }
    if (!apply_settings(c, settings_, error)) return nullptr;
    // The replica decides where to read from (its own stored offsets); Kafka's auto-commit and
    // offset store would only blur that.
    if (!c.set("group.id", group, error) || !c.set("enable.auto.commit", "false", error) ||
        !c.set("enable.auto.offset.store", "false", error) || !c.set("auto.offset.reset", "earliest", error) ||
        !c.set("enable.partition.eof", "false", error)) {
      return nullptr;
    }
    // Statistics twice a second, whatever the file says: they tell when the brokers last
    // answered (consumer::last_answer_us), which the copy's staleness rests on.
    if (!c.set("statistics.interval.ms", "500", error)) return nullptr;
    rd_kafka_conf_set_stats_cb(c.get()->c_ptr_global(), on_statistics);
    std::string err;
    std::unique_ptr<RdKafka::KafkaConsumer> kc(RdKafka::KafkaConsumer::create(c.get(), err));
    if (!kc) {
      error = "cannot create Kafka consumer: " + err;
      return nullptr;
    }
    return std::make_unique<rdkafka_consumer>(std::move(kc));
  }

  std::unique_ptr<producer> make_producer(bool idempotent, delivery_callback on_delivery, std::string& error) override {
    conf_builder c;
    // linger.ms is a default the file's kafka.properties may change; acks and idempotence are
    // the outbox's contract and set after them.
    if (!c.set("linger.ms", "1", error) || !apply_settings(c, settings_, error)) return nullptr;
    auto bridge = std::make_unique<delivery_bridge>(std::move(on_delivery));
    std::string err;
    if (!c.set("acks", "all", error) || !c.set("enable.idempotence", idempotent ? "true" : "false", error)) {
      return nullptr;
    }
    if (c.get()->set("dr_cb", static_cast<RdKafka::DeliveryReportCb*>(bridge.get()), err) != RdKafka::Conf::CONF_OK) {
      error = "dr_cb: " + err;
      return nullptr;
    }
    std::unique_ptr<RdKafka::Producer> p(RdKafka::Producer::create(c.get(), err));
    if (!p) {
      error = "cannot create Kafka producer: " + err;
      return nullptr;
    }
    return std::make_unique<rdkafka_producer>(std::move(bridge), std::move(p));
  }

  std::unique_ptr<admin> make_admin(std::string& error) override {
    // The C API is the one with an admin interface.
    rd_kafka_conf_t* cc = c_conf(settings_, {}, error);
    if (cc == nullptr) return nullptr;
    char err[512];
    rd_kafka_t* rk = rd_kafka_new(RD_KAFKA_PRODUCER, cc, err, sizeof err);  // takes cc on success
    if (rk == nullptr) {
      rd_kafka_conf_destroy(cc);
      error = std::string("cannot create Kafka admin client: ") + err;
      return nullptr;
    }
    return std::make_unique<rdkafka_admin>(rk);
  }

 private:
  config::kafka_settings settings_;
};

// What librdkafka's error callback last reported about the broker refusing this client, and
// when it first did (see await_broker_answer).
struct refusal_log {
  std::mutex mu;
  std::string what;
  std::chrono::steady_clock::time_point first;

  static void on_error(rd_kafka_t*, int err, const char* reason, void* opaque) {
    const char* kind = err == RD_KAFKA_RESP_ERR__AUTHENTICATION ? "Kafka authentication failed (check the SASL "
                                                                  "username and password): "
                       : err == RD_KAFKA_RESP_ERR__SSL ? "Kafka TLS handshake failed (check the CA and certificates): "
                                                       : nullptr;
    if (kind == nullptr) return;
    auto* self = static_cast<refusal_log*>(opaque);
    std::lock_guard lock(self->mu);
    if (self->what.empty()) self->first = std::chrono::steady_clock::now();
    self->what = std::string(kind) + (reason != nullptr ? reason : "");
  }
};

}  // namespace

std::optional<std::string> await_broker_answer(const config::kafka_settings& settings, const std::atomic<bool>& stop,
                                               std::chrono::milliseconds persist, std::chrono::milliseconds every) {
  std::string error;
  rd_kafka_conf_t* cc = c_conf(settings, {{"log_level", "0"}}, error);
  if (cc == nullptr) return std::nullopt;  // the clients themselves report a configuration they cannot use
  refusal_log refusals;
  rd_kafka_conf_set_error_cb(cc, &refusal_log::on_error);
  rd_kafka_conf_set_opaque(cc, &refusals);
  char err[512];
  rd_kafka_t* rk = rd_kafka_new(RD_KAFKA_PRODUCER, cc, err, sizeof err);
  if (rk == nullptr) {
    rd_kafka_conf_destroy(cc);
    return std::nullopt;
  }
  std::optional<std::string> refused;
  while (!stop.load()) {
    const rd_kafka_metadata_t* md = nullptr;
    auto e = rd_kafka_metadata(rk, 0, nullptr, &md, static_cast<int>(every.count()));
    if (md != nullptr) rd_kafka_metadata_destroy(md);
    if (e == RD_KAFKA_RESP_ERR_NO_ERROR) break;
    rd_kafka_poll(rk, 0);  // serves the error callbacks
    {
      std::lock_guard lock(refusals.mu);
      // Refused, and no answer since (an answer ends the loop) for `persist`.
      if (!refusals.what.empty() && std::chrono::steady_clock::now() - refusals.first >= persist) {
        refused = refusals.what;
        break;
      }
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  rd_kafka_destroy(rk);
  return refused;
}

const std::error_category& kafka_category() {
  static const category instance;
  return instance;
}

std::error_code make_error(int rd_kafka_resp_err) {
  return {rd_kafka_resp_err, kafka_category()};
}

std::unique_ptr<client_factory> make_rdkafka_factory(const config::kafka_settings& settings) {
  return std::make_unique<rdkafka_factory>(settings);
}

}  // namespace datashare::sidecar::kafka
