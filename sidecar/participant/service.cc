#include "sidecar/participant/service.h"

#include <charconv>
#include <nlohmann/json.hpp>

namespace datashare::sidecar::participant {
namespace bhttp = boost::beast::http;

namespace {

http::response error(unsigned status, const std::string& message) {
  http::response r;
  r.status = status;
  r.body = nlohmann::json{{"error", message}}.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
  return r;
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
  auto qpos = target.find('?');
  auto path = parse_tx_path(target.substr(0, qpos));
  if (!path) {
    respond(error(404,
                  "no such path: the participant API is /v1/tx/<id>/{prepare,commit,abort} and GET /v1/tx/<id> "
                  "(ids: 1 to 64 of A-Z a-z 0-9 - _)"));
    return;
  }
  auto find = [this](std::string_view product) -> participant* {
    auto it = by_product_.find(product);
    return it == by_product_.end() ? nullptr : it->second;
  };
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
    participant* p = find(product);
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
  if (path->op == "prepare") {
    prepare_request pr;
    if (auto problem = decode_prepare(req.body(), pr); !problem.empty()) {
      respond(error(400, problem));
      return;
    }
    participant* p = find(pr.product);
    if (p == nullptr) {
      respond(error(400, "no participant for product \"" + pr.product + "\" here"));
      return;
    }
    auto answer = [respond](reply r) { respond({r.status, std::move(r.body)}); };
    if (p->spec().role == config::participant_role::copy) {
      // A copy's prepare is a store write whose fsync is group-committed: answered from the
      // group writer's thread, without a hand-off to the pool.
      p->prepare_async(path->id, pr, std::move(answer));
    } else {
      pool_.post([p, id = path->id, pr = std::move(pr), answer = std::move(answer)]() mutable {
        p->prepare_async(id, pr, std::move(answer));
      });
    }
    return;
  }
  if (path->op != "commit" && path->op != "abort") {
    respond(error(404, "unknown operation \"" + path->op + "\": prepare, commit or abort"));
    return;
  }
  auto product = decode_product(req.body());
  participant* p = product ? find(*product) : nullptr;
  if (p == nullptr) {
    respond(error(400, "the body must be {\"product\": <a product this sidecar participates in>}"));
    return;
  }
  bool commit = path->op == "commit";
  auto run = [p, id = path->id, commit, respond] {
    if (commit) {
      // Acknowledged once the `committed` record is fsync'd (group commit), from the writer's
      // thread.
      p->commit_async(id, [respond](reply r) { respond({r.status, std::move(r.body)}); });
      return;
    }
    auto r = p->abort(id);
    respond({r.status, std::move(r.body)});
  };
  if (p->spec().role == config::participant_role::copy) {
    // A copy's commit queues its record to the group writer and its abort is one store write
    // without fsync: neither blocks, cheaper here than a hand-off.
    run();
  } else {
    pool_.post(std::move(run));
  }
}

}  // namespace datashare::sidecar::participant
