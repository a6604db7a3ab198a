#pragma once
// Waiting, in real time and bounded, for something another thread or process makes true.

#include <chrono>
#include <thread>

namespace datashare::testing {

// Polls `condition` every `poll` until it holds (true) or `timeout` has passed (false, after one
// last look).
template <typename F>
bool eventually(F condition, std::chrono::milliseconds timeout = std::chrono::seconds(10),
                std::chrono::milliseconds poll = std::chrono::milliseconds(5)) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  while (std::chrono::steady_clock::now() < deadline) {
    if (condition()) return true;
    std::this_thread::sleep_for(poll);
  }
  return condition();
}

}  // namespace datashare::testing
