#pragma once
// The participant listener of the sidecar (listen.participant): the transaction API of
// protocol.h and nothing else, for the gateway coordinator and the other participants. Requests
// are parsed on the I/O thread. Prepares and aborts run there too, since they never block (a
// copy's are store writes, the prepare's fsync group-committed and answered from the group
// writer's thread; an owner's are chains of asynchronous calls to the owner and the group
// writer), and so does a copy's commit; an owner's commit and the peers' questions run on a
// thread pool, since they may block. The answer goes back through the responder.
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
  // With `pooled`, work for the pool is appended there (a batch posts it as one task) instead
  // of being posted.
  void run(const std::string& op, const std::string& id, std::string_view body, std::function<void(reply)> answer,
           std::vector<std::function<void()>>* pooled = nullptr) const;
  std::map<std::string, participant*, std::less<>> by_product_;
  thread_pool& pool_;
};

}  // namespace datashare::sidecar::participant
