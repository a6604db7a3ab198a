#pragma once
// An in-memory store::kv: `store: memory` for tests and tiny datasets, and the unit tests' fake.
// Thread-safe (one shared_mutex: reads in parallel, writes exclusive). Failure injection lets a
// test make the next writes fail, to check that callers neither lose nor half-apply anything.

#include <atomic>
#include <map>
#include <shared_mutex>

#include "sidecar/store/kv.h"

namespace datashare::sidecar::store {

class memory_kv final : public kv {
 public:
  std::error_code get(std::string_view key, std::string& value) const override;
  std::error_code write(const write_batch& batch, bool sync) override;
  std::error_code scan(std::string_view begin, std::string_view end, std::size_t limit,
                       std::vector<entry>& out) const override;

  // The next `n` writes fail with errc::injected_failure and change nothing.
  void fail_next_writes(int n) { failures_.store(n); }
  // The next `n` gets fail with errc::io_error.
  void fail_next_reads(int n) { read_failures_.store(n); }
  std::size_t size() const;
  std::uint64_t writes() const { return writes_.load(); }
  std::uint64_t synced_writes() const { return synced_writes_.load(); }

 private:
  mutable std::shared_mutex mu_;
  std::map<std::string, std::string, std::less<>> data_;
  std::atomic<int> failures_{0};
  mutable std::atomic<int> read_failures_{0};
  std::atomic<std::uint64_t> writes_{0};
  std::atomic<std::uint64_t> synced_writes_{0};
};

}  // namespace datashare::sidecar::store
