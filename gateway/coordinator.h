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
// Threading: nothing blocks per transaction. update_async() runs on the caller's thread until
// the `begin` record is queued; the prepares go out when the log's writer has written it, on the
// participant links' own threads (http_link: the gateway's I/O threads, over pooled keep-alive
// connections), all at once; the last vote decides, the `commit` record's group commit (fsync)
// sends the commits, and the last acknowledgement answers through the callback. update() is the
// blocking form (tests, tools). outcome() from any thread; one retry thread of its own.
//
// Lifetime: every asynchronous step (a log append with a callback, a participant call) is
// counted from the moment it is started until its callback has returned; a callback that starts
// the next step counts it before its own ends, so the count is zero only when no callback can
// run any more. stop() refuses new transactions, joins the retry thread and waits for the count
// to reach zero: the answer to the client is not the end of a transaction (the key is released,
// `end` queued and the round's loop left after it). The links' threads and the log must keep
// running until stop() returned; the destructor calls it.

#include <prometheus/counter.h>
#include <prometheus/gauge.h>
#include <prometheus/histogram.h>
#include <prometheus/registry.h>

#include <atomic>
#include <boost/asio/io_context.hpp>
#include <chrono>
#include <condition_variable>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <random>
#include <string>
#include <thread>
#include <unordered_map>
#include <unordered_set>
#include <vector>

#include "gateway/config.h"
#include "gateway/decision_log.h"
#include "sidecar/http/async_client.h"

namespace datashare::gateway {

struct link_reply {
  bool answered = false;  // false: no answer (refused, reset, timeout)
  bool timed_out = false;
  unsigned status = 0;
  std::string body;
  std::string error;  // when not answered
};

// The seam to one participant: POST /v1/tx/<id>/<op> with `body`, answered before `deadline`.
// call() blocks; call_async() answers through `done`, once, from any thread (by default it runs
// call() on the calling thread: in-process links in tests).
class participant_link {
 public:
  using callback = std::function<void(link_reply)>;
  virtual ~participant_link() = default;
  virtual link_reply call(const std::string& op, const std::string& tx, const std::string& body,
                          std::chrono::steady_clock::time_point deadline) = 0;
  // By value: the HTTP link moves both into its request; this synchronous default only reads them.
  // NOLINTBEGIN(performance-unnecessary-value-param)
  virtual void call_async(const std::string& op, const std::string& tx, std::string body,
                          std::chrono::steady_clock::time_point deadline, callback done) {
    done(call(op, tx, body, deadline));
  }
  // NOLINTEND(performance-unnecessary-value-param)

  // Thread affinity, for links that run their calls on threads of their own (http_link): the
  // lane of the calling thread (npos when it is none of them), and call_async() made to run on
  // a given lane, where the transaction's other calls and its client's answer run (by default,
  // and for a lane the link does not have, call_async() as it is).
  static constexpr std::size_t npos = static_cast<std::size_t>(-1);
  virtual std::size_t lane_here() const { return npos; }
  // NOLINTBEGIN(performance-unnecessary-value-param)
  virtual void call_async_on(std::size_t lane, const std::string& op, const std::string& tx, std::string body,
                             std::chrono::steady_clock::time_point deadline, callback done) {
    (void)lane;
    call_async(op, tx, std::move(body), deadline, std::move(done));
  }
  // NOLINTEND(performance-unnecessary-value-param)
};

// Over HTTP, on the gateway's I/O threads, without blocking any of them: one lane per I/O
// thread's io_context, each a client with its pool of keep-alive connections. A call made on an
// I/O thread (the prepares, sent from the thread that read the request) stays on it, with no
// hand-off between threads; a transaction's commits and aborts (from the log's writer) go to the
// lane its prepares took (call_async_on); any other call from elsewhere takes the lanes in turn.
//
// Natural batching: a lane sends a call at once while fewer than `max_in_flight` requests of
// its own are outstanding; calls made meanwhile queue, and when a request is answered, all the
// queued ones (up to protocol.h's kMaxBatch) go as one `POST /v1/batch`, answered with one reply
// per message. So at low load every call goes alone and at once, on its own endpoint, and under
// load one exchange (and one wake-up at each end) serves many transactions. A participant that
// answers the batch with 404 or 405 (an older release) gets single calls from then on.
class http_link : public participant_link {
 public:
  // `messages` (optional): observes the number of messages of each request sent.
  http_link(const std::vector<boost::asio::io_context*>& contexts, const sidecar::http::origin& where,
            std::size_t max_in_flight = 1, prometheus::Histogram* messages = nullptr);
  // Must not run on the I/O threads (it waits for them).
  link_reply call(const std::string& op, const std::string& tx, const std::string& body,
                  std::chrono::steady_clock::time_point deadline) override;
  void call_async(const std::string& op, const std::string& tx, std::string body,
                  std::chrono::steady_clock::time_point deadline, callback done) override;
  std::size_t lane_here() const override;
  void call_async_on(std::size_t lane_index, const std::string& op, const std::string& tx, std::string body,
                     std::chrono::steady_clock::time_point deadline, callback done) override;

 private:
  struct queued {
    std::string op;
    std::string tx;
    std::string body;
    std::chrono::steady_clock::time_point deadline;
    callback done;
  };
  struct lane {
    std::unique_ptr<sidecar::http::async_client> client;
    std::mutex mu;  // guards the two below
    std::size_t in_flight = 0;
    std::vector<queued> waiting;
  };
  lane& pick(std::size_t hint = npos);
  void send_one(lane& l, queued q, bool counted);
  void send_batch(lane& l, std::vector<queued> batch);
  // A request of `l` was answered: sends what queued meanwhile, or frees its slot.
  void next(lane& l);
  std::string describe(const std::string& what) const;
  std::vector<std::unique_ptr<lane>> lanes_;
  std::size_t max_in_flight_;
  prometheus::Histogram* messages_;
  std::atomic<bool> batches_{true};  // false once the participant refused POST /v1/batch
  std::atomic<std::size_t> next_{0};
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
  // outcome="in_doubt": the commit record could not be made durable; the restart decides.
  prometheus::Counter& in_doubt_outcome;
  prometheus::Histogram& duration;
  prometheus::Gauge& in_doubt;
  // Messages per request to a participant (1: a single call; more: a POST /v1/batch).
  prometheus::Histogram& call_messages;
  // Where a committed transaction's time goes, one observation per phase
  // (datashare_gateway_phase_seconds{phase}): begin (the request to its `begin` record written),
  // prepare (the prepares sent to the last vote in), decision (the `commit` record queued to its
  // group commit's callback: the wait for the writer plus the fdatasync), commit (the commits
  // sent to the last acknowledgement).
  prometheus::Family<prometheus::Histogram>& phases;
  prometheus::Histogram& phase_begin;
  prometheus::Histogram& phase_prepare;
  prometheus::Histogram& phase_decision;
  prometheus::Histogram& phase_commit;
  // The decision log's fdatasync of appended records, and the commit records each made durable.
  prometheus::Histogram& log_sync;
  prometheus::Histogram& log_sync_commits;
  std::map<std::string, prometheus::Counter*> participant_errors;
  // A call's time from being made to its answer, per participant: prepare, and commit or abort
  // (datashare_gateway_participant_call_seconds{participant,op}); includes the wait behind the
  // lane's request in flight.
  std::map<std::string, prometheus::Histogram*> participant_prepare;
  std::map<std::string, prometheus::Histogram*> participant_finish;
};

// nth counts what the point follows, in this run: yes votes (after-prepare), decisions
// (after-decision) or commit acknowledgements (during-commit), of transactions begun in this run.
// `first`: the participant (index in the config) the one-by-one phase starts with, the others
// following in turn, so a test can leave any one of them alone prepared or committed.
struct crash_point {
  enum class where { none, after_prepare, after_decision, during_commit } at = where::none;
  int nth = 1;
  std::size_t first = 0;
};
// "after-prepare", "after-decision:3", "during-commit:2:1" (<point>[:nth[:first]],
// DATASHARE_GATEWAY_CRASH_AT); nullopt when malformed.
std::optional<crash_point> parse_crash_point(std::string_view text);

struct coordinator_options {
  crash_point crash;
  std::chrono::milliseconds retry_backoff{500};
  std::chrono::milliseconds commit_call_timeout{5000};
  // How long outcome() still answers "committed" for a transaction every participant has
  // acknowledged (it is forgotten then: bounded memory). One some participant has not
  // acknowledged is never forgotten: it stays in the retry queue and in the log until it is.
  std::chrono::minutes remember_committed{10};
  // And at most this many of them (the oldest forgotten first): about 64 bytes each, so ~64 MB at
  // the bound, reached at ~1,700 tx/s over remember_committed. Forgetting one early is safe (every
  // participant acknowledged its commit from stable storage: none holds it prepared, none asks);
  // the bound only keeps a burst from taking the memory.
  std::size_t remember_committed_max = 1'000'000;
  std::function<std::chrono::steady_clock::time_point()> now;  // tests: a manual clock for the above
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
  // Healthy while the decision log works. A failed log decides nothing more, and a transaction
  // whose commit record it failed on stays in doubt until a restart reads the disk: /healthz
  // fails so that the gateway is restarted.
  std::error_code log_failure() const { return log_.failed(); }

  // `body`: the JSON entity for PUT; nullopt for DELETE. `done` runs once with the answer: on
  // the calling thread for a bad request or a conflict, else on a link's or the log's thread.
  using update_callback = std::function<void(update_result)>;
  void update_async(const std::string& key, const std::optional<std::string>& body, update_callback done);
  // The same, blocking (not on a link's thread).
  update_result update(const std::string& key, const std::optional<std::string>& body);
  // Refuses new transactions (503), stops the retry thread and waits until no step of any
  // transaction is outstanding (every call has a deadline, so this ends while the links' I/O
  // threads and the log run: call it before stopping them). The destructor calls it.
  void stop();
  // The participants' question (cooperative termination): "committed" once the commit record is
  // on disk and until every participant acknowledged the commit (and remember_committed after);
  // "pending" while preparing or while the commit record is being written; "aborted" otherwise.
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
    bool decided = false;             // committing, and the `commit` record is on disk (outcome() says committed)
    std::vector<std::uint8_t> acked;  // commit/abort acknowledged, per participant (not vector<bool>: set in parallel)
    std::chrono::steady_clock::time_point next_try;
    bool live = false;  // begun by update_async in this run (not recovered): crash points count these
    // In flight (update_async): set before the first call, read by the last callback.
    std::chrono::steady_clock::time_point started;
    // The end of the previous phase (metrics: each phase's own duration).
    std::chrono::steady_clock::time_point phase_started;
    // The link lane (I/O thread) that read the request, where its prepares went: its commits or
    // aborts go there too, so the last acknowledgement answers the client on the connection's
    // own thread instead of posting the answer to it (participant_link::npos: any lane).
    std::size_t home = participant_link::npos;
    std::vector<link_reply> votes;
    update_callback done;
  };
  // One round of calls to the participants (all at once, or one after the other when a crash
  // point is armed); on_done runs after the last reply, on its thread.
  struct round {
    std::string op;
    std::chrono::steady_clock::time_point deadline;
    bool one_by_one = false;
    std::size_t first = 0;                         // one by one: the participant asked first, the others in turn
    std::function<std::string(std::size_t)> body;  // per participant
    std::function<void(std::size_t, link_reply)> on_reply;
    std::function<void()> on_done;
    std::atomic<std::size_t> left{0};
  };

  std::string check(const std::string& key, const std::optional<std::string>& body, std::string& value) const;
  std::string new_tx_id();
  std::uint64_t next_version();
  log_record record_of(const tx& t, char type) const;
  std::string prepare_body(const tx& t) const;
  void send(const std::shared_ptr<tx>& t, const std::shared_ptr<round>& r, std::size_t i);
  void start_round(const std::shared_ptr<tx>& t, const std::shared_ptr<round>& r);
  void prepared(const std::shared_ptr<tx>& t);  // every vote is in: decide
  // Sends commit (or abort) to every participant not yet acknowledged; `done(true)` when all have.
  void finish_async(const std::shared_ptr<tx>& t, std::function<void(bool)> done);
  bool finish(const std::shared_ptr<tx>& t);  // blocking (retry thread, recovery)
  // After finish: releases the key or queues the retry; then answers.
  void conclude(const std::shared_ptr<tx>& t, bool all_acked, update_result result);
  void conclude_answer(const std::shared_ptr<tx>& t, update_result result);
  void release(const tx& t);
  void retry_loop();
  void maybe_crash(crash_point::where w);
  // The count of outstanding steps (see Lifetime above). begin_first_step() (update_async) is
  // false once stop() began; step_begun() runs inside a counted step, or on the retry thread or
  // in recover(), both over before stop() waits, so it never raises a count stop() saw at zero;
  // step_done() is the last thing a step's callback does (a step_end at the top of its body).
  bool begin_first_step();
  void step_begun();
  void step_done();
  struct step_end {
    coordinator* c;
    ~step_end() { c->step_done(); }
  };

  gateway_config config_;
  std::vector<std::unique_ptr<participant_link>> links_;
  decision_log& log_;
  gateway_metrics& metrics_;
  coordinator_options options_;
  std::string product_body_;

  mutable std::mutex mu_;                              // guards the maps below
  std::unordered_map<std::string, std::string> keys_;  // key → transaction holding it
  std::map<std::string, std::shared_ptr<tx>> active_;  // begun, not ended
  std::deque<std::shared_ptr<tx>> retry_;              // decided, some participant not acknowledged
  std::size_t unlogged_commits_ = 0;                   // commit record not made durable: undecided until the restart
  // Recently ended committed transactions, by id as its 128 bits (new_tx_id's 32 hex digits):
  // a node of 24 bytes and a deque slot of 24, instead of the two strings, a map node and its
  // time point (~250 bytes) they took until 2026-12-04 (docs/benchmarks.md, P5 memory).
  struct tx_bits {
    std::uint64_t hi = 0, lo = 0;
    bool operator==(const tx_bits&) const = default;
  };
  struct tx_bits_hash {
    std::size_t operator()(const tx_bits& b) const {
      return static_cast<std::size_t>(b.hi ^ (b.lo * 0x9e3779b97f4a7c15ULL));
    }
  };
  static std::optional<tx_bits> bits_of(std::string_view id);
  std::unordered_set<tx_bits, tx_bits_hash> committed_;
  std::deque<std::pair<std::chrono::steady_clock::time_point, tx_bits>> committed_order_;
  std::mt19937_64 rng_;
  std::atomic<std::uint64_t> last_version_{0};
  std::atomic<int> crash_count_{0};
  std::atomic<bool> ready_{false};

  std::mutex steps_mu_;  // guards the two below; the last thing a step touches
  std::condition_variable steps_cv_;
  std::size_t steps_ = 0;  // outstanding asynchronous steps
  bool closed_ = false;    // stop() began: no new transaction

  std::mutex stop_mu_;
  std::condition_variable stop_cv_;
  bool stopping_ = false;
  std::thread retry_thread_;
};

}  // namespace datashare::gateway
