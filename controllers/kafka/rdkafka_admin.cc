#include <librdkafka/rdkafka.h>

#include <chrono>
#include <memory>
#include <mutex>

#include "controllers/kafka/topic_admin.h"

namespace datashare::controllers {

bool kafka_error::transient() const {
  switch (code_) {
    case RD_KAFKA_RESP_ERR__TRANSPORT:
    case RD_KAFKA_RESP_ERR__TIMED_OUT:
    case RD_KAFKA_RESP_ERR__ALL_BROKERS_DOWN:
    case RD_KAFKA_RESP_ERR_REQUEST_TIMED_OUT:
    case RD_KAFKA_RESP_ERR_NOT_CONTROLLER:
    case RD_KAFKA_RESP_ERR_LEADER_NOT_AVAILABLE:
    case RD_KAFKA_RESP_ERR_NOT_LEADER_FOR_PARTITION:
    case RD_KAFKA_RESP_ERR_COORDINATOR_LOAD_IN_PROGRESS:
    case RD_KAFKA_RESP_ERR_COORDINATOR_NOT_AVAILABLE:
    case RD_KAFKA_RESP_ERR_NOT_COORDINATOR:
      return true;
    default:
      return false;
  }
}

bool kafka_error::authentication() const {
  return code_ == RD_KAFKA_RESP_ERR__AUTHENTICATION || code_ == RD_KAFKA_RESP_ERR_SASL_AUTHENTICATION_FAILED ||
         code_ == RD_KAFKA_RESP_ERR__SSL;
}

namespace {

struct handle_deleter {
  void operator()(rd_kafka_t* rk) const { rd_kafka_destroy(rk); }
};
struct queue_deleter {
  void operator()(rd_kafka_queue_t* q) const { rd_kafka_queue_destroy(q); }
};
struct event_deleter {
  void operator()(rd_kafka_event_t* e) const { rd_kafka_event_destroy(e); }
};
struct options_deleter {
  void operator()(rd_kafka_AdminOptions_t* o) const { rd_kafka_AdminOptions_destroy(o); }
};
struct metadata_deleter {
  void operator()(const rd_kafka_metadata_t* m) const { rd_kafka_metadata_destroy(m); }
};
struct tplist_deleter {
  void operator()(rd_kafka_topic_partition_list_t* l) const { rd_kafka_topic_partition_list_destroy(l); }
};

using event_ptr = std::unique_ptr<rd_kafka_event_t, event_deleter>;

[[noreturn]] void throw_error(rd_kafka_resp_err_t err, const std::string& what, const char* detail = nullptr) {
  std::string msg = what + ": " + (detail != nullptr && *detail != '\0' ? detail : rd_kafka_err2str(err));
  throw kafka_error(err, msg);
}

// The last refusal by the broker of this client's credentials or TLS handshake, reported by
// librdkafka's error callback (connections are made in the background: a request only sees a
// timeout). Cleared by the next request that succeeds.
class refusal_watch {
 public:
  static void on_error(rd_kafka_t*, int err, const char* reason, void* opaque) {
    if (err != RD_KAFKA_RESP_ERR__AUTHENTICATION && err != RD_KAFKA_RESP_ERR__SSL) return;
    auto* self = static_cast<refusal_watch*>(opaque);
    std::lock_guard lock(self->mu_);
    self->err_ = static_cast<rd_kafka_resp_err_t>(err);
    self->reason_ = reason != nullptr ? reason : "";
    self->at_ = std::chrono::steady_clock::now();
  }
  void clear() {
    std::lock_guard lock(mu_);
    err_ = RD_KAFKA_RESP_ERR_NO_ERROR;
  }
  // The refusal seen in the last `within`, as the code and text a failed request should report.
  std::optional<std::pair<rd_kafka_resp_err_t, std::string>> recent(std::chrono::milliseconds within) {
    std::lock_guard lock(mu_);
    if (err_ == RD_KAFKA_RESP_ERR_NO_ERROR || std::chrono::steady_clock::now() - at_ > within) return std::nullopt;
    std::string what = err_ == RD_KAFKA_RESP_ERR__AUTHENTICATION ? "Kafka authentication failed (check the "
                                                                   "SASL username and password): "
                                                                 : "Kafka TLS handshake failed (check the CA and "
                                                                   "certificates): ";
    return std::make_pair(err_, what + reason_);
  }

 private:
  std::mutex mu_;
  rd_kafka_resp_err_t err_ = RD_KAFKA_RESP_ERR_NO_ERROR;
  std::string reason_;
  std::chrono::steady_clock::time_point at_;
};

class rdkafka_admin final : public topic_admin {
 public:
  explicit rdkafka_admin(const kafka_connection& c) : connection_(c), timeout_ms_(c.request_timeout_ms) {
    rk_.reset(make_handle(RD_KAFKA_PRODUCER, "datashare-operator", nullptr));
  }

  // A handle for the admin requests. The consumer-type one, made for group offsets, carries a
  // consumer group of its own that never subscribes: librdkafka handles a NOT_COORDINATOR answer
  // to OffsetFetch by asking the handle's group to look the coordinator up again, and a handle
  // without a group dereferences a null group there (librdkafka issue 5040, a crash on a fresh
  // broker whose group coordinator is still loading).
  rd_kafka_t* make_handle(rd_kafka_type_t type, const std::string& client_id, const char* group) {
    const kafka_connection& c = connection_;
    char err[512];
    rd_kafka_conf_t* conf = rd_kafka_conf_new();
    auto set = [&](const std::string& k, const std::string& v) {
      if (rd_kafka_conf_set(conf, k.c_str(), v.c_str(), err, sizeof err) != RD_KAFKA_CONF_OK) {
        rd_kafka_conf_destroy(conf);
        throw kafka_error(RD_KAFKA_RESP_ERR__INVALID_ARG, "kafka property " + k + ": " + err);
      }
    };
    set("bootstrap.servers", c.bootstrap);
    set("client.id", client_id);
    set("log_level", "3");
    if (group != nullptr) {
      set("group.id", group);
      set("enable.auto.commit", "false");
      set("enable.auto.offset.store", "false");
    }
    for (const auto& [k, v] : c.properties) set(k, v);
    rd_kafka_conf_set_error_cb(conf, &refusal_watch::on_error);
    rd_kafka_conf_set_opaque(conf, refusals_.get());
    rd_kafka_t* rk = rd_kafka_new(type, conf, err, sizeof err);
    if (rk == nullptr) {
      rd_kafka_conf_destroy(conf);
      throw kafka_error(RD_KAFKA_RESP_ERR__INVALID_ARG, std::string("kafka client: ") + err);
    }
    return rk;
  }

  std::optional<observed_topic> describe(const std::string& topic) override {
    const rd_kafka_metadata_t* raw = nullptr;
    rd_kafka_resp_err_t err = rd_kafka_metadata(rk_.get(), 1, nullptr, &raw, timeout_ms_);
    if (err != RD_KAFKA_RESP_ERR_NO_ERROR) fail(err, "metadata of topic " + topic);
    refusals_->clear();
    std::unique_ptr<const rd_kafka_metadata_t, metadata_deleter> md(raw);
    const rd_kafka_metadata_topic_t* t = nullptr;
    for (int i = 0; i < md->topic_cnt; ++i) {
      if (topic == md->topics[i].topic) t = &md->topics[i];
    }
    if (t == nullptr || t->err == RD_KAFKA_RESP_ERR_UNKNOWN_TOPIC_OR_PART) return std::nullopt;
    if (t->err != RD_KAFKA_RESP_ERR_NO_ERROR) fail(t->err, "metadata of topic " + topic);
    observed_topic o;
    o.name = topic;
    o.partitions = t->partition_cnt;
    o.replication_factor = t->partition_cnt > 0 ? t->partitions[0].replica_cnt : 0;
    o.config = overrides(topic);
    return o;
  }

  void create(const desired_topic& topic) override {
    char err[512];
    rd_kafka_NewTopic_t* nt =
        rd_kafka_NewTopic_new(topic.name.c_str(), topic.partitions, topic.replication_factor, err, sizeof err);
    if (nt == nullptr) throw kafka_error(RD_KAFKA_RESP_ERR__INVALID_ARG, "topic " + topic.name + ": " + err);
    for (const auto& [k, v] : topic.config) rd_kafka_NewTopic_set_config(nt, k.c_str(), v.c_str());
    auto q = queue();
    rd_kafka_CreateTopics(rk_.get(), &nt, 1, options(RD_KAFKA_ADMIN_OP_CREATETOPICS).get(), q.get());
    rd_kafka_NewTopic_destroy(nt);
    event_ptr ev = wait(q.get(), "create topic " + topic.name);
    size_t n = 0;
    const rd_kafka_topic_result_t** res =
        rd_kafka_CreateTopics_result_topics(rd_kafka_event_CreateTopics_result(ev.get()), &n);
    for (size_t i = 0; i < n; ++i) {
      auto e = rd_kafka_topic_result_error(res[i]);
      if (e != RD_KAFKA_RESP_ERR_NO_ERROR && e != RD_KAFKA_RESP_ERR_TOPIC_ALREADY_EXISTS)
        fail(e, "create topic " + topic.name, rd_kafka_topic_result_error_string(res[i]));
    }
  }

  void set_config(const std::string& topic, const std::map<std::string, std::string>& config) override {
    rd_kafka_ConfigResource_t* r = rd_kafka_ConfigResource_new(RD_KAFKA_RESOURCE_TOPIC, topic.c_str());
    for (const auto& [k, v] : config) rd_kafka_ConfigResource_set_config(r, k.c_str(), v.c_str());
    auto q = queue();
    rd_kafka_AlterConfigs(rk_.get(), &r, 1, options(RD_KAFKA_ADMIN_OP_ALTERCONFIGS).get(), q.get());
    rd_kafka_ConfigResource_destroy(r);
    event_ptr ev = wait(q.get(), "configure topic " + topic);
    size_t n = 0;
    const rd_kafka_ConfigResource_t** res =
        rd_kafka_AlterConfigs_result_resources(rd_kafka_event_AlterConfigs_result(ev.get()), &n);
    for (size_t i = 0; i < n; ++i) {
      auto e = rd_kafka_ConfigResource_error(res[i]);
      if (e != RD_KAFKA_RESP_ERR_NO_ERROR)
        fail(e, "configure topic " + topic, rd_kafka_ConfigResource_error_string(res[i]));
    }
  }

  void add_partitions(const std::string& topic, int32_t total) override {
    char err[512];
    rd_kafka_NewPartitions_t* np =
        rd_kafka_NewPartitions_new(topic.c_str(), static_cast<size_t>(total), err, sizeof err);
    if (np == nullptr) throw kafka_error(RD_KAFKA_RESP_ERR__INVALID_ARG, "partitions of " + topic + ": " + err);
    auto q = queue();
    rd_kafka_CreatePartitions(rk_.get(), &np, 1, options(RD_KAFKA_ADMIN_OP_CREATEPARTITIONS).get(), q.get());
    rd_kafka_NewPartitions_destroy(np);
    event_ptr ev = wait(q.get(), "add partitions to " + topic);
    size_t n = 0;
    const rd_kafka_topic_result_t** res =
        rd_kafka_CreatePartitions_result_topics(rd_kafka_event_CreatePartitions_result(ev.get()), &n);
    for (size_t i = 0; i < n; ++i) {
      auto e = rd_kafka_topic_result_error(res[i]);
      if (e != RD_KAFKA_RESP_ERR_NO_ERROR)
        fail(e, "add partitions to " + topic, rd_kafka_topic_result_error_string(res[i]));
    }
  }

  bool remove(const std::string& topic) override {
    rd_kafka_DeleteTopic_t* dt = rd_kafka_DeleteTopic_new(topic.c_str());
    auto q = queue();
    rd_kafka_DeleteTopics(rk_.get(), &dt, 1, options(RD_KAFKA_ADMIN_OP_DELETETOPICS).get(), q.get());
    rd_kafka_DeleteTopic_destroy(dt);
    event_ptr ev = wait(q.get(), "delete topic " + topic);
    size_t n = 0;
    const rd_kafka_topic_result_t** res =
        rd_kafka_DeleteTopics_result_topics(rd_kafka_event_DeleteTopics_result(ev.get()), &n);
    for (size_t i = 0; i < n; ++i) {
      auto e = rd_kafka_topic_result_error(res[i]);
      if (e == RD_KAFKA_RESP_ERR_UNKNOWN_TOPIC_OR_PART) return false;
      if (e != RD_KAFKA_RESP_ERR_NO_ERROR) fail(e, "delete topic " + topic, rd_kafka_topic_result_error_string(res[i]));
    }
    return true;
  }

  std::map<int32_t, int64_t> committed(const std::string& group, const std::string& topic,
                                       int32_t partitions) override {
    std::unique_ptr<rd_kafka_topic_partition_list_t, tplist_deleter> list(
        rd_kafka_topic_partition_list_new(partitions));
    for (int32_t p = 0; p < partitions; ++p) rd_kafka_topic_partition_list_add(list.get(), topic.c_str(), p);
    rd_kafka_t* rk = offsets_handle();
    rd_kafka_ListConsumerGroupOffsets_t* req = rd_kafka_ListConsumerGroupOffsets_new(group.c_str(), list.get());
    std::unique_ptr<rd_kafka_queue_t, queue_deleter> q(rd_kafka_queue_new(rk));
    rd_kafka_ListConsumerGroupOffsets(rk, &req, 1, options(RD_KAFKA_ADMIN_OP_LISTCONSUMERGROUPOFFSETS).get(), q.get());
    rd_kafka_ListConsumerGroupOffsets_destroy(req);
    rd_kafka_poll(rk, 0);  // nobody else serves this handle's error callbacks
    event_ptr ev = wait(q.get(), "offsets of group " + group);
    size_t n = 0;
    const rd_kafka_group_result_t** groups =
        rd_kafka_ListConsumerGroupOffsets_result_groups(rd_kafka_event_ListConsumerGroupOffsets_result(ev.get()), &n);
    std::map<int32_t, int64_t> out;
    for (size_t i = 0; i < n; ++i) {
      if (const rd_kafka_error_t* e = rd_kafka_group_result_error(groups[i])) {
        fail(rd_kafka_error_code(e), "offsets of group " + group, rd_kafka_error_string(e));
      }
      const rd_kafka_topic_partition_list_t* parts = rd_kafka_group_result_partitions(groups[i]);
      for (int j = 0; parts != nullptr && j < parts->cnt; ++j) {
        const auto& tp = parts->elems[j];
        if (tp.err == RD_KAFKA_RESP_ERR_NO_ERROR && tp.offset >= 0) out[tp.partition] = tp.offset;
      }
    }
    return out;
  }

  std::map<int32_t, int64_t> high_watermarks(const std::string& topic, int32_t partitions) override {
    std::map<int32_t, int64_t> out;
    for (int32_t p = 0; p < partitions; ++p) {
      int64_t low = 0;
      int64_t high = 0;
      rd_kafka_resp_err_t err = rd_kafka_query_watermark_offsets(rk_.get(), topic.c_str(), p, &low, &high, timeout_ms_);
      if (err != RD_KAFKA_RESP_ERR_NO_ERROR) fail(err, "high watermark of " + topic + "[" + std::to_string(p) + "]");
      out[p] = high;
    }
    return out;
  }

 private:
  // Made on the first offsets query: operators that measure no lag do not run its threads.
  rd_kafka_t* offsets_handle() {
    std::call_once(offsets_once_, [&] {
      offsets_rk_.reset(make_handle(RD_KAFKA_CONSUMER, "datashare-operator-offsets", "datashare-operator-offsets"));
    });
    return offsets_rk_.get();
  }

  std::map<std::string, std::string> overrides(const std::string& topic) {
    rd_kafka_ConfigResource_t* r = rd_kafka_ConfigResource_new(RD_KAFKA_RESOURCE_TOPIC, topic.c_str());
    auto q = queue();
    rd_kafka_DescribeConfigs(rk_.get(), &r, 1, options(RD_KAFKA_ADMIN_OP_DESCRIBECONFIGS).get(), q.get());
    rd_kafka_ConfigResource_destroy(r);
    event_ptr ev = wait(q.get(), "config of topic " + topic);
    size_t n = 0;
    const rd_kafka_ConfigResource_t** res =
        rd_kafka_DescribeConfigs_result_resources(rd_kafka_event_DescribeConfigs_result(ev.get()), &n);
    std::map<std::string, std::string> out;
    for (size_t i = 0; i < n; ++i) {
      auto e = rd_kafka_ConfigResource_error(res[i]);
      if (e != RD_KAFKA_RESP_ERR_NO_ERROR)
        fail(e, "config of topic " + topic, rd_kafka_ConfigResource_error_string(res[i]));
      size_t cnt = 0;
      const rd_kafka_ConfigEntry_t** entries = rd_kafka_ConfigResource_configs(res[i], &cnt);
      for (size_t j = 0; j < cnt; ++j) {
        if (rd_kafka_ConfigEntry_source(entries[j]) != RD_KAFKA_CONFIG_SOURCE_DYNAMIC_TOPIC_CONFIG) continue;
        const char* v = rd_kafka_ConfigEntry_value(entries[j]);
        out[rd_kafka_ConfigEntry_name(entries[j])] = v == nullptr ? "" : v;
      }
    }
    return out;
  }

  std::unique_ptr<rd_kafka_queue_t, queue_deleter> queue() {
    return std::unique_ptr<rd_kafka_queue_t, queue_deleter>(rd_kafka_queue_new(rk_.get()));
  }

  std::unique_ptr<rd_kafka_AdminOptions_t, options_deleter> options(rd_kafka_admin_op_t op) {
    std::unique_ptr<rd_kafka_AdminOptions_t, options_deleter> o(rd_kafka_AdminOptions_new(rk_.get(), op));
    char err[256];
    rd_kafka_AdminOptions_set_request_timeout(o.get(), timeout_ms_, err, sizeof err);
    if (op == RD_KAFKA_ADMIN_OP_CREATETOPICS || op == RD_KAFKA_ADMIN_OP_DELETETOPICS ||
        op == RD_KAFKA_ADMIN_OP_CREATEPARTITIONS) {
      rd_kafka_AdminOptions_set_operation_timeout(o.get(), timeout_ms_, err, sizeof err);
    }
    return o;
  }

  event_ptr wait(rd_kafka_queue_t* q, const std::string& what) {
    // The request timeout bounds the answer; a little more covers the local queueing.
    event_ptr ev(rd_kafka_queue_poll(q, timeout_ms_ + 5000));
    if (!ev) fail(RD_KAFKA_RESP_ERR__TIMED_OUT, what, "no answer from the broker");
    if (rd_kafka_event_error(ev.get()) != RD_KAFKA_RESP_ERR_NO_ERROR) {
      fail(rd_kafka_event_error(ev.get()), what, rd_kafka_event_error_string(ev.get()));
    }
    refusals_->clear();
    return ev;
  }

  // A request that timed out or found no broker because the broker refused this client's
  // credentials says so, rather than "timed out".
  [[noreturn]] void fail(rd_kafka_resp_err_t err, const std::string& what, const char* detail = nullptr) {
    rd_kafka_poll(rk_.get(), 0);  // serves the error callbacks queued meanwhile
    bool no_answer = kafka_error(err, "").transient() || err == RD_KAFKA_RESP_ERR__AUTHENTICATION;
    if (auto refused = refusals_->recent(std::chrono::milliseconds(2 * timeout_ms_ + 5000)); refused && no_answer) {
      throw_error(refused->first, what, refused->second.c_str());
    }
    throw_error(err, what, detail);
  }

  kafka_connection connection_;
  std::unique_ptr<refusal_watch> refusals_ = std::make_unique<refusal_watch>();
  std::unique_ptr<rd_kafka_t, handle_deleter> rk_;
  std::once_flag offsets_once_;
  std::unique_ptr<rd_kafka_t, handle_deleter> offsets_rk_;
  int timeout_ms_;
};

}  // namespace

std::unique_ptr<topic_admin> make_rdkafka_admin(const kafka_connection& connection) {
  return std::make_unique<rdkafka_admin>(connection);
}

}  // namespace datashare::controllers
