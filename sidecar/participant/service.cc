#include "sidecar/participant/service.h"

#include <atomic>
#include <charconv>
#include <nlohmann/json.hpp>

namespace datashare::sidecar::participant {
namespace bhttp = boost::beast::http;

namespace {

reply error_reply(unsigned status, const std::string& message) {
  return {status, nlohmann::json{{"error", message}}.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace)};
}

http::response error(unsigned status, const std::string& message) {
  auto r = error_reply(status, message);
  return {r.status, std::move(r.body)};
}

// The value of `name` ("product=", "version=") in a query string, or "".
std::string query_param(std::string_view query, std::string_view name) {
  while (!query.empty()) {
    auto amp = query.find('&');
    auto pair = query.substr(0, amp);
    if (pair.substr(0, name.size()) == name) return std::string(pair.substr(name.size()));
    if (amp == std::string_view::npos) break;
    query.remove_prefix(amp + 1);
  }
  return "";
}

}  // namespace

service::service(const std::vector<participant*>& participants, thread_pool& pool) : pool_(pool) {
  for (auto* p : participants) by_product_.emplace(p->spec().product, p);
}

void service::handle(const http::request& req, const http::responder& respond) const {
  std::string_view target(req.target().data(), req.target().size());
  if (target == "/v1/batch") {
    batch(req, respond);
    return;
  }
  auto qpos = target.find('?');
  auto path = parse_tx_path(target.substr(0, qpos));
  if (!path) {
    respond(error(404,
                  "no such path: the participant API is /v1/tx/<id>/{prepare,commit,abort}, GET /v1/tx/<id> and "
                  "POST /v1/batch "
                  "(ids: 1 to 64 of A-Z a-z 0-9 - _)"));
    return;
  }
  if (path->op.empty()) {
    if (req.method() != bhttp::verb::get) {
      respond(error(405, "GET /v1/tx/<id>?product=<name>"));
      return;
    }
    std::string_view query = qpos == std::string_view::npos ? std::string_view() : target.substr(qpos + 1);
    std::string product = query_param(query, "product=");
    std::uint64_t version = 0;  // absent or malformed: 0, answered "unknown" when there is no record
    if (auto v = query_param(query, "version="); !v.empty()) {
      std::from_chars(v.data(), v.data() + v.size(), version);
    }
    auto it = by_product_.find(product);
    participant* p = it == by_product_.end() ? nullptr : it->second;
    if (p == nullptr) {
      respond(error(404, "no participant for product \"" + product + "\" here"));
      return;
    }
    pool_.post([p, id = path->id, version, respond] {
      auto r = p->query(id, version);
      respond({r.status, std::move(r.body)});
    });
    return;
  }
  if (req.method() != bhttp::verb::post) {
    respond(error(405, "POST /v1/tx/<id>/{prepare,commit,abort}"));
    return;
  }
  run(path->op, path->id, req.body(), [respond](reply r) { respond({r.status, std::move(r.body)}); });
}

void service::batch(const http::request& req, const http::responder& respond) const {
  if (req.method() != bhttp::verb::post) {
    respond(error(405, "POST /v1/batch"));
    return;
  }
  std::vector<batch_message> messages;
  if (auto problem = decode_batch(req.body(), messages); !problem.empty()) {
    respond(error(400, "batch: " + problem));
    return;
  }
  // Each message runs as its single call would; the answer goes back once the last one is in
  // (answers come from the I/O, pool and group writer threads: the count orders their slots).
  struct state {
    state(std::size_t n, http::responder r) : answers(n), left(n), respond(std::move(r)) {}
    std::vector<reply> answers;
    std::atomic<std::size_t> left;
    http::responder respond;
  };
  auto st = std::make_shared<state>(messages.size(), respond);
  // The batch's work for the pool (an owner's commits) goes as one task: one wake-up of one pool
  // thread instead of one per message.
  std::vector<std::function<void()>> pooled;
  for (std::size_t i = 0; i < messages.size(); ++i) {
    auto& m = messages[i];
    run(
        m.op, m.tx, m.body,
        [st, i](reply r) {
          st->answers[i] = std::move(r);
          if (st->left.fetch_sub(1, std::memory_order_acq_rel) != 1) return;
          std::string body;
          std::size_t size = 0;
          for (const auto& a : st->answers) size += a.body.size() + 16;
          body.reserve(size);
          for (const auto& a : st->answers) append_batch_answer(body, a.status, a.body);
          st->respond({200, std::move(body), kBatchContentType, {}});
        },
        &pooled);
  }
  if (pooled.size() == 1) {
    pool_.post(std::move(pooled.front()));
  } else if (!pooled.empty()) {
    pool_.post([pooled = std::move(pooled)]() mutable {
      for (auto& work : pooled) work();
    });
  }
}

void service::run(const std::string& op, const std::string& id, std::string_view body,
                  std::function<void(reply)> answer, std::vector<std::function<void()>>* pooled) const {
  auto find = [this](std::string_view product) -> participant* {
    auto it = by_product_.find(product);
    return it == by_product_.end() ? nullptr : it->second;
  };
  if (op == "prepare") {
    prepare_request pr;
    if (auto problem = decode_prepare(body, pr); !problem.empty()) {
      answer(error_reply(400, problem));
      return;
    }
    participant* p = find(pr.product);
    if (p == nullptr) {
      answer(error_reply(400, "no participant for product \"" + pr.product + "\" here"));
      return;
    }
    // Never blocks (a copy's is a store write whose fsync is group-committed, answered from the
    // group writer's thread; an owner's a chain of asynchronous calls to the owner and the group
    // writer): on the I/O thread, without a hand-off to the pool.
    p->prepare_async(id, pr, std::move(answer));
    return;
  }
  if (op != "commit" && op != "abort") {
    answer(error_reply(404, "unknown operation \"" + op + "\": prepare, commit or abort"));
    return;
  }
  auto product = decode_product(body);
  participant* p = product ? find(*product) : nullptr;
  if (p == nullptr) {
    answer(error_reply(400, "the body must be {\"product\": <a product this sidecar participates in>}"));
    return;
  }
  if (op == "abort") {
    // Never blocks: a store write without fsync (an owner's compensation first, through the
    // owner's async calls).
    p->abort_async(id, std::move(answer));
    return;
  }
  // Acknowledged once the `committed` record is fsync'd (group commit), from the writer's
  // thread. A copy's commit queues its record to the group writer: cheaper here than a
  // hand-off. An owner's may block (a publish again after a refused one, a change applied
  // again after a restart): on the pool.
  if (p->spec().role == config::participant_role::copy) {
    p->commit_async(id, std::move(answer));
  } else {
    auto work = [p, id, answer = std::move(answer)]() mutable { p->commit_async(id, std::move(answer)); };
    if (pooled != nullptr) {
      pooled->emplace_back(std::move(work));
    } else {
      pool_.post(std::move(work));
    }
  }
}

}  // namespace datashare::sidecar::participant
