// HTTP requests after the server has parsed them (Beast): the sidecar's data and admin routers
// (path, product, percent-encoded key, query: keys=, limit=, after=), the participant API's
// paths and bodies (the port reachable from outside the pod), and the URL helpers the gateway
// uses for its own targets. Every request gets exactly one answer with a status, and a JSON
// answer is valid JSON.
//
// Input shape: line 1 "METHOD TARGET" (e.g. "GET /v1/data/products?keys=a,b"), the rest the body.
#include <atomic>
#include <boost/beast/http/verb.hpp>
#include <cstdlib>
#include <nlohmann/json.hpp>

#include "common/thread_pool.h"
#include "common/url.h"
#include "fuzz/fixtures.h"
#include "fuzz/input.h"
#include "sidecar/api/router.h"
#include "sidecar/kafka/fake_broker.h"
#include "sidecar/participant/protocol.h"
#include "sidecar/participant/service.h"
#include "sidecar/store/memory_kv.h"

namespace {

using namespace datashare;
using namespace datashare::sidecar;

// The owner of a sync policy, answering at once.
class inline_owner : public proxy::owner_client {
 public:
  void get(const std::string& target, time_point, callback done) override {
    if (target.size() % 2 == 0) {
      done({.outcome = proxy::fetch_result::kind::response, .status = 404});
    } else {
      done({.outcome = proxy::fetch_result::kind::response, .status = 200, .body = R"({"sku":"a","amount":3})"});
    }
  }
};

// One sidecar's worth of components over the in-memory broker, built once.
struct world {
  kafka::fake_broker broker;
  std::unique_ptr<kafka::client_factory> factory = broker.factory();
  metrics::registry metrics;
  std::unique_ptr<publisher::publisher> pub;
  std::unique_ptr<replica::replica> rep;
  std::unique_ptr<proxy::sync_proxy> prices;
  std::unique_ptr<api::router> router;
  thread_pool pool{1};
  participant::service participants{{}, pool};
  std::uint64_t inputs = 0;

  world() {
    broker.create_topic("catalog.products.v1", 1);
    config::publish_spec ps;
    ps.product = fuzz::products();
    ps.topic = "catalog.products.v1";
    ps.outbox.max_entries = 1000;
    pub = std::make_unique<publisher::publisher>(ps, std::make_unique<store::memory_kv>(), *factory,
                                                 metrics.publisher("products"));
    std::string error;
    if (pub->start(error)) std::abort();
    config::subscribe_spec ss;
    ss.policy = "orders-products";
    ss.product = fuzz::products();
    ss.topic = "catalog.products.v1";
    ss.group = "g";
    ss.mode = config::sharing_mode::hybrid;
    ss.fields = {"id", "name"};
    ss.sync_fields = {"price"};
    replica::replica_options o;
    o.poll_timeout = std::chrono::milliseconds(0);
    rep = std::make_unique<replica::replica>(ss, std::make_unique<store::memory_kv>(), *factory,
                                             metrics.replica("products", "orders-products"), o);
    if (rep->start(error)) std::abort();
    config::subscribe_spec sync;
    sync.policy = "orders-prices";
    sync.product.name = "prices";
    sync.product.key = "sku";
    sync.product.fields = {{"sku", config::field_type::string, false}, {"amount", config::field_type::number, false}};
    sync.mode = config::sharing_mode::sync;
    sync.sync_fields = {"amount"};
    sync.owner_read_path = "/prices/{key}";
    prices = std::make_unique<proxy::sync_proxy>(sync, sync.sync_fields, std::make_unique<inline_owner>(),
                                                 metrics.sync("orders-prices"), proxy::proxy_env{});
    router = std::make_unique<api::router>(metrics, std::vector<replica::replica*>{rep.get()},
                                           std::vector<publisher::publisher*>{pub.get()},
                                           std::vector<proxy::sync_proxy*>{prices.get()});
  }
};

// Checks an answer; called from the publisher's thread for writes.
void check(const http::response& r) {
  if (r.status < 200 || r.status > 599) std::abort();
  if (r.content_type == "application/json" && !nlohmann::json::accept(r.body)) std::abort();
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  static world w;
  std::string_view rest = fuzz::as_text(data, size);
  std::string_view line = fuzz::take_until(rest, "\n");
  std::string_view method_text = fuzz::take_until(line, " ");
  std::string_view target = line;
  auto method = boost::beast::http::string_to_verb({method_text.data(), method_text.size()});
  if (method == boost::beast::http::verb::unknown) method = boost::beast::http::verb::get;

  http::request req;
  req.method(method);
  req.target({target.data(), target.size()});
  req.body() = std::string(rest);
  // Exactly one answer per request: reads answer at once, writes from the publisher's thread
  // once stored (so the data answer's counter outlives this call).
  auto once = [](std::shared_ptr<std::atomic<int>> count) {
    return http::responder([count](http::response r) {
      check(r);
      if (count->fetch_add(1) != 0) std::abort();
    });
  };
  w.router->handle_data(req, once(std::make_shared<std::atomic<int>>(0)));
  auto admin = std::make_shared<std::atomic<int>>(0);
  w.router->handle_admin(req, once(admin));
  if (admin->load() != 1) std::abort();
  w.participants.handle(req, once(std::make_shared<std::atomic<int>>(0)));
  if (++w.inputs % 32 == 0) w.rep->run_once();  // let published changes reach the copy

  // The pieces on their own: the participant protocol's paths and bodies, the URL helpers.
  auto qpos = target.find('?');
  (void)participant::parse_tx_path(target.substr(0, qpos));
  participant::prepare_request prepare;
  (void)participant::decode_prepare(rest, prepare);
  (void)participant::decode_product(rest);
  (void)participant::read_member(rest, "state");
  // A batch that decodes encodes back to the same bytes (and so do its answers).
  std::vector<participant::batch_message> batch;
  if (participant::decode_batch(rest, batch).empty()) {
    std::string again;
    for (const auto& m : batch) participant::append_batch_message(again, m.op, m.tx, m.body);
    if (again != rest) std::abort();
  }
  std::vector<participant::batch_answer> answers;
  if (participant::decode_batch_answers(rest, answers).empty()) {
    std::string again;
    for (const auto& a : answers) participant::append_batch_answer(again, a.status, a.body);
    if (again != rest) std::abort();
  }
  if (auto decoded = url::percent_decode(target)) {
    if (url::percent_decode(url::percent_encode_segment(*decoded)) != decoded) std::abort();
  }
  if (qpos != std::string_view::npos) (void)url::query_param(target.substr(qpos + 1), "keys");
  return 0;
}
