#include "sidecar/participant/migrate.h"

#include <fcntl.h>
#include <unistd.h>

#include <filesystem>

#include "sidecar/store/rocksdb_kv.h"

namespace datashare::sidecar::participant {
namespace {

namespace fs = std::filesystem;

// The directory entry changes under `dir` (a rename) on stable storage.
std::error_code sync_dir(const fs::path& dir) {
  int fd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) return {errno, std::generic_category()};
  std::error_code ec;
  if (::fsync(fd) != 0) ec = {errno, std::generic_category()};
  ::close(fd);
  return ec;
}

}  // namespace

std::error_code migrate_store(const std::string& old_dir, store::kv& into, std::string& error, std::size_t* moved,
                              const std::function<void()>& after_copy) {
  if (moved != nullptr) *moved = 0;
  fs::path old_path(old_dir);
  fs::path gone = old_path;
  gone += ".migrated";
  std::error_code ec;
  if (fs::exists(gone, ec)) {
    // Copied and renamed by an earlier start, which stopped while deleting it.
    fs::remove_all(gone, ec);
    if (ec) {
      error = "cannot remove " + gone.string() + ": " + ec.message();
      return ec;
    }
  }
  if (!fs::exists(old_path, ec)) return {};
  {
    store::rocksdb_options o;
    o.memtable_bloom = false;
    auto old = store::open_rocksdb(old_dir, o, error);
    if (!old) return store::make_error_code(store::errc::io_error);
    store::write_batch all;
    std::string from;
    std::vector<store::entry> page;
    for (;;) {
      page.clear();
      if (auto sec = old->scan(from, "", 1000, page)) {
        error = "reading " + old_dir + ": " + sec.message();
        return sec;
      }
      for (const auto& [k, v] : page) all.put(k, v);
      if (page.size() < 1000) break;
      from = page.back().first + '\0';
    }
    if (!all.empty()) {
      if (auto wec = into.write(all, /*sync=*/true)) {
        error = "copying " + old_dir + " into the outbox's store: " + wec.message();
        return wec;
      }
    }
    if (moved != nullptr) *moved = all.size();
  }
  if (after_copy) after_copy();
  fs::rename(old_path, gone, ec);
  if (!ec) ec = sync_dir(old_path.parent_path());
  if (!ec) fs::remove_all(gone, ec);
  if (ec) {
    error = "removing " + old_dir + " after copying it: " + ec.message();
    return ec;
  }
  return {};
}

}  // namespace datashare::sidecar::participant
