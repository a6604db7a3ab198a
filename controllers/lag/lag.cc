#include "controllers/lag/lag.h"

#include <algorithm>

namespace datashare::controllers {

void watermark_history::record(wall_time t, int64_t high_watermark) {
  // Keep only samples where the watermark moved, plus the latest: the time the log end passed an
  // offset lies between the last sample at or below it and the first above it.
  if (samples_.size() >= 2 && samples_.back().hwm == high_watermark &&
      samples_[samples_.size() - 2].hwm == high_watermark) {
    samples_.back().t = t;
  } else {
    samples_.push_back({t, high_watermark});
  }
  while (samples_.size() > max_) samples_.pop_front();
}

watermark_history::passed watermark_history::when_passed(int64_t offset) const {
  if (samples_.empty()) return {wall_time{}, true};
  // First sample whose watermark is above the offset.
  auto it = std::find_if(samples_.begin(), samples_.end(), [&](const sample& s) { return s.hwm > offset; });
  if (it == samples_.end()) return {samples_.back().t, false};  // not passed: caught up
  if (it == samples_.begin()) return {it->t, true};
  const sample& before = *(it - 1);
  // Linear interpolation between the last sample at or below `offset` and the first above it.
  double frac = static_cast<double>(offset + 1 - before.hwm) / static_cast<double>(it->hwm - before.hwm);
  frac = std::clamp(frac, 0.0, 1.0);
  auto span = it->t - before.t;
  return {before.t + std::chrono::duration_cast<wall_time::duration>(span * frac), false};
}

lag_estimate estimate_lag(const std::map<int32_t, int64_t>& committed, const std::map<int32_t, int64_t>& high,
                          const std::map<int32_t, watermark_history>& history, wall_time now) {
  lag_estimate out;
  out.committed = !committed.empty();
  for (const auto& [p, hwm] : high) {
    auto c = committed.find(p);
    int64_t pos = c == committed.end() ? 0 : c->second;
    int64_t behind = std::max<int64_t>(0, hwm - pos);
    out.events += behind;
    if (behind == 0) continue;
    auto h = history.find(p);
    if (h == history.end() || h->second.empty()) continue;
    auto passed = h->second.when_passed(pos);
    double secs = std::chrono::duration<double>(now - passed.at).count();
    if (secs > out.seconds) {
      out.seconds = secs;
      out.lower_bound = passed.lower_bound;
    }
  }
  return out;
}

}  // namespace datashare::controllers
