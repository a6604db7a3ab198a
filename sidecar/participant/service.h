#pragma once
// The participant listener of the sidecar (listen.participant): the transaction API of
// protocol.h and nothing else, for the gateway coordinator and the other participants. Requests
// are parsed on the I/O thread. A copy's prepare, commit and abort run there too (a store write;
// the prepare's fsync is group-committed and answered from the group writer's thread); the
// owner's run on a thread pool, since they block (owner calls, the outbox's fsync). The answer
// goes back through the responder.
//
// POST /v1/batch carries many of the POSTs at once (protocol.h): each message runs exactly as
// its single call, and the one answer goes back when the last message is answered.
//
// Threading: handle() from the HTTP I/O threads; the participants and the pool must outlive the
// server.

#include <functional>
#include <map>
#include <string>
#include <vector>

#include "common/thread_pool.h"
#include "sidecar/http/server.h"
#include "sidecar/participant/participant.h"

namespace datashare::sidecar::participant {

class service {
 public:
  service(const std::vector<participant*>& participants, thread_pool& pool);
  void handle(const http::request& req, const http::responder& respond) const;

 private:
  void batch(const http::request& req, const http::responder& respond) const;
  // One POST (prepare, commit, abort) of transaction `id`, answered through `answer`, once.
  void run(const std::string& op, const std::string& id, std::string_view body,
           std::function<void(reply)> answer) const;
  std::map<std::string, participant*, std::less<>> by_product_;
  thread_pool& pool_;
};

}  // namespace datashare::sidecar::participant
