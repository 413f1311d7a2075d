// The Jobs REST API (Ray Jobs field names and statuses) over kj-http on the
// node's loop. Every request needs `Authorization: Bearer <cluster token>`
// (401 otherwise). Endpoints:
//   POST   /api/jobs/               submit  -> {"job_id", "submission_id"}
//   GET    /api/jobs/               list    -> [job details]
//   GET    /api/jobs/{id}           details
//   GET    /api/jobs/{id}/logs      -> {"logs": "..."} (the last 1 MiB)
//   POST   /api/jobs/{id}/stop      -> {"stopped": bool}
//   DELETE /api/jobs/{id}           -> {"deleted": bool} (finished jobs only)
//   GET    /api/packages/{protocol}/{name}   200 when uploaded, 404 otherwise
//   PUT    /api/packages/{protocol}/{name}   upload a working_dir zip (Ray's
//          client does this, then submits runtime_env.working_dir = "gcs://name")
// Bad JSON or fields: 400 with {"error": "..."}; unknown job: 404. At most
// kHttpConnectionsMax connections are open at once (more get 503).
// Loop thread only.
#pragma once

#include <cstdint>
#include <memory>
#include <string>

#include <kj/time.h>

#include "shoal/status.h"

namespace shoal::loop {
class Loop;
}

namespace shoal::jobs {

class JobService;

inline constexpr size_t kHttpBodyBytesMax = 4 * 1024 * 1024;
inline constexpr size_t kHttpConnectionsMax = 128;  // open at once; more get 503 and are closed
inline constexpr auto kHttpBodyTimeout = 30 * kj::SECONDS;  // a body must arrive within this

class HttpApi {
 public:
  HttpApi(loop::Loop& loop, JobService& jobs, std::string token_secret);
  ~HttpApi();
  HttpApi(const HttpApi&) = delete;
  HttpApi& operator=(const HttpApi&) = delete;

  Status listen(const std::string& host, uint16_t port);

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace shoal::jobs
