#pragma once
// One participate[] entry of the sidecar: the participant side of the gateway's two-phase commit
// for one product (protocol.h has the wire contract).
//
// Role owner: prepare reads the owner's current value (kept for compensation), records the
// transaction as `preparing` with both values (fsync), applies the change through the owner's
// writePath and records it `prepared` (no fsync: the durable `preparing` record is enough) before
// voting yes. Abort puts the previous value back (or deletes the key it did not have). Commit
// publishes the committed value through the product's publisher with the transaction's version,
// while its `committed` record is written (both durable before it answers; the record says
// `published` false until the outbox has it, and one found so is published again).
// Role copy: prepare stages the value projected to the policy's fields in the transaction record
// (fsync); commit writes it to the copy, in the replica's layout, in the same batch as the
// `committed` record. Readers of the copy read data records only, so they never see a staged value.
// Both roles acknowledge a commit only once the `committed` record is fsync'd (group commit): the
// coordinator forgets a transaction every participant acknowledged, so an acknowledged commit
// whose record a machine crash took would come back `prepared` and be told "aborted".
//
// Both roles lock the key from prepare to commit/abort: a prepare of another transaction on a
// locked key votes no (409). A transaction prepared for longer than lockTimeout asks the
// coordinator for the outcome, then its peers (cooperative termination), until one knows; a
// `preparing` owner transaction found at start asks the same way at once (it may have voted yes
// before a crash of the machine took its `prepared` record): aborted compensates the owner,
// committed applies the change to the owner again before publishing. One that voted no in this
// run and could not compensate keeps compensating without asking. Finished records are kept for
// `retention` so repeated calls get the same answer, then dropped through a time index kept beside
// them in the store (nothing per record in memory).
//
// Threading: prepare/commit/abort/query from any thread. prepare_async and abort_async never
// block: an owner's prepare is a chain of callbacks (the owner's GET, the `preparing` record
// through the group writer, the PUT, on the I/O threads and the writer's), and so is an owner's
// abort (the compensating PUT or DELETE). Calls on one transaction are serialized: while such a
// chain holds it, the calls that arrive for it wait in a queue of its own and run, in order, once
// it ends (so a repeated call gets the answer the first one left); calls on different keys run
// in parallel. The blocking forms (prepare, commit, abort, query) wait for their answer. One
// background thread (start() to stop()) resolves overdue transactions and drops old records.
// Owns its store.

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <set>
#include <string>
#include <system_error>
#include <thread>
#include <vector>

#include "sidecar/config/config.h"
#include "sidecar/participant/protocol.h"
#include "sidecar/store/group_writer.h"
#include "sidecar/store/kv.h"

namespace datashare::sidecar::participant {

enum class tx_state { preparing, prepared, committed, aborted };
std::string_view to_string(tx_state s);

// What a transaction record holds ("t" <id> in the participant's store; binary, format 1, see
// encode_record in participant.cc; the JSON records of earlier releases are read too).
struct tx_record {
  tx_state state = tx_state::preparing;
  std::string key;
  bool deleted = false;
  std::uint64_t version = 0;
  std::string value;  // staged JSON (copy: projected to the policy's fields)
  bool had_previous = false;
  std::string previous;  // owner: the owner's value before the change
  std::vector<std::string> peers;
  std::int64_t since_us = 0;  // wall time of the last change of state
  // Owner, committed: the value is in the publisher's outbox. The `committed` record is synced
  // while the outbox writes it (both fsyncs at once); one found without the mark at start, or
  // after a refused publish, is published again (same version) before the commit is acknowledged.
  bool published = true;
};

std::string encode_record(const tx_record& r);
std::optional<tx_record> decode_record(std::string_view bytes);

// The owner's HTTP API as the owner role uses it (writePath with the key in place).
class owner_api {
 public:
  virtual ~owner_api() = default;
  // found=false for a 404; an error for anything but 200/404 or no answer.
  virtual std::error_code get(const std::string& key, bool& found, std::string& value, std::string& error) = 0;
  virtual std::error_code put(const std::string& key, const std::string& value, std::string& error) = 0;
  virtual std::error_code del(const std::string& key, std::string& error) = 0;  // 404 counts as done

  // The same calls without a thread waiting: `done` runs once, with what the blocking form would
  // have returned (found and value: GET only), on an HTTP I/O thread (the caller's, when it is
  // one) or inside the call. The defaults run the blocking form inside the call (fakes).
  using callback = std::function<void(std::error_code ec, bool found, std::string value, std::string error)>;
  virtual void get_async(const std::string& key, callback done);
  virtual void put_async(const std::string& key, const std::string& value, callback done);
  virtual void del_async(const std::string& key, callback done);
};

// Where an overdue transaction learns its outcome.
class outcome_api {
 public:
  virtual ~outcome_api() = default;
  // "committed" | "aborted" | "pending", or "" when the coordinator cannot be reached.
  virtual std::string ask_coordinator(const std::string& tx) = 0;
  // "prepared" | "committed" | "aborted" | "unknown" (the peer holds no record and cannot tell
  // whether it dropped one), or "" when the peer cannot be reached. `version`: the transaction's.
  virtual std::string ask_peer(const std::string& url, const std::string& product, const std::string& tx,
                               std::uint64_t version) = 0;
};

// Owner role: publishes the committed value (nullopt: deleted) with `version`; `done` runs once,
// from any thread (the publisher's) or inside the call, when it is durable in the outbox (no
// error) or refused (an error with a message). It must not wait for the participant. `with`:
// writes to the participant's store that go in the same atomic, fsync'd batch as the outbox entry
// (only given when the participant's store is the outbox's: participant_options::records_in_outbox);
// refused, neither is written.
using publish_callback = std::function<void(std::error_code, std::string error)>;
using publish_fn = std::function<void(const std::string& key, const std::optional<std::string>& value,
                                      std::uint64_t version, store::write_batch with, publish_callback done)>;

struct reply {
  unsigned status = 200;
  std::string body;  // JSON
};

struct participant_options {
  std::chrono::milliseconds retention{5 * 60 * 1000};  // finished records kept for repeated calls
  std::chrono::milliseconds tick{100};                 // how often overdue transactions are looked at
  std::chrono::milliseconds ask_backoff{1000};         // between two rounds of asking for one transaction
  // false: start() starts no background thread; the caller runs resolve_overdue() (tests that
  // look at the records a start found before anything resolves them).
  bool background = true;
  // Owner role: the participant's store is the publisher's outbox store (one RocksDB), so a
  // commit's `committed` record goes with its outbox entry, in the publisher's fsync'd batch
  // (publish_fn's `with`), instead of through the participant's group writer.
  bool records_in_outbox = false;
  // Where the records are written (group commit: a batch queued, its callback run once written,
  // synced when asked, in the order queued). Empty: a store::group_writer of the participant's
  // own. The owner's sidecar gives it the publisher's writer (publisher::write), so the owner's
  // records, commits and outbox entries share one thread, one queue and one fsync per group.
  std::function<void(store::write_batch, std::function<void(std::error_code)> done, bool sync)> writer;
  // Owner role: the version a key was last published with (publisher::version_floor). A prepare
  // whose version is below it votes no (409): the outbox would refuse its publish at commit,
  // after the copies had committed. Empty: not checked.
  std::function<std::uint64_t(const std::string& key)> version_floor;
};

class participant {
 public:
  // Owner role: `owner` and `publish` set. Copy role: `copy_fields` (the policy's fields).
  participant(config::participate_spec spec, config::product_schema product, std::vector<std::string> copy_fields,
              std::unique_ptr<store::kv> kv, std::unique_ptr<owner_api> owner, publish_fn publish,
              std::unique_ptr<outcome_api> outcomes, participant_options options = {});
  ~participant();
  participant(const participant&) = delete;
  participant& operator=(const participant&) = delete;

  // Reads the records left by a previous run (prepared keys are locked again, half-prepared owner
  // changes compensated) and starts the background thread.
  std::error_code start(std::string& error);
  void stop();

  // Answers through `done`, once: at once for a no vote, else once the `prepared` record is on
  // stable storage (group commit with the other prepares: store::group_writer), on the writer's
  // thread. A copy's prepare never blocks, so it runs on the HTTP I/O thread; an owner's blocks
  // on the owner's API before it hands its record over.
  void prepare_async(const std::string& tx, const prepare_request& req, std::function<void(reply)> done);
  reply prepare(const std::string& tx, const prepare_request& req);  // blocking form
  // Answers through `done`, once: an acknowledgement (200) only once the `committed` record is
  // on stable storage (group commit through the same writer as the prepares), on the writer's
  // thread; a refusal at once. The coordinator forgets a transaction once every participant has
  // acknowledged its commit, so an acknowledged commit must survive a crash of the machine. A
  // copy's commit never blocks (I/O thread); an owner's blocks on the publisher first.
  void commit_async(const std::string& tx, std::function<void(reply)> done);
  reply commit(const std::string& tx);  // blocking form
  // Answers through `done`, once. An owner's compensation (the previous value put back) runs
  // asynchronously through owner_api's async calls; the `aborted` record is not synced.
  void abort_async(const std::string& tx, std::function<void(reply)> done);
  reply abort(const std::string& tx);  // blocking form
  // A peer's question. A transaction without a record here is aborted on the spot (it can no
  // longer vote yes), but only while `version` (the coordinator's wall-time µs) is recent enough
  // that no record of it can have been dropped yet (half the retention: the rest covers clocks
  // apart); otherwise, and without a version, "unknown": this participant may have committed it
  // and dropped the record, and an abort answered then would undo a committed transaction at
  // the asking peer.
  reply query(const std::string& tx, std::uint64_t version);

  // One round of the background work (overdue transactions, old records); start() runs it
  // every tick, tests call it directly.
  void resolve_overdue();

  const config::participate_spec& spec() const { return spec_; }
  const store::kv& store() const { return *kv_; }  // copy role: the copy, in the replica's layout
  std::size_t locked_keys() const;
  // The transaction holding `key` (from its prepare to its abort, or to its commit's value in the
  // store: a copy's commit holds it until its group is written), or "".
  std::string holder_of(const std::string& key) const;
  // How long (ms) a transaction has held `key` here, since its prepare (or, found at start, its
  // record's last change); 0 when none does. A copy's reads say it as their staleness: the
  // transaction may have been committed elsewhere since, and this copy not told yet.
  std::int64_t held_ms(const std::string& key) const;
  // How many times a key was freed here (a commit's value in the store, or an abort): a copy's
  // scan that sees it change while it reads may have read a value a commit replaced meanwhile.
  std::uint64_t released() const { return released_.load(std::memory_order_acquire); }

 private:
  struct tx_entry {
    std::mutex mu;  // guards the fields below; a call holds it for its synchronous part
    // An owner's prepare or abort is between its asynchronous steps: calls of this transaction
    // wait in `waiting` (run in order once it ends, by release()).
    bool busy = false;
    std::deque<std::function<void()>> waiting;
    bool loaded = false;           // record read from the store
    std::optional<tx_record> rec;  // nullopt: unknown here
    int writes_queued = 0;         // records handed to the group writer, not written yet
    bool committing = false;       // owner: a commit's publish and record are in flight
  };
  struct overdue {
    std::chrono::steady_clock::time_point next_look;
  };

  std::shared_ptr<tx_entry> entry(const std::string& tx);
  // Runs `fn` with the entry's mutex held once no asynchronous call holds the transaction: at
  // once, or queued behind the one in flight (then from the thread that ends it). `fn` may
  // release the lock (to start an asynchronous call: it sets `busy` first); it must not block
  // on another call of the same transaction.
  void when_free(const std::shared_ptr<tx_entry>& e, std::function<void(std::unique_lock<std::mutex>&)> fn);
  // Ends the asynchronous call holding `e` (busy) and runs the calls that waited for it.
  void release(const std::shared_ptr<tx_entry>& e);
  // With `e->mu` held: `b` goes to the group writer behind the entry's earlier records (synced
  // or not); the entry stays in use until it is written; `then` runs with the result, on the
  // writer's thread, without the entry's mutex.
  void queue_write(const std::shared_ptr<tx_entry>& e, store::write_batch b, bool sync,
                   std::function<void(std::error_code)> then);
  struct owner_prepare;
  void owner_got(const std::shared_ptr<owner_prepare>& c, std::error_code ec, bool found, std::string value,
                 const std::string& error);
  void owner_preparing_written(const std::shared_ptr<owner_prepare>& c, std::error_code ec);
  void owner_applied(const std::shared_ptr<owner_prepare>& c, std::error_code ec, const std::string& error);
  // c's record moves to `state`: current in memory at once, written in the group writer's next
  // group with no fsync of its own.
  void owner_record_unsynced(const std::shared_ptr<owner_prepare>& c, tx_state state,
                             std::function<void(std::error_code)> then);
  void owner_refuse(const std::shared_ptr<owner_prepare>& c, const std::string& why);
  void end_owner_prepare(const std::shared_ptr<owner_prepare>& c, reply r);
  // A no vote of an owner's prepare that wrote no record of its own: the transaction is
  // remembered as aborted (in memory, and an unsynced record, as aborts are), then answered.
  void owner_no_vote(const std::shared_ptr<owner_prepare>& c, reply no);
  void compensate_async(const tx_record& r, std::function<void(std::string failure)> done);
  void write_records(store::write_batch b, std::function<void(std::error_code)> done, bool sync = true);
  void begin_flight();
  void end_flight();
  void load(const std::string& tx, tx_entry& e);
  // With `e` holding records still queued in the group writer, the record goes behind them there
  // (the order on disk is the order of the calls), without waiting.
  std::error_code persist(const std::string& tx, const tx_record& r, bool sync, store::write_batch* batch = nullptr,
                          tx_entry* e = nullptr);
  void finished(const std::string& tx, const tx_record& r);
  bool voted_no(const std::string& tx) const;
  reply vote_no(unsigned status, const std::string& reason);
  // The answer, or nullopt when `done` was taken to answer later.
  // With the entry's mutex held (`lock`), which an owner's prepare releases once it starts its
  // asynchronous chain.
  std::optional<reply> prepare_locked(const std::string& tx, const prepare_request& req, std::string staged,
                                      const std::shared_ptr<tx_entry>& e, std::unique_lock<std::mutex>& lock,
                                      std::function<void(reply)>& done);
  std::string compensate(const tx_record& r);  // owner: "" when the previous value is back
  std::error_code publish_blocking(const tx_record& r, std::string& error);
  // Owner, records_in_outbox (with the publisher's writer, or with nothing of the transaction
  // queued in a group writer of its own): the `committed` record in the publisher's batch with
  // the outbox entry. With the entry's mutex held. Returns the answer when the publisher
  // answered inside the call (`done` left to the caller), else nullopt (`done` taken, answered
  // once both are durable).
  std::optional<reply> commit_owner_with_outbox(const std::string& tx, const std::shared_ptr<tx_entry>& ep, tx_record r,
                                                std::function<void(reply)>& done);
  reply owner_committed_with_outbox(const std::string& tx, tx_entry& e, const tx_record& r, std::error_code ec,
                                    const std::string& error);
  // Owner: the publish and the `committed` record at once; `done` once both are durable.
  void commit_owner_async(const std::string& tx, const std::shared_ptr<tx_entry>& ep, tx_record r,
                          std::function<void(reply)> done);
  // With `done`: the record goes through the group writer and `done` answers once it is
  // durable (nullopt returned, `done` taken), or the refusal is returned. Without (the background
  // thread, which answers no one): written with sync before it returns.
  std::optional<reply> do_commit(const std::string& tx, const std::shared_ptr<tx_entry>& ep,
                                 std::function<void(reply)>* done);
  void add_record(store::write_batch& b, const std::string& tx, const tx_record& r) const;
  reply do_abort(const std::string& tx, tx_entry& e);
  std::string project(const std::string& value) const;

  config::participate_spec spec_;
  config::product_schema product_;
  std::vector<std::string> copy_fields_;
  std::unique_ptr<store::kv> kv_;
  std::unique_ptr<store::group_writer> writer_;  // the prepares' fsyncs, shared (after kv_: goes first)
  std::function<void(store::write_batch, std::function<void(std::error_code)>, bool)> write_;  // writer_'s or options'
  bool writer_drained_ = false;
  std::unique_ptr<owner_api> owner_;
  publish_fn publish_;
  std::unique_ptr<outcome_api> outcomes_;
  participant_options options_;

  mutable std::mutex mu_;                                // guards everything below
  std::map<std::string, std::weak_ptr<tx_entry>> live_;  // entries in use
  std::map<std::string, std::string> locks_;             // key → transaction holding it
  std::map<std::string, std::int64_t> held_since_us_;    // transaction holding a key → since (wall µs)
  std::map<std::string, overdue> open_;                  // prepared (or preparing) transactions
  std::atomic<std::uint64_t> released_{0};               // keys freed (finished() with the key held), see released()
  std::set<std::string> voted_no_;  // owner: voted no in this run, still `preparing` (compensation pending)

  std::mutex stop_mu_;
  std::condition_variable stop_cv_;
  bool stopping_ = false;
  std::thread worker_;

  // Owner commits whose publish or record is in flight, and owner prepares and aborts between
  // their asynchronous steps: stop() waits for them (their callbacks would otherwise run into a
  // participant that is gone).
  std::mutex flight_mu_;
  std::condition_variable flight_cv_;
  int in_flight_ = 0;
};

}  // namespace datashare::sidecar::participant
