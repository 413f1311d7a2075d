#include "jobs/job_service.h"

#include <dirent.h>
#include <fcntl.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>
#include <uv.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <fstream>
#include <sstream>

#include "base/assert.h"
#include "base/crypto.h"
#include "base/log.h"
#include "control/control_plane.h"
#include "gossip/service.h"
#include "jobs/group_reaper.h"
#include "jobs/log_file.h"
#include "jobs/job_process.h"
#include "loop/loop.h"
#include "meta/codec.h"
#include "rpc/errors.h"
#include "rpc/peer_pool.h"
#include "task/executor.h"

extern char** environ;

namespace shoal::jobs {

namespace {

std::string short_id(const std::string& id) { return id.substr(0, 8); }

std::string record_key(const std::string& id) { return std::string(kRecordPrefix) + id; }

// The job whose working-dir files a record uses (an array's jobs share the
// first submission's).
std::string files_owner(const Record& r) { return r.spec.files_key.empty() ? r.id : r.spec.files_key; }

// A txn compare: the job's record is still at `revision` (nobody wrote it since).
meta::Compare record_unchanged(const std::string& id, int64_t revision) {
  meta::Compare c;
  c.key = record_key(id);
  c.target = meta::Compare::Target::kModRevision;
  c.op = meta::Compare::Op::kEqual;
  c.number = revision;
  return c;
}
std::string files_key(const std::string& id) { return std::string(kFilesPrefix) + id; }

detail::ResourceSet resources_of(const gossip::Resources& r) {
  std::vector<std::pair<std::string, double>> wholes = {
      {std::string(detail::ResourceSet::kCpu), r.cpus},
      {std::string(detail::ResourceSet::kGpu), r.gpus},
      {std::string(detail::ResourceSet::kMemory), static_cast<double>(r.memory_bytes)},
  };
  for (const auto& [name, amount] : r.custom) wholes.emplace_back(name, amount);
  auto set = detail::ResourceSet::from_wholes(wholes);
  return set.ok() ? *set : detail::ResourceSet();
}

TaskId task_id_of(const std::string& id, uint32_t attempt) {
  // Executor ids only need to be unique among this node's queued items.
  uint64_t h = 1469598103934665603ull;
  for (char c : id) h = (h ^ static_cast<uint8_t>(c)) * 1099511628211ull;
  return TaskId{0x6a6f6200ull << 32 | attempt, h};
}

std::string new_job_id() {
  uint8_t bytes[6];
  secure_random(std::span<uint8_t>(bytes, sizeof bytes));
  return "job_" + to_hex(std::span<const uint8_t>(bytes, sizeof bytes));
}

std::string signal_text(int sig) {
  const char* name = sigabbrev_np(sig);
  return std::to_string(sig) + (name ? std::string(" (SIG") + name + ")" : std::string());
}

std::string duration_text(uint64_t ms) {
  if (ms % 1000 != 0) return std::to_string(ms) + "ms";
  return std::to_string(ms / 1000) + "s";
}

// The executable a job names: a path (relative to its working dir) or a
// name looked up in PATH. Empty when there is none.
std::string resolve_program(const std::string& name, const std::string& cwd, const std::string& path_env) {
  if (name.find('/') != std::string::npos) {
    std::string full = name[0] == '/' ? name : cwd + "/" + name;
    struct stat st {};
    return ::stat(full.c_str(), &st) == 0 && S_ISREG(st.st_mode) && ::access(full.c_str(), X_OK) == 0 ? full : "";
  }
  std::stringstream dirs(path_env.empty() ? "/usr/local/bin:/usr/bin:/bin" : path_env);
  std::string dir;
  while (std::getline(dirs, dir, ':')) {
    std::string full = (dir.empty() ? cwd : dir) + "/" + name;
    struct stat st {};
    if (::stat(full.c_str(), &st) == 0 && S_ISREG(st.st_mode) && ::access(full.c_str(), X_OK) == 0) return full;
  }
  return "";
}

// True when `pid` is a process of job `id` (its environment says so): a
// recorded pid may have been reused since.
bool process_is_job(int32_t pid, const std::string& id) {
  if (pid <= 0) return false;
  std::ifstream env("/proc/" + std::to_string(pid) + "/environ", std::ios::binary);
  if (!env) return false;
  std::string content((std::istreambuf_iterator<char>(env)), std::istreambuf_iterator<char>());
  std::string needle = std::string("SHOAL_JOB_ID=") + id;
  size_t at = 0;
  while ((at = content.find(needle, at)) != std::string::npos) {
    bool starts = at == 0 || content[at - 1] == '\0';
    bool ends = at + needle.size() == content.size() || content[at + needle.size()] == '\0';
    if (starts && ends) return true;
    at += needle.size();
  }
  return false;
}

Status write_files(const std::string& dir, const std::vector<File>& files) {
  for (const auto& f : files) {
    std::string path = dir + "/" + f.path;
    for (size_t i = dir.size() + 1; i < path.size(); ++i) {
      if (path[i] != '/') continue;
      std::string parent = path.substr(0, i);
      if (::mkdir(parent.c_str(), 0700) != 0 && errno != EEXIST) {
        return Status::io_error("cannot create " + parent + ": " + std::strerror(errno));
      }
    }
    int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, f.mode & 0777);
    if (fd < 0) return Status::io_error("cannot write " + path + ": " + std::strerror(errno));
    size_t done = 0;
    while (done < f.data.size()) {
      ssize_t w = ::write(fd, f.data.data() + done, f.data.size() - done);
      if (w < 0 && errno == EINTR) continue;
      if (w < 0) {
        ::close(fd);
        return Status::io_error("cannot write " + path + ": " + std::strerror(errno));
      }
      done += static_cast<size_t>(w);
    }
    ::fchmod(fd, f.mode & 0777);
    ::close(fd);
  }
  return {};
}

// Removes a job's directory. Never follows symbolic links (a job may leave
// one pointing anywhere); paths are built from validated ids only.
void remove_tree(const std::string& path) {
  struct stat st {};
  if (::lstat(path.c_str(), &st) != 0) return;
  if (!S_ISDIR(st.st_mode)) {
    ::unlink(path.c_str());
    return;
  }
  if (DIR* d = ::opendir(path.c_str())) {
    while (dirent* e = ::readdir(d)) {
      std::string name = e->d_name;
      if (name == "." || name == "..") continue;
      remove_tree(path + "/" + name);
    }
    ::closedir(d);
  }
  ::rmdir(path.c_str());
}

// The node's environment, then the job's, then shoal's own variables.
std::map<std::string, std::string> job_environment(const Spec& spec, const std::string& id, uint32_t attempt,
                                                   const std::string& address, const std::vector<uint32_t>& gpus) {
  std::map<std::string, std::string> env;
  for (char** e = environ; e != nullptr && *e != nullptr; ++e) {
    std::string entry = *e;
    size_t eq = entry.find('=');
    if (eq != std::string::npos) env[entry.substr(0, eq)] = entry.substr(eq + 1);
  }
  for (const auto& [k, v] : spec.env) env[k] = v;
  env["SHOAL_JOB_ID"] = id;
  env["SHOAL_JOB_ATTEMPT"] = std::to_string(attempt);
  env["SHOAL_ADDRESS"] = address;
  if (spec.array_index >= 0) env["SHOAL_ARRAY_INDEX"] = std::to_string(spec.array_index);
  std::string visible;
  for (size_t i = 0; i < gpus.size(); ++i) visible += (i ? "," : "") + std::to_string(gpus[i]);
  env["CUDA_VISIBLE_DEVICES"] = visible;  // exactly the GPUs reserved; empty: none
  return env;
}

class ErrorLogger final : public kj::TaskSet::ErrorHandler {
 public:
  void taskFailed(kj::Exception&& exception) override {
    SHOAL_LOG_WARN("jobs: {}", exception.getDescription().cStr());
  }
};

}  // namespace

// ---- Local execution state ---------------------------------------------------------

// The libuv handles of one child process. Owned by libuv from the spawn
// until every handle's close callback ran; `service` is cleared when the
// service lets go of it.
struct JobService::Process {
  pid_t pid = 0;
  int pidfd = -1;
  bool reaped = false;
  uv_poll_t exit_watch{};  // the pidfd turns readable when the child exits
  bool watching = false;   // exit_watch was initialized (and must be closed)
  uv_pipe_t pipes[2]{};
  uv_timer_t timeout{};
  uv_timer_t kill{};
  uv_timer_t drain{};
  int open_handles = 0;
  int open_pipes = 0;
  JobService* service = nullptr;
  JobService* lingering_owner = nullptr;  // set while only the SIGKILL timer is left (JobService::lingering_)
  std::string id;
  // The group dies with the node until this Process goes, which is after
  // the group got its SIGKILL and the process was reaped.
  std::shared_ptr<GroupReaper> reaper;
  pid_t watched_group = 0;

  ~Process() {
    if (!reaped && pid > 0) (void)try_reap(pid);  // a node stopping: collect it if it is gone
    if (pidfd >= 0) ::close(pidfd);
    if (reaper != nullptr && watched_group > 0) reaper->forget(watched_group);
  }

  void close_handle(uv_handle_t* h) {
    if (uv_is_closing(h)) return;
    uv_close(h, [](uv_handle_t* handle) {
      auto* self = static_cast<Process*>(handle->data);
      if (--self->open_handles == 0) delete self;
    });
  }
  void close_pipe(int i) {
    if (uv_is_closing(reinterpret_cast<uv_handle_t*>(&pipes[i]))) return;
    --open_pipes;
    close_handle(reinterpret_cast<uv_handle_t*>(&pipes[i]));
  }
  void close_all() {
    for (int i = 0; i < 2; ++i) close_pipe(i);
    for (uv_timer_t* t : {&timeout, &kill, &drain}) close_handle(reinterpret_cast<uv_handle_t*>(t));
    if (watching) close_handle(reinterpret_cast<uv_handle_t*>(&exit_watch));
  }
};

struct JobService::Local {
  std::string id;
  uint32_t attempt = 0;
  detail::ResourceSet demand;
  bool granted = false;   // the executor handed over the demand
  bool released = false;  // and it was given back
  bool started = false;   // a process exists
  bool exited = false;
  bool finishing = false;
  bool kill_requested = false;
  bool stop_by_user = false;
  bool timed_out = false;
  bool superseded = false;  // the record moved on without us: write nothing
  int64_t exit_status = 0;
  int term_signal = 0;
  int32_t pid = 0;
  std::string fail_message;  // set when it failed before or at start
  std::vector<uint32_t> gpus;
  detail::GpuGrant gpu_grant;  // the executor's, given back with the demand
  std::unique_ptr<LogWriter> log;
  Process* process = nullptr;
};

struct JobService::Timers {
  uv_timer_t schedule{};
  uv_timer_t resync{};
  bool started = false;
  int open = 2;
};

class JobService::CacheWatcher final : public rpc::Watcher::Server {
 public:
  CacheWatcher(JobService& service, std::shared_ptr<bool> alive, uint64_t generation)
      : service_(service), alive_(std::move(alive)), generation_(generation) {}

 protected:
  kj::Promise<void> events(EventsContext context) override {
    if (!*alive_ || service_.watch_generation_ != generation_) return kj::READY_NOW;
    for (auto e : context.getParams().getEvents()) {
      meta::Event event;
      event.type = e.getType() == 1 ? meta::Event::Type::kDelete : meta::Event::Type::kPut;
      event.kv.key.assign(reinterpret_cast<const char*>(e.getKey().begin()), e.getKey().size());
      event.kv.value.assign(reinterpret_cast<const char*>(e.getValue().begin()), e.getValue().size());
      event.kv.create_revision = e.getCreateRevision();
      event.kv.mod_revision = e.getModRevision();
      service_.on_event(event);
    }
    return kj::READY_NOW;
  }
  kj::Promise<void> cancelled(CancelledContext context) override {
    if (!*alive_ || service_.watch_generation_ != generation_) return kj::READY_NOW;
    SHOAL_LOG_WARN("jobs: the watch on job records ended ({}); reading them again",
                   context.getParams().getReason().cStr());
    service_.synced_ = false;
    service_.watch_generation_++;
    uv_timer_start(&service_.timers_->resync, [](uv_timer_t* t) { static_cast<JobService*>(t->data)->begin_sync(); },
                   kResyncDelayMs, 0);
    return kj::READY_NOW;
  }

 private:
  JobService& service_;
  std::shared_ptr<bool> alive_;
  uint64_t generation_;
};

// ---- Life cycle ------------------------------------------------------------------------

JobService::JobService(loop::Loop& loop, control::ControlPlane& control, gossip::GossipService& gossip,
                       rpc::PeerPool& peers, detail::Executor& executor, const Clock& clock,
                       JobServiceOptions options)
    : loop_(loop),
      control_(control),
      gossip_(gossip),
      peers_(peers),
      executor_(executor),
      clock_(clock),
      options_(std::move(options)),
      alive_(std::make_shared<bool>(true)),
      task_errors_(std::make_unique<ErrorLogger>()),
      timers_(std::make_unique<Timers>()) {
  tasks_ = std::make_unique<kj::TaskSet>(*task_errors_);
}

JobService::~JobService() {
  stop();
  *alive_ = false;
}

void JobService::start() {
  std::string dir = options_.data_dir + "/jobs";
  if (::mkdir(dir.c_str(), 0700) != 0 && errno != EEXIST) {
    SHOAL_LOG_ERROR("jobs: cannot create {}: {}", dir, std::strerror(errno));
  }
  uv_timer_init(loop_.uv(), &timers_->schedule);
  uv_timer_init(loop_.uv(), &timers_->resync);
  timers_->schedule.data = this;
  timers_->resync.data = this;
  timers_->started = true;
  auto reaper = GroupReaper::start();
  if (reaper.ok()) {
    reaper_ = std::move(*reaper);
  } else {
    SHOAL_LOG_ERROR("jobs: {}; a job will outlive this node if it crashes", reaper.status().message());
  }
  uv_timer_start(&timers_->schedule, [](uv_timer_t* t) { static_cast<JobService*>(t->data)->schedule_round(); },
                 kScheduleIntervalMs, kScheduleIntervalMs);
  begin_sync();
}

void JobService::stop() {
  if (stopped_) return;
  stopped_ = true;
  *alive_ = false;
  watch_generation_++;
  watch_handle_ = nullptr;
  for (auto& [id, local] : local_) {
    if (local->started && !local->exited && local->pid > 0) ::kill(-local->pid, SIGKILL);
    if (local->process != nullptr) {
      local->process->service = nullptr;
      local->process->close_all();
      local->process = nullptr;
    }
  }
  local_.clear();
  own_writes_.clear();  // cancels the queued updates
  for (Process* proc : lingering_) {
    if (proc->pid > 0) ::kill(-proc->pid, SIGKILL);
    proc->lingering_owner = nullptr;
    proc->close_all();
  }
  lingering_.clear();
  if (timers_->started) {
    timers_->started = false;
    // The handles live inside Timers, freed by the last close callback
    // (which runs after this service is gone).
    Timers* timers = timers_.release();
    for (uv_timer_t* t : {&timers->schedule, &timers->resync}) {
      uv_timer_stop(t);
      t->data = timers;
      uv_close(reinterpret_cast<uv_handle_t*>(t), [](uv_handle_t* h) {
        auto* owner = static_cast<Timers*>(h->data);
        if (--owner->open == 0) delete owner;
      });
    }
  }
  tasks_.reset();
}

void JobService::on_membership_change() { schedule_dirty_ = true; }

size_t JobService::running_here() const { return local_.size(); }

std::string JobService::job_dir(const std::string& id) const { return options_.data_dir + "/jobs/" + id; }

// ---- Metadata access -----------------------------------------------------------------------

kj::Promise<meta::Response> JobService::kv(meta::Request request) {
  auto bytes = meta::encode_request(request);
  if (!bytes.ok()) {
    meta::Response r;
    r.status = bytes.status();
    return r;
  }
  return control_.kv(std::move(*bytes), 0)
      .then(
          [](std::string response) {
            auto decoded = meta::decode_response(response);
            if (!decoded.ok()) {
              meta::Response r;
              r.status = decoded.status();
              return r;
            }
            return std::move(*decoded);
          },
          [](kj::Exception&& e) {
            meta::Response r;
            r.status = rpc::status_from_exception(e);
            return r;
          });
}

kj::Promise<Result<std::pair<Record, int64_t>>> JobService::read_record(const std::string& id) {
  meta::Request request;
  request.body = meta::RangeRequest::single(record_key(id));
  return kv(std::move(request)).then([id](meta::Response r) -> Result<std::pair<Record, int64_t>> {
    if (!r.status.ok()) return r.status;
    auto* range = std::get_if<meta::RangeResponse>(&r.body);
    if (range == nullptr || range->kvs.empty()) return Status::not_found("no job " + id);
    auto record = decode_record(range->kvs[0].value);
    if (!record.ok()) return record.status();
    return std::make_pair(std::move(*record), range->kvs[0].mod_revision);
  });
}

kj::Promise<Result<std::optional<Record>>> JobService::update(std::string id, std::function<bool(Record&)> change,
                                                              int attempt) {
  if (attempt == 0) {
    // This node's updates of one job go one after another, each starting
    // from what the one before wrote: a job that ends while its RUNNING
    // write is in flight would otherwise lose a compare-and-swap to it and
    // cost a second round trip. The chain lives in own_writes_, so a caller
    // that stops waiting does not stop the updates queued behind it.
    OwnWrites& own = own_writes_[id];
    kj::Promise<void> before = kj::READY_NOW;
    KJ_IF_MAYBE(tail, own.tail) {
      before = tail->addBranch().then([](Result<std::optional<Record>>) {}, [](kj::Exception&&) {});
    }
    own.pending++;
    auto done = before
                    .then([this, id, change = std::move(change)]() mutable {
                      return update_in_turn(std::move(id), std::move(change));
                    })
                    .then([this, id](Result<std::optional<Record>> result) {
                      auto it = own_writes_.find(id);
                      if (it != own_writes_.end()) it->second.pending--;
                      return result;
                    })
                    .fork();
    auto branch = done.addBranch();
    own.tail = kj::mv(done);
    return branch;
  }
  return read_record(id).then([this, id, change = std::move(change), attempt](
                                  Result<std::pair<Record, int64_t>> current) mutable
                              -> kj::Promise<Result<std::optional<Record>>> {
    if (!current.ok()) {
      if (current.status().code() == Status::Code::kUnavailable && attempt < kCasRetriesMax && !stopped_) {
        return loop_.timer().afterDelay(500 * kj::MILLISECONDS).then([this, id, change = std::move(change), attempt]() mutable {
          return update(id, std::move(change), attempt + 1);
        });
      }
      return Result<std::optional<Record>>(current.status());
    }
    return write_update(id, std::move(change), attempt, std::move(current->first), current->second);
  });
}

// One update in its turn: the first try starts from the newest of this
// node's cache and its own last write (no read round trip); a stale start
// only costs a refused compare-and-swap, which answers with the current
// value to retry from.
kj::Promise<Result<std::optional<Record>>> JobService::update_in_turn(std::string id,
                                                                     std::function<bool(Record&)> change) {
  auto own = own_writes_.find(id);
  auto cached = cache_.find(id);
  if (own != own_writes_.end() && own->second.revision > 0 &&
      (cached == cache_.end() || cached->second.mod_revision < own->second.revision)) {
    return write_update(id, std::move(change), 1, own->second.record, own->second.revision);
  }
  if (cached != cache_.end()) {
    return write_update(id, std::move(change), 1, cached->second.record, cached->second.mod_revision);
  }
  return update(id, std::move(change), 1);
}

kj::Promise<Result<std::optional<Record>>> JobService::write_update(std::string id,
                                                                    std::function<bool(Record&)> change, int attempt,
                                                                    Record record, int64_t revision) {
  if (!change(record)) return Result<std::optional<Record>>(std::optional<Record>());
  meta::PutRequest put;
  put.key = record_key(id);
  put.value = encode_record(record);
  put.expected_mod_revision = revision;
  meta::Request request;
  request.body = std::move(put);
  return kv(std::move(request)).then([this, id, change = std::move(change), attempt,
                                      record = std::move(record)](meta::Response r) mutable
                                     -> kj::Promise<Result<std::optional<Record>>> {
    if (r.status.ok()) {
      auto own = own_writes_.find(id);
      if (own != own_writes_.end() && r.revision > own->second.revision) {
        own->second.record = record;
        own->second.revision = r.revision;
      }
      return Result<std::optional<Record>>(std::optional<Record>(std::move(record)));
    }
    if (attempt >= kCasRetriesMax || stopped_) return Result<std::optional<Record>>(r.status);
    if (r.status.code() == Status::Code::kAlreadyExists) {
      auto* put = std::get_if<meta::PutResponse>(&r.body);
      if (put != nullptr && put->current) {
        auto current = decode_record(put->current->value);
        if (!current.ok()) return Result<std::optional<Record>>(current.status());
        return write_update(id, std::move(change), attempt + 1, std::move(*current), put->current->mod_revision);
      }
      if (put != nullptr) return Result<std::optional<Record>>(Status::not_found("no job " + id));
      return update(id, std::move(change), attempt + 1);
    }
    if (r.status.code() == Status::Code::kUnavailable) {
      return loop_.timer().afterDelay(500 * kj::MILLISECONDS).then([this, id, change = std::move(change), attempt]() mutable {
        return update(id, std::move(change), attempt + 1);
      });
    }
    return Result<std::optional<Record>>(r.status);
  });
}

// ---- Cache of job records ------------------------------------------------------------------

kj::Promise<Status> JobService::scan_records(std::function<void(const meta::KeyValue&, int64_t)> visit) {
  // The function is owned by the chain's last continuation; pages call it
  // through a plain pointer (capturing the shared_ptr would be a cycle).
  auto page = std::make_shared<std::function<kj::Promise<Status>(std::string)>>();
  auto* next_page = page.get();
  *page = [this, visit = std::move(visit), next_page](std::string from) -> kj::Promise<Status> {
    meta::Request request;
    meta::RangeRequest range;
    range.key = from;
    range.range_end = meta::prefix_range_end(kRecordPrefix);
    range.limit = 5'000;
    request.body = range;
    return kv(std::move(request)).then([&visit, next_page](meta::Response r) -> kj::Promise<Status> {
      if (!r.status.ok()) return r.status;
      auto* got = std::get_if<meta::RangeResponse>(&r.body);
      if (got == nullptr) return Status::internal("a range answered with another kind of response");
      for (const auto& kv : got->kvs) visit(kv, r.revision);
      if (got->more && !got->kvs.empty()) return (*next_page)(got->kvs.back().key + '\0');
      return Status();
    });
  };
  return (*page)(std::string(kRecordPrefix)).then([page](Status status) mutable {
    page.reset();
    return status;
  });
}

void JobService::begin_sync() {
  if (stopped_ || syncing_) return;
  syncing_ = true;
  auto jobs = std::make_shared<std::vector<CachedJob>>();
  auto first_revision = std::make_shared<int64_t>(0);
  // Changes between pages arrive through the watch (which starts after the
  // first page's revision), newest wins.
  auto visit = [jobs, first_revision](const meta::KeyValue& kv, int64_t revision) {
    if (*first_revision == 0) *first_revision = revision;
    auto record = decode_record(kv.value);
    if (!record.ok()) {
      SHOAL_LOG_WARN("jobs: skipping unreadable record {}: {}", kv.key, record.status().message());
      return;
    }
    jobs->push_back(CachedJob{std::move(*record), kv.mod_revision, kv.create_revision});
  };
  tasks_->add(scan_records(visit).then([this, jobs, first_revision](Status status) {
    if (!status.ok()) {
      syncing_ = false;
      SHOAL_LOG_DEBUG("jobs: cannot read job records yet: {}", status.message());
      uv_timer_start(&timers_->resync, [](uv_timer_t* t) { static_cast<JobService*>(t->data)->begin_sync(); },
                     kResyncDelayMs, 0);
      return;
    }
    on_synced(std::move(*jobs), *first_revision);
  }));
}

void JobService::on_synced(std::vector<CachedJob> jobs, int64_t revision) {
  uint64_t generation = ++watch_generation_;
  bool first = cache_revision_ == 0;
  cache_.clear();
  for (auto& j : jobs) {
    std::string id = j.record.id;
    cache_[id] = std::move(j);
  }
  cache_revision_ = revision;
  rpc::Watcher::Client watcher = kj::heap<CacheWatcher>(*this, alive_, generation);
  auto revision_out = kj::heap<int64_t>(0);
  int64_t& rev = *revision_out;
  std::string key(kRecordPrefix);
  tasks_->add(control_.watch(key, meta::prefix_range_end(kRecordPrefix), revision + 1, kj::mv(watcher), rev)
                  .then(
                      [this, generation, first, revision_out = kj::mv(revision_out)](
                          kj::Own<rpc::WatchHandle::Server> handle) {
                        syncing_ = false;
                        if (generation != watch_generation_ || stopped_) return;
                        watch_handle_ = kj::mv(handle);
                        synced_ = true;
                        schedule_dirty_ = true;
                        SHOAL_LOG_DEBUG("jobs: {} job records cached at revision {}", cache_.size(), cache_revision_);
                        std::vector<std::string> ids;
                        for (const auto& [id, job] : cache_) ids.push_back(id);
                        for (const auto& id : ids) {
                          auto it = cache_.find(id);
                          if (it != cache_.end()) on_job_changed(it->second, first);
                        }
                      },
                      [this](kj::Exception&& e) {
                        syncing_ = false;
                        SHOAL_LOG_DEBUG("jobs: cannot watch job records yet: {}", e.getDescription().cStr());
                        uv_timer_start(&timers_->resync,
                                       [](uv_timer_t* t) { static_cast<JobService*>(t->data)->begin_sync(); },
                                       kResyncDelayMs, 0);
                      }));
}

void JobService::on_event(const meta::Event& event) {
  if (event.kv.key.size() <= kRecordPrefix.size()) return;
  std::string id = event.kv.key.substr(kRecordPrefix.size());
  cache_revision_ = std::max(cache_revision_, event.kv.mod_revision);
  schedule_dirty_ = true;
  auto it = cache_.find(id);
  auto own = own_writes_.find(id);
  if (own != own_writes_.end() && own->second.pending == 0 && own->second.revision <= event.kv.mod_revision) {
    own_writes_.erase(own);  // the cache has caught up with this node's writes
  }
  if (event.type == meta::Event::Type::kDelete) {
    if (it != cache_.end() && it->second.mod_revision < event.kv.mod_revision) cache_.erase(it);
    // A deleted job's files go too (ids are validated: the path stays inside jobs/).
    if (!local_.count(id) && validate_id(id).ok()) remove_tree(job_dir(id));
    return;
  }
  if (it != cache_.end() && it->second.mod_revision >= event.kv.mod_revision) return;
  auto record = decode_record(event.kv.value);
  if (!record.ok()) {
    SHOAL_LOG_WARN("jobs: skipping unreadable record {}: {}", event.kv.key, record.status().message());
    return;
  }
  CachedJob& job = cache_[id];
  job = CachedJob{std::move(*record), event.kv.mod_revision, event.kv.create_revision};
  if (synced_) on_job_changed(job, false);
}

void JobService::on_job_changed(const CachedJob& job, bool first_sync) {
  const Record& r = job.record;
  auto it = local_.find(r.id);
  if (it != local_.end()) {
    Local& local = *it->second;
    bool ours = r.node == options_.self_id && r.attempt == local.attempt && !is_terminal(r.state);
    if (!ours && !local.finishing) {
      local.superseded = true;
      request_kill(local, "the job moved on without this node", false);
    } else if (r.stop_requested && !local.kill_requested) {
      local.stop_by_user = true;
      request_kill(local, "stopped by user", false);
    }
    return;
  }
  auto seen = admitted_.find(r.id);
  if (seen != admitted_.end() && (is_terminal(r.state) || r.attempt > seen->second)) {
    admitted_.erase(seen);
    seen = admitted_.end();
  }
  if (r.node != options_.self_id) return;
  if (r.state == State::kAssigned) {
    if (seen != admitted_.end() && seen->second >= r.attempt) return;  // ran (or runs) already
    admit(r);
  } else if (r.state == State::kRunning && first_sync) {
    cleanup_stale(r);
  }
}

// A RUNNING record of this node that no process of this run belongs to: the
// node restarted while the job ran. Its process group died with the node
// (jobs/group_reaper.h) or is killed here; the job is requeued or failed.
void JobService::cleanup_stale(const Record& record) {
  if (process_is_job(record.pid, record.id)) ::kill(-record.pid, SIGKILL);
  std::string self = options_.self_id;
  uint64_t now = clock_.wall_now_ms();
  uint32_t attempt = record.attempt;
  tasks_->add(update(record.id, [self, now, attempt](Record& r) {
                if (r.node != self || r.attempt != attempt || r.state != State::kRunning) return false;
                r.pid = 0;
                r.gpu_ids.clear();
                if (r.stop_requested) {
                  r.end_time_ms = now;
                  r.transition(State::kStopped, "stopped; the node restarted", now, self);
                } else if (static_cast<int>(r.attempt) < r.spec.max_retries) {
                  r.attempt++;
                  r.node.clear();
                  r.node_address.clear();
                  r.start_time_ms = 0;
                  r.transition(State::kPending, "requeued: its node restarted while it ran", now, self);
                } else {
                  r.end_time_ms = now;
                  r.transition(State::kFailed, "node lost: it restarted while the job ran", now, self);
                }
                return true;
              }).ignoreResult());
}

// ---- Scheduling (leader) ------------------------------------------------------------------

std::vector<NodeView> JobService::node_views() const {
  std::vector<NodeView> out;
  for (const auto& m : gossip_.members()) {
    NodeView v;
    v.id = m.info.id;
    v.address = m.info.address;
    v.total = resources_of(m.info.total);
    v.alive = m.state == gossip::MemberState::kAlive || m.state == gossip::MemberState::kSuspect;
    v.lost = m.state == gossip::MemberState::kDead || m.state == gossip::MemberState::kLeft;
    out.push_back(std::move(v));
  }
  return out;
}

void JobService::schedule_round() {
  if (stopped_ || !synced_ || schedule_in_flight_ || !control_.is_leader()) return;
  if (cache_revision_ < schedule_wait_revision_) return;
  uint64_t now = clock_.now_ms();
  if (!schedule_dirty_ && now - last_round_ms_ < kScheduleFullMs) return;
  schedule_dirty_ = false;
  last_round_ms_ = now;
  std::vector<const CachedJob*> jobs;
  size_t finished = 0;
  for (const auto& [id, job] : cache_) {
    if (!is_terminal(job.record.state)) {
      jobs.push_back(&job);
    } else {
      ++finished;
    }
  }
  if (finished > options_.finished_jobs_max) prune_finished(jobs);
  std::vector<Decision> decisions =
      schedule(jobs, node_views(), clock_.wall_now_ms(), [this](const std::string& id) -> const CachedJob* {
        auto it = cache_.find(id);
        return it == cache_.end() ? nullptr : &it->second;
      });
  if (decisions.empty()) return;
  meta::TxnRequest txn;
  for (auto& d : decisions) {
    txn.compares.push_back(record_unchanged(d.record.id, d.mod_revision));
    meta::PutRequest put;
    put.key = record_key(d.record.id);
    put.value = encode_record(d.record);
    txn.success.push_back(std::move(put));
  }
  meta::Request request;
  request.body = std::move(txn);
  schedule_in_flight_ = true;
  size_t count = decisions.size();
  tasks_->add(kv(std::move(request)).then([this, count](meta::Response r) {
    schedule_in_flight_ = false;
    schedule_dirty_ = true;  // there may be more to do, or a conflict to retry
    if (!r.status.ok()) {
      SHOAL_LOG_DEBUG("jobs: scheduling write failed: {}", r.status.message());
      return;
    }
    schedule_wait_revision_ = r.revision;
    auto* txn = std::get_if<meta::TxnResponse>(&r.body);
    if (txn != nullptr && !txn->succeeded) {
      SHOAL_LOG_DEBUG("jobs: {} scheduling decisions were based on a stale view; retrying", count);
    }
  }));
}

void JobService::prune_finished(const std::vector<const CachedJob*>& unfinished) {
  if (prune_in_flight_) return;
  std::vector<const CachedJob*> finished;
  for (const auto& [id, job] : cache_) {
    if (is_terminal(job.record.state)) finished.push_back(&job);
  }
  std::vector<const CachedJob*> going = finished_to_prune(finished, unfinished, options_.finished_jobs_max);
  if (going.empty()) return;
  std::set<std::string> ids;
  for (const CachedJob* job : going) ids.insert(job->record.id);
  meta::TxnRequest txn;
  std::set<std::string> files_going;
  for (const CachedJob* job : going) {
    txn.compares.push_back(record_unchanged(job->record.id, job->mod_revision));
    meta::DeleteRangeRequest del;
    del.key = record_key(job->record.id);
    txn.success.push_back(std::move(del));
    const Spec& spec = job->record.spec;
    std::string owner = files_owner(job->record);
    if (spec.has_working_dir && !files_going.count(owner) && files_unused_after(owner, ids)) {
      files_going.insert(owner);
      meta::DeleteRangeRequest files;
      files.key = files_key(owner);
      txn.success.push_back(std::move(files));
    }
  }
  meta::Request request;
  request.body = std::move(txn);
  prune_in_flight_ = true;
  size_t count = going.size();
  tasks_->add(kv(std::move(request)).then([this, count](meta::Response r) {
    prune_in_flight_ = false;
    auto* txn = std::get_if<meta::TxnResponse>(&r.body);
    if (!r.status.ok() || txn == nullptr || !txn->succeeded) {
      SHOAL_LOG_DEBUG("jobs: deleting {} old finished records did not go through ({}); next round",
                      count, r.status.ok() ? "a record changed" : r.status.message());
      return;
    }
    SHOAL_LOG_INFO("jobs: deleted the {} oldest finished job records (more than {} were kept)", count,
                   options_.finished_jobs_max);
  }));
}

bool JobService::files_unused_after(const std::string& owner, const std::set<std::string>& going) const {
  for (const auto& [id, job] : cache_) {
    const Spec& spec = job.record.spec;
    if (going.count(id) || !spec.has_working_dir) continue;
    if (files_owner(job.record) == owner) return false;
  }
  return true;
}

// ---- Local execution -------------------------------------------------------------------------

void JobService::admit(const Record& record) {
  auto demand = record.spec.demand();
  if (!demand.ok()) return;
  auto local = std::make_unique<Local>();
  local->id = record.id;
  local->attempt = record.attempt;
  local->demand = *demand;
  std::string id = record.id;
  uint32_t attempt = record.attempt;
  std::weak_ptr<bool> alive = alive_;
  loop::Loop* loop = &loop_;
  detail::WorkItem item;
  item.task_id = task_id_of(id, attempt);
  item.demand = *demand;
  item.keep_resources = true;
  // Runs on an executor thread once the demand fits: hand over to the loop,
  // with the GPU devices the executor picked (the same accounting as tasks').
  item.run = [this, alive, loop, id, attempt]() {
    detail::GpuGrant gpus = detail::Executor::current_grant();
    Status posted = loop->post([this, alive, id, attempt, gpus]() {
      auto a = alive.lock();
      if (a && *a) on_granted(id, attempt, gpus);
    });
    if (!posted.ok()) SHOAL_LOG_DEBUG("jobs: cannot start {}: {}", id, posted.message());
  };
  Local& ref = *local;
  local_[id] = std::move(local);
  admitted_[id] = attempt;
  Status submitted = executor_.submit(std::move(item));
  if (!submitted.ok()) fail_before_start(ref, "cannot run here: " + submitted.message());
}

void JobService::on_granted(const std::string& id, uint32_t attempt, const detail::GpuGrant& gpus) {
  auto it = local_.find(id);
  // Every Local stays until its executor item either was cancelled or
  // reached here, so a grant always finds its Local (stop() aside).
  if (it == local_.end() || it->second->attempt != attempt || it->second->granted) return;
  Local& local = *it->second;
  local.granted = true;
  local.gpu_grant = gpus;
  local.gpus = detail::GpuInstances::ids(gpus);
  if (local.kill_requested) {
    maybe_finish(id);
    return;
  }
  auto c = cache_.find(id);
  if (c == cache_.end()) {
    local.superseded = true;
    maybe_finish(id);
    return;
  }
  Record record = c->second.record;
  if (!record.spec.has_working_dir) {
    spawn(local, record);
    return;
  }
  meta::Request request;
  std::string owner = files_owner(record);
  request.body = meta::RangeRequest::single(files_key(owner));
  tasks_->add(kv(std::move(request)).then([this, id, attempt, record](meta::Response r) mutable {
    auto it = local_.find(id);
    if (it == local_.end() || it->second->attempt != attempt) return;
    Local& local = *it->second;
    auto* range = std::get_if<meta::RangeResponse>(&r.body);
    if (!r.status.ok() || range == nullptr || range->kvs.empty()) {
      fail_before_start(local, "cannot read the job's working dir from the metadata store: " +
                                   (r.status.ok() ? std::string("it is gone") : r.status.message()));
      return;
    }
    auto files = decode_files(range->kvs[0].value);
    if (!files.ok()) {
      fail_before_start(local, "the job's working dir is damaged: " + files.status().message());
      return;
    }
    std::string work = job_dir(id) + "/work";
    remove_tree(work);
    ::mkdir(job_dir(id).c_str(), 0700);
    if (::mkdir(work.c_str(), 0700) != 0 && errno != EEXIST) {
      fail_before_start(local, "cannot create " + work + ": " + std::strerror(errno));
      return;
    }
    Status written = write_files(work, *files);
    if (!written.ok()) {
      fail_before_start(local, written.message());
      return;
    }
    if (local.kill_requested) {
      maybe_finish(id);
      return;
    }
    spawn(local, record);
  }));
}

void JobService::fail_before_start(Local& local, const std::string& why) {
  local.fail_message = why;
  local.exited = true;
  if (local.log == nullptr) {
    local.log = std::make_unique<LogWriter>(job_dir(local.id), options_.log_file_bytes_max ? options_.log_file_bytes_max
                                                                                              : kLogFileBytesMax);
    if (local.log->open().ok()) (void)local.log->append("shoal: " + why + "\n");
  }
  maybe_finish(local.id);
}

void JobService::spawn(Local& local, const Record& record) {
  const Spec& spec = record.spec;
  std::string dir = job_dir(local.id);
  if (::mkdir(dir.c_str(), 0700) != 0 && errno != EEXIST) {
    fail_before_start(local, "cannot create " + dir + ": " + std::strerror(errno));
    return;
  }
  std::string work = dir + "/work";
  if (::mkdir(work.c_str(), 0700) != 0 && errno != EEXIST) {
    fail_before_start(local, "cannot create " + work + ": " + std::strerror(errno));
    return;
  }
  local.log = std::make_unique<LogWriter>(dir, options_.log_file_bytes_max ? options_.log_file_bytes_max
                                                                          : kLogFileBytesMax);
  Status opened = local.log->open();
  if (!opened.ok()) {
    fail_before_start(local, opened.message());
    return;
  }

  std::map<std::string, std::string> env = job_environment(spec, local.id, local.attempt, options_.self_address,
                                                           local.gpus);
  std::vector<std::string> args;
  std::string program;
  if (spec.shell) {
    program = "/bin/sh";
    args = {"/bin/sh", "-c", spec.argv[0]};
  } else {
    program = resolve_program(spec.argv[0], work, env.count("PATH") ? env["PATH"] : "");
    if (program.empty()) {
      fail_before_start(local, "cannot run '" + spec.argv[0] + "': no such executable file" +
                                   (spec.argv[0].find('/') == std::string::npos ? " in PATH" : ""));
      return;
    }
    args = spec.argv;
    args[0] = program;
  }
  std::vector<char*> argv;
  for (auto& a : args) argv.push_back(a.data());
  argv.push_back(nullptr);
  std::vector<std::string> env_entries;
  for (const auto& [k, v] : env) env_entries.push_back(k + "=" + v);
  std::vector<char*> envp;
  for (auto& e : env_entries) envp.push_back(e.data());
  envp.push_back(nullptr);

  auto child = spawn_job_process(program.c_str(), argv.data(), envp.data(), work.c_str());
  if (!child.ok()) {
    fail_before_start(local, "cannot start '" + spec.argv[0] + "': " + child.status().message());
    return;
  }
  auto* proc = new Process();  // owned by its libuv handles from here on
  proc->service = this;
  proc->id = local.id;
  proc->pid = child->pid;
  proc->pidfd = child->pidfd;
  uv_loop_t* uv = loop_.uv();
  for (int i = 0; i < 2; ++i) {
    uv_pipe_init(uv, &proc->pipes[i], 0);
    proc->pipes[i].data = proc;
    proc->open_handles++;
    proc->open_pipes++;
    int rc = uv_pipe_open(&proc->pipes[i], child->output[i]);  // the handle owns the fd from here
    if (rc != 0) {
      ::close(child->output[i]);
      SHOAL_LOG_WARN("jobs: cannot read the output of {}: {}", local.id, uv_strerror(rc));
    }
  }
  for (uv_timer_t* t : {&proc->timeout, &proc->kill, &proc->drain}) {
    uv_timer_init(uv, t);
    t->data = proc;
    proc->open_handles++;
  }
  int watch_rc = uv_poll_init(uv, &proc->exit_watch, proc->pidfd);
  if (watch_rc != 0) {
    // Without a way to see it end, the job must not run: end it now.
    ::kill(-proc->pid, SIGKILL);
    while (::waitpid(proc->pid, nullptr, 0) < 0 && errno == EINTR) {
    }
    proc->reaped = true;
    proc->service = nullptr;
    proc->close_all();
    fail_before_start(local, "cannot watch the process of '" + spec.argv[0] + "': " + uv_strerror(watch_rc));
    return;
  }
  proc->watching = true;
  proc->exit_watch.data = proc;
  proc->open_handles++;
  uv_poll_start(&proc->exit_watch, UV_READABLE, [](uv_poll_t* watch, int, int) {
    auto* self = static_cast<Process*>(watch->data);
    auto status = try_reap(self->pid);
    if (!status) return;
    self->reaped = true;
    uv_poll_stop(watch);
    if (self->service == nullptr) return;
    auto it = self->service->local_.find(self->id);
    if (it != self->service->local_.end()) {
      self->service->on_exit(*it->second, status->exit_code, status->term_signal);
    }
  });
  uv_unref(reinterpret_cast<uv_handle_t*>(&proc->exit_watch));
  local.process = proc;
  local.started = true;
  local.pid = proc->pid;
  if (reaper_ != nullptr) {
    reaper_->watch(local.pid);  // a new session: its group id is its pid
    proc->reaper = reaper_;
    proc->watched_group = local.pid;
  }
  watch_process(proc, spec.timeout_ms);
  SHOAL_LOG_DEBUG("jobs: started {} (attempt {}) as pid {}", local.id, local.attempt, local.pid);
  mark_running(local.id);
}

// Reads the child's stdout and stderr into its log and arms its time limit.
void JobService::watch_process(Process* proc, uint64_t timeout_ms) {
  for (auto& pipe : proc->pipes) {
    uv_read_start(
        reinterpret_cast<uv_stream_t*>(&pipe),
        [](uv_handle_t*, size_t, uv_buf_t* buf) {
          static thread_local char buffer[64 * 1024];
          *buf = uv_buf_init(buffer, sizeof buffer);
        },
        [](uv_stream_t* stream, ssize_t nread, const uv_buf_t* buf) {
          auto* self = static_cast<Process*>(stream->data);
          if (nread > 0) {
            if (self->service == nullptr) return;
            auto it = self->service->local_.find(self->id);
            if (it != self->service->local_.end() && it->second->log) {
              Status w = it->second->log->append(std::string_view(buf->base, static_cast<size_t>(nread)));
              if (!w.ok()) SHOAL_LOG_WARN("jobs: {}", w.message());
            }
            return;
          }
          if (nread == 0) return;
          int index = stream == reinterpret_cast<uv_stream_t*>(&self->pipes[0]) ? 0 : 1;
          self->close_pipe(index);
          if (self->service != nullptr) self->service->maybe_finish(self->id);
        });
  }
  if (timeout_ms > 0) {
    uv_timer_start(
        &proc->timeout,
        [](uv_timer_t* t) {
          auto* self = static_cast<Process*>(t->data);
          if (self->service == nullptr) return;
          auto it = self->service->local_.find(self->id);
          if (it == self->service->local_.end()) return;
          it->second->timed_out = true;
          self->service->request_kill(*it->second, "timeout", true);
        },
        timeout_ms, 0);
  }
}

void JobService::mark_running(const std::string& id) {
  auto it = local_.find(id);
  if (it == local_.end()) return;
  Local& local = *it->second;
  std::string self = options_.self_id;
  std::string address = options_.self_address;
  uint32_t attempt = local.attempt;
  int32_t pid = local.pid;
  std::vector<uint32_t> gpus = local.gpus;
  uint64_t now = clock_.wall_now_ms();
  tasks_->add(update(id, [self, address, attempt, pid, gpus, now](Record& r) {
                if (r.node != self || r.attempt != attempt || r.state != State::kAssigned) return false;
                r.pid = pid;
                r.gpu_ids = gpus;
                r.start_time_ms = now;
                r.node_address = address;
                r.transition(State::kRunning, "running on node " + self.substr(0, 8) + " as pid " + std::to_string(pid),
                             now, self);
                return true;
              }).then([this, id, attempt](Result<std::optional<Record>> written) {
    auto it = local_.find(id);
    if (it == local_.end() || it->second->attempt != attempt) return;
    if (written.ok() && !written->has_value()) {
      // The record moved on (requeued elsewhere, or stopped while pending).
      it->second->superseded = true;
      request_kill(*it->second, "the job moved on without this node", false);
    } else if (!written.ok()) {
      SHOAL_LOG_WARN("jobs: cannot record that {} runs: {}", id, written.status().message());
    }
  }));
}

void JobService::request_kill(Local& local, const std::string& why, bool as_timeout) {
  if (local.kill_requested) return;
  local.kill_requested = true;
  if (!local.granted) {
    // Still waiting for resources: take it back from the executor.
    if (executor_.cancel(task_id_of(local.id, local.attempt)).has_value()) {
      local.exited = true;
      maybe_finish(local.id);
    }
    return;
  }
  if (!local.started || local.exited || local.process == nullptr) {
    maybe_finish(local.id);
    return;
  }
  SHOAL_LOG_INFO("jobs: {}: sending SIGTERM to process group {} ({})", local.id, local.pid, why);
  ::kill(-local.pid, SIGTERM);
  uv_timer_start(
      &local.process->kill,
      [](uv_timer_t* t) {
        auto* self = static_cast<Process*>(t->data);
        // The group may outlive its leader: kill it whether or not the leader exited.
        if (self->pid > 0) ::kill(-self->pid, SIGKILL);
      },
      options_.stop_grace_ms, 0);
  (void)as_timeout;
}

void JobService::on_exit(Local& local, int64_t exit_status, int term_signal) {
  local.exited = true;
  local.exit_status = exit_status;
  local.term_signal = term_signal;
  Process* proc = local.process;
  // Whatever else the job left in its process group goes with it, after the
  // grace period when it is being stopped.
  if (!local.kill_requested) ::kill(-local.pid, SIGKILL);
  if (proc != nullptr && proc->open_pipes > 0) {
    uv_timer_start(
        &proc->drain,
        [](uv_timer_t* t) {
          auto* self = static_cast<Process*>(t->data);
          for (int i = 0; i < 2; ++i) self->close_pipe(i);
          if (self->service != nullptr) self->service->maybe_finish(self->id);
        },
        kPipeDrainMs, 0);
  }
  maybe_finish(local.id);
}

// Once the process exited and its output is drained (or it never started):
// give the resources back and record how it ended.
void JobService::maybe_finish(const std::string& id_ref) {
  const std::string id = id_ref;  // id_ref may live in the Local that forget() destroys
  auto it = local_.find(id);
  if (it == local_.end()) return;
  Local& local = *it->second;
  if (local.finishing) return;
  bool never_started = !local.started;
  if (!never_started && (!local.exited || (local.process != nullptr && local.process->open_pipes > 0))) return;
  if (never_started && local.granted == false && !local.exited) return;  // still queued
  if (never_started && local.granted == false && local.kill_requested == false && local.fail_message.empty()) return;
  local.finishing = true;
  if (local.granted && !local.released) {
    executor_.release(local.demand, local.gpu_grant);
    local.released = true;
  }
  // The final state.
  State state = State::kFailed;
  std::string message;
  if (!local.fail_message.empty()) {
    message = local.fail_message;
  } else if (local.stop_by_user) {
    state = State::kStopped;
    message = "stopped by user";
  } else if (local.timed_out) {
    message = "timeout: still running after the time limit";
  } else if (local.started && local.term_signal != 0) {
    message = "killed by signal " + signal_text(local.term_signal);
  } else if (local.started && local.exit_status == 0) {
    state = State::kSucceeded;
    message = "exited with code 0";
  } else if (local.started) {
    message = "exited with code " + std::to_string(local.exit_status);
  } else {
    state = State::kStopped;
    message = "stopped before it started";
  }
  int32_t exit_code = local.started && local.term_signal == 0 ? static_cast<int32_t>(local.exit_status) : -1;
  if (local.started && local.term_signal == 0 && local.exit_status == 0 && local.stop_by_user) state = State::kStopped;
  int sig = local.term_signal;
  bool superseded = local.superseded;
  std::string self = options_.self_id;
  uint32_t attempt = local.attempt;
  uint64_t now = clock_.wall_now_ms();
  uint64_t timeout_ms = 0;
  if (auto c = cache_.find(id); c != cache_.end()) timeout_ms = c->second.record.spec.timeout_ms;
  if (local.timed_out) message = "timeout: still running after " + duration_text(timeout_ms);
  forget(id);
  if (superseded) return;
  SHOAL_LOG_DEBUG("jobs: {} ended: {}", id, message);
  tasks_->add(update(id, [self, attempt, now, state, message, exit_code, sig](Record& r) {
                if (r.node != self || r.attempt != attempt || is_terminal(r.state)) return false;
                State final_state = state;
                if (r.stop_requested && state == State::kFailed) final_state = State::kStopped;
                r.exit_code = exit_code;
                r.signal = sig;
                r.end_time_ms = now;
                r.transition(final_state, final_state == State::kStopped && state != State::kStopped ? "stopped by user"
                                                                                                       : message,
                             now, self);
                return true;
              }).then([id](Result<std::optional<Record>> written) {
    if (!written.ok()) SHOAL_LOG_WARN("jobs: cannot record how {} ended: {}", id, written.status().message());
  }));
}

void JobService::forget(const std::string& id_ref) {
  const std::string id = id_ref;
  auto it = local_.find(id);
  if (it == local_.end()) return;
  Local& local = *it->second;
  if (local.process != nullptr) {
    Process* proc = local.process;
    if (!uv_is_active(reinterpret_cast<uv_handle_t*>(&proc->kill))) {
      proc->service = nullptr;
      proc->close_all();
    } else {
      // Let the SIGKILL timer fire for the rest of the group, then close.
      proc->service = nullptr;
      for (int i = 0; i < 2; ++i) proc->close_pipe(i);
      for (uv_timer_t* t : {&proc->timeout, &proc->drain}) proc->close_handle(reinterpret_cast<uv_handle_t*>(t));
      // The kill timer closes everything after it fired (or stop() does).
      proc->lingering_owner = this;
      lingering_.insert(proc);
      uv_timer_start(
          &proc->kill,
          [](uv_timer_t* t) {
            auto* self = static_cast<Process*>(t->data);
            if (self->pid > 0) ::kill(-self->pid, SIGKILL);
            if (self->lingering_owner != nullptr) self->lingering_owner->lingering_.erase(self);
            self->lingering_owner = nullptr;
            self->close_all();
          },
          options_.stop_grace_ms, 0);
    }
  }
  local_.erase(it);
  // A new attempt may have been assigned here while this one ended.
  auto c = cache_.find(id);
  if (c != cache_.end()) on_job_changed(c->second, false);
}

// ---- Requests ---------------------------------------------------------------------------------

kj::Promise<Result<std::vector<std::string>>> JobService::submit(Spec spec, std::vector<File> files) {
  Status valid = validate_spec(spec);
  if (!valid.ok()) return Result<std::vector<std::string>>(valid);
  if (!files.empty()) {
    Status ok = validate_files(files);
    if (!ok.ok()) return Result<std::vector<std::string>>(ok);
    spec.has_working_dir = true;
  } else {
    spec.has_working_dir = false;
  }
  auto demand = spec.demand();
  if (!demand.ok()) return Result<std::vector<std::string>>(demand.status());
  bool feasible = false;
  std::string largest;
  for (const auto& v : node_views()) {
    if (!v.alive) continue;
    if (demand->fits_in(v.total)) feasible = true;
    largest += (largest.empty() ? "" : "; ") + short_id(v.id) + " has " + v.total.to_string();
  }
  if (!feasible) {
    return Result<std::vector<std::string>>(Status::resource_exhausted(
        "no node can ever run this job: it needs " + demand->to_string() + " and the live nodes have: " +
        (largest.empty() ? "none" : largest)));
  }
  if (spec.entrypoint.empty()) {
    for (size_t i = 0; i < spec.argv.size(); ++i) spec.entrypoint += (i ? " " : "") + spec.argv[i];
  }
  std::string base = spec.submission_id.empty() ? new_job_id() : spec.submission_id;
  std::vector<Record> records;
  uint64_t now = clock_.wall_now_ms();
  int64_t first = spec.array_end >= 0 ? spec.array_index : -1;
  int64_t last = spec.array_end >= 0 ? spec.array_end : -1;
  for (int64_t index = first; index <= last; ++index) {
    Record r;
    r.id = index < 0 ? base : base + "_" + std::to_string(index);
    if (index >= 0 && r.id.size() > kIdBytesMax) {
      return Result<std::vector<std::string>>(Status::invalid_argument("job id " + r.id + " is too long"));
    }
    r.spec = spec;
    r.spec.array_index = index;
    r.spec.array_end = -1;
    r.spec.submission_id = r.id;
    if (spec.has_working_dir) r.spec.files_key = base;
    r.submit_time_ms = now;
    r.transition(State::kPending, "queued", now, options_.self_id);
    records.push_back(std::move(r));
    if (index < 0) break;
  }
  // Dependencies must exist when the job is submitted (the cache may lag:
  // ask the store about the ones it does not know).
  std::vector<std::string> unknown;
  for (const auto& dep : spec.after) {
    if (!cache_.count(dep)) unknown.push_back(dep);
  }
  return check_exist(std::move(unknown), 0)
      .then([this, records = std::move(records), files = std::move(files)](Status deps) mutable
            -> kj::Promise<Result<std::vector<std::string>>> {
        if (!deps.ok()) return Result<std::vector<std::string>>(deps);
        return write_submission(std::move(records), std::move(files));
      });
}

kj::Promise<Status> JobService::check_exist(std::vector<std::string> ids, size_t i) {
  if (i >= ids.size()) return Status();
  std::string id = ids[i];
  return read_record(id).then([this, ids = std::move(ids), i, id](Result<std::pair<Record, int64_t>> got) mutable
                              -> kj::Promise<Status> {
    if (!got.ok()) {
      if (got.status().code() == Status::Code::kNotFound) return Status::invalid_argument("--after " + id + ": no such job");
      return got.status();
    }
    return check_exist(std::move(ids), i + 1);
  });
}

kj::Promise<Result<std::vector<std::string>>> JobService::write_submission(std::vector<Record> records,
                                                                           std::vector<File> files) {
  // The working dir first (one value), then the records in transactions
  // that each insist their keys are new.
  kj::Promise<Status> files_written = Status();
  if (!files.empty()) {
    meta::PutRequest put;
    put.key = files_key(records[0].spec.files_key);
    put.value = encode_files(files);
    put.expected_mod_revision = 0;
    meta::Request request;
    request.body = std::move(put);
    std::string id = records[0].spec.files_key;
    files_written = kv(std::move(request)).then([id](meta::Response r) -> Status {
      if (r.status.code() == Status::Code::kAlreadyExists) return Status::already_exists("job " + id + " already exists");
      return r.status;
    });
  }
  auto shared = std::make_shared<std::vector<Record>>(std::move(records));
  return files_written.then([this, shared](Status status) -> kj::Promise<Result<std::vector<std::string>>> {
    if (!status.ok()) return Result<std::vector<std::string>>(status);
    return write_records(shared, 0);
  });
}

kj::Promise<Result<std::vector<std::string>>> JobService::write_records(std::shared_ptr<std::vector<Record>> records,
                                                                        size_t from) {
  if (from >= records->size()) {
    std::vector<std::string> ids;
    for (const auto& r : *records) ids.push_back(r.id);
    return Result<std::vector<std::string>>(std::move(ids));
  }
  size_t to = std::min(records->size(), from + kSubmitJobsPerTxn);
  meta::TxnRequest txn;
  for (size_t i = from; i < to; ++i) {
    const Record& r = (*records)[i];
    meta::Compare c;
    c.key = record_key(r.id);
    c.target = meta::Compare::Target::kCreateRevision;
    c.op = meta::Compare::Op::kEqual;
    c.number = 0;
    txn.compares.push_back(std::move(c));
    meta::PutRequest put;
    put.key = record_key(r.id);
    put.value = encode_record(r);
    txn.success.push_back(std::move(put));
  }
  meta::Request request;
  request.body = std::move(txn);
  return kv(std::move(request)).then([this, records, from, to](meta::Response r)
                                         -> kj::Promise<Result<std::vector<std::string>>> {
    if (!r.status.ok()) return Result<std::vector<std::string>>(r.status);
    auto* txn = std::get_if<meta::TxnResponse>(&r.body);
    if (txn == nullptr || !txn->succeeded) {
      std::string which = (*records)[from].id + (to - from > 1 ? " (or another of its array)" : "");
      return Result<std::vector<std::string>>(Status::already_exists("job " + which + " already exists"));
    }
    return write_records(records, to);
  });
}

kj::Promise<Result<std::vector<Record>>> JobService::list(std::optional<State> state) {
  auto out = std::make_shared<std::vector<std::pair<int64_t, Record>>>();
  auto visit = [out, state](const meta::KeyValue& kv, int64_t) {
    auto record = decode_record(kv.value);
    if (!record.ok()) return;
    if (state && record->state != *state) return;
    out->emplace_back(kv.create_revision, std::move(*record));
  };
  return scan_records(visit).then([out](Status status) -> Result<std::vector<Record>> {
    if (!status.ok()) return status;
    std::stable_sort(out->begin(), out->end(), [](const auto& a, const auto& b) { return a.first < b.first; });
    std::vector<Record> records;
    for (auto& [rev, r] : *out) records.push_back(std::move(r));
    return records;
  });
}

kj::Promise<Result<Record>> JobService::get(std::string id) {
  Status valid = validate_id(id);
  if (!valid.ok()) return Result<Record>(valid);
  return read_record(id).then([](Result<std::pair<Record, int64_t>> got) -> Result<Record> {
    if (!got.ok()) return got.status();
    return std::move(got->first);
  });
}

kj::Promise<Result<bool>> JobService::stop_job(std::string id) {
  Status valid = validate_id(id);
  if (!valid.ok()) return Result<bool>(valid);
  uint64_t now = clock_.wall_now_ms();
  std::string self = options_.self_id;
  return update(id, [now, self](Record& r) {
           if (is_terminal(r.state) || r.stop_requested) return false;
           if (r.state == State::kPending) {
             r.end_time_ms = now;
             r.transition(State::kStopped, "stopped by user before it started", now, self);
           } else {
             r.stop_requested = true;
           }
           return true;
         })
      .then([id](Result<std::optional<Record>> written) -> Result<bool> {
        if (!written.ok()) {
          if (written.status().code() == Status::Code::kNotFound) return Status::not_found("no job " + id);
          return written.status();
        }
        return written->has_value();
      });
}

kj::Promise<Result<bool>> JobService::remove(std::string id) {
  Status valid = validate_id(id);
  if (!valid.ok()) return Result<bool>(valid);
  return read_record(id).then([this, id](Result<std::pair<Record, int64_t>> got) -> kj::Promise<Result<bool>> {
    if (!got.ok()) return Result<bool>(got.status());
    const Record& r = got->first;
    if (!is_terminal(r.state)) {
      return Result<bool>(Status::invalid_argument("job " + id + " is " + std::string(state_name(r.state)) +
                                                   ": stop it first, or wait until it ends"));
    }
    meta::TxnRequest txn;
    txn.compares.push_back(record_unchanged(id, got->second));
    meta::DeleteRangeRequest del;
    del.key = record_key(id);
    txn.success.push_back(std::move(del));
    // The working dir goes with the last job that uses it (an array's jobs
    // share one).
    std::string owner = files_owner(r);
    if (r.spec.has_working_dir && files_unused_after(owner, {id})) {
      meta::DeleteRangeRequest files;
      files.key = files_key(owner);
      txn.success.push_back(std::move(files));
    }
    meta::Request request;
    request.body = std::move(txn);
    return kv(std::move(request)).then([](meta::Response r) -> Result<bool> {
      if (!r.status.ok()) return r.status;
      auto* txn = std::get_if<meta::TxnResponse>(&r.body);
      return txn != nullptr && txn->succeeded;
    });
  });
}

kj::Promise<Status> JobService::put_package(std::string uri, std::vector<File> files) {
  auto key = package_key(uri);
  if (!key.ok()) return key.status();
  Status valid = validate_files(files);
  if (!valid.ok()) return valid;
  // Room first: the oldest packages beyond kPackagesMax go (jobs hold their
  // own copies, so none of them needs a package after its submission).
  meta::Request list;
  auto range = meta::RangeRequest::prefix(kPackagePrefix);
  range.keys_only = true;
  list.body = std::move(range);
  std::string value = encode_files(files);
  return kv(std::move(list)).then([this, key = *key, value = std::move(value)](meta::Response r) mutable
                                  -> kj::Promise<Status> {
    if (!r.status.ok()) return r.status;
    auto* range = std::get_if<meta::RangeResponse>(&r.body);
    std::vector<meta::KeyValue> others;
    if (range != nullptr) {
      for (auto& kv : range->kvs) {
        if (kv.key != key) others.push_back(std::move(kv));
      }
    }
    std::sort(others.begin(), others.end(),
              [](const meta::KeyValue& a, const meta::KeyValue& b) { return a.create_revision < b.create_revision; });
    meta::TxnRequest txn;
    for (size_t i = 0; i + kPackagesMax <= others.size(); ++i) {
      meta::DeleteRangeRequest del;
      del.key = others[i].key;
      txn.success.push_back(std::move(del));
    }
    meta::PutRequest put;
    put.key = key;
    put.value = std::move(value);
    txn.success.push_back(std::move(put));
    meta::Request request;
    request.body = std::move(txn);
    return kv(std::move(request)).then([](meta::Response w) { return w.status; });
  });
}

kj::Promise<Result<std::vector<File>>> JobService::get_package(std::string uri) {
  auto key = package_key(uri);
  if (!key.ok()) return Result<std::vector<File>>(key.status());
  meta::Request request;
  request.body = meta::RangeRequest::single(*key);
  return kv(std::move(request)).then([uri](meta::Response r) -> Result<std::vector<File>> {
    if (!r.status.ok()) return r.status;
    auto* range = std::get_if<meta::RangeResponse>(&r.body);
    if (range == nullptr || range->kvs.empty()) {
      return Status::not_found("package " + uri + " was not uploaded (PUT /api/packages/...), or was replaced by " +
                               std::to_string(kPackagesMax) + " newer ones");
    }
    auto files = decode_files(range->kvs[0].value);
    if (!files.ok()) return Status::internal("package " + uri + " is damaged: " + files.status().message());
    return files;
  });
}

kj::Promise<Result<LogsResult>> JobService::logs(std::string id, int64_t offset, uint32_t max_bytes, int hops) {
  Status valid = validate_id(id);
  if (!valid.ok()) return Result<LogsResult>(valid);
  return read_record(id).then([this, id, offset, max_bytes, hops](Result<std::pair<Record, int64_t>> got)
                                  -> kj::Promise<Result<LogsResult>> {
    if (!got.ok()) return Result<LogsResult>(got.status());
    const Record& r = got->first;
    bool terminal = is_terminal(r.state);
    std::string node = r.node;
    std::string address = r.node_address;
    if (node.empty() || node == options_.self_id || hops >= 2) {
      LogsResult out;
      if (node == options_.self_id) {
        auto chunk = read_log(job_dir(id), offset, max_bytes);
        if (!chunk.ok()) return Result<LogsResult>(chunk.status());
        out.data = std::move(chunk->data);
        out.offset = static_cast<int64_t>(chunk->offset);
        out.next_offset = static_cast<int64_t>(chunk->next_offset);
        out.finished = terminal && chunk->next_offset >= chunk->end_offset;
      } else {
        out.offset = out.next_offset = std::max<int64_t>(offset, 0);
        out.finished = terminal;
      }
      return Result<LogsResult>(std::move(out));
    }
    if (address.empty() && r.log_nodes.count(node)) address = r.log_nodes.at(node);
    return peers_
        .call<Result<LogsResult>>(address,
                                  [id, offset, max_bytes, hops](rpc::Node::Client& client) {
                                    auto request = client.jobLogsRequest();
                                    request.setId(id);
                                    request.setOffset(offset);
                                    request.setMaxBytes(max_bytes);
                                    request.setHops(static_cast<uint8_t>(hops + 1));
                                    return request.send().then([](auto response) -> Result<LogsResult> {
                                      if (response.getError().size() > 0) {
                                        return Status::unavailable(response.getError().cStr());
                                      }
                                      LogsResult out;
                                      auto data = response.getData();
                                      out.data.assign(reinterpret_cast<const char*>(data.begin()), data.size());
                                      out.offset = response.getOffset();
                                      out.next_offset = response.getNextOffset();
                                      out.finished = response.getFinished();
                                      return out;
                                    });
                                  })
        .then([](Result<LogsResult> r) { return r; },
              [node, address](kj::Exception&& e) -> Result<LogsResult> {
                return Status::unavailable("the logs are on node " + short_id(node) + " at " + address +
                                           ", which does not answer: " + rpc::status_from_exception(e).message());
              });
  });
}

}  // namespace shoal::jobs
