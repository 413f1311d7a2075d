// jobs (issue 6): the Node RPC methods jobSubmit..jobDelete, answered by the
// node's JobService. Bad input comes back in `error`; exceptions only when
// the node cannot serve at all.
#include <kj/debug.h>

#include "jobs/job_service.h"
#include "node/node_service.h"

namespace shoal::node {
namespace {

kj::Exception no_jobs() { return KJ_EXCEPTION(DISCONNECTED, "this node's job service is not running"); }

}  // namespace

kj::Promise<void> NodeService::jobSubmit(JobSubmitContext context) {
  jobs::JobService* service = jobs_ ? jobs_->get() : nullptr;
  if (service == nullptr) return no_jobs();
  auto params = context.getParams();
  auto spec = jobs::from_wire(params.getSpec());
  if (!spec.ok()) {
    context.getResults().setError(spec.status().message());
    return kj::READY_NOW;
  }
  std::vector<jobs::File> files;
  if (params.hasFiles()) {
    auto decoded = jobs::from_wire(params.getFiles());
    if (!decoded.ok()) {
      context.getResults().setError(decoded.status().message());
      return kj::READY_NOW;
    }
    files = std::move(*decoded);
  }
  return service->submit(std::move(*spec), std::move(files))
      .then([context](Result<std::vector<std::string>> ids) mutable {
        auto results = context.getResults();
        if (!ids.ok()) {
          results.setError(ids.status().message());
          return;
        }
        auto list = results.initIds(static_cast<unsigned>(ids->size()));
        for (unsigned i = 0; i < ids->size(); ++i) list.set(i, (*ids)[i]);
      });
}

kj::Promise<void> NodeService::jobList(JobListContext context) {
  jobs::JobService* service = jobs_ ? jobs_->get() : nullptr;
  if (service == nullptr) return no_jobs();
  std::optional<jobs::State> state;
  std::string filter = context.getParams().getState().cStr();
  if (!filter.empty()) {
    auto parsed = jobs::parse_state(filter);
    if (!parsed.ok()) {
      context.getResults().setError(parsed.status().message());
      return kj::READY_NOW;
    }
    state = *parsed;
  }
  return service->list(state).then([context](Result<std::vector<jobs::Record>> records) mutable {
    auto results = context.getResults();
    if (!records.ok()) {
      results.setError(records.status().message());
      return;
    }
    auto list = results.initJobs(static_cast<unsigned>(records->size()));
    for (unsigned i = 0; i < records->size(); ++i) jobs::to_wire((*records)[i], list[i]);
  });
}

kj::Promise<void> NodeService::jobGet(JobGetContext context) {
  jobs::JobService* service = jobs_ ? jobs_->get() : nullptr;
  if (service == nullptr) return no_jobs();
  return service->get(context.getParams().getId().cStr()).then([context](Result<jobs::Record> record) mutable {
    auto results = context.getResults();
    if (!record.ok()) {
      results.setError(record.status().message());
      return;
    }
    jobs::to_wire(*record, results.initJob());
  });
}

kj::Promise<void> NodeService::jobStop(JobStopContext context) {
  jobs::JobService* service = jobs_ ? jobs_->get() : nullptr;
  if (service == nullptr) return no_jobs();
  return service->stop_job(context.getParams().getId().cStr()).then([context](Result<bool> stopped) mutable {
    auto results = context.getResults();
    if (!stopped.ok()) {
      results.setError(stopped.status().message());
      return;
    }
    results.setStopped(*stopped);
  });
}

kj::Promise<void> NodeService::jobLogs(JobLogsContext context) {
  jobs::JobService* service = jobs_ ? jobs_->get() : nullptr;
  if (service == nullptr) return no_jobs();
  auto p = context.getParams();
  return service->logs(p.getId().cStr(), p.getOffset(), p.getMaxBytes(), p.getHops())
      .then([context](Result<jobs::LogsResult> logs) mutable {
        auto results = context.getResults();
        if (!logs.ok()) {
          results.setError(logs.status().message());
          return;
        }
        results.setData(kj::arrayPtr(reinterpret_cast<const kj::byte*>(logs->data.data()), logs->data.size()));
        results.setOffset(logs->offset);
        results.setNextOffset(logs->next_offset);
        results.setFinished(logs->finished);
      });
}

kj::Promise<void> NodeService::jobDelete(JobDeleteContext context) {
  jobs::JobService* service = jobs_ ? jobs_->get() : nullptr;
  if (service == nullptr) return no_jobs();
  return service->remove(context.getParams().getId().cStr()).then([context](Result<bool> deleted) mutable {
    auto results = context.getResults();
    if (!deleted.ok()) {
      results.setError(deleted.status().message());
      return;
    }
    results.setDeleted(*deleted);
  });
}

}  // namespace shoal::node
