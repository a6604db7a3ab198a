#include "gateway/decision_log.h"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

namespace datashare::gateway {
namespace fs = std::filesystem;

std::uint32_t crc32(std::string_view bytes) {
  static const auto table = [] {
    std::array<std::uint32_t, 256> t{};
    for (std::uint32_t i = 0; i < 256; ++i) {
      std::uint32_t c = i;
      for (int k = 0; k < 8; ++k) c = (c & 1) != 0 ? 0xEDB88320u ^ (c >> 1) : c >> 1;
      t[i] = c;
    }
    return t;
  }();
  std::uint32_t c = 0xFFFFFFFFu;
  for (unsigned char b : bytes) c = table[(c ^ b) & 0xFF] ^ (c >> 8);
  return c ^ 0xFFFFFFFFu;
}

namespace {

void put_u32(std::string& out, std::uint32_t v) {
  for (int i = 0; i < 4; ++i) out.push_back(static_cast<char>((v >> (8 * i)) & 0xFF));
}

std::uint32_t get_u32(const char* p) {
  std::uint32_t v = 0;
  for (int i = 0; i < 4; ++i) v |= static_cast<std::uint32_t>(static_cast<unsigned char>(p[i])) << (8 * i);
  return v;
}

std::optional<log_record> decode_payload(std::string_view payload) {
  auto j = nlohmann::json::parse(payload, nullptr, false);
  if (j.is_discarded() || !j.is_object()) return std::nullopt;
  try {
    log_record r;
    auto t = j.at("t").get<std::string>();
    if (t.size() != 1 || (t[0] != 'B' && t[0] != 'C' && t[0] != 'E')) return std::nullopt;
    r.type = t[0];
    r.tx = j.at("tx").get<std::string>();
    if (r.type != 'E') {
      r.key = j.at("key").get<std::string>();
      r.deleted = j.at("deleted").get<bool>();
      r.version = j.at("version").get<std::uint64_t>();
      r.value = j.at("value").get<std::string>();
      r.participants = j.at("participants").get<std::vector<std::string>>();
    }
    return r;
  } catch (const nlohmann::json::exception&) {
    return std::nullopt;
  }
}

std::string segment_name(std::uint64_t n) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "log-%012llu", static_cast<unsigned long long>(n));
  return buf;
}

bool write_all(int fd, const std::string& bytes) {
  std::size_t done = 0;
  while (done < bytes.size()) {
    ssize_t n = ::write(fd, bytes.data() + done, bytes.size() - done);
    if (n < 0) {
      if (errno == EINTR) continue;
      return false;
    }
    done += static_cast<std::size_t>(n);
  }
  return true;
}

void sync_dir(const std::string& dir) {
  int fd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY);
  if (fd >= 0) {
    ::fsync(fd);
    ::close(fd);
  }
}

}  // namespace

std::string encode_frame(const log_record& r) {
  nlohmann::json j{{"t", std::string(1, r.type)}, {"tx", r.tx}};
  if (r.type != 'E') {
    j["key"] = r.key;
    j["deleted"] = r.deleted;
    j["version"] = r.version;
    j["value"] = r.value;
    j["participants"] = r.participants;
  }
  std::string payload = j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
  std::string out;
  out.reserve(payload.size() + 8);
  put_u32(out, static_cast<std::uint32_t>(payload.size()));
  put_u32(out, crc32(payload));
  out += payload;
  return out;
}

decision_log::decision_log(std::string dir, log_options options) : dir_(std::move(dir)), options_(std::move(options)) {}

std::unique_ptr<decision_log> decision_log::open(const std::string& dir, std::vector<log_record>& records,
                                                 std::string& error, log_options options) {
  std::error_code ec;
  fs::create_directories(dir, ec);
  if (ec) {
    error = "cannot create " + dir + ": " + ec.message();
    return nullptr;
  }
  std::vector<std::uint64_t> segments;
  for (const auto& e : fs::directory_iterator(dir, ec)) {
    auto name = e.path().filename().string();
    if (name.rfind("log-", 0) == 0 && name.size() == 16) segments.push_back(std::stoull(name.substr(4)));
  }
  if (ec) {
    error = "cannot list " + dir + ": " + ec.message();
    return nullptr;
  }
  std::sort(segments.begin(), segments.end());
  std::unique_ptr<decision_log> log(new decision_log(dir, std::move(options)));
  for (std::size_t i = 0; i < segments.size(); ++i) {
    std::string path = (fs::path(dir) / segment_name(segments[i])).string();
    std::ifstream in(path, std::ios::binary);
    std::string bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    std::size_t pos = 0;
    while (pos + 8 <= bytes.size()) {
      std::uint32_t len = get_u32(bytes.data() + pos), crc = get_u32(bytes.data() + pos + 4);
      if (pos + 8 + len > bytes.size()) break;
      std::string_view payload(bytes.data() + pos + 8, len);
      if (crc32(payload) != crc) break;
      auto r = decode_payload(payload);
      if (!r) break;
      records.push_back(std::move(*r));
      pos += 8 + len;
    }
    if (pos != bytes.size()) {
      // A torn tail: only the last segment can have one (a crash while writing it).
      if (i + 1 != segments.size()) {
        error = path + ": corrupt record at byte " + std::to_string(pos) + " of a sealed segment";
        return nullptr;
      }
      fs::resize_file(path, pos, ec);
      if (ec) {
        error = "cannot cut the torn tail of " + path + ": " + ec.message();
        return nullptr;
      }
    }
  }
  log->older_ = segments;
  std::uint64_t next = segments.empty() ? 1 : segments.back() + 1;
  // Appends go to a new segment; the old ones stay until compact() or the first rotation.
  if (log->open_segment(next, {}, error)) return nullptr;
  log->writer_ = std::thread([l = log.get()] { l->write_loop(); });
  return log;
}

std::error_code decision_log::open_segment(std::uint64_t number, const std::vector<log_record>& first,
                                           std::string& error) {
  std::string path = (fs::path(dir_) / segment_name(number)).string();
  int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) {
    error = "cannot create " + path + ": " + std::strerror(errno);
    return {errno, std::generic_category()};
  }
  std::string bytes;
  for (const auto& r : first) bytes += encode_frame(r);
  if (!write_all(fd, bytes) || (options_.fsync && ::fdatasync(fd) != 0)) {
    int e = errno;
    ::close(fd);
    error = "cannot write " + path + ": " + std::strerror(e);
    return {e, std::generic_category()};
  }
  if (options_.fsync) sync_dir(dir_);
  if (fd_ >= 0) {
    ::close(fd_);
    older_.push_back(segment_);
  }
  fd_ = fd;
  segment_ = number;
  segment_bytes_ = bytes.size();
  return {};
}

decision_log::~decision_log() {
  {
    std::lock_guard lock(mu_);
    stopping_ = true;
  }
  queued_cv_.notify_all();
  if (writer_.joinable()) writer_.join();
  if (fd_ >= 0) ::close(fd_);
}

void decision_log::set_snapshot(snapshot_fn fn) {
  std::lock_guard lock(mu_);
  snapshot_ = std::move(fn);
}

std::error_code decision_log::compact(const std::vector<log_record>& open) {
  std::lock_guard file(file_mu_);
  if (auto ec = flush_locked()) return ec;
  {
    // The writer may still be syncing the old segment with the descriptor it took.
    std::unique_lock lock(mu_);
    done_cv_.wait(lock, [&] { return !syncing_; });
  }
  std::string error;
  if (auto ec = open_segment(segment_ + 1, open, error)) return ec;
  for (auto n : older_) fs::remove(fs::path(dir_) / segment_name(n));
  older_.clear();
  return {};
}

std::error_code decision_log::flush_locked() {
  std::string batch;
  std::uint64_t upto = 0;
  {
    std::lock_guard lock(mu_);
    if (failed_) {
      pending_.clear();  // never written now
      return failed_;
    }
    if (pending_.empty()) return {};
    batch.swap(pending_);
    upto = appended_;
  }
  std::error_code ec;
  if (!write_all(fd_, batch)) ec = {errno, std::generic_category()};
  segment_bytes_ += batch.size();
  {
    std::lock_guard lock(mu_);
    if (ec) {
      failed_ = ec;
    } else {
      written_ = upto;
    }
  }
  done_cv_.notify_all();
  if (ec) queued_cv_.notify_one();  // the writer fails the waiting callbacks
  return ec;
}

std::error_code decision_log::append_written(const std::string& frame) {
  // Holding the file from before the record is queued: this flush writes it, behind everything
  // queued before it, so the order on disk stays the order of the calls.
  std::lock_guard file(file_mu_);
  {
    std::lock_guard lock(mu_);
    if (failed_) return failed_;
    pending_ += frame;
    ++appended_;
  }
  return flush_locked();
}

std::error_code decision_log::append(const log_record& r, durability d) {
  std::string frame = encode_frame(r);
  if (d == durability::written) return append_written(frame);
  std::unique_lock lock(mu_);
  if (failed_) return failed_;
  pending_ += frame;
  std::uint64_t me = ++appended_;
  if (d == durability::synced) sync_wanted_ = me;
  queued_cv_.notify_one();
  if (d == durability::queued) return {};
  done_cv_.wait(lock, [&] { return failed_ || synced_ >= me; });
  return failed_;
}

void decision_log::append(const log_record& r, durability d, append_callback done) {
  std::string frame = encode_frame(r);
  if (d == durability::written) {
    done(append_written(frame));
    return;
  }
  std::unique_lock lock(mu_);
  if (failed_) {
    auto ec = failed_;
    lock.unlock();
    done(ec);
    return;
  }
  pending_ += frame;
  std::uint64_t me = ++appended_;
  if (d == durability::synced) sync_wanted_ = me;
  if (d == durability::queued) {
    lock.unlock();
    queued_cv_.notify_one();
    done({});
    return;
  }
  waiters_.push_back({me, true, std::move(done)});
  lock.unlock();
  queued_cv_.notify_one();
}

std::error_code decision_log::failed() const {
  std::lock_guard lock(mu_);
  return failed_;
}

std::uint64_t decision_log::fsyncs() const {
  std::lock_guard lock(mu_);
  return fsyncs_;
}

void decision_log::write_loop() {
  std::unique_lock lock(mu_);
  for (;;) {
    queued_cv_.wait(lock, [&] {
      return stopping_ || !pending_.empty() || (!failed_ && sync_wanted_ > synced_) || (failed_ && !waiters_.empty());
    });
    if (stopping_ && pending_.empty() && (failed_ ? waiters_.empty() : sync_wanted_ <= synced_)) return;
    bool may_rotate = static_cast<bool>(snapshot_);
    lock.unlock();
    int fd = -1;
    std::uint64_t target = 0;
    bool sync = false;
    {
      std::lock_guard file(file_mu_);
      if (may_rotate && segment_bytes_ > options_.max_segment_bytes) {
        // No record can be written while the file is held: the snapshot (every transaction begun
        // and not ended, taken now) and the records written after it into the new segment
        // together cover every unfinished transaction.
        std::string error;
        if (!open_segment(segment_ + 1, snapshot_(), error)) {
          for (auto n : older_) fs::remove(fs::path(dir_) / segment_name(n));
          older_.clear();
        }
      }
      (void)flush_locked();
      fd = fd_;
      lock.lock();
      target = written_;
      sync = !failed_ && sync_wanted_ > synced_;
      if (sync) syncing_ = true;
      lock.unlock();
    }
    // The fsync runs without the file: records that only need writing (begin) go on meanwhile,
    // straight from their callers.
    std::error_code ec;
    if (sync && options_.before_sync) options_.before_sync();
    const auto sync_started = std::chrono::steady_clock::now();
    if (sync && options_.sync_fault) {
      ec = options_.sync_fault();
    } else if (sync && options_.fsync && ::fdatasync(fd) != 0) {
      ec = {errno, std::generic_category()};
    }
    lock.lock();
    if (sync) {
      syncing_ = false;
      if (ec) {
        failed_ = ec;
      } else {
        synced_ = std::max(synced_, target);
        ++fsyncs_;
      }
    }
    done_cv_.notify_all();
    // The callbacks whose record is now where they asked for it, run outside the lock (they
    // append the next records of their transactions).
    std::vector<waiter> ready;
    if (!waiters_.empty()) {
      auto keep = waiters_.begin();
      for (auto it = waiters_.begin(); it != waiters_.end(); ++it) {
        if (failed_ || (it->synced ? synced_ >= it->seq : written_ >= it->seq)) {
          ready.push_back(std::move(*it));
        } else {
          *keep++ = std::move(*it);
        }
      }
      waiters_.erase(keep, waiters_.end());
    }
    if (sync && !ec && options_.on_sync) {
      std::size_t commits = 0;
      for (const auto& w : ready) commits += w.synced ? 1 : 0;
      options_.on_sync(std::chrono::steady_clock::now() - sync_started, commits);
    }
    if (!ready.empty()) {
      auto outcome = failed_;
      lock.unlock();
      for (auto& w : ready) w.done(outcome);
      lock.lock();
    }
  }
}

}  // namespace datashare::gateway
