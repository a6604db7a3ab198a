#include "sidecar/store/group_writer.h"

namespace datashare::sidecar::store {

group_writer::group_writer(kv& store) : store_(store), writer_([this] { loop(); }) {}

group_writer::~group_writer() {
  {
    std::lock_guard lock(mu_);
    stopping_ = true;
  }
  cv_.notify_all();
  writer_.join();
}

void group_writer::write(write_batch batch, callback done, bool sync) {
  {
    std::lock_guard lock(mu_);
    queue_.push_back({std::move(batch), std::move(done), sync});
  }
  cv_.notify_one();
}

std::uint64_t group_writer::groups() const {
  std::lock_guard lock(mu_);
  return groups_;
}

void group_writer::loop() {
  std::vector<queued> group;
  write_batch merged;
  std::unique_lock lock(mu_);
  for (;;) {
    cv_.wait(lock, [this] { return stopping_ || !queue_.empty(); });
    if (queue_.empty()) return;
    group.swap(queue_);
    bool sync = false;
    for (const auto& q : group) sync = sync || q.sync;
    if (sync) ++groups_;
    lock.unlock();
    merged.clear();
    for (auto& q : group) {
      for (const auto& op : q.batch.ops()) {
        if (op.is_delete) {
          merged.del(op.key);
        } else {
          merged.put(op.key, op.value);
        }
      }
    }
    auto ec = store_.write(merged, sync);
    for (auto& q : group) q.done(ec);
    group.clear();
    lock.lock();
  }
}

}  // namespace datashare::sidecar::store
