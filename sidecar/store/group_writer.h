#pragma once
// Group commit over a store::kv, without a thread waiting per write: write() queues a batch and
// returns at once; one writer thread of its own takes everything queued, applies it as one
// batch with sync (one fsync for the whole group) and then runs each batch's callback. The
// participant answers its prepares this way on the HTTP I/O threads: the answer goes out from
// the callback once the record is on stable storage.
//
// Batches are applied in the order write() queued them; each stays atomic (a group is one
// atomic batch). A failed group fails every callback in it. A batch written with sync=false
// (a record whose loss a restart tolerates, queued here only to keep its place behind the
// records before it) rides in whatever group comes next: that group is synced only when one of
// its batches asks for it, so such a batch never costs an fsync of its own.
//
// Threading: write() from any thread; callbacks on the writer thread (they must not wait for
// another write of this writer). The destructor writes what is queued, then joins.

#include <condition_variable>
#include <functional>
#include <mutex>
#include <system_error>
#include <thread>
#include <vector>

#include "sidecar/store/kv.h"

namespace datashare::sidecar::store {

class group_writer {
 public:
  using callback = std::function<void(std::error_code)>;

  explicit group_writer(kv& store);
  ~group_writer();
  group_writer(const group_writer&) = delete;
  group_writer& operator=(const group_writer&) = delete;

  void write(write_batch batch, callback done, bool sync = true);
  std::uint64_t groups() const;  // sync writes made so far (tests)

 private:
  struct queued {
    write_batch batch;
    callback done;
    bool sync = true;
  };
  void loop();

  kv& store_;
  mutable std::mutex mu_;
  std::condition_variable cv_;
  std::vector<queued> queue_;
  std::uint64_t groups_ = 0;
  bool stopping_ = false;
  std::thread writer_;
};

}  // namespace datashare::sidecar::store
