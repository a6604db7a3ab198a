#pragma once
// The coordinator's durable decision log: append-only segment files in dataDir, one record per
// protocol step, each framed as [u32 length][u32 CRC-32][JSON] so a torn tail (a crash in the
// middle of a write) is recognized and cut off when the log is read back.
//
//   begin  (B)  before the first prepare: written (page cache) before any prepare is sent, not
//               fsync'd. A kill -9 keeps it; a machine crash may lose it, and then the prepared
//               participants learn "aborted" by asking (presumed abort) — nothing is lost.
//   commit (C)  the decision: fsync'd before any commit is sent. Group commit: every record
//               queued while an fsync runs goes to disk with the next one, so throughput does not
//               collapse under fsync.
//   end    (E)  every participant acknowledged: queued only.
// Aborts are never logged (presumed abort): a begin without a commit is an abort.
//
// Segments are rotated: when the current one passes max_segment_bytes, the writer asks the
// coordinator for the records of every unfinished transaction (snapshot), writes them first into
// a new segment, fsyncs it and deletes the older ones. The snapshot carries the `commit` of a
// transaction whose commit record is queued or written but not yet fsync'd: it may have been
// written into the old segment (by a `begin`'s caller) and would be lost with it. So a commit
// record can reach stable storage through the snapshot even when its own append then fails;
// the coordinator therefore treats a failed commit append as in doubt, never as an abort
// (gateway/README.md).
//
// Threading: append() from any thread. A `written` record (begin) is written by its caller
// (behind whatever was queued before it, under the file's mutex) and its callback runs inside
// the call: it never waits for an fsync in progress. Everything else goes through one writer
// thread of its own, which writes, fsyncs without holding the file, and runs the callbacks of
// the non-blocking synced appends.

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <system_error>
#include <thread>
#include <vector>

namespace datashare::gateway {

struct log_record {
  char type = 'B';  // 'B' begin, 'C' commit, 'E' end
  std::string tx;
  std::string key;
  bool deleted = false;
  std::uint64_t version = 0;
  std::string value;                      // JSON (B, C)
  std::vector<std::string> participants;  // names (B, C)
};

enum class durability {
  queued,   // returns at once (end)
  written,  // returns once write(2) returned: survives kill -9 (begin)
  synced,   // returns once fsync'd (commit)
};

std::uint32_t crc32(std::string_view bytes);
std::string encode_frame(const log_record& r);

struct log_options {
  std::uint64_t max_segment_bytes = 64 << 20;
  bool fsync = true;  // off only in benchmarks that say so
  // Tests: runs on the writer thread before each fsync of appended records (a test holds it to
  // look at what is decided while a commit record is written but not yet on disk).
  std::function<void()> before_sync;
  // Tests: runs on the writer thread instead of each fsync of appended records; an error fails
  // that fsync (and the log) as a failed fdatasync would, after the records were written.
  std::function<std::error_code()> sync_fault;
  // Metrics: runs on the writer thread after each fsync of appended records, with how long the
  // fdatasync took and how many synced appends (commit records) it made durable: the group size.
  std::function<void(std::chrono::steady_clock::duration, std::size_t)> on_sync;
};

class decision_log {
 public:
  using snapshot_fn = std::function<std::vector<log_record>()>;

  // Opens (creating) `dir` and reads every segment in order into `records`; a torn tail is cut
  // off. nullptr with `error` set when the directory or a segment cannot be used.
  static std::unique_ptr<decision_log> open(const std::string& dir, std::vector<log_record>& records,
                                            std::string& error, log_options options = {});
  ~decision_log();
  decision_log(const decision_log&) = delete;
  decision_log& operator=(const decision_log&) = delete;

  // Set once before the first append: the records of every unfinished transaction, for rotation.
  // Called on the writer thread while no record can be written, so it must not append itself.
  void set_snapshot(snapshot_fn fn);

  // Starts a new segment holding `open` (the unfinished transactions after recovery) and deletes
  // the older ones; waits for what is queued to be written first.
  std::error_code compact(const std::vector<log_record>& open);

  std::error_code append(const log_record& r, durability d);

  // Non-blocking: `done` runs once the record is written (durability::written: inside the call,
  // on the caller's thread) or fsync'd (synced: on the writer thread, or inside the call when the
  // log had already failed), with the log's error if it failed. `done` must not call the
  // blocking append() (the writer would wait for itself); queued appends and further non-blocking
  // ones are fine.
  using append_callback = std::function<void(std::error_code)>;
  void append(const log_record& r, durability d, append_callback done);

  std::uint64_t fsyncs() const;
  // The sticky error of a log that could not write or fsync (then it decides nothing more), or
  // none.
  std::error_code failed() const;

 private:
  decision_log(std::string dir, log_options options);
  std::error_code open_segment(std::uint64_t number, const std::vector<log_record>& first, std::string& error);
  void write_loop();
  // With file_mu_ held: writes everything queued, in order.
  std::error_code flush_locked();
  std::error_code append_written(const std::string& frame);

  std::string dir_;
  log_options options_;
  snapshot_fn snapshot_;

  mutable std::mutex mu_;
  std::condition_variable queued_cv_;
  std::condition_variable done_cv_;
  std::string pending_;
  std::uint64_t appended_ = 0;     // records appended
  std::uint64_t sync_wanted_ = 0;  // highest record that asked for fsync
  std::uint64_t written_ = 0;      // records written
  std::uint64_t synced_ = 0;       // records fsync'd
  std::uint64_t fsyncs_ = 0;
  struct waiter {
    std::uint64_t seq;
    bool synced;
    append_callback done;
  };
  std::vector<waiter> waiters_;  // non-blocking appends not yet written/fsync'd, in order
  std::error_code failed_;       // sticky: a log that cannot be written decides nothing more
  bool stopping_ = false;
  bool syncing_ = false;  // the writer is in fdatasync, outside both mutexes

  // Serializes writes to the segment and segment switches; taken before mu_. Guards the four
  // below (the writer reads fd_ under it and syncs that descriptor without it).
  std::mutex file_mu_;
  int fd_ = -1;
  std::uint64_t segment_ = 0;
  std::uint64_t segment_bytes_ = 0;
  std::vector<std::uint64_t> older_;  // segment numbers before the current one
  std::thread writer_;
};

}  // namespace datashare::gateway
