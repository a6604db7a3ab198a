// A watch stream as the API server sends it: one JSON event per line. The input is the body of
// one watch response; the real watcher (list, then watch) reads it through a transport that
// serves an empty list and then these lines, and the informer's store applies what comes out.
// A bad line ends the watch with kube::api_error, which the watcher reports and retries; any
// other exception escaping watcher::run would end an informer's thread, so it is a failure here.
#include <stop_token>

#include "fuzz/input.h"
#include "operator/kube/client.h"
#include "operator/runtime/store.h"
#include "operator/runtime/watcher.h"

namespace {

using namespace datashare;

class stream_transport final : public kube::http_transport {
 public:
  stream_transport(std::string_view body, std::stop_source& stop) : body_(body), stop_(stop) {}

  kube::http_response send(const kube::http_request&) override {
    return {200, R"({"kind":"ConfigMapList","apiVersion":"v1","metadata":{"resourceVersion":"1"},"items":[]})", {}};
  }

  kube::http_response stream_lines(const kube::http_request&, const std::function<bool(std::string_view)>& on_line,
                                   std::stop_token) override {
    // The same line splitting as the real transport: empty lines are skipped, a last line
    // without '\n' still counts.
    std::string_view rest = body_;
    while (!rest.empty()) {
      std::string_view line = fuzz::take_until(rest, "\n");
      if (!line.empty() && !on_line(line)) break;
    }
    stop_.request_stop();  // one watch per input: the watcher returns instead of reconnecting
    return {200, "", {}};
  }

  std::string host() const override { return "https://fuzz"; }

 private:
  std::string_view body_;
  std::stop_source& stop_;
};

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  std::stop_source stop;
  auto transport = std::make_shared<stream_transport>(fuzz::as_text(data, size), stop);
  kube::client client(transport, {.max_attempts = 1, .sleep = [](std::chrono::milliseconds) {}});
  runtime::watcher_options options{.kind = kube::resources::config_maps,
                                   .on_error = [&](const std::string&, const std::exception&) { stop.request_stop(); }};
  runtime::watcher watcher(client, options);
  runtime::store cache;
  cache.add_index("namespace", [](const kube::json& o) { return std::vector<std::string>{kube::namespace_of(o)}; });
  watcher.run([&](runtime::watcher_event&& ev) { cache.apply(std::move(ev)); }, stop.get_token());
  for (const auto& object : cache.list()) (void)kube::object_key(*object);
  return 0;
}
