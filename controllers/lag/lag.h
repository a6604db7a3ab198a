#pragma once
// Consistency lag measured from outside the consumer (a dead sidecar cannot report its own):
// events = high watermark − committed offset, summed over partitions; seconds = how long ago the
// log end passed the committed offset, interpolated from the high watermarks sampled at each poll
// (the method of kafka-lag-exporter).
//
// Limits of the estimate, which users should know: it is as fine as the poll interval (a
// partition that received one event 10 s ago and none since reads "≤ one interval" as it should,
// but an event inside one interval is placed by linear interpolation); when the committed offset
// is older than the oldest sample kept, the estimate is a lower bound (reported as such); the
// replica commits offsets after applying a batch, so a caught-up replica reads 0 within one
// commit interval; a group that never committed has lag = the whole partition.

#include <chrono>
#include <cstdint>
#include <deque>
#include <map>
#include <string>

namespace datashare::controllers {

using wall_time = std::chrono::system_clock::time_point;

// High-watermark samples of one partition, oldest first, bounded in count.
class watermark_history {
 public:
  explicit watermark_history(size_t max_samples = 360) : max_(max_samples) {}
  void record(wall_time t, int64_t high_watermark);
  // When the log end first exceeded `offset` (an offset not yet consumed was appended).
  // Returns nullopt-like {false} when the history does not reach back that far.
  struct passed {
    wall_time at;
    bool lower_bound = false;  // older than every sample: `at` is the oldest sample's time
  };
  passed when_passed(int64_t offset) const;
  bool empty() const { return samples_.empty(); }

 private:
  struct sample {
    wall_time t;
    int64_t hwm;
  };
  size_t max_;
  std::deque<sample> samples_;
};

struct lag_estimate {
  int64_t events = 0;
  double seconds = 0;
  bool lower_bound = false;
  bool committed = false;  // the group has committed something
};

// Combines one poll: committed offsets (absent partition: nothing committed, counts from 0) and
// high watermarks, with each partition's history (already holding this poll's sample).
lag_estimate estimate_lag(const std::map<int32_t, int64_t>& committed, const std::map<int32_t, int64_t>& high,
                          const std::map<int32_t, watermark_history>& history, wall_time now);

}  // namespace datashare::controllers
