#include "sidecar/kafka/fake_broker.h"

#include <deque>
#include <functional>
#include <optional>
#include <thread>

#include "common/clock.h"

namespace datashare::sidecar::kafka {

void fake_broker::create_topic(const std::string& topic, int partitions) {
  std::lock_guard lock(mu_);
  topics_.try_emplace(topic, static_cast<std::size_t>(partitions));
}

bool fake_broker::add_partitions(const std::string& topic, int total) {
  std::lock_guard lock(mu_);
  auto it = topics_.find(topic);
  if (it == topics_.end()) return false;
  if (static_cast<std::size_t>(total) > it->second.size()) it->second.resize(static_cast<std::size_t>(total));
  return true;
}

bool fake_broker::has_topic(const std::string& topic) const {
  std::lock_guard lock(mu_);
  return topics_.count(topic) != 0;
}

std::int64_t fake_broker::append(message m) {
  std::size_t n = 0;
  {
    std::lock_guard lock(mu_);
    n = topics_.at(m.topic).size();
  }
  std::size_t p = m.key ? std::hash<std::string>()(*m.key) % n : 0;
  return append_to(static_cast<std::int32_t>(p), std::move(m));
}

std::int64_t fake_broker::append_to(std::int32_t partition, message m) {
  std::lock_guard lock(mu_);
  auto& parts = topics_.at(m.topic);
  auto p = static_cast<std::size_t>(partition);
  m.partition = partition;
  m.offset = static_cast<std::int64_t>(parts.at(p).size());
  parts[p].push_back(std::move(m));
  return parts[p].back().offset;
}

std::vector<message> fake_broker::read(const std::string& topic, std::int32_t partition) const {
  std::lock_guard lock(mu_);
  return topics_.at(topic).at(static_cast<std::size_t>(partition));
}

std::vector<message> fake_broker::read_all(const std::string& topic) const {
  std::lock_guard lock(mu_);
  std::vector<message> out;
  for (const auto& p : topics_.at(topic)) out.insert(out.end(), p.begin(), p.end());
  return out;
}

class fake_consumer final : public consumer {
 public:
  explicit fake_consumer(fake_broker& b) : b_(b), number_(b.consumers_made_.fetch_add(1)) {}

  std::error_code partitions(const std::string& topic, std::chrono::milliseconds timeout,
                             std::vector<std::int32_t>& out) override {
    if (b_.down()) {  // as librdkafka: the request waits for its whole timeout
      std::this_thread::sleep_for(timeout);
      return make_error(kErrTimedOut);
    }
    std::lock_guard lock(b_.mu_);
    auto it = b_.topics_.find(topic);
    if (it == b_.topics_.end()) return make_error(kErrUnknownTopic);
    for (std::size_t i = 0; i < it->second.size(); ++i) out.push_back(static_cast<std::int32_t>(i));
    return {};
  }
  std::error_code assign(const std::string& topic, const std::vector<partition_offset>& start) override {
    topic_ = topic;
    positions_.clear();
    for (const auto& p : start) positions_[p.partition] = p.offset < 0 ? 0 : p.offset;
    return {};
  }
  std::error_code query_high_watermark(const std::string& topic, std::int32_t partition,
                                       std::chrono::milliseconds timeout, std::int64_t& high) override {
    if (b_.down()) {
      std::this_thread::sleep_for(timeout);
      return make_error(kErrTimedOut);
    }
    // Asked of the broker: its live size, also for a consumer whose fetches stopped (stalled),
    // and without feeding the cache (librdkafka's comes from fetch responses only).
    std::lock_guard lock(b_.mu_);
    high = static_cast<std::int64_t>(b_.topics_.at(topic).at(static_cast<std::size_t>(partition)).size());
    return {};
  }
  // As librdkafka's cache, fed by fetch responses: the live size while the broker is up, the
  // last one seen while it is down (-1 if none).
  std::int64_t cached_high_watermark(const std::string& topic, std::int32_t partition) override {
    std::lock_guard lock(b_.mu_);
    auto& seen = last_seen_high_[{topic, partition}];
    if (!b_.down() && !stalled())  // a consumer that stopped fetching stops hearing of new ones
      seen = static_cast<std::int64_t>(b_.topics_.at(topic).at(static_cast<std::size_t>(partition)).size());
    return seen.value_or(-1);
  }
  // Now while the broker is up; while it is down, when it last was.
  std::int64_t last_answer_us(const std::string&) override {
    if (!b_.down()) {
      last_answer_us_ = common::wall_now_us();
    }
    return last_answer_us_;
  }
  std::error_code poll(std::chrono::milliseconds, std::size_t max, std::vector<message>& out) override {
    out.clear();
    if (b_.down()) return make_error(kErrTransport);
    if (stalled()) return {};
    std::lock_guard lock(b_.mu_);
    const auto& parts = b_.topics_.at(topic_);
    for (auto& [p, pos] : positions_) {
      const auto& log = parts.at(static_cast<std::size_t>(p));
      while (out.size() < max && pos < static_cast<std::int64_t>(log.size()))
        out.push_back(log[static_cast<std::size_t>(pos++)]);
    }
    return {};
  }
  void commit(const std::string&, const std::vector<partition_offset>& offsets) override { committed_ = offsets; }

 private:
  bool stalled() const { return number_ < b_.stalled_below_.load(); }

  fake_broker& b_;
  const int number_;  // the broker's count of consumers made before this one
  std::string topic_;
  std::map<std::int32_t, std::int64_t> positions_;
  std::vector<partition_offset> committed_;
  std::map<std::pair<std::string, std::int32_t>, std::optional<std::int64_t>> last_seen_high_;  // under b_.mu_
  std::int64_t last_answer_us_ = -1;
};

namespace {

class fake_producer final : public producer {
 public:
  fake_producer(fake_broker& b, delivery_callback cb) : b_(b), cb_(std::move(cb)) {}

  std::error_code produce(const std::string& topic, std::optional<std::string_view> key,
                          std::optional<std::string_view> value, const std::vector<header>& headers,
                          std::int64_t timestamp_ms, std::uint64_t token) override {
    if (!b_.has_topic(topic)) return make_error(kErrUnknownTopic);
    message m;
    m.topic = topic;
    if (key) m.key.emplace(*key);
    if (value) m.value.emplace(*value);
    m.headers = headers;
    m.timestamp_ms = timestamp_ms;
    std::lock_guard lock(mu_);
    queue_.emplace_back(std::move(m), token);
    return {};
  }
  void poll(std::chrono::milliseconds) override { deliver(); }
  std::error_code flush(std::chrono::milliseconds) override {
    deliver();
    std::lock_guard lock(mu_);
    return queue_.empty() ? std::error_code() : make_error(kErrTimedOut);
  }
  std::error_code fatal_error() override { return {}; }

 private:
  void deliver() {
    if (b_.down()) return;
    std::deque<std::pair<message, std::uint64_t>> q;
    {
      std::lock_guard lock(mu_);
      q.swap(queue_);
    }
    for (auto& [m, token] : q) {
      delivery d;
      d.token = token;
      if (b_.fail_deliveries()) {
        d.error = make_error(kErrMsgTimedOut);
      } else {
        d.offset = b_.append(m);
      }
      cb_(d);
    }
  }

  fake_broker& b_;
  delivery_callback cb_;
  std::mutex mu_;
  std::deque<std::pair<message, std::uint64_t>> queue_;
};

class fake_admin final : public admin {
 public:
  explicit fake_admin(fake_broker& b) : b_(b) {}
  std::error_code ensure_topic(const std::string& topic, int partitions,
                               const std::vector<std::pair<std::string, std::string>>&, std::chrono::milliseconds,
                               std::string&) override {
    b_.create_topic(topic, partitions);
    return {};
  }
  std::error_code add_partitions(const std::string& topic, int total, std::chrono::milliseconds,
                                 std::string&) override {
    return b_.add_partitions(topic, total) ? std::error_code() : make_error(kErrUnknownTopic);
  }

 private:
  fake_broker& b_;
};

class fake_factory final : public client_factory {
 public:
  explicit fake_factory(fake_broker& b) : b_(b) {}
  std::unique_ptr<consumer> make_consumer(const std::string&, std::string&) override {
    return std::make_unique<fake_consumer>(b_);
  }
  std::unique_ptr<producer> make_producer(bool, delivery_callback cb, std::string&) override {
    return std::make_unique<fake_producer>(b_, std::move(cb));
  }
  std::unique_ptr<admin> make_admin(std::string&) override { return std::make_unique<fake_admin>(b_); }

 private:
  fake_broker& b_;
};

}  // namespace

std::unique_ptr<client_factory> fake_broker::factory() {
  return std::make_unique<fake_factory>(*this);
}

}  // namespace datashare::sidecar::kafka
