// JobService: command jobs on one node (docs/architecture.md, "Jobs").
//
//   - Keeps a cache of every job record (/shoal/jobs/r/<id>) fed by a watch
//     on this node's own copy of the metadata store.
//   - On the Raft leader only, runs the placement policy (jobs/scheduler.h)
//     and writes its decisions in one transaction with a compare on each
//     job's mod_revision.
//   - Starts the jobs assigned to this node once the node's Executor grants
//     their resources (the one accounting shared with tasks), runs them in
//     their own process group (jobs/job_process.h), captures their output
//     (jobs/log_file.h), and records RUNNING and the outcome with
//     compare-and-swap.
//   - Serves the Node RPC methods jobSubmit..jobDelete and the REST API.
//
// Loop thread only, except that the Executor calls back from its threads
// (those callbacks only post() to the loop).
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include <kj/async.h>

#include "base/clock.h"
#include "jobs/job_types.h"
#include "jobs/scheduler.h"
#include "meta/types.h"
#include "rpc.capnp.h"
#include "shoal/status.h"

namespace shoal::loop {
class Loop;
}
namespace shoal::control {
class ControlPlane;
}
namespace shoal::gossip {
class GossipService;
}
namespace shoal::rpc {
class PeerPool;
}
namespace shoal::detail {
class Executor;
}

namespace shoal::jobs {

class GroupReaper;

inline constexpr uint64_t kScheduleIntervalMs = 10;   // leader: a round when something changed
inline constexpr uint64_t kScheduleFullMs = 1'000;    // leader: a round anyway
inline constexpr uint64_t kStopGraceMs = 3'000;       // SIGTERM -> SIGKILL
inline constexpr uint64_t kPipeDrainMs = 2'000;       // after exit, wait this long for output EOF
inline constexpr uint64_t kResyncDelayMs = 500;
inline constexpr int kCasRetriesMax = 20;
inline constexpr size_t kSubmitJobsPerTxn = 60;
inline constexpr size_t kFinishedJobsMax = 10'000;  // default: finished records kept (oldest go first)
inline constexpr size_t kPackagesMax = 16;          // REST working_dir uploads kept (oldest go first)

struct JobServiceOptions {
  std::string data_dir;  // jobs live under <data_dir>/jobs/<id>/
  std::string self_id;
  std::string self_address;
  uint64_t stop_grace_ms = kStopGraceMs;
  uint64_t log_file_bytes_max = 0;  // 0: kLogFileBytesMax
  // The leader deletes the oldest finished records (and their logs, files)
  // beyond this many, except those an unfinished job waits for.
  size_t finished_jobs_max = kFinishedJobsMax;
};

struct LogsResult {
  std::string data;
  int64_t offset = 0;
  int64_t next_offset = 0;
  bool finished = false;
};

class JobService {
 public:
  JobService(loop::Loop& loop, control::ControlPlane& control, gossip::GossipService& gossip,
             rpc::PeerPool& peers, detail::Executor& executor, const Clock& clock, JobServiceOptions options);
  ~JobService();
  JobService(const JobService&) = delete;
  JobService& operator=(const JobService&) = delete;

  void start();
  // Kills this node's job processes (their records stay RUNNING: the node
  // requeues or fails them when it comes back, the leader when gossip says
  // it left) and closes every handle.
  void stop();
  // Call when gossip reports a membership change (leader reschedules).
  void on_membership_change();

  // --- Requests (Node RPC and REST); errors are Status values for the user ---
  kj::Promise<Result<std::vector<std::string>>> submit(Spec spec, std::vector<File> files);
  kj::Promise<Result<std::vector<Record>>> list(std::optional<State> state);
  kj::Promise<Result<Record>> get(std::string id);
  kj::Promise<Result<bool>> stop_job(std::string id);
  kj::Promise<Result<bool>> remove(std::string id);
  kj::Promise<Result<LogsResult>> logs(std::string id, int64_t offset, uint32_t max_bytes, int hops);
  // Ray's working_dir packages (REST: PUT/GET /api/packages/<protocol>/<name>):
  // the files of an uploaded zip, by URI ("gcs://_ray_pkg_<hash>.zip"). A job
  // submitted with the URI gets its own copy, so a package can go (the
  // oldest beyond kPackagesMax do) without touching any job.
  kj::Promise<Status> put_package(std::string uri, std::vector<File> files);
  kj::Promise<Result<std::vector<File>>> get_package(std::string uri);

  // For tests and `shoalctl status`.
  size_t running_here() const;

 private:
  struct Local;
  struct Process;
  class CacheWatcher;
  friend class CacheWatcher;

  kj::Promise<meta::Response> kv(meta::Request request);
  kj::Promise<Result<std::pair<Record, int64_t>>> read_record(const std::string& id);
  // Reads, applies `change` (false: give up) and writes with CAS, retrying
  // on conflicts. Answers the record written, or nullopt when given up.
  kj::Promise<Result<std::optional<Record>>> update(std::string id, std::function<bool(Record&)> change,
                                                   int attempt = 0);
  kj::Promise<Result<std::optional<Record>>> update_in_turn(std::string id, std::function<bool(Record&)> change);
  kj::Promise<Result<std::optional<Record>>> write_update(std::string id, std::function<bool(Record&)> change,
                                                          int attempt, Record record, int64_t revision);

  kj::Promise<Status> check_exist(std::vector<std::string> ids, size_t i);
  kj::Promise<Result<std::vector<std::string>>> write_submission(std::vector<Record> records, std::vector<File> files);
  kj::Promise<Result<std::vector<std::string>>> write_records(std::shared_ptr<std::vector<Record>> records,
                                                              size_t from);

  void begin_sync();
  // Reads every job record, in pages, calling `visit(kv, revision)` for each
  // (revision: the store's revision of the page that carried it).
  kj::Promise<Status> scan_records(std::function<void(const meta::KeyValue&, int64_t)> visit);
  void on_synced(std::vector<CachedJob> jobs, int64_t revision);
  void on_event(const meta::Event& event);
  void on_job_changed(const CachedJob& job, bool first_sync);
  void schedule_round();
  // Leader: deletes finished records beyond finished_jobs_max.
  void prune_finished(const std::vector<const CachedJob*>& unfinished);
  // Whether no cached record but those in `going` uses `files_key`'s files.
  bool files_unused_after(const std::string& files_key, const std::set<std::string>& going) const;
  std::vector<NodeView> node_views() const;

  // Local execution.
  void admit(const Record& record);
  void on_granted(const std::string& id, uint32_t attempt, const detail::GpuGrant& gpus);
  void spawn(Local& local, const Record& record);
  void watch_process(Process* proc, uint64_t timeout_ms);
  void mark_running(const std::string& id);
  void request_kill(Local& local, const std::string& why, bool as_timeout);
  void on_exit(Local& local, int64_t exit_status, int term_signal);
  void maybe_finish(const std::string& id);
  void fail_before_start(Local& local, const std::string& why);
  void forget(const std::string& id);
  void cleanup_stale(const Record& record);
  std::string job_dir(const std::string& id) const;

  loop::Loop& loop_;
  control::ControlPlane& control_;
  gossip::GossipService& gossip_;
  rpc::PeerPool& peers_;
  detail::Executor& executor_;
  const Clock& clock_;
  JobServiceOptions options_;
  std::shared_ptr<bool> alive_;  // callbacks posted from executor threads check it

  std::map<std::string, CachedJob> cache_;
  // Per job: this node's updates in the order they were asked for (the
  // last one's result; `pending` of them not done), and the last record it
  // wrote, kept until the cache has it.
  struct OwnWrites {
    kj::Maybe<kj::ForkedPromise<Result<std::optional<Record>>>> tail;
    int pending = 0;
    Record record;
    int64_t revision = 0;
  };
  std::map<std::string, OwnWrites> own_writes_;
  int64_t cache_revision_ = 0;
  bool synced_ = false;
  bool syncing_ = false;
  bool stopped_ = false;
  kj::Own<rpc::WatchHandle::Server> watch_handle_;
  uint64_t watch_generation_ = 0;  // events of an older watch are ignored

  bool schedule_dirty_ = true;
  bool schedule_in_flight_ = false;
  bool prune_in_flight_ = false;
  int64_t schedule_wait_revision_ = 0;
  uint64_t last_round_ms_ = 0;

  std::map<std::string, std::unique_ptr<Local>> local_;
  // The latest attempt of each job this run of the node admitted: the cache
  // may still show it ASSIGNED after it ended, and it must not run twice.
  std::map<std::string, uint32_t> admitted_;
  std::shared_ptr<GroupReaper> reaper_;  // shared with the Processes, which may outlive this service
  std::set<Process*> lingering_;  // ended jobs whose group still gets its SIGKILL
  std::unique_ptr<kj::TaskSet> tasks_;
  std::unique_ptr<kj::TaskSet::ErrorHandler> task_errors_;
  struct Timers;
  std::unique_ptr<Timers> timers_;
};

}  // namespace shoal::jobs
