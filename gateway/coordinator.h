#pragma once
// The gateway coordinator: all-or-nothing updates of one product's owner and copies by two-phase
// commit with presumed abort (issue 6, DESIGN.md §4).
//
// update(key, body): checks the change (400 with the reason, nothing locked), takes the key (409
// when another transaction holds it), logs `begin`, prepares every participant at once within
// transaction.timeout. All yes: logs `commit` (fsync, group commit), then commits everywhere and
// answers 200 with the new version. Any no, error or timeout: aborts everywhere and answers 409
// (a participant's key is held by another transaction), 504 (timeout) or 503, naming the
// participant. A participant that cannot be reached for a commit or abort keeps its transaction
// in a retry queue (the key stays taken) until it answers; `end` is logged then.
//
// recover(records): after a restart, every logged commit without end is driven to commit again,
// every begin without commit is aborted; the coordinator is ready once that is done (commits
// that cannot be delivered yet stay in the retry queue). outcome(tx) answers the participants'
// cooperative termination: committed, pending (in flight), or aborted (everything else).
//
// Crash points for tests (DATASHARE_GATEWAY_CRASH_AT, see README): the process kills itself with
// SIGKILL at the n-th transaction reaching the point; the phase it interrupts then calls the
// participants one by one (first participant first), so the state left behind is exact.
//
// Threading: update() and outcome() from any thread (update blocks: run it on a pool); one retry
// thread of its own; the fan-out pool runs the calls to several participants at once.

#include <prometheus/counter.h>
#include <prometheus/gauge.h>
#include <prometheus/histogram.h>
#include <prometheus/registry.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <deque>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <random>
#include <string>
#include <thread>
#include <unordered_map>
#include <vector>

#include "common/thread_pool.h"
#include "gateway/config.h"
#include "gateway/decision_log.h"
#include "sidecar/http/client.h"

namespace datashare::gateway {

struct link_reply {
  bool answered = false;  // false: no answer (refused, reset, timeout)
  bool timed_out = false;
  unsigned status = 0;
  std::string body;
  std::string error;  // when not answered
};

// The seam to one participant: POST /v1/tx/<id>/<op> with `body`, answered before `deadline`.
class participant_link {
 public:
  virtual ~participant_link() = default;
  virtual link_reply call(const std::string& op, const std::string& tx, const std::string& body,
                          std::chrono::steady_clock::time_point deadline) = 0;
};

class http_link : public participant_link {
 public:
  explicit http_link(sidecar::http::origin where) : client_(std::move(where)) {}
  link_reply call(const std::string& op, const std::string& tx, const std::string& body,
                  std::chrono::steady_clock::time_point deadline) override;

 private:
  sidecar::http::client client_;
};

struct gateway_metrics {
  explicit gateway_metrics(const std::vector<participant_spec>& participants);
  std::string serialize() const;

  std::shared_ptr<prometheus::Registry> registry;
  prometheus::Family<prometheus::Counter>& transactions;
  prometheus::Counter& committed;
  prometheus::Counter& aborted;
  prometheus::Counter& conflict;
  prometheus::Counter& invalid;
  prometheus::Counter& timeout;
  prometheus::Histogram& duration;
  prometheus::Gauge& in_doubt;
  std::map<std::string, prometheus::Counter*> participant_errors;
};

struct crash_point {
  enum class where { none, after_prepare, after_decision, during_commit } at = where::none;
  int nth = 1;
};
// "after-prepare", "after-decision:3", "during-commit" (DATASHARE_GATEWAY_CRASH_AT); nullopt
// when malformed.
std::optional<crash_point> parse_crash_point(std::string_view text);

struct coordinator_options {
  crash_point crash;
  std::chrono::milliseconds retry_backoff{500};
  std::chrono::milliseconds commit_call_timeout{5000};
  std::chrono::minutes remember_committed{10};  // for outcome() queries of finished transactions
};

struct update_result {
  unsigned status = 200;
  std::string body;  // JSON
  std::uint64_t version = 0;
};

class coordinator {
 public:
  coordinator(gateway_config config, std::vector<std::unique_ptr<participant_link>> links, decision_log& log,
              gateway_metrics& metrics, coordinator_options options = {});
  ~coordinator();
  coordinator(const coordinator&) = delete;
  coordinator& operator=(const coordinator&) = delete;

  // Finishes what the log holds, compacts it, starts the retry thread; ready() afterwards.
  void recover(const std::vector<log_record>& records);
  bool ready() const { return ready_.load(); }

  // `body`: the JSON entity for PUT; nullopt for DELETE. Blocking.
  update_result update(const std::string& key, const std::optional<std::string>& body);
  std::string outcome(const std::string& tx) const;
  std::size_t in_doubt() const;

 private:
  enum class phase { preparing, committing, aborting };
  struct tx {
    std::string id;
    std::string key;
    bool deleted = false;
    std::uint64_t version = 0;
    std::string value;
    phase state = phase::preparing;
    std::vector<std::uint8_t> acked;  // commit/abort acknowledged, per participant (not vector<bool>: set in parallel)
    std::chrono::steady_clock::time_point next_try;
  };

  std::string check(const std::string& key, const std::optional<std::string>& body, std::string& value) const;
  std::string new_tx_id();
  std::uint64_t next_version();
  log_record record_of(const tx& t, char type) const;
  std::string prepare_body(const tx& t) const;
  // Sends commit (or abort) to every participant not yet acknowledged; true when all have.
  bool finish(tx& t);
  void release(const tx& t);
  void retry_loop();
  void maybe_crash(crash_point::where w);

  gateway_config config_;
  std::vector<std::unique_ptr<participant_link>> links_;
  decision_log& log_;
  gateway_metrics& metrics_;
  coordinator_options options_;
  thread_pool fan_out_;
  std::string product_body_;

  mutable std::mutex mu_;                              // guards the maps below
  std::unordered_map<std::string, std::string> keys_;  // key → transaction holding it
  std::map<std::string, std::shared_ptr<tx>> active_;  // begun, not ended
  std::deque<std::shared_ptr<tx>> retry_;              // decided, some participant not acknowledged
  std::unordered_map<std::string, std::chrono::steady_clock::time_point> committed_;  // recently ended
  std::deque<std::pair<std::chrono::steady_clock::time_point, std::string>> committed_order_;
  std::mt19937_64 rng_;
  std::atomic<std::uint64_t> last_version_{0};
  std::atomic<int> crash_count_{0};
  std::atomic<bool> ready_{false};

  std::mutex stop_mu_;
  std::condition_variable stop_cv_;
  bool stopping_ = false;
  std::thread retry_thread_;
};

}  // namespace datashare::gateway
