#pragma once
// The owner participant's records moved into the outbox's store (2026-12-03, gw10): releases
// before kept them in a RocksDB of their own, `dataDir/participant/<product>`. At start, that
// store (when it is there) is copied into the outbox's store in one fsync'd batch, and then
// removed: renamed to `<dir>.migrated` (the rename made durable), then deleted. A start
// interrupted before the rename copies again (harmless: nothing wrote to the copied records in
// between, the participant had not started); one interrupted after it only deletes the rest.
// The keys of the two stores do not overlap (participant "t", "g"; outbox "e", "m...").

#include <functional>
#include <string>
#include <system_error>

#include "sidecar/store/kv.h"

namespace datashare::sidecar::participant {

// Copies every entry of the store in `old_dir` into `into` (sync), then removes `old_dir`.
// Nothing to do when `old_dir` does not exist. `after_copy` (tests): runs between the copy and
// the removal. `moved`: how many entries were copied.
std::error_code migrate_store(const std::string& old_dir, store::kv& into, std::string& error,
                              std::size_t* moved = nullptr, const std::function<void()>& after_copy = {});

// A store::kv that forwards to another one it does not own (the owner participant's view of
// the outbox's store, which the publisher owns and outlives it).
class borrowed_kv final : public store::kv {
 public:
  explicit borrowed_kv(store::kv& target) : t_(target) {}
  std::error_code get(std::string_view key, std::string& value) const override { return t_.get(key, value); }
  std::error_code write(const store::write_batch& batch, bool sync) override { return t_.write(batch, sync); }
  void multi_get(const std::vector<std::string>& keys, std::vector<std::string>& values,
                 std::vector<std::error_code>& errors) const override {
    t_.multi_get(keys, values, errors);
  }
  std::error_code flush(bool wait) override { return t_.flush(wait); }
  std::string property(const std::string& name) const override { return t_.property(name); }
  std::error_code scan(std::string_view begin, std::string_view end, std::size_t limit,
                       std::vector<store::entry>& out) const override {
    return t_.scan(begin, end, limit, out);
  }

 private:
  store::kv& t_;
};

}  // namespace datashare::sidecar::participant
