#include "task/cluster_runtime.h"

#include <algorithm>
#include <chrono>
#include <future>
#include <random>
#include <thread>
#include <unordered_set>
#include <variant>

#include "base/assert.h"
#include "base/log.h"
#include "loop/loop.h"
#include "meta/codec.h"
#include "meta/types.h"
#include "rpc/errors.h"
#include "rpc/peer_pool.h"
#include "shoal/registry.h"
#include "task/bulk_channel.h"
#include "task/cluster_task.h"
#include "task/cluster_wire.h"
#include "task/flat_json.h"
#include "task/wire.h"

namespace shoal::detail {

namespace {

int64_t wall_now_ms() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::system_clock::now().time_since_epoch())
      .count();
}

constexpr uint64_t kMembersRefreshMs = 250;
constexpr uint32_t kGetObjectWaitMs = 4'000;    // per getObject call (under the call timeout)
constexpr uint32_t kFetchFailuresMax = 5;       // unreachable owner: then the borrower fails
constexpr uint64_t kFetchRetryMs = 200;
constexpr uint64_t kLocateRetryMs = 100;
constexpr uint32_t kLocateAttemptsMax = 100;    // 10 s for a creator to record its actor
constexpr uint64_t kRequeueDelayMs = 50;
constexpr std::size_t kBatchBytesMax = 16u << 20;  // per pushTasks / done message
constexpr std::string_view kDemandPrefix = "/shoal/demand/";
constexpr std::string_view kGroupsPrefix = "/shoal/placement_groups/";
constexpr uint64_t kGroupRetryMs = 250;
constexpr uint32_t kSpillsMax = 3;  // then a node keeps the task and queues it
constexpr auto kOwnerHeartbeat = std::chrono::seconds(2);
constexpr auto kOwnerGrace = std::chrono::seconds(10);  // unreachable this long: gone
constexpr int kReconstructRoundsMax = 16;  // get() rebuilding lost values, at most this often
constexpr uint64_t kDemandRepublishMs = 10'000;
// A node that left the view this recently may come back (gossip suspected a
// starved node): tasks bound to it wait this long before failing.
constexpr auto kMissingNodeGrace = std::chrono::seconds(30);
const std::string kEngine = "(this node)";  // Task::node of tasks run on the engine

ResourceRequest request_from_wire(rpc::ResourceSet::Reader wire) {
  ResourceRequest out;
  out.cpus = wire.getCpus();
  out.gpus = wire.getGpus();
  out.memory_bytes = wire.getMemoryBytes();
  for (auto q : wire.getCustom()) out.custom[std::string(q.getName().cStr())] = q.getAmount();
  return out;
}

void request_to_wire(const ResourceRequest& request, rpc::ResourceSet::Builder wire) {
  wire.setCpus(request.cpus);
  wire.setGpus(request.gpus);
  wire.setMemoryBytes(request.memory_bytes);
  auto custom = wire.initCustom(static_cast<unsigned>(request.custom.size()));
  unsigned i = 0;
  for (const auto& [name, amount] : request.custom) {
    custom[i].setName(name);
    custom[i].setAmount(amount);
    ++i;
  }
}


uint64_t random_session() {
  std::random_device rd;
  return (static_cast<uint64_t>(rd()) << 32) ^ rd() ^ 1;
}

bool labels_match(const std::map<std::string, std::string>& want,
                  const std::map<std::string, std::string>& have) {
  for (const auto& [key, value] : want) {
    auto it = have.find(key);
    if (it == have.end() || it->second != value) return false;
  }
  return true;
}

std::string labels_text(const std::map<std::string, std::string>& labels) {
  std::string out;
  for (const auto& [k, v] : labels) out += (out.empty() ? "" : ",") + k + "=" + v;
  return out;
}

double cpu_wholes(const ResourceSet& set) { return set.wholes(ResourceSet::kCpu); }

// A placement group bundle's resources go by their own names, so only
// tasks that name the bundle can use them (Ray does the same).
ResourceSet bundle_set(const ResourceSet& demand, const PlacementGroupId& group, uint32_t index) {
  ResourceSet out;
  std::string suffix = std::string(ResourceSet::kBundleInfix) + group.hex() + "_" + std::to_string(index);
  for (const auto& [name, units] : demand.entries()) out.set_units(name + suffix, units);
  return out;
}

ResourceRequest request_of(const ResourceSet& set) {
  ResourceRequest out;
  out.cpus = 0;
  for (const auto& [name, units] : set.entries()) {
    out.custom[name] = static_cast<double>(units) / ResourceSet::kUnitsPerWhole;
  }
  return out;
}

// The same quantities as a request (CPU, GPU, memory and the rest).
ResourceRequest plain_request(const ResourceSet& set) {
  ResourceRequest out;
  out.cpus = set.wholes(ResourceSet::kCpu);
  out.gpus = set.wholes(ResourceSet::kGpu);
  out.memory_bytes = static_cast<uint64_t>(set.wholes(ResourceSet::kMemory));
  for (const auto& [name, units] : set.entries()) {
    if (name != ResourceSet::kCpu && name != ResourceSet::kGpu && name != ResourceSet::kMemory)
      out.custom[name] = static_cast<double>(units) / ResourceSet::kUnitsPerWhole;
  }
  return out;
}

std::string group_key(const PlacementGroupId& id) { return std::string(kGroupsPrefix) + id.hex(); }

}  // namespace

// ---- Internal records (Task: cluster_task.h) ------------------------------------------

struct ClusterRuntime::GroupState {
  enum class State { kPending, kCreated, kRemoved };
  PlacementGroupId id;
  std::vector<ResourceSet> bundles;  // empty for a group of another owner (looked up)
  std::size_t bundle_count = 0;
  PlacementStrategy strategy = PlacementStrategy::kPack;
  std::string name;
  bool owned = false;
  // Guarded by mutex_:
  State state = State::kPending;
  std::vector<std::string> nodes;  // per bundle, once created
  std::string reason;              // why it is still pending
  bool placing = false;            // reservations in flight
  bool looking_up = false;
  std::size_t next_bundle = 0;     // bundle_index -1: round robin
};


struct ClusterRuntime::Link {
  std::vector<std::shared_ptr<Task>> tasks;
  std::vector<std::pair<ActorId, std::vector<std::shared_ptr<Task>>>> calls;
  std::vector<std::shared_ptr<Task>> creations;
  std::vector<std::pair<ActorId, std::string>> kills;  // reason empty: release
  std::set<TaskId> in_flight;
  bool sending = false;
  bool flush_scheduled = false;
  bool reconnect = false;  // send a push even if empty (see reconnect_owners_links)
  bool empty() const {
    return tasks.empty() && calls.empty() && creations.empty() && kills.empty() && !reconnect;
  }
};

struct ClusterRuntime::HostedActor {
  ActorPtr handle;  // the engine's
  uint64_t session = 0;
  bool detached = false;
};


class ClusterRuntime::OwnerServer final : public rpc::TaskOwner::Server {
 public:
  explicit OwnerServer(std::weak_ptr<ClusterRuntime> runtime) : runtime_(std::move(runtime)) {}

 protected:
  kj::Promise<void> done(DoneContext context) override {
    auto runtime = runtime_.lock();
    if (!runtime) return kj::READY_NOW;
    runtime->on_results(context.getParams().getResults());
    // Answered once the refs inside the results are registered with their
    // owners: until then the node keeps its own.
    return runtime->adds_settled();
  }

 private:
  std::weak_ptr<ClusterRuntime> runtime_;
};

namespace {
class LogTaskErrors final : public kj::TaskSet::ErrorHandler {
 public:
  void taskFailed(kj::Exception&& exception) override {
    SHOAL_LOG_WARN("task runtime: {}", exception.getDescription().cStr());
  }
};
}  // namespace

// ---- Construction ------------------------------------------------------------------

std::shared_ptr<ClusterRuntime> ClusterRuntime::create(ClusterRuntimeConfig config) {
  SHOAL_ASSERT(config.loop != nullptr && config.peers != nullptr);
  auto runtime = std::shared_ptr<ClusterRuntime>(new ClusterRuntime(std::move(config)));
  runtime->owner_cap_.emplace(kj::heap<OwnerServer>(runtime));
  // Members are re-read every kMembersRefreshMs: dead nodes fail over, new
  // ones are learned, pending tasks are placed again.
  std::weak_ptr<ClusterRuntime> weak = runtime;
  kj::Timer& timer = runtime->config_.loop->timer();
  auto refresh = [weak, &timer](auto& self) -> kj::Promise<void> {
    return timer.afterDelay(kMembersRefreshMs * kj::MILLISECONDS).then([weak, &timer, self]() mutable {
      auto rt = weak.lock();
      if (!rt || rt->shutting_down_.load()) return kj::Promise<void>(kj::READY_NOW);
      rt->on_members_changed();
      return self(self);
    });
  };
  runtime->tasks_set_->add(refresh(refresh));
  runtime->on_members_changed();
  if (runtime->config_.bulk_transfers) {
    auto bulk = std::make_unique<BulkServer>(*runtime->config_.loop, timer);
    Status listening = bulk->listen(runtime->config_.bulk_bind);
    if (listening.ok()) {
      runtime->bulk_ = std::move(bulk);
    } else {
      SHOAL_LOG_WARN("objects: no bulk channel on {} ({}); large values move in readObject chunks",
                     runtime->config_.bulk_bind, listening.to_string());
    }
  }
  return runtime;
}

ClusterRuntime::ClusterRuntime(ClusterRuntimeConfig config)
    : config_(std::move(config)),
      session_(random_session()),
      loop_thread_(std::this_thread::get_id()),
      objects_(config_.store) {
  SHOAL_ASSERT(config_.id_prefix != 0);
  loop_ = config_.loop;
  error_handler_ = std::make_unique<LogTaskErrors>();
  tasks_set_ = std::make_unique<kj::TaskSet>(*error_handler_);
}

ClusterRuntime::~ClusterRuntime() noexcept {
  shutdown();
  join_restore_threads();
}

TaskId ClusterRuntime::new_task_id() {
  return TaskId{config_.id_prefix, next_sequence_.fetch_add(1) << 16};
}

RefPtr ClusterRuntime::new_ref(const ObjectId& id) {
  return std::make_shared<const RefState>(id, config_.address, weak_from_this());
}

bool ClusterRuntime::post(std::function<void()> fn) {
  std::weak_ptr<ClusterRuntime> weak = self();
  std::lock_guard lock(post_mutex_);
  if (loop_ == nullptr) return false;  // torn down: the loop may be gone
  Status posted = loop_->post([weak, fn = std::move(fn)] {
    auto rt = weak.lock();
    if (rt && !rt->torn_down_) fn();
  });
  if (!posted.ok()) {
    SHOAL_LOG_WARN("task runtime: cannot reach the loop thread: {}", posted.to_string());
    return false;
  }
  return true;
}

ErrorInfo ClusterRuntime::system_error(const std::shared_ptr<Task>& task, Status::Code code,
                                       std::string message) const {
  ErrorInfo error;
  error.kind = ErrorKind::kSystem;
  error.code = code;
  error.message = std::move(message);
  if (task) {
    error.function = task->spec.function;
    error.task_id = task->id;
    error.attempts = task->attempts;
  }
  error.node_id = config_.node_id;
  return error;
}

// ---- Submission (any thread) --------------------------------------------------------

Result<RefPtr> ClusterRuntime::submit_task(TaskSpec spec) {
  if (shutting_down_.load()) return Status::unavailable("shoal is shutting down");
  Result<ResourceSet> demand = task_demand(spec);
  if (!demand.ok()) return demand.status();
  auto task = std::make_shared<Task>();
  task->kind = Task::Kind::kTask;
  task->id = new_task_id();
  task->return_id = ObjectId::for_task_return(task->id, 0);
  task->spec = std::move(spec);
  task->demand = std::move(*demand);
  objects_.create_pending(task->return_id);
  RefPtr ref = new_ref(task->return_id);
  {
    std::lock_guard lock(mutex_);
    tasks_.emplace(task->id, task);
  }
  resolve_args(task);
  return ref;
}

Result<RefPtr> ClusterRuntime::submit_actor_task(const ActorHandleState& actor, TaskSpec spec) {
  if (shutting_down_.load()) return Status::unavailable("shoal is shutting down");
  auto task = std::make_shared<Task>();
  task->kind = Task::Kind::kActorCall;
  task->id = new_task_id();
  task->return_id = ObjectId::for_task_return(task->id, 0);
  task->spec = std::move(spec);
  task->actor = actor.id;
  objects_.create_pending(task->return_id);
  RefPtr ref = new_ref(task->return_id);
  std::optional<ErrorInfo> dead;
  {
    std::lock_guard lock(mutex_);
    auto it = actors_.find(actor.id);
    if (it == actors_.end()) {
      // A handle of another runtime instance (shut down): nothing to call.
      dead = ErrorInfo{};
      dead->message = "actor " + actor.class_name + " (" + actor.id.hex() + ") is unknown here";
    } else if (it->second->dead) {
      dead = *it->second->dead;
    } else {
      it->second->queue.push_back(task);
      tasks_.emplace(task->id, task);
    }
  }
  if (dead) {
    ErrorInfo error = *dead;
    error.kind = ErrorKind::kActorDied;
    error.code = Status::Code::kUnavailable;
    error.function = task->spec.function;
    error.task_id = task->id;
    if (error.node_id.empty()) error.node_id = config_.node_id;
    objects_.complete(task->return_id, std::make_shared<const ObjectValue>(ObjectValue{{}, {}, error}));
    return ref;
  }
  resolve_args(task);
  return ref;
}

Result<ActorPtr> ClusterRuntime::create_actor(ActorSpec spec) {
  if (shutting_down_.load()) return Status::unavailable("shoal is shutting down");
  const ActorOptions& options = spec.options;
  std::string what = "actor " + spec.class_name;
  Result<ResourceSet> demand = actor_demand(spec);
  if (!demand.ok()) return demand.status();
  const std::string name_space = options.name_space.empty() ? config_.name_space : options.name_space;
  ActorId id{config_.id_prefix, next_sequence_.fetch_add(1) << 16};
  auto state = std::make_shared<ActorState>();
  state->id = id;
  state->class_name = spec.class_name;
  state->owner = config_.address;
  state->handles = 1;
  state->created_here = true;
  state->detached = options.detached;
  state->name = options.name;
  state->name_space = name_space;
  state->creating = true;

  if (!options.name.empty()) {
    // The name is taken in the metadata store before anything runs, so two
    // creators racing for it get one actor and one clear error.
    std::string record = flat_json({{"id", id.hex()},
                                    {"class", spec.class_name},
                                    {"owner", config_.address},
                                    {"name", options.name},
                                    {"namespace", name_space},
                                    {"detached", options.detached ? "true" : "false"},
                                    {"state", "PENDING_CREATION"}});
    std::string key = named_key(name_space, options.name);
    Result<bool> created = on_loop_and_wait<bool>(
        [this, key, record]() -> kj::Promise<Result<bool>> { return kv_put_if(key, record, 0); },
        Clock::now() + std::chrono::seconds(15));
    if (!created.ok()) {
      return Status(created.status().code(),
                    what + ": cannot record the name " + options.name + " in the metadata store: " +
                        created.status().message());
    }
    if (!*created) {
      return Status::already_exists("an actor named " + options.name + " already exists in namespace " +
                                    name_space);
    }
  }

  auto task = std::make_shared<Task>();
  task->kind = Task::Kind::kActorCreation;
  task->id = new_task_id();
  task->spec.function = spec.class_name;
  task->spec.args = std::move(spec.args);
  task->spec.contained = std::move(spec.contained);
  task->constructor = std::move(spec.constructor);
  task->actor_options = spec.options;
  task->demand = std::move(*demand);
  task->actor = id;
  {
    std::lock_guard lock(mutex_);
    actors_.emplace(id, state);
    tasks_.emplace(task->id, task);
  }
  resolve_args(task);
  return std::make_shared<const ActorHandleState>(id, spec.class_name, config_.address, weak_from_this());
}

Result<RefPtr> ClusterRuntime::put(SerializedValue value) {
  if (shutting_down_.load()) return Status::unavailable("shoal is shutting down");
  if (config_.store && value.bytes.size() > kInlineBytesMax) {
    // Spills make room first; ObjectStoreFull when none can be made.
    Status room = config_.store->wait_for_room(value.bytes.size());
    if (!room.ok()) return Status(room.code(), "put(): " + room.message());
  }
  mark_shared(value.contained);  // whoever fetches it gets the handles inside
  ObjectId id = ObjectId::for_put(new_task_id());
  auto stored = std::make_shared<ObjectValue>();
  stored->bytes = std::move(value.bytes);
  stored->contained = std::move(value.contained);
  objects_.create_ready(id, std::move(stored));
  return new_ref(id);
}

void ClusterRuntime::mark_shared(const Contained& contained) {
  if (contained.actors.empty()) return;
  std::lock_guard lock(mutex_);
  for (const ActorPtr& actor : contained.actors) {
    auto it = actors_.find(actor->id);
    if (it != actors_.end()) it->second->shared = true;
  }
}

// ---- Arguments ------------------------------------------------------------------------

void ClusterRuntime::resolve_args(const std::shared_ptr<Task>& task) {
  std::vector<std::size_t> ref_args;
  for (std::size_t i = 0; i < task->spec.args.size(); ++i) {
    if (task->spec.args[i].ref) ref_args.push_back(i);
  }
  if (ref_args.empty()) {
    on_args_resolved(task);
    return;
  }
  {
    std::lock_guard lock(mutex_);
    task->deps_remaining = ref_args.size();
    task->arg_values.resize(task->spec.args.size());
  }
  for (std::size_t i : ref_args) {
    const RefState& arg = *task->spec.args[i].ref;
    if (arg.owner_address != config_.address) ensure_fetch(arg.id, arg.owner_address);
    std::weak_ptr<ClusterRuntime> weak = self();
    Result<uint64_t> token = objects_.on_ready(arg.id, [weak, task, i](const ObjectValuePtr& value) {
      if (auto rt = weak.lock()) rt->on_argument(task, i, value);
    });
    if (!token.ok()) {
      auto missing = std::make_shared<ObjectValue>();
      missing->error = system_error(task, Status::Code::kNotFound,
                                    "argument " + std::to_string(i + 1) + " of " + task->spec.function +
                                        ": " + token.status().message());
      on_argument(task, i, missing);
    }
  }
}

void ClusterRuntime::on_argument(const std::shared_ptr<Task>& task, std::size_t index,
                                 const ObjectValuePtr& value) {
  std::optional<ErrorInfo> failed;
  {
    std::lock_guard lock(mutex_);
    if (task->done || index >= task->arg_values.size() || task->arg_values[index]) return;
    task->arg_values[index] = value;
    if (value->error && !task->dep_error) task->dep_error = value->error;
    if (--task->deps_remaining > 0) return;
    failed = task->dep_error;
  }
  if (failed) {
    // The task that made an argument failed: so does this one, with that
    // error, so get() at the end of a chain names the root cause.
    fail(task, *failed);
    if (task->kind == Task::Kind::kActorCall) {
      ActorId actor = task->actor;
      post([this, actor] { pump_actor(actor); });
    }
    return;
  }
  on_args_resolved(task);
}

void ClusterRuntime::on_args_resolved(const std::shared_ptr<Task>& task) {
  if (task->kind == Task::Kind::kActorCreation) {
    // Constructor arguments travel inline (they are kept for restarts):
    // values held elsewhere come here first.
    bool remote = false;
    {
      std::lock_guard lock(mutex_);
      remote = has_remote_args(*task);
    }
    if (remote) {
      with_local_args(task, [this, task] { on_args_resolved(task); });
      return;
    }
  }
  if (task->kind == Task::Kind::kActorCall) {
    {
      std::lock_guard lock(mutex_);
      task->resolved = true;
    }
    ActorId actor = task->actor;
    post([this, actor] { pump_actor(actor); });
    return;
  }
  {
    std::lock_guard lock(mutex_);
    task->resolved = true;
  }
  if (task->kind == Task::Kind::kTask && try_run_here(task)) return;
  bool need_post = false;
  {
    std::lock_guard lock(mutex_);
    to_schedule_.push_back(task);
    if (!drain_posted_) drain_posted_ = need_post = true;
  }
  if (need_post) {
    bool posted = post([this] {
      std::deque<std::shared_ptr<Task>> batch;
      {
        std::lock_guard lock(mutex_);
        batch.swap(to_schedule_);
        drain_posted_ = false;
      }
      for (auto& t : batch) pending_.push_back(std::move(t));
      schedule_pending();
    });
    if (!posted) {
      std::lock_guard lock(mutex_);
      drain_posted_ = false;  // the members refresh drains it instead
    }
  }
}

std::vector<std::string_view> ClusterRuntime::argument_bytes(const Task& task) const {
  std::vector<std::string_view> out;
  out.reserve(task.spec.args.size());
  for (std::size_t i = 0; i < task.spec.args.size(); ++i) {
    out.push_back(argument_view(task.spec.args[i], i < task.arg_values.size() ? task.arg_values[i] : nullptr));
  }
  return out;
}

bool ClusterRuntime::by_reference(const Task& task, std::size_t index) const {
  return task.spec.args[index].ref && index < task.arg_values.size() && large(task.arg_values[index]);
}

// ---- Running on this node's engine ---------------------------------------------------

bool ClusterRuntime::try_run_here(const std::shared_ptr<Task>& task) {
  if (!config_.engine) return false;
  const TaskOptions& options = task->spec.options;
  if (!std::holds_alternative<DefaultStrategy>(options.strategy) || !options.labels.empty()) return false;
  if (Registry::instance().function(task->spec.function) == nullptr) return false;
  const ResourceSet total = config_.engine->executor_total();
  if (!task->demand.fits_in(total)) return false;
  {
    std::lock_guard lock(mutex_);
    // Arguments held elsewhere: the push path pulls them (to this node too).
    if (has_remote_args(*task)) return false;
    double cpus = cpu_wholes(total);
    if (static_cast<double>(local_running_) >= std::max(1.0, cpus)) return false;
    ++local_running_;
  }
  run_on_engine(task);
  return true;
}

void ClusterRuntime::run_on_engine(const std::shared_ptr<Task>& task) {
  TaskSpec spec;
  spec.function = task->spec.function;
  spec.options.resources = task->bundle_resources ? *task->bundle_resources : task->spec.options.resources;
  spec.options.max_retries = task->spec.options.max_retries;
  spec.options.retry_exceptions = task->spec.options.retry_exceptions;
  {
    std::lock_guard lock(mutex_);
    for (std::string_view bytes : argument_bytes(*task)) spec.args.push_back(TaskArg{std::string(bytes), {}});
    task->node = kEngine;
    ++task->attempts;
  }
  Result<RefPtr> ref = config_.engine->submit_task(std::move(spec));
  if (!ref.ok()) {
    {
      std::lock_guard lock(mutex_);
      --local_running_;
    }
    fail(task, system_error(task, ref.status().code(), "task " + task->spec.function + ": " + ref.status().message()));
    return;
  }
  {
    std::lock_guard lock(mutex_);
    task->engine_ref = *ref;
  }
  std::weak_ptr<ClusterRuntime> weak = self();
  Result<uint64_t> token = config_.engine->when_ready(**ref, [weak, task](const ObjectValuePtr& value) {
    auto rt = weak.lock();
    if (!rt) return;
    RefPtr engine_ref;
    {
      std::lock_guard lock(rt->mutex_);
      --rt->local_running_;
      engine_ref.swap(task->engine_ref);
    }
    if (value->error) {
      ObjectValue copy;
      copy.error = value->error;
      copy.error->task_id = task->id;
      rt->complete(task, std::make_shared<const ObjectValue>(std::move(copy)));
    } else {
      rt->complete(task, value);
    }
  });
  if (!token.ok()) {
    {
      std::lock_guard lock(mutex_);
      --local_running_;
    }
    fail(task, system_error(task, token.status().code(), token.status().message()));
  }
}

// ---- Placement (loop thread) ----------------------------------------------------------

void ClusterRuntime::schedule_pending() {
  std::vector<std::shared_ptr<Task>> waiting;
  waiting.swap(pending_);
  for (auto& task : waiting) {
    {
      std::lock_guard lock(mutex_);
      if (task->done) continue;
    }
    std::string reason;
    bool never = false;
    std::optional<std::string> address = pick_node(task, &reason, &never);
    if (address) {
      bool remote_args = false;
      {
        std::lock_guard lock(mutex_);
        remote_args = has_remote_args(*task);
      }
      // Tasks with arguments held elsewhere go through a push even to this
      // node: the node side pulls them and keeps the copies.
      if (*address == config_.address && config_.engine && task->kind == Task::Kind::kTask && !remote_args) {
        {
          std::lock_guard lock(mutex_);
          ++local_running_;
        }
        run_on_engine(task);
      } else {
        send_to(*address, task);
      }
      continue;
    }
    if (never) {
      ErrorInfo error = system_error(task, Status::Code::kNotFound, reason);
      if (task->kind == Task::Kind::kActorCreation) {
        actor_died(task->actor, error);
        complete(task, nullptr);
      } else {
        fail(task, std::move(error));
      }
      continue;
    }
    {
      std::lock_guard lock(mutex_);
      task->pending_reason = reason;
    }
    pending_.push_back(task);
  }
}

std::optional<std::string> ClusterRuntime::pick_node(const std::shared_ptr<Task>& task,
                                                     std::string* reason, bool* never) {
  const bool creation = task->kind == Task::Kind::kActorCreation;
  const SchedulingStrategy& strategy =
      creation ? task->actor_options.strategy : task->spec.options.strategy;
  const auto& labels = creation ? task->actor_options.labels : task->spec.options.labels;
  const std::string needed = creation ? "@" + task->spec.function : task->spec.function;
  const std::string what = creation ? "actor " + task->spec.function : "task " + task->spec.function;

  std::vector<const ClusterMember*> candidates;
  std::size_t unknown = 0;
  std::size_t with_function = 0;
  for (const auto& [address, member] : members_) {
    auto f = functions_.find(address);
    if (f == functions_.end()) {
      ++unknown;
      continue;
    }
    if (!f->second.contains(needed)) continue;
    ++with_function;
    if (!task->demand.fits_in(member.total)) continue;
    if (!labels_match(labels, member.labels)) continue;
    candidates.push_back(&member);
  }
  if (learning_recently()) {
    // Place nothing until every member answered what it runs (one round
    // trip at start-up), or SPREAD and the load balance would see only some.
    // A member that does not answer holds nothing up for long.
    *reason = "learning which functions " + std::to_string(learning_.size()) + " node(s) can run";
    return std::nullopt;
  }
  if (const auto* in_group = std::get_if<PlacementGroupStrategy>(&strategy)) {
    std::shared_ptr<GroupState> group;
    std::string group_text = "placement group " + in_group->placement_group.hex();
    {
      std::lock_guard lock(mutex_);
      if (auto it = groups_.find(in_group->placement_group); it != groups_.end()) group = it->second;
    }
    if (!group) {
      look_up_group(in_group->placement_group);
      *reason = "looking up " + group_text + " in the metadata store";
      return std::nullopt;
    }
    std::lock_guard lock(mutex_);
    if (group->state == GroupState::State::kRemoved) {
      *never = true;
      *reason = group_text + " was removed (or is unknown to the cluster)";
      return std::nullopt;
    }
    if (group->state == GroupState::State::kPending) {
      *reason = group_text + " is not placed yet" + (group->reason.empty() ? "" : ": " + group->reason);
      return std::nullopt;
    }
    int index = in_group->bundle_index;
    if (index >= static_cast<int>(group->bundle_count)) {
      *never = true;
      *reason = what + " asks for bundle " + std::to_string(index) + " of " + group_text + ", which has " +
                std::to_string(group->bundle_count);
      return std::nullopt;
    }
    if (index < 0) {
      // Any bundle: the next one (round robin) whose resources fit it.
      for (std::size_t tries = 0; tries < group->bundle_count; ++tries) {
        std::size_t i = group->next_bundle++ % group->bundle_count;
        if (group->bundles.empty() || task->demand.fits_in(group->bundles[i])) {
          index = static_cast<int>(i);
          break;
        }
      }
      if (index < 0) {
        *never = true;
        *reason = what + " needs " + task->demand.to_string() + ", more than any bundle of " + group_text;
        return std::nullopt;
      }
    } else if (!group->bundles.empty() && !task->demand.fits_in(group->bundles[index])) {
      *never = true;
      *reason = what + " needs " + task->demand.to_string() + ", more than bundle " + std::to_string(index) +
                " of " + group_text + " has (" + group->bundles[index].to_string() + ")";
      return std::nullopt;
    }
    const std::string& address = group->nodes[index];
    auto f = functions_.find(address);
    if (!members_.contains(address) || f == functions_.end()) {
      *never = !members_.contains(address);
      *reason = "the node holding bundle " + std::to_string(index) + " of " + group_text + " (" + address +
                ") is " + (members_.contains(address) ? "not known yet" : "gone");
      return std::nullopt;
    }
    if (!f->second.contains(needed)) {
      *never = true;
      *reason = needed + " is not registered on " + address + ", which holds bundle " + std::to_string(index) +
                " of " + group_text;
      return std::nullopt;
    }
    task->bundle_resources = request_of(bundle_set(task->demand, group->id, static_cast<uint32_t>(index)));
    return address;
  }
  if (const auto* affinity = std::get_if<NodeAffinityStrategy>(&strategy)) {
    auto it = std::find_if(candidates.begin(), candidates.end(),
                           [&](const ClusterMember* m) { return m->id == affinity->node_id; });
    // Soft affinity gives way when that node spilled the task back.
    bool spilled_there = affinity->soft && it != candidates.end() && (*it)->address == task->avoid;
    if (it != candidates.end() && !spilled_there) return (*it)->address;
    if (!affinity->soft) {
      bool alive = std::any_of(members_.begin(), members_.end(),
                               [&](const auto& m) { return m.second.id == affinity->node_id; });
      auto seen = last_seen_.find(affinity->node_id);
      bool recently = seen != last_seen_.end() && Clock::now() - seen->second < kMissingNodeGrace;
      if (!alive) {
        // Gone from the view a moment ago: it may be a false suspicion (a
        // starved node refutes and comes back); the task waits a while.
        *never = !recently;
        *reason = what + " must run on node " + affinity->node_id + ", which is not a live member" +
                  (recently ? " (it left the view less than 30 s ago; waiting for it)" : "");
      } else {
        *reason = what + " must run on node " + affinity->node_id +
                  ", which cannot run it (function not registered there, too few resources, or "
                  "labels)";
        *never = unknown == 0;
      }
      return std::nullopt;
    }
  }
  if (candidates.empty()) {
    if (unknown > 0) {
      *reason = "learning which functions " + std::to_string(unknown) + " node(s) can run";
      return std::nullopt;
    }
    if (with_function == 0) {
      *never = true;
      *reason = (creation ? "actor class " + task->spec.function : "function " + task->spec.function) +
                " is not registered in the binary of any live node (" +
                std::to_string(members_.size()) +
                " nodes); start nodes from a binary that registers it (SHOAL_REMOTE / SHOAL_ACTOR)";
      return std::nullopt;
    }
    *reason = what + " needs " + task->demand.to_string() +
              (labels.empty() ? "" : " and labels " + labels_text(labels)) + ": none of the " +
              std::to_string(with_function) + " live node(s) that have it can ever fit it";
    return std::nullopt;
  }
  std::sort(candidates.begin(), candidates.end(),
            [](const ClusterMember* a, const ClusterMember* b) { return a->id < b->id; });
  if (!task->avoid.empty() && candidates.size() > 1) {
    std::erase_if(candidates, [&](const ClusterMember* m) { return m->address == task->avoid; });
  }
  if (std::holds_alternative<SpreadStrategy>(strategy)) {
    return candidates[spread_next_++ % candidates.size()]->address;
  }
  // Default: this node while it has idle CPUs, then pack onto the first node
  // under half its CPUs, then the least loaded.
  auto load = [&](const ClusterMember* m) {
    double running = 0;
    if (auto it = links_.find(m->address); it != links_.end()) running += static_cast<double>(it->second->in_flight.size());
    if (m->address == config_.address) {
      std::lock_guard lock(mutex_);
      running += static_cast<double>(local_running_);
    }
    // What others run there, as gossiped (lags by about a second).
    double busy = std::max(0.0, cpu_wholes(m->total) - cpu_wholes(m->available));
    return std::max(running, busy) / std::max(1.0, cpu_wholes(m->total));
  };
  // Locality: where most of the task's large argument bytes already are,
  // while that node has idle CPUs (moving the task is cheaper than the data).
  if (std::optional<std::string> near = largest_args_holder(*task)) {
    for (const ClusterMember* m : candidates) {
      if (m->address == *near && load(m) < 1.0) return m->address;
    }
  }
  for (const ClusterMember* m : candidates) {
    if (m->address == config_.address && load(m) < 1.0) return m->address;
  }
  for (const ClusterMember* m : candidates) {
    if (load(m) < 0.5) return m->address;
  }
  const ClusterMember* best = candidates.front();
  double best_load = load(best);
  for (const ClusterMember* m : candidates) {
    double l = load(m);
    if (l < best_load) {
      best = m;
      best_load = l;
    }
  }
  return best->address;
}

void ClusterRuntime::send_to(const std::string& address, const std::shared_ptr<Task>& task) {
  auto& link = links_[address];
  if (!link) link = std::make_unique<Link>();
  {
    std::lock_guard lock(mutex_);
    task->node = address;
    task->pending_reason.clear();
    ++task->attempts;
  }
  mark_shared(task->spec.contained);
  if (task->kind == Task::Kind::kActorCreation) {
    link->creations.push_back(task);
  } else {
    link->tasks.push_back(task);
    link->in_flight.insert(task->id);
  }
  schedule_flush(address);
}

void ClusterRuntime::schedule_flush(const std::string& address) {
  Link& link = *links_[address];
  if (link.flush_scheduled || link.sending) return;
  link.flush_scheduled = true;
  tasks_set_->add(kj::evalLater([this, address] {
    auto it = links_.find(address);
    if (it == links_.end()) return;
    it->second->flush_scheduled = false;
    flush_link(address);
  }));
}

void ClusterRuntime::fill_task_wire(const Task& task, const std::string& address, rpc::TaskWire::Builder wire) {
  wire.setTaskHi(task.id.hi);
  wire.setTaskLo(task.id.lo);
  wire.setFunction(task.spec.function);
  std::lock_guard lock(mutex_);
  std::vector<std::string_view> args = argument_bytes(task);
  auto list = wire.initArgs(static_cast<unsigned>(args.size()));
  unsigned by_ref = 0;
  for (unsigned i = 0; i < args.size(); ++i) {
    if (by_reference(task, i)) {
      ++by_ref;  // its slot stays empty; the node pulls the value
      continue;
    }
    list.set(i, capnp::Data::Reader(reinterpret_cast<const capnp::byte*>(args[i].data()), args[i].size()));
  }
  if (by_ref > 0) {
    auto refs = wire.initRefArgs(by_ref);
    unsigned k = 0;
    for (unsigned i = 0; i < args.size(); ++i) {
      if (!by_reference(task, i)) continue;
      const ObjectId& id = task.spec.args[i].ref->id;
      const ObjectValuePtr& value = task.arg_values[i];
      refs[k].setIndex(i);
      refs[k].setObjectHi(id.hi);
      refs[k].setObjectLo(id.lo);
      std::vector<std::string> holders = pull_sources_locked(id, value->remote_size == 0);
      if (holders.empty()) holders.push_back(task.spec.args[i].ref->owner_address);
      fill_stored(value->remote_size > 0 ? value->remote_size : value->bytes.size(), holders,
                  refs[k].initStored());
      // The node may keep a copy: the owner frees it there too.
      any_locations_.store(true);
      Locations& l = locations_[id];
      if (value->remote_size == 0) {
        l.size = value->bytes.size();
        l.owned = task.spec.args[i].ref->owner_address == config_.address;
      }
      l.sent_to.insert(address);
      ++k;
    }
  }
  request_to_wire(task.bundle_resources ? *task.bundle_resources : task.spec.options.resources,
                  wire.initResources());
  wire.setMaxRetries(task.spec.options.max_retries);
  wire.setRetryExceptions(task.spec.options.retry_exceptions);
  wire.setAttempt(task.attempts);
  if (!task.retry_reason.empty()) wire.setRetryReason(task.retry_reason);
  const auto* affinity = std::get_if<NodeAffinityStrategy>(&task.spec.options.strategy);
  wire.setSpillable(task.kind == Task::Kind::kTask && task.spills < kSpillsMax &&
                    (std::holds_alternative<DefaultStrategy>(task.spec.options.strategy) ||
                     (affinity != nullptr && affinity->soft)));
}

void ClusterRuntime::flush_link(const std::string& address) {
  auto it = links_.find(address);
  if (it == links_.end()) return;
  Link& link = *it->second;
  if (link.sending || link.empty()) return;
  link.sending = true;

  // One batch per round trip; what queues meanwhile goes in the next.
  struct Batch {
    std::vector<std::shared_ptr<Task>> tasks;
    std::vector<std::pair<ActorId, std::vector<std::shared_ptr<Task>>>> calls;
    std::vector<std::shared_ptr<Task>> creations;
    std::vector<std::pair<ActorId, std::string>> kills;
    std::set<TaskId> acked;  // requests the node answered (a later timeout does not undo them)
  };
  auto batch = std::make_shared<Batch>();
  std::size_t bytes = 0;
  std::size_t taken = 0;
  {
    std::lock_guard lock(mutex_);
    for (; taken < link.tasks.size(); ++taken) {
      std::size_t size = 0;
      std::vector<std::string_view> args = argument_bytes(*link.tasks[taken]);
      for (std::size_t i = 0; i < args.size(); ++i) {
        if (!by_reference(*link.tasks[taken], i)) size += args[i].size();
      }
      if (taken > 0 && bytes + size > kBatchBytesMax) break;
      bytes += size;
    }
  }
  bool reconnect = link.reconnect;
  link.reconnect = false;
  batch->tasks.assign(link.tasks.begin(), link.tasks.begin() + static_cast<std::ptrdiff_t>(taken));
  link.tasks.erase(link.tasks.begin(), link.tasks.begin() + static_cast<std::ptrdiff_t>(taken));
  batch->calls.swap(link.calls);
  batch->creations.swap(link.creations);
  batch->kills.swap(link.kills);

  rpc::TaskOwner::Client owner = *owner_cap_;
  uint64_t session = session_;
  auto done = config_.peers->call<int>(address, [this, batch, owner, session, address, reconnect](
                                                    rpc::Node::Client& node) mutable -> kj::Promise<int> {
    kj::Vector<kj::Promise<void>> sends;
    for (auto& task : batch->creations) {
      auto request = node.createActorRequest();
      request.setOwner(owner);
      request.setSession(session);
      auto wire = request.initActor();
      wire.setActorHi(task->actor.hi);
      wire.setActorLo(task->actor.lo);
      wire.setClassName(task->spec.function);
      wire.setConstructor(task->constructor);
      {
        std::lock_guard lock(mutex_);
        std::vector<std::string_view> args = argument_bytes(*task);
        auto list = wire.initArgs(static_cast<unsigned>(args.size()));
        for (unsigned i = 0; i < args.size(); ++i) {
          list.set(i, capnp::Data::Reader(reinterpret_cast<const capnp::byte*>(args[i].data()), args[i].size()));
        }
      }
      request_to_wire(task->bundle_resources ? *task->bundle_resources : task->actor_options.resources,
                      wire.initResources());
      wire.setMaxRestarts(task->actor_options.max_restarts);
      wire.setMaxConcurrency(task->actor_options.max_concurrency);
      wire.setDetached(task->actor_options.detached);
      sends.add(request.send().then(
          [this, task, address, batch](auto) {
            batch->acked.insert(task->id);
            on_actor_created(task, address);
          },
          [this, task, address](kj::Exception&& e) {
            actor_died(task->actor, system_error(task, rpc::status_from_exception(e).code(),
                                                 "creating actor " + task->spec.function + " on node " +
                                                     address + " failed: " + kj_text(e)));
            complete(task, nullptr);
          }));
    }
    if (!batch->tasks.empty() || reconnect) {
      auto request = node.pushTasksRequest();
      request.setOwner(owner);
      request.setSession(session);
      request.setOwnerAddress(config_.address);
      auto list = request.initTasks(static_cast<unsigned>(batch->tasks.size()));
      std::vector<TaskId> ids;
      for (unsigned i = 0; i < batch->tasks.size(); ++i) {
        fill_task_wire(*batch->tasks[i], address, list[i]);
        ids.push_back(batch->tasks[i]->id);
      }
      sends.add(request.send().then([batch, ids](auto) { batch->acked.insert(ids.begin(), ids.end()); },
                                    [this, address, ids](kj::Exception&& e) { on_push_failed(address, ids, e); }));
    }
    for (auto& [actor, calls] : batch->calls) {
      auto request = node.pushActorCallsRequest();
      request.setOwner(owner);
      request.setSession(session);
      request.setOwnerAddress(config_.address);
      request.setActorHi(actor.hi);
      request.setActorLo(actor.lo);
      auto list = request.initCalls(static_cast<unsigned>(calls.size()));
      std::vector<TaskId> ids;
      for (unsigned i = 0; i < calls.size(); ++i) {
        fill_task_wire(*calls[i], address, list[i]);
        ids.push_back(calls[i]->id);
      }
      sends.add(request.send().then([batch, ids](auto) { batch->acked.insert(ids.begin(), ids.end()); },
                                    [this, address, ids](kj::Exception&& e) { on_push_failed(address, ids, e); }));
    }
    for (auto& kill : batch->kills) {
      ActorId actor = kill.first;
      const std::string& reason = kill.second;
      auto request = node.killActorRequest();
      request.setActorHi(actor.hi);
      request.setActorLo(actor.lo);
      request.setNoRestart(true);
      request.setReason(reason);
      sends.add(request.send().then([](auto) {}, [actor, address](kj::Exception&& e) {
        SHOAL_LOG_WARN("stopping actor {} on {}: {}", actor.hex(), address, e.getDescription().cStr());
      }));
    }
    return kj::joinPromises(sends.releaseAsArray()).then([] { return 0; });
  });
  tasks_set_->add(done.then(
      [this, address](int) {
        if (auto it = links_.find(address); it != links_.end()) {
          it->second->sending = false;
          flush_link(address);
        }
      },
      [this, address, batch](kj::Exception&& e) {
        // The connection could not be had (or the call timed out): nothing
        // in this batch reached the node.
        std::string why = kj_text(e);
        std::vector<TaskId> ids;
        for (auto& t : batch->tasks) {
          if (!batch->acked.contains(t->id)) ids.push_back(t->id);
        }
        for (auto& [actor, calls] : batch->calls) {
          for (auto& c : calls) {
            if (!batch->acked.contains(c->id)) ids.push_back(c->id);
          }
        }
        for (auto& task : batch->creations) {
          if (batch->acked.contains(task->id)) continue;
          actor_died(task->actor, system_error(task, Status::Code::kUnavailable,
                                               "creating actor " + task->spec.function + " on node " +
                                                   address + " failed: " + why));
          complete(task, nullptr);
        }
        on_push_failed(address, ids, e);
        if (auto it = links_.find(address); it != links_.end()) {
          it->second->sending = false;
          flush_link(address);
        }
      }));
}

void ClusterRuntime::on_push_failed(const std::string& address, const std::vector<TaskId>& ids,
                                    const kj::Exception& e) {
  std::string why = "node " + address + " could not take it: " + kj_text(e);
  // Unreachable (refused, backing off, connection gone): most likely it never
  // arrived. Until gossip says the node is dead, tasks go elsewhere without
  // spending an attempt and actor calls wait, in order, to be sent again
  // (the node comes back, or is declared dead and the actor restarts or
  // dies). Anything else (a timeout) counts as a lost attempt.
  bool unreachable = rpc::status_from_exception(e).code() == Status::Code::kUnavailable &&
                     members_.contains(address);
  auto link = links_.find(address);
  std::map<ActorId, std::vector<std::shared_ptr<Task>>> calls;
  for (const TaskId& id : ids) {
    // Only what is still counted in flight on this node: node_lost (or an
    // answer) may have dealt with it already, and it may run elsewhere now.
    if (link == links_.end() || link->second->in_flight.erase(id) == 0) continue;
    std::shared_ptr<Task> task;
    {
      std::lock_guard lock(mutex_);
      auto it = tasks_.find(id);
      if (it == tasks_.end() || it->second->done) continue;
      task = it->second;
    }
    if (!unreachable) {
      lost_task(task, why);
    } else if (task->kind == Task::Kind::kActorCall) {
      calls[task->actor].push_back(task);
    } else {
      {
        std::lock_guard lock(mutex_);
        task->avoid = address;
        task->node.clear();
        if (task->attempts > 0) --task->attempts;
      }
      pending_.push_back(task);
    }
  }
  for (auto& [actor, list] : calls) {
    // Calls of that actor still waiting in the link's outbox come after the
    // failed ones: they go back to the queue too, behind them, so the order
    // holds.
    if (link != links_.end()) {
      auto& outbox = link->second->calls;
      for (auto it = outbox.begin(); it != outbox.end();) {
        if (it->first != actor) {
          ++it;
          continue;
        }
        for (auto& call : it->second) {
          link->second->in_flight.erase(call->id);
          list.push_back(call);
        }
        it = outbox.erase(it);
      }
    }
    {
      std::lock_guard lock(mutex_);
      auto it = actors_.find(actor);
      if (it == actors_.end()) continue;
      for (auto& call : list) {
        it->second->in_flight.erase(call->id);
        if (call->attempts > 0) --call->attempts;
      }
      it->second->queue.insert(it->second->queue.begin(), list.begin(), list.end());
    }
    ActorId id = actor;
    tasks_set_->add(config_.loop->timer().afterDelay(kRequeueDelayMs * 4 * kj::MILLISECONDS).then([this, id] {
      pump_actor(id);
    }));
  }
  if (!pending_.empty()) {
    tasks_set_->add(config_.loop->timer().afterDelay(kRequeueDelayMs * kj::MILLISECONDS).then([this] {
      schedule_pending();
    }));
  }
}

void ClusterRuntime::lost_task(const std::shared_ptr<Task>& task, const std::string& why) {
  if (task->kind == Task::Kind::kActorCall) {
    ErrorInfo error = system_error(task, Status::Code::kUnavailable, why);
    error.kind = ErrorKind::kActorDied;
    {
      std::lock_guard lock(mutex_);
      if (auto it = actors_.find(task->actor); it != actors_.end()) it->second->in_flight.erase(task->id);
    }
    fail(task, std::move(error));
    return;
  }
  int max_retries = task->spec.options.max_retries;
  bool retry;
  uint32_t attempts;
  {
    std::lock_guard lock(mutex_);
    attempts = task->attempts;
    retry = max_retries < 0 || attempts <= static_cast<uint32_t>(max_retries);
    if (retry) {
      task->retry_reason = "attempt " + std::to_string(attempts) + " on " + task->node + ": " + why;
      task->node.clear();
    }
  }
  if (!retry) {
    fail(task, system_error(task, Status::Code::kUnavailable,
                            why + " (attempt " + std::to_string(attempts) + "; max_retries " +
                                std::to_string(max_retries) + " used up)"));
    return;
  }
  SHOAL_LOG_INFO("retrying task {} ({}): {}", task->spec.function, task->id.hex(), why);
  pending_.push_back(task);
  tasks_set_->add(config_.loop->timer().afterDelay(kRequeueDelayMs * kj::MILLISECONDS).then([this] {
    schedule_pending();
  }));
}

// ---- Results (loop thread) ------------------------------------------------------------

void ClusterRuntime::on_results(capnp::List<rpc::TaskResult>::Reader results) {
  std::string from;          // the reporting node's id (one node per batch)
  std::string from_address;  // and its address
  for (auto result : results) {
    TaskId id{result.getTaskHi(), result.getTaskLo()};
    if (from != result.getNodeId().cStr()) {
      from = result.getNodeId().cStr();
      from_address.clear();
      for (const auto& [address, member] : members_) {
        if (member.id == from) from_address = address;
      }
    }
    if (auto link = links_.find(from_address); link != links_.end()) link->second->in_flight.erase(id);
    std::shared_ptr<Task> task;
    {
      std::lock_guard lock(mutex_);
      auto it = tasks_.find(id);
      if (it == tasks_.end() || it->second->done) continue;  // finished already (a retry's twin)
      task = it->second;
      // Only the node its current attempt went to answers for it: a result
      // from an earlier attempt's node (one declared dead meanwhile, whose
      // task runs elsewhere now) is stale, and so is its spill.
      if (task->node != from_address) {
        SHOAL_LOG_DEBUG("task {} ({}): ignoring a stale result from node {} (it runs on {} now)",
                        task->spec.function, id.hex(), from, task->node.empty() ? "no node yet" : task->node);
        continue;
      }
      if (task->kind == Task::Kind::kActorCall) {
        if (auto a = actors_.find(task->actor); a != actors_.end()) a->second->in_flight.erase(id);
      }
    }
    if (auto link = links_.find(task->node); link != links_.end()) link->second->in_flight.erase(id);
    if (result.getSpilled() && task->kind == Task::Kind::kTask) {
      // The node was full and saw room elsewhere: place it again, not there.
      {
        std::lock_guard lock(mutex_);
        task->avoid = task->node;
        task->node.clear();
        ++task->spills;
        if (task->attempts > 0) --task->attempts;  // it never ran
      }
      pending_.push_back(task);
      continue;
    }
    auto value = std::make_shared<ObjectValue>();
    if (result.isError()) {
      Result<ErrorInfo> error = decode_error_info(data_string(result.getError()));
      // An argument it could not pull from any holder: made again here
      // (lineage), then the task runs again.
      if (error.ok() && error->kind == ErrorKind::kObjectLost) {
        ErrorInfo unrecoverable;
        if (rerun_after_lost_args(task, error->object_id, unrecoverable)) continue;
        if (!unrecoverable.message.empty()) {
          complete(task, std::make_shared<const ObjectValue>(ObjectValue{{}, {}, std::move(unrecoverable)}));
          continue;
        }
      }
      if (error.ok()) {
        value->error = std::move(*error);
        value->error->task_id = id;
        if (value->error->function.empty()) value->error->function = task->spec.function;
      } else {
        value->error = system_error(task, Status::Code::kInternal,
                                    "node " + std::string(result.getNodeId().cStr()) +
                                        " sent an unreadable error: " + error.status().message());
      }
    } else if (result.isStored()) {
      auto stored = result.getStored();
      if (stored.getSize() == 0 || stored.getLocations().size() == 0) {
        value->error = system_error(task, Status::Code::kInternal,
                                    "node " + std::string(result.getNodeId().cStr()) +
                                        " reported a stored result with no size or holder");
      } else {
        value->remote_size = stored.getSize();
        add_locations(task->return_id, stored.getSize(), stored.getLocations(), /*owned=*/true);
      }
    } else {
      value->bytes = data_string(result.getValue());
      // Refs inside are held here from now on (the node keeps them until
      // this batch is answered, after their adds: OwnerServer::done).
      if (result.getHasRefs()) adopt_inner_refs(*value);
    }
    if (!value->error) note_copies(*task, from_address);  // it pulled its large arguments first
    complete(task, std::move(value));
  }
  if (!pending_.empty()) schedule_pending();
}

void ClusterRuntime::complete(const std::shared_ptr<Task>& task, ObjectValuePtr value) {
  std::vector<ObjectValuePtr> arg_values;
  std::vector<TaskArg> args;
  Contained contained;
  // A large result held elsewhere: its task is kept (lineage) so that the
  // value can be made again if every copy is lost.
  const bool lineage = value && !value->error && value->remote_size > 0 && task->kind == Task::Kind::kTask &&
                       (task->spec.options.max_retries < 0 ||
                        task->attempts <= static_cast<uint32_t>(task->spec.options.max_retries));
  {
    std::lock_guard lock(mutex_);
    if (task->done) return;
    task->done = true;
    tasks_.erase(task->id);
    arg_values.swap(task->arg_values);
    if (!lineage) {
      args.swap(task->spec.args);
      contained = std::move(task->spec.contained);
    }
  }
  arg_values.clear();
  args.clear();
  contained = {};
  if (!value || task->return_id.nil()) return;
  if (value->error && !task->lost_why.empty()) {
    // It ran again to replace a lost value: say so.
    ErrorInfo error = *value->error;
    error.message = "its value was lost (" + task->lost_why + ") and running it again failed: " + error.message;
    value = std::make_shared<const ObjectValue>(ObjectValue{{}, {}, std::move(error)});
  }
  bool remote = value->remote_size > 0;
  if (lineage) keep_lineage(task);
  objects_.complete(task->return_id, std::move(value));
  // Nobody here wanted it any more: the node that holds it can drop it.
  if (remote) forget_locations(task->return_id);
}

void ClusterRuntime::fail(const std::shared_ptr<Task>& task, ErrorInfo error) {
  if (error.function.empty()) error.function = task->spec.function;
  if (error.task_id.nil()) error.task_id = task->id;
  if (error.node_id.empty()) error.node_id = config_.node_id;
  if (error.attempts == 0) error.attempts = task->attempts;
  complete(task, std::make_shared<const ObjectValue>(ObjectValue{{}, {}, std::move(error)}));
}

// ---- Members (loop thread) -------------------------------------------------------------

void ClusterRuntime::on_members_changed() {
  {
    // What a dropped post left behind (the loop's queue was full).
    std::deque<std::shared_ptr<Task>> batch;
    {
      std::lock_guard lock(mutex_);
      if (!drain_posted_) batch.swap(to_schedule_);
    }
    for (auto& t : batch) pending_.push_back(std::move(t));
    std::vector<uint64_t> ready;
    {
      std::lock_guard lock(host_mutex_);
      for (auto& [session, s] : sessions_) {
        if (!s->pending.empty() && !s->sending) ready.push_back(session);
      }
    }
    for (uint64_t session : ready) send_results(session);
  }
  reconnect_owners_links();
  check_owners();
  check_borrowers();
  if (!config_.members) return;
  std::vector<ClusterMember> view = config_.members();
  std::map<std::string, ClusterMember> fresh;
  for (auto& m : view) fresh.emplace(m.address, std::move(m));
  std::vector<std::string> lost;
  for (const auto& [address, member] : members_) {
    auto it = fresh.find(address);
    if (it == fresh.end() || it->second.id != member.id) lost.push_back(address);
  }
  members_ = std::move(fresh);
  auto now = Clock::now();
  for (const auto& [address, member] : members_) last_seen_[member.id] = now;
  std::erase_if(last_seen_, [&](const auto& e) { return now - e.second > kMissingNodeGrace * 2; });
  for (const auto& address : lost) node_lost(address);
  for (const auto& [address, member] : members_) {
    if (!functions_.contains(address) && !learning_.contains(address)) learn_node(member);
  }
  if (!pending_.empty()) schedule_pending();
  place_pending_groups();
  publish_demand();
  keep_detached_actors();
}

void ClusterRuntime::check_owners() {
  // Node side: heartbeat every owner session (an empty done) and, when an
  // owner has been unreachable for kOwnerGrace, stop what it left here: its
  // actors that are not detached, its placement group bundles, its results.
  std::vector<uint64_t> beat;
  std::vector<uint64_t> gone;
  auto now = Clock::now();
  {
    std::lock_guard lock(host_mutex_);
    for (auto& [session, s] : sessions_) {
      if (s->unreachable_since && now - *s->unreachable_since >= kOwnerGrace) {
        gone.push_back(session);
      } else if (s->client && !s->sending && now - s->last_sent >= kOwnerHeartbeat) {
        beat.push_back(session);
      }
    }
  }
  for (uint64_t session : beat) send_results(session);
  for (uint64_t session : gone) {
    SHOAL_LOG_INFO("owner session {:x} unreachable for {} s", session,
                   std::chrono::duration_cast<std::chrono::seconds>(kOwnerGrace).count());
    drop_session(session);
  }
}

void ClusterRuntime::on_declared_dead() {
  // Frozen or cut off long enough that the cluster gave up on this node:
  // owners that saw it die ran its tasks elsewhere and restarted its actors
  // there. Its running tasks are fenced (their results are never sent; their
  // owners get a spill notice, which places them again if an owner did not
  // see the death, and is ignored if it did) and its actors are stopped.
  std::vector<std::pair<uint64_t, TaskId>> fenced;
  std::vector<std::shared_ptr<HostedActor>> actors;
  {
    std::lock_guard lock(host_mutex_);
    for (const auto& [id, hosted] : hosted_tasks_) {
      fenced.emplace_back(hosted.session, id);
      fenced_.insert(id);
      history_.ended(id, "FENCED", "the cluster declared this node dead while it ran", wall_now_ms());
    }
    for (auto& [id, actor] : hosted_) actors.push_back(std::move(actor));
    hosted_.clear();
  }
  SHOAL_LOG_WARN("the cluster declared this node dead (it was frozen or cut off): fencing {} task(s) and "
                 "stopping {} actor(s) it ran for others; it goes on as a new incarnation",
                 fenced.size(), actors.size());
  for (auto& actor : actors) {
    if (config_.engine) (void)config_.engine->kill_actor(*actor->handle, true);
  }
  for (const auto& [session, id] : fenced) queue_spill(session, id);
}

void ClusterRuntime::drop_session(uint64_t session) {
  {
    std::vector<std::shared_ptr<HostedActor>> actors;
    std::vector<ActorId> actor_ids;
    std::vector<PlacementGroupId> groups;
    std::unique_ptr<OwnerSession> dropped;
    Unheld dropped_values;  // what it held here: released after the lock
    {
      std::lock_guard lock(host_mutex_);
      for (auto it = hosted_.begin(); it != hosted_.end();) {
        if (it->second->session == session && !it->second->detached) {
          actors.push_back(it->second);
          actor_ids.push_back(it->first);
          it = hosted_.erase(it);
        } else {
          ++it;
        }
      }
      for (const auto& [group, hosted] : hosted_bundles_) {
        if (hosted.session == session) groups.push_back(group);
      }
      auto it = sessions_.find(session);
      if (it != sessions_.end()) {
        dropped = std::move(it->second);
        sessions_.erase(it);
      }
      for (auto h = held_.begin(); h != held_.end();) {
        auto next = std::next(h);
        if (h->second.session == session) unhold_locked(h, dropped_values);
        h = next;
      }
    }
    SHOAL_LOG_INFO("owner session {:x} dropped: stopping its {} actor(s), releasing {} placement group(s)", session,
                   actors.size(), groups.size());
    for (auto& actor : actors) {
      if (config_.engine) (void)config_.engine->kill_actor(*actor->handle, true);
    }
    for (const ActorId& id : actor_ids) kv_delete(actor_key(id));
    for (const PlacementGroupId& group : groups) serve_release_bundles(group);
  }
}

bool ClusterRuntime::learning_recently() const {
  constexpr auto kLearnWait = std::chrono::seconds(2);
  auto now = Clock::now();
  for (const std::string& address : learning_) {
    auto it = first_learning_.find(address);
    if (it != first_learning_.end() && now - it->second < kLearnWait) return true;
  }
  return false;
}

void ClusterRuntime::reconnect_owners_links() {
  for (auto& [address, link] : links_) {
    if (link->in_flight.empty() || link->sending || config_.peers->connected(address)) continue;
    if (!members_.contains(address)) continue;  // node_lost deals with it
    link->reconnect = true;
    schedule_flush(address);
  }
}

void ClusterRuntime::place_pending_groups() {
  std::vector<PlacementGroupId> waiting;
  {
    std::lock_guard lock(mutex_);
    for (const auto& [id, group] : groups_) {
      if (group->owned && group->state == GroupState::State::kPending && !group->placing) waiting.push_back(id);
    }
  }
  for (const auto& id : waiting) try_place_group(id);
}

void ClusterRuntime::publish_demand() {
  // What waits for a node that can fit it, in the metadata store, so
  // `shoalctl status` shows it from any node (owners are drivers too).
  std::vector<PendingDemand> demand = pending_demand();
  std::string summary;
  std::size_t tasks = 0;
  for (const PendingDemand& d : demand) {
    tasks += d.count;
    summary += (summary.empty() ? "" : "\n") + std::to_string(d.count) + " x " + d.function + " (needs " +
               d.demand + "): " + d.reason;
  }
  auto now_ms = static_cast<uint64_t>(wall_now_ms());
  std::string key = std::string(kDemandPrefix) + config_.node_id;
  if (summary.empty()) {
    if (!demand_published_.empty()) kv_delete(key);
    demand_published_.clear();
    return;
  }
  if (summary == demand_published_ && now_ms < demand_published_ms_ + kDemandRepublishMs) return;
  demand_published_ = summary;
  demand_published_ms_ = now_ms;
  kv_put(key, flat_json({{"owner", config_.address},
                         {"owner_id", config_.node_id},
                         {"tasks", std::to_string(tasks)},
                         {"updated_ms", std::to_string(now_ms)},
                         {"summary", summary}}));
}

void ClusterRuntime::learn_node(const ClusterMember& member) {
  if (member.address == config_.address && config_.engine) {
    std::set<std::string> names;
    for (std::string& name : Registry::instance().names()) {
      if (auto colon = name.find("::"); colon != std::string::npos) names.insert("@" + name.substr(0, colon));
      names.insert(std::move(name));
    }
    functions_[member.address] = std::move(names);
    return;
  }
  auto [first, inserted] = first_learning_.try_emplace(member.address, Clock::now());
  (void)first;
  (void)inserted;
  learning_.insert(member.address);
  std::string address = member.address;
  auto info = config_.peers->call<std::set<std::string>>(address, [](rpc::Node::Client& node) {
    return node.nodeInfoRequest().send().then([](auto response) {
      std::set<std::string> names;
      for (auto f : response.getFunctions()) names.insert(f.cStr());
      for (auto c : response.getActorClasses()) names.insert("@" + std::string(c.cStr()));
      return names;
    });
  });
  tasks_set_->add(info.then(
      [this, address](std::set<std::string> names) {
        learning_.erase(address);
        first_learning_.erase(address);
        if (!members_.contains(address)) return;
        functions_[address] = std::move(names);
        if (!pending_.empty()) schedule_pending();
      },
      [this, address](kj::Exception&& e) {
        learning_.erase(address);  // tried again at the next refresh
        if (!pending_.empty()) schedule_pending();
        place_pending_groups();
        SHOAL_LOG_DEBUG("asking node {} what it runs: {}", address, e.getDescription().cStr());
      }));
}

void ClusterRuntime::node_lost(const std::string& address) {
  detached_sweep_due_ = true;  // a detached actor may have lived there
  drop_borrower(address);  // what it borrowed from here went with it
  functions_.erase(address);
  first_learning_.erase(address);
  auto link_it = links_.find(address);
  std::vector<std::shared_ptr<Task>> lost;
  if (link_it != links_.end()) {
    Link& link = *link_it->second;
    std::lock_guard lock(mutex_);
    for (const TaskId& id : link.in_flight) {
      auto it = tasks_.find(id);
      if (it != tasks_.end() && !it->second->done) lost.push_back(it->second);
    }
    for (auto& t : link.tasks) {
      if (!t->done && !link.in_flight.contains(t->id)) lost.push_back(t);
    }
    for (auto& t : link.creations) lost.push_back(t);
  }
  // The link goes once nothing uses it (its flush may still be running).
  if (link_it != links_.end()) {
    Link& link = *link_it->second;
    link.in_flight.clear();
    link.tasks.clear();
    link.calls.clear();
    link.creations.clear();
    link.kills.clear();
  }
  std::vector<ActorId> dead_actors;
  std::vector<ActorId> restarting;
  {
    std::lock_guard lock(mutex_);
    for (auto& [id, actor] : actors_) {
      if (actor->address != address || actor->dead) continue;
      if (actor->created_here && actor->detached) {
        // The metadata leader's node restarts it (cluster_detached.cc), as
        // it does once its creator is gone; calls wait for the new one.
        // Those not sent again fail below with the other lost calls.
        (void)requeue_in_flight_locked(*actor);
        actor->address.clear();
        continue;
      }
      if (!actor->created_here) {
        actor->address.clear();  // its creator restarts it or records its death
        continue;
      }
      int max = actor->options.max_restarts;
      (max < 0 || actor->restarts < max ? restarting : dead_actors).push_back(id);
    }
  }
  std::string why = "node " + address + " left the cluster (dead or stopped)";
  for (const ActorId& id : restarting) restart_actor(id, why);
  for (const ActorId& id : dead_actors) {
    ErrorInfo error;
    error.kind = ErrorKind::kActorDied;
    error.code = Status::Code::kUnavailable;
    error.message = "the actor's " + why;
    actor_died(id, error);
  }
  for (auto& task : lost) {
    if (task->kind == Task::Kind::kActorCall) {
      std::lock_guard lock(mutex_);
      if (task->node.empty()) continue;  // restart_actor sent it again (max_task_retries)
    }
    if (task->kind == Task::Kind::kActorCreation) {
      actor_died(task->actor, system_error(task, Status::Code::kUnavailable,
                                           "creating actor " + task->spec.function + ": " + why));
      complete(task, nullptr);
    } else {
      lost_task(task, why);
    }
  }
}

// ---- Actors, owner side -------------------------------------------------------------

void ClusterRuntime::on_actor_created(const std::shared_ptr<Task>& task, const std::string& address) {
  std::shared_ptr<ActorState> actor;
  {
    std::lock_guard lock(mutex_);
    auto it = actors_.find(task->actor);
    if (it != actors_.end()) {
      actor = it->second;
      actor->address = address;
      actor->creating = false;
    }
  }
  if (actor) {
    std::lock_guard lock(mutex_);
    if (actor->constructor.empty()) {
      for (std::string_view bytes : argument_bytes(*task)) actor->constructor_args.emplace_back(bytes);
      for (std::size_t i = 0; i < task->spec.args.size(); ++i) {
        if (by_reference(*task, i)) actor->constructor_by_reference = true;
      }
      actor->constructor_task_args = task->spec.args;
      actor->constructor_contained = task->spec.contained;
      actor->constructor = task->constructor;
      actor->options = task->actor_options;
      actor->demand = task->demand;
    }
  }
  complete(task, nullptr);
  if (!actor) return;
  {
    // Killed (shoal::kill) while it was being created: it goes now, and
    // its name with it.
    std::unique_lock lock(mutex_);
    if (actor->dead) {
      std::string name = actor->name;
      std::string name_space = actor->name_space;
      lock.unlock();
      send_kill(address, actor->id, "killed by shoal::kill() while it was being created");
      kv_delete(actor_key(actor->id));
      if (!name.empty()) kv_delete(named_key(name_space, name));
      return;
    }
  }
  std::string node_id;
  if (auto m = members_.find(address); m != members_.end()) node_id = m->second.id;
  std::string record;
  std::string name, name_space;
  {
    std::lock_guard lock(mutex_);
    name = actor->name;
    name_space = actor->name_space;
    std::vector<std::pair<std::string, std::string>> fields = {{"id", actor->id.hex()},
                                                               {"class", actor->class_name},
                                                               {"address", address},
                                                               {"node", node_id},
                                                               {"owner", config_.address},
                                                               {"name", actor->name},
                                                               {"namespace", actor->name_space},
                                                               {"detached", actor->detached ? "true" : "false"},
                                                               {"state", "ALIVE"}};
    // What it takes to create it again, for whichever node restarts it.
    if (actor->detached) append_detached_spec(*actor, fields);
    record = flat_json(fields);
  }
  kv_put(actor_key(actor->id), record);
  if (!name.empty()) kv_put(named_key(name_space, name), record);
  pump_actor(actor->id);
}

void ClusterRuntime::actor_died(const ActorId& id, ErrorInfo error) {
  std::deque<std::shared_ptr<Task>> queued;
  std::vector<std::shared_ptr<Task>> in_flight;
  std::string name, name_space;
  bool forget = false;
  {
    std::lock_guard lock(mutex_);
    auto it = actors_.find(id);
    if (it == actors_.end()) return;
    ActorState& actor = *it->second;
    if (!actor.dead) {
      error.kind = ErrorKind::kActorDied;
      if (error.code == Status::Code::kInternal) error.code = Status::Code::kUnavailable;
      actor.dead = error;
      forget = actor.created_here;
      name = actor.name;
      name_space = actor.name_space;
    }
    queued.swap(actor.queue);
    for (const TaskId& t : actor.in_flight) {
      if (auto task = tasks_.find(t); task != tasks_.end()) in_flight.push_back(task->second);
    }
    actor.in_flight.clear();
  }
  for (auto& list : {std::vector<std::shared_ptr<Task>>(queued.begin(), queued.end()), in_flight}) {
    for (const auto& task : list) {
      ErrorInfo e = error;
      e.kind = ErrorKind::kActorDied;
      e.function = task->spec.function;
      e.task_id = task->id;
      e.attempts = task->attempts;
      fail(task, std::move(e));
    }
  }
  if (forget) {
    kv_delete(actor_key(id));
    if (!name.empty()) kv_delete(named_key(name_space, name));
  }
}

void ClusterRuntime::restart_actor(const ActorId& id, const std::string& why) {
  // Loop thread. The constructor runs again (original arguments) on another
  // node; calls not sent yet wait for it; calls that were running are sent
  // again first while max_task_retries allows, else they fail.
  std::vector<std::shared_ptr<Task>> in_flight;
  auto task = std::make_shared<Task>();
  int restarts = 0;
  int max = 0;
  int max_task_retries = 0;
  {
    std::lock_guard lock(mutex_);
    auto it = actors_.find(id);
    if (it == actors_.end()) return;
    ActorState& actor = *it->second;
    max_task_retries = actor.options.max_task_retries;
    in_flight = requeue_in_flight_locked(actor);
    actor.address.clear();
    actor.creating = true;
    restarts = ++actor.restarts;
    max = actor.options.max_restarts;
    task->kind = Task::Kind::kActorCreation;
    task->id = new_task_id();
    task->spec.function = actor.class_name;
    task->spec.args = actor.constructor_task_args;
    task->spec.contained = actor.constructor_contained;
    task->constructor = actor.constructor;
    task->actor_options = actor.options;
    task->demand = actor.demand;
    task->actor = id;
    tasks_.emplace(task->id, task);
  }
  std::string restarting = "restart " + std::to_string(restarts) +
                           (max < 0 ? std::string(" (no limit)") : " of " + std::to_string(max));
  SHOAL_LOG_INFO("actor {} ({}): {}; {}", task->spec.function, id.hex(), why, restarting);
  for (const auto& call : in_flight) {
    ErrorInfo error = system_error(call, Status::Code::kUnavailable,
                                   "the call was running when the actor's " + why + " (max_task_retries " +
                                       std::to_string(max_task_retries) + " used up); the actor restarts (" +
                                       restarting + ")");
    error.kind = ErrorKind::kActorDied;
    fail(call, std::move(error));
  }
  resolve_args(task);  // arguments passed by reference are found (or made) again
}

std::vector<std::shared_ptr<ClusterRuntime::Task>> ClusterRuntime::requeue_in_flight_locked(ActorState& actor) {
  const int max_task_retries = actor.options.max_task_retries;
  std::vector<std::shared_ptr<Task>> again;  // in submission order (ids grow)
  std::vector<std::shared_ptr<Task>> failed;
  for (const TaskId& t : actor.in_flight) {
    auto found = tasks_.find(t);
    if (found == tasks_.end()) continue;
    const auto& call = found->second;
    if (max_task_retries < 0 || call->attempts <= static_cast<uint32_t>(max_task_retries)) {
      call->node.clear();
      again.push_back(call);
    } else {
      failed.push_back(call);
    }
  }
  for (auto c = again.rbegin(); c != again.rend(); ++c) actor.queue.push_front(*c);
  actor.in_flight.clear();
  return failed;
}

void ClusterRuntime::pump_actor(const ActorId& id) {
  std::vector<std::shared_ptr<Task>> to_send;
  std::string address;
  bool locate = false;
  bool release = false;
  std::string released_name;
  std::string released_namespace;
  std::optional<ErrorInfo> dead;
  {
    std::lock_guard lock(mutex_);
    auto it = actors_.find(id);
    if (it == actors_.end()) return;
    ActorState& actor = *it->second;
    if (actor.dead) {
      dead = actor.dead;
    } else if (actor.address.empty()) {
      if (!actor.creating && !actor.locating) {
        actor.locating = true;
        locate = true;
      }
    } else {
      while (!actor.queue.empty()) {
        auto& front = actor.queue.front();
        if (front->done) {
          actor.queue.pop_front();
          continue;
        }
        if (!front->resolved) break;
        front->node = actor.address;
        ++front->attempts;
        actor.in_flight.insert(front->id);
        to_send.push_back(front);
        actor.queue.pop_front();
      }
      address = actor.address;
      if (actor.release_requested && actor.queue.empty()) {
        actor.release_requested = false;
        actor.released = true;
        release = true;
        released_name = actor.name;
        released_namespace = actor.name_space;
        actors_.erase(it);
      }
    }
  }
  if (dead) {
    actor_died(id, *dead);
    return;
  }
  if (locate) {
    locate_actor(id);
    return;
  }
  if (to_send.empty() && !release) return;
  auto& link = links_[address];
  if (!link) link = std::make_unique<Link>();
  if (!to_send.empty()) {
    for (auto& t : to_send) {
      link->in_flight.insert(t->id);
      mark_shared(t->spec.contained);
    }
    if (!link->calls.empty() && link->calls.back().first == id) {
      auto& calls = link->calls.back().second;
      calls.insert(calls.end(), to_send.begin(), to_send.end());
    } else {
      link->calls.emplace_back(id, std::move(to_send));
    }
  }
  if (release) {
    link->kills.emplace_back(id, std::string());
    kv_delete(actor_key(id));
    if (!released_name.empty()) kv_delete(named_key(released_namespace, released_name));
  }
  schedule_flush(address);
}

void ClusterRuntime::locate_actor(const ActorId& id) {
  auto found = kv_get(actor_key(id));
  tasks_set_->add(found.then(
      [this, id](std::optional<std::string> record) {
        std::string address;
        bool restarting = false;
        if (record) {
          auto fields = parse_flat_json(*record);
          if (fields.ok()) {
            auto it = fields->find("address");
            // A record naming a node that is gone is stale: its creator is
            // restarting the actor elsewhere (or will record its death).
            if (it != fields->end() && members_.contains(it->second)) address = it->second;
            // A detached actor's record stays until it is restarted or
            // given up on (cluster_detached.cc): wait as long as it does.
            auto detached = fields->find("detached");
            restarting = detached != fields->end() && detached->second == "true";
          }
        }
        bool give_up = false;
        {
          std::lock_guard lock(mutex_);
          auto it = actors_.find(id);
          if (it == actors_.end()) return;
          ActorState& actor = *it->second;
          actor.locating = false;
          if (!address.empty()) {
            actor.address = address;
          } else if (restarting) {
            actor.locate_attempts = 0;
          } else if (++actor.locate_attempts >= kLocateAttemptsMax) {
            give_up = true;
          }
        }
        if (give_up) {
          ErrorInfo error;
          error.kind = ErrorKind::kActorDied;
          error.code = Status::Code::kNotFound;
          error.message = "actor " + id.hex() +
                          " is not in the cluster's actor directory (never created, or killed)";
          actor_died(id, error);
          return;
        }
        if (!address.empty()) {
          pump_actor(id);
          return;
        }
        tasks_set_->add(config_.loop->timer().afterDelay(kLocateRetryMs * kj::MILLISECONDS).then([this, id] {
          pump_actor(id);
        }));
      },
      [this, id](kj::Exception&& e) {
        {
          std::lock_guard lock(mutex_);
          auto it = actors_.find(id);
          if (it == actors_.end()) return;
          it->second->locating = false;
          ++it->second->locate_attempts;
        }
        SHOAL_LOG_DEBUG("looking up actor {}: {}", id.hex(), e.getDescription().cStr());
        tasks_set_->add(config_.loop->timer().afterDelay(kLocateRetryMs * kj::MILLISECONDS).then([this, id] {
          pump_actor(id);
        }));
      }));
}

Status ClusterRuntime::kill_actor(const ActorHandleState& handle, bool no_restart) {
  ActorId id = handle.id;
  std::string class_name = handle.class_name;
  post([this, id, class_name] {
    std::string address;
    {
      std::lock_guard lock(mutex_);
      auto it = actors_.find(id);
      if (it != actors_.end()) address = it->second->address;
    }
    ErrorInfo error;
    error.kind = ErrorKind::kActorDied;
    error.code = Status::Code::kCancelled;
    error.message = "actor " + class_name + " (" + id.hex() + ") was killed by shoal::kill()";
    if (!address.empty()) {
      send_kill(address, id, "killed by shoal::kill()");
      actor_died(id, error);
      kv_delete(actor_key(id));
      return;
    }
    // Not located yet: find it, then kill it.
    tasks_set_->add(kv_get(actor_key(id)).then([this, id, error](std::optional<std::string> record) {
      if (record) {
        auto fields = parse_flat_json(*record);
        if (fields.ok() && fields->contains("address")) send_kill(fields->at("address"), id, "killed by shoal::kill()");
        if (fields.ok() && fields->contains("name") && !fields->at("name").empty())
          kv_delete(named_key(fields->at("namespace"), fields->at("name")));
      }
      actor_died(id, error);
      kv_delete(actor_key(id));
    }));
  });
  (void)no_restart;  // restarts come with the failures issue; a kill is final
  return Status();
}

Result<ActorPtr> ClusterRuntime::get_actor(std::string_view name, std::string_view name_space) {
  if (shutting_down_.load()) return Status::unavailable("shoal is shutting down");
  std::string ns = name_space.empty() ? config_.name_space : std::string(name_space);
  std::string key = named_key(ns, name);
  auto deadline = Clock::now() + std::chrono::seconds(10);
  for (;;) {
    Result<std::optional<std::string>> record = on_loop_and_wait<std::optional<std::string>>(
        [this, key]() -> kj::Promise<Result<std::optional<std::string>>> {
          return kv_get(key).then([](std::optional<std::string> r) { return Result<std::optional<std::string>>(r); });
        },
        deadline);
    if (!record.ok()) {
      return Status(record.status().code(),
                    "get_actor(" + std::string(name) + "): " + record.status().message());
    }
    if (!*record) {
      return Status::not_found("no actor named " + std::string(name) + " in namespace " + ns);
    }
    auto fields = parse_flat_json(**record);
    if (!fields.ok()) return Status::internal("actor record of " + std::string(name) + ": " + fields.status().message());
    auto id_hex = fields->find("id");
    auto class_name = fields->find("class");
    std::optional<ActorId> parsed_id =
        id_hex == fields->end() ? std::nullopt : actor_id_from_hex(id_hex->second);
    if (!parsed_id || class_name == fields->end()) {
      return Status::internal("actor record of " + std::string(name) + " lacks its id or class");
    }
    if (!fields->contains("address") && Clock::now() < deadline) {
      // Named, not created yet: its creator is placing it.
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
      continue;
    }
    ActorId id = *parsed_id;
    std::string owner = fields->contains("owner") ? fields->at("owner") : std::string();
    // Its first call looks it up in the actor directory, which knows when
    // the address here is stale (its node died; it restarts elsewhere).
    return adopt_actor(id, class_name->second, owner);
  }
}

// ---- References ----------------------------------------------------------------------

RefPtr ClusterRuntime::adopt_ref(ObjectId id, std::string owner_address) {
  ObjectTable::Adopted adopted = objects_.add_ref_or_create(id);
  if (owner_address != config_.address) {
    // The first reference here to an object another process owns.
    if (adopted != ObjectTable::Adopted::kAdded) start_borrow(id, owner_address);
  } else if (adopted == ObjectTable::Adopted::kCreated) {
    // One of ours, already freed: nobody will ever complete it.
    ErrorInfo error;
    error.code = Status::Code::kNotFound;
    error.message = "object " + id.hex() + " was freed by its owner (this process) before this reference to it was read";
    error.node_id = config_.node_id;
    objects_.complete(id, std::make_shared<const ObjectValue>(ObjectValue{{}, {}, error}));
  }
  return std::make_shared<const RefState>(id, std::move(owner_address), weak_from_this());
}

ActorPtr ClusterRuntime::adopt_actor(ActorId id, std::string class_name, std::string owner_address) {
  {
    std::lock_guard lock(mutex_);
    auto& state = actors_[id];
    if (!state) {
      state = std::make_shared<ActorState>();
      state->id = id;
      state->class_name = class_name;
      state->owner = owner_address;
    }
    ++state->handles;
  }
  return std::make_shared<const ActorHandleState>(id, std::move(class_name), std::move(owner_address),
                                                  weak_from_this());
}

void ClusterRuntime::release_ref(const RefState& ref) noexcept {
  const bool borrowed = ref.owner_address != config_.address;
  // A borrowed object nobody here refers to is never read here: its entry
  // goes even while its value is still on its way.
  if (objects_.remove_ref(ref.id, /*drop_pending=*/borrowed) && borrowed) end_borrow(ref.id);
  forget_locations(ref.id);  // the last reference here: copies elsewhere go
}

void ClusterRuntime::release_actor(const ActorHandleState& handle) noexcept {
  bool pump = false;
  {
    std::lock_guard lock(mutex_);
    auto it = actors_.find(handle.id);
    if (it == actors_.end()) return;
    ActorState& actor = *it->second;
    if (actor.handles > 0) --actor.handles;
    if (actor.handles > 0) return;
    if (!actor.created_here) {
      if (actor.queue.empty() && actor.in_flight.empty()) actors_.erase(it);
      return;
    }
    if (actor.detached || actor.shared || actor.dead) return;
    // The last handle is gone: the actor finishes what was sent, then stops.
    actor.release_requested = true;
    pump = true;
  }
  if (pump && !shutting_down_.load()) {
    ActorId id = handle.id;
    post([this, id] { pump_actor(id); });
  }
}

// ---- Borrowed objects ------------------------------------------------------------------

void ClusterRuntime::ensure_fetch(const ObjectId& id, const std::string& owner) {
  {
    std::lock_guard lock(mutex_);
    if (!borrowed_.emplace(id, owner).second) return;
  }
  if (!post([this, id, owner] { fetch_object(id, owner, 0); })) {
    std::lock_guard lock(mutex_);
    borrowed_.erase(id);
  }
}

void ClusterRuntime::fetch_object(ObjectId id, std::string owner, uint32_t failures) {
  // Stop when nobody here refers to it any more.
  Result<ObjectValuePtr> local = objects_.lookup(id);
  if (!local.ok() || *local) {
    std::lock_guard lock(mutex_);
    borrowed_.erase(id);
    return;
  }
  auto fetched = config_.peers->call<ObjectValuePtr>(owner, [this, id](rpc::Node::Client& node) {
    auto request = node.getObjectRequest();
    request.setObjectHi(id.hi);
    request.setObjectLo(id.lo);
    request.setWaitMs(kGetObjectWaitMs);
    return request.send().then([this, id](auto response) -> ObjectValuePtr {
      auto result = response.getResult();
      auto value = std::make_shared<ObjectValue>();
      if (result.isError()) {
        Result<ErrorInfo> error = decode_error_info(data_string(result.getError()));
        if (!error.ok()) {
          value->error = ErrorInfo{};
          value->error->message = "the owner sent an unreadable error: " + error.status().message();
        } else {
          value->error = std::move(*error);
        }
      } else if (result.isStored()) {
        auto stored = result.getStored();
        if (stored.getSize() == 0 || stored.getLocations().size() == 0) {
          value->error = ErrorInfo{};
          value->error->message = "the owner reported a stored value with no size or holder";
        } else {
          value->remote_size = stored.getSize();
          add_locations(id, stored.getSize(), stored.getLocations(), /*owned=*/false);
        }
      } else {
        value->bytes = data_string(result.getValue());
      }
      return value;
    });
  });
  tasks_set_->add(fetched.then(
      [this, id, owner](ObjectValuePtr value) {
        if (value->error && value->error->code == Status::Code::kDeadlineExceeded &&
            value->error->message == "not ready") {
          fetch_object(id, owner, 0);  // still pending at its owner: ask again
          return;
        }
        {
          std::lock_guard lock(mutex_);
          borrowed_.erase(id);
        }
        objects_.complete(id, std::move(value));
      },
      [this, id, owner, failures](kj::Exception&& e) {
        if (failures + 1 < kFetchFailuresMax) {
          tasks_set_->add(config_.loop->timer().afterDelay(kFetchRetryMs * kj::MILLISECONDS).then(
              [this, id, owner, failures] { fetch_object(id, owner, failures + 1); }));
          return;
        }
        {
          std::lock_guard lock(mutex_);
          borrowed_.erase(id);
        }
        ErrorInfo error;
        error.kind = ErrorKind::kOwnerDied;
        error.object_id = id;
        error.code = Status::Code::kUnavailable;
        error.message = "object " + id.hex() + ": its owner " + owner + " cannot be reached: " + kj_text(e);
        error.node_id = config_.node_id;
        objects_.complete(id, std::make_shared<const ObjectValue>(ObjectValue{{}, {}, error}));
      }));
}

// ---- Waiting ------------------------------------------------------------------------------

Status ClusterRuntime::wait_for(std::span<const RefState* const> refs, std::size_t needed,
                                Deadline deadline, std::vector<ObjectValuePtr>& values, bool& done) {
  std::vector<ObjectId> ids;
  ids.reserve(refs.size());
  for (const RefState* ref : refs) {
    if (ref->owner_address != config_.address) ensure_fetch(ref->id, ref->owner_address);
    ids.push_back(ref->id);
  }
  return wait_ready(objects_, ids, needed, deadline, values, done);
}

std::string ClusterRuntime::describe_pending(std::span<const RefState* const> refs,
                                             const std::vector<ObjectValuePtr>& values) const {
  std::size_t pending = 0;
  const RefState* first = nullptr;
  for (std::size_t i = 0; i < refs.size(); ++i) {
    if (values[i] == nullptr) {
      ++pending;
      if (first == nullptr) first = refs[i];
    }
  }
  std::string out = std::to_string(pending) + " of " + std::to_string(refs.size()) + " objects not ready";
  if (first == nullptr) return out;
  out += "; the first is " + first->id.hex();
  if (first->owner_address != config_.address) return out + ", owned by " + first->owner_address;
  std::lock_guard lock(mutex_);
  if (auto it = tasks_.find(first->id.task_id()); it != tasks_.end()) {
    const Task& task = *it->second;
    out += ", from " + std::string(task.kind == Task::Kind::kActorCall ? "actor call " : "task ") +
           task.spec.function;
    if (!task.resolved) {
      out += " (waiting for its arguments)";
    } else if (task.node.empty()) {
      out += " (pending" + (task.pending_reason.empty() ? std::string() : ": " + task.pending_reason) + ")";
    } else {
      out += " (sent to " + task.node + ", attempt " + std::to_string(task.attempts) + ")";
    }
  }
  return out;
}

Result<std::vector<ObjectValuePtr>> ClusterRuntime::get(std::span<const RefState* const> refs,
                                                        Deadline deadline) {
  std::vector<ObjectValuePtr> values;
  // Each round that finds a value of ours lost makes it again (lineage) and
  // waits for it; a task's retries bound how often that can happen.
  for (int round = 0;; ++round) {
    bool done = false;
    SHOAL_RETURN_IF_ERROR(wait_for(refs, refs.size(), deadline, values, done));
    if (!done) return Status::deadline_exceeded(describe_pending(refs, values));
    std::vector<bool> remote(values.size());
    for (std::size_t i = 0; i < values.size(); ++i) remote[i] = values[i]->remote_size > 0;
    SHOAL_RETURN_IF_ERROR(materialize(refs, values, deadline));  // values held elsewhere come here
    bool again = false;
    for (std::size_t i = 0; i < values.size(); ++i) {
      const ObjectValuePtr& v = values[i];
      // Only a value of ours that this pull found gone (a task that failed
      // for a lost argument is an error of its own).
      if (!remote[i] || !v->error || v->error->kind != ErrorKind::kObjectLost || !owns(refs[i]->id)) continue;
      std::optional<ErrorInfo> failed = round < kReconstructRoundsMax
                                            ? reconstruct(refs[i]->id, v->error->message)
                                            : std::optional<ErrorInfo>(*v->error);
      if (!failed) {
        again = true;
      } else {
        values[i] = std::make_shared<const ObjectValue>(ObjectValue{{}, {}, std::move(*failed)});
      }
    }
    if (!again) return values;
    values.clear();
  }
}

Result<std::vector<bool>> ClusterRuntime::wait(std::span<const RefState* const> refs, std::size_t num_ready,
                                               Deadline deadline) {
  SHOAL_RETURN_IF_ERROR(check_wait_args(refs, num_ready));
  std::vector<ObjectValuePtr> values;
  bool done = false;
  SHOAL_RETURN_IF_ERROR(wait_for(refs, num_ready, deadline, values, done));
  std::vector<bool> ready(refs.size());
  for (std::size_t i = 0; i < refs.size(); ++i) ready[i] = values[i] != nullptr;
  return ready;
}

Result<bool> ClusterRuntime::cancel(const RefState& ref, bool force) {
  std::shared_ptr<Task> task;
  {
    std::lock_guard lock(mutex_);
    auto it = tasks_.find(ref.id.task_id());
    if (it == tasks_.end() || it->second->done) return false;
    task = it->second;
  }
  std::string node;
  RefPtr engine_ref;
  {
    std::lock_guard lock(mutex_);
    node = task->node;
    engine_ref = task->engine_ref;
  }
  if (node.empty()) {
    ErrorInfo error = system_error(task, Status::Code::kCancelled, "the task was cancelled");
    error.kind = ErrorKind::kCancelled;
    fail(task, std::move(error));
    return true;
  }
  if (node == kEngine && engine_ref) return config_.engine->cancel(*engine_ref, force);
  TaskId id = task->id;
  post([this, node, id, force, task] {
    // Still in the link's outbox (not pushed yet): it never reaches the node.
    if (auto link = links_.find(node); link != links_.end()) {
      auto& outbox = link->second->tasks;
      auto queued = std::find(outbox.begin(), outbox.end(), task);
      if (queued != outbox.end()) {
        outbox.erase(queued);
        link->second->in_flight.erase(id);
        ErrorInfo error = system_error(task, Status::Code::kCancelled, "the task was cancelled");
        error.kind = ErrorKind::kCancelled;
        fail(task, std::move(error));
        return;
      }
    }
    tasks_set_->add(config_.peers
                        ->call<bool>(node,
                                     [id, force](rpc::Node::Client& n) {
                                       auto request = n.cancelTaskRequest();
                                       request.setTaskHi(id.hi);
                                       request.setTaskLo(id.lo);
                                       request.setForce(force);
                                       return request.send().then([](auto r) { return r.getFound(); });
                                     })
                        .then([](bool) {}, [](kj::Exception&&) {}));
  });
  return true;
}

// ---- Loop helpers ----------------------------------------------------------------------------

template <typename T>
Result<T> ClusterRuntime::on_loop_and_wait(std::function<kj::Promise<Result<T>>()> fn, Deadline deadline) {
  if (std::this_thread::get_id() == loop_thread_) {
    return Status::internal("a blocking task API call was made on the loop thread");
  }
  auto promise = std::make_shared<std::promise<Result<T>>>();
  std::future<Result<T>> future = promise->get_future();
  if (shutting_down_.load()) return Status::unavailable("shoal is shutting down");
  post([this, fn = std::move(fn), promise] {
    tasks_set_->add(fn().then([promise](Result<T> r) { promise->set_value(std::move(r)); },
                              [promise](kj::Exception&& e) {
                                promise->set_value(rpc::status_from_exception(e));
                              }));
  });
  Executor::BlockingScope blocking;
  if (deadline) {
    if (future.wait_until(*deadline) != std::future_status::ready) {
      return Status::deadline_exceeded("the cluster did not answer in time");
    }
  }
  try {
    return future.get();
  } catch (const std::future_error&) {  // the loop dropped the request (shutting down)
    return Status::unavailable("shoal is shutting down");
  }
}

// cluster_objects.cc waits for pulls.
template Result<std::vector<ObjectValuePtr>> ClusterRuntime::on_loop_and_wait<std::vector<ObjectValuePtr>>(
    std::function<kj::Promise<Result<std::vector<ObjectValuePtr>>>()> fn, Deadline deadline);

kj::Promise<std::string> ClusterRuntime::kv_call(std::string request) {
  if (!config_.kv) return KJ_EXCEPTION(DISCONNECTED, "no metadata store is reachable from here");
  return config_.kv(std::move(request));
}

kj::Promise<std::optional<std::string>> ClusterRuntime::kv_get(const std::string& key) {
  meta::Request request;
  request.body = meta::RangeRequest::single(key);
  auto encoded = meta::encode_request(request);
  if (!encoded.ok()) return KJ_EXCEPTION(FAILED, "bad metadata request", encoded.status().message());
  return kv_call(std::move(*encoded)).then([key](std::string bytes) -> kj::Promise<std::optional<std::string>> {
    auto value = meta::single_value(bytes);
    if (!value.ok()) return KJ_EXCEPTION(FAILED, "metadata store", value.status().to_string());
    return std::move(*value);
  });
}

void ClusterRuntime::kv_put(const std::string& key, const std::string& value) {
  meta::Request request;
  meta::PutRequest put;
  put.key = key;
  put.value = value;
  request.body = std::move(put);
  auto encoded = meta::encode_request(request);
  if (!encoded.ok()) return;
  tasks_set_->add(kv_call(std::move(*encoded)).then([](std::string) {}, [key](kj::Exception&& e) {
    SHOAL_LOG_WARN("recording {} in the metadata store: {}", key, e.getDescription().cStr());
  }));
}

kj::Promise<Result<bool>> ClusterRuntime::kv_put_if(const std::string& key, const std::string& value,
                                                    int64_t revision) {
  meta::Request request;
  meta::PutRequest put;
  put.key = key;
  put.value = value;
  put.expected_mod_revision = revision;
  request.body = std::move(put);
  auto encoded = meta::encode_request(request);
  if (!encoded.ok()) return Result<bool>(encoded.status());
  return kv_call(std::move(*encoded)).then([](std::string bytes) -> Result<bool> {
    auto response = meta::decode_response(bytes);
    if (!response.ok()) return response.status();
    if (!response->status.ok()) return response->status;
    const auto* put = std::get_if<meta::PutResponse>(&response->body);
    if (put == nullptr) return Status::internal("metadata store: unexpected reply to a put");
    return put->succeeded;
  });
}

void ClusterRuntime::send_kill(const std::string& address, const ActorId& id, std::string reason) {
  auto& link = links_[address];
  if (!link) link = std::make_unique<Link>();
  link->kills.emplace_back(id, std::move(reason));
  schedule_flush(address);
}

void ClusterRuntime::kv_delete(const std::string& key) {
  meta::Request request;
  meta::DeleteRangeRequest del;
  del.key = key;
  request.body = std::move(del);
  auto encoded = meta::encode_request(request);
  if (!encoded.ok()) return;
  tasks_set_->add(kv_call(std::move(*encoded)).then([](std::string) {}, [key](kj::Exception&& e) {
    SHOAL_LOG_WARN("removing {} from the metadata store: {}", key, e.getDescription().cStr());
  }));
}

std::vector<ClusterRuntime::PendingDemand> ClusterRuntime::pending_demand() const {
  std::map<std::string, PendingDemand> by_class;
  std::lock_guard lock(mutex_);
  for (const auto& [id, task] : tasks_) {
    if (task->done || !task->resolved || !task->node.empty() || task->pending_reason.empty()) continue;
    std::string key = task->spec.function + "|" + task->demand.key();
    PendingDemand& d = by_class[key];
    d.function = task->spec.function;
    d.demand = task->demand.to_string();
    d.reason = task->pending_reason;
    ++d.count;
  }
  std::vector<PendingDemand> out;
  for (auto& [key, d] : by_class) out.push_back(std::move(d));
  return out;
}

// ---- Node side: running what owners push (loop thread) -------------------------------------

void ClusterRuntime::touch_session(uint64_t session, rpc::TaskOwner::Client owner) {
  bool kept = false;
  {
    std::lock_guard lock(host_mutex_);
    auto& s = sessions_[session];
    if (!s) s = std::make_unique<OwnerSession>();
    s->client = kj::mv(owner);
    s->unreachable_since.reset();
    kept = !s->pending.empty() && !s->sending;
  }
  if (kept) send_results(session);
}

TaskSpec ClusterRuntime::spec_from_wire(rpc::TaskWire::Reader wire) {
  TaskSpec spec;
  spec.function = wire.getFunction().cStr();
  for (auto arg : wire.getArgs()) spec.args.push_back(TaskArg{data_string(arg), {}});
  spec.options.resources = request_from_wire(wire.getResources());
  spec.options.max_retries = std::max(-1, wire.getMaxRetries());
  spec.options.retry_exceptions = wire.getRetryExceptions();
  return spec;
}

void ClusterRuntime::host(uint64_t session, TaskId id, Result<RefPtr> ref, const std::string& function) {
  if (!ref.ok()) {
    ErrorInfo error;
    error.code = ref.status().code();
    error.message = ref.status().message();
    error.function = function;
    error.node_id = config_.node_id;
    queue_result(session, id, std::make_shared<const ObjectValue>(ObjectValue{{}, {}, error}));
    return;
  }
  {
    std::lock_guard lock(host_mutex_);
    hosted_tasks_[id] = HostedTask{session, *ref};
  }
  std::weak_ptr<ClusterRuntime> weak = self();
  Result<uint64_t> token = config_.engine->when_ready(**ref, [weak, session, id](const ObjectValuePtr& value) {
    if (auto rt = weak.lock()) rt->queue_result(session, id, value);
  });
  if (!token.ok()) {
    ErrorInfo error;
    error.code = token.status().code();
    error.message = token.status().message();
    error.function = function;
    error.node_id = config_.node_id;
    queue_result(session, id, std::make_shared<const ObjectValue>(ObjectValue{{}, {}, error}));
  }
}

kj::Promise<void> ClusterRuntime::serve_push_tasks(rpc::TaskOwner::Client owner, uint64_t session,
                                                   capnp::List<rpc::TaskWire>::Reader tasks) {
  if (!config_.engine) return KJ_EXCEPTION(FAILED, "this process runs no tasks (a driver)");
  touch_session(session, kj::mv(owner));
  // Spillback: a task the owner let us place elsewhere, that cannot start
  // here now behind a queue, while another member has room for it (by its
  // gossiped load), goes back to its owner to be placed there. Gossip lags
  // by a second, so at most the CPUs others report free are spilled per
  // second: a burst does not bounce between busy nodes.
  Executor::Stats stats = config_.engine->executor_stats();
  ResourceSet free = stats.available;
  std::size_t queued = stats.queued;
  double cpus = std::max(1.0, cpu_wholes(config_.engine->executor_total()));
  auto now = Clock::now();
  std::optional<std::vector<ClusterMember>> others;
  std::string owner_address;
  {
    std::lock_guard lock(host_mutex_);
    if (auto s = sessions_.find(session); s != sessions_.end()) owner_address = s->second->address;
  }
  for (auto wire : tasks) {
    TaskId id{wire.getTaskHi(), wire.getTaskLo()};
    TaskSpec spec = spec_from_wire(wire);
    std::string function = spec.function;
    history_.received(TaskAttempt{.id = id, .function = function, .owner = owner_address,
                                  .attempt = wire.getAttempt(), .retry_reason = wire.getRetryReason().cStr(),
                                  .received_ms = wall_now_ms()});
    std::vector<RefArg> refs = ref_args_from_wire(wire);
    Result<ResourceSet> demand = ResourceSet::from_request(spec.options.resources);
    bool fits_now = demand.ok() && demand->fits_in(free);
    if (!fits_now && demand.ok() && wire.getSpillable() && static_cast<double>(queued) >= cpus) {
      if (!others) {
        others = config_.members ? config_.members() : std::vector<ClusterMember>();
        if (now - spill_budget_at_ >= std::chrono::seconds(1)) {
          spill_budget_at_ = now;
          spill_budget_ = 0;
          for (const ClusterMember& m : *others) {
            if (m.address != config_.address) spill_budget_ += cpu_wholes(m.available);
          }
        }
      }
      double need = cpu_wholes(*demand);
      bool room_elsewhere = false;
      for (const ClusterMember& m : *others) {
        if (m.address != config_.address && demand->fits_in(m.available)) room_elsewhere = true;
      }
      if (room_elsewhere && need > 0 && need <= spill_budget_) {
        spill_budget_ -= need;
        queue_spill(session, id);
        continue;
      }
    }
    if (refs.empty()) {
      host(session, id, config_.engine->submit_task(std::move(spec)), function);
    } else {
      // Arguments held elsewhere: pulled first (or found here), then queued.
      tasks_set_->add(fetch_ref_args(refs, session)
                          .then([this, session, id, spec = std::move(spec), refs, function](
                                    std::vector<ObjectValuePtr> values) mutable {
                            if (auto error = attach_ref_args(spec, refs, values)) {
                              error->function = function;
                              if (error->node_id.empty()) error->node_id = config_.node_id;
                              queue_result(session, id, std::make_shared<const ObjectValue>(
                                                            ObjectValue{{}, {}, std::move(*error)}));
                              return;
                            }
                            host(session, id, config_.engine->submit_task(std::move(spec)), function);
                          }));
    }
    if (fits_now) {
      free.subtract(*demand);
    } else {
      ++queued;
    }
  }
  return kj::READY_NOW;
}

kj::Promise<void> ClusterRuntime::serve_create_actor(rpc::TaskOwner::Client owner, uint64_t session,
                                                     rpc::ActorWire::Reader wire) {
  if (!config_.engine) return KJ_EXCEPTION(FAILED, "this process runs no actors (a driver)");
  touch_session(session, kj::mv(owner));
  ActorId id{wire.getActorHi(), wire.getActorLo()};
  ActorSpec spec;
  spec.class_name = wire.getClassName().cStr();
  spec.constructor = wire.getConstructor().cStr();
  for (auto arg : wire.getArgs()) spec.args.push_back(TaskArg{data_string(arg), {}});
  spec.options.resources = request_from_wire(wire.getResources());
  spec.options.max_restarts = wire.getMaxRestarts();
  spec.options.max_concurrency = wire.getMaxConcurrency();
  // Not detached in the engine: it stops (after its queued calls) when the
  // engine's handle, held in hosted_, goes.
  {
    std::lock_guard lock(host_mutex_);
    if (hosted_.contains(id)) return kj::READY_NOW;  // a repeated request
  }
  Result<ActorPtr> handle = config_.engine->create_actor(std::move(spec));
  if (!handle.ok()) {
    return KJ_EXCEPTION(FAILED, "cannot create the actor", handle.status().to_string());
  }
  auto hosted = std::make_shared<HostedActor>();
  hosted->handle = std::move(*handle);
  hosted->session = session;
  hosted->detached = wire.getDetached();
  std::lock_guard lock(host_mutex_);
  hosted_[id] = std::move(hosted);
  return kj::READY_NOW;
}

kj::Promise<void> ClusterRuntime::serve_push_actor_calls(rpc::TaskOwner::Client owner, uint64_t session,
                                                         ActorId actor,
                                                         capnp::List<rpc::TaskWire>::Reader calls) {
  if (!config_.engine) return KJ_EXCEPTION(FAILED, "this process runs no actors (a driver)");
  touch_session(session, kj::mv(owner));
  struct Call {
    TaskId id;
    TaskSpec spec;
    std::vector<RefArg> refs;
  };
  std::vector<Call> batch;
  bool any_refs = false;
  for (auto wire : calls) {
    Call call{TaskId{wire.getTaskHi(), wire.getTaskLo()}, spec_from_wire(wire), ref_args_from_wire(wire)};
    any_refs = any_refs || !call.refs.empty();
    batch.push_back(std::move(call));
  }
  auto tail = actor_tails_.find(actor);
  if (!any_refs && tail == actor_tails_.end()) {
    for (Call& call : batch) submit_hosted_call(session, actor, call.id, std::move(call.spec));
    return kj::READY_NOW;
  }
  // Calls run in arrival order: these wait for the arguments of every
  // earlier batch still being pulled, and for their own.
  kj::Promise<void> before = tail == actor_tails_.end() ? kj::Promise<void>(kj::READY_NOW) : tail->second.second.addBranch();
  auto shared = std::make_shared<std::vector<Call>>(std::move(batch));
  kj::Promise<void> after =
      before
          .then([this, session, shared] {
            kj::Vector<kj::Promise<std::vector<ObjectValuePtr>>> fetches;
            for (Call& call : *shared) fetches.add(fetch_ref_args(call.refs, session));
            return kj::joinPromises(fetches.releaseAsArray());
          })
          .then([this, session, actor, shared](kj::Array<std::vector<ObjectValuePtr>> values) {
            for (std::size_t i = 0; i < shared->size(); ++i) {
              Call& call = (*shared)[i];
              if (auto error = attach_ref_args(call.spec, call.refs, values[i])) {
                error->function = call.spec.function;
                if (error->node_id.empty()) error->node_id = config_.node_id;
                queue_result(session, call.id,
                             std::make_shared<const ObjectValue>(ObjectValue{{}, {}, std::move(*error)}));
                continue;
              }
              submit_hosted_call(session, actor, call.id, std::move(call.spec));
            }
          })
          .catch_([](kj::Exception&& e) { SHOAL_LOG_WARN("actor calls: {}", kj_text(e)); });
  uint64_t generation = next_tail_++;
  auto forked = after.fork();
  tasks_set_->add(forked.addBranch().then([this, actor, generation] {
    auto it = actor_tails_.find(actor);
    if (it != actor_tails_.end() && it->second.first == generation) actor_tails_.erase(it);
  }));
  actor_tails_.insert_or_assign(actor, std::make_pair(generation, kj::mv(forked)));
  return kj::READY_NOW;
}

void ClusterRuntime::submit_hosted_call(uint64_t session, ActorId actor, TaskId id, TaskSpec spec) {
  std::shared_ptr<HostedActor> hosted;
  {
    std::lock_guard lock(host_mutex_);
    if (auto it = hosted_.find(actor); it != hosted_.end()) hosted = it->second;
  }
  std::string function = spec.function;
  if (!hosted) {
    ErrorInfo error;
    error.kind = ErrorKind::kActorDied;
    error.code = Status::Code::kUnavailable;
    error.message = "actor " + actor.hex() + " is not on node " + config_.node_id + " (killed, or it stopped)";
    error.function = function;
    error.node_id = config_.node_id;
    queue_result(session, id, std::make_shared<const ObjectValue>(ObjectValue{{}, {}, error}));
    return;
  }
  host(session, id, config_.engine->submit_actor_task(*hosted->handle, std::move(spec)), function);
}

bool ClusterRuntime::serve_kill_actor(ActorId actor, bool no_restart, const std::string& reason) {
  std::shared_ptr<HostedActor> hosted;
  {
    std::lock_guard lock(host_mutex_);
    auto it = hosted_.find(actor);
    if (it == hosted_.end()) return false;
    hosted = it->second;
    if (no_restart) hosted_.erase(it);
  }
  if (!config_.engine) return false;
  if (reason.empty()) {
    // Its owner dropped the last handle: dropping the engine's handle here
    // lets the actor finish what was sent, then stop.
    return true;
  }
  Status killed = config_.engine->kill_actor(*hosted->handle, no_restart);
  return killed.ok();
}

bool ClusterRuntime::serve_cancel_task(TaskId id, bool force) {
  RefPtr ref;
  {
    std::lock_guard lock(host_mutex_);
    auto it = hosted_tasks_.find(id);
    if (it == hosted_tasks_.end()) return false;
    ref = it->second.ref;
  }
  if (!config_.engine) return false;
  auto cancelled = config_.engine->cancel(*ref, force);
  return cancelled.ok() && *cancelled;
}

kj::Promise<void> ClusterRuntime::serve_get_object(ObjectId id, uint32_t wait_ms, rpc::TaskResult::Builder out) {
  out.setTaskHi(id.hi);
  out.setTaskLo(id.lo);
  out.setNodeId(config_.node_id);
  auto fill = [this, id](rpc::TaskResult::Builder b, const ObjectValuePtr& value) {
    if (value->error) {
      b.setError(as_data(encode_error_info(*value->error)));
    } else if (large(value)) {
      std::vector<std::string> holders;
      {
        std::lock_guard lock(mutex_);
        holders = pull_sources_locked(id, value->remote_size == 0);
      }
      fill_stored(value->remote_size > 0 ? value->remote_size : value->bytes.size(), holders, b.initStored());
    } else {
      b.setValue(as_data(value->bytes));
    }
  };
  // A spilled value is not read back here (on the loop thread) just to say
  // where it is: its size is enough, and readObject reads it off the loop.
  if (std::optional<uint64_t> spilled = config_.store ? config_.store->spilled_size(id) : std::nullopt) {
    std::vector<std::string> holders;
    {
      std::lock_guard lock(mutex_);
      holders = pull_sources_locked(id, true);  // its bytes are in this process's store
    }
    fill_stored(*spilled, holders, out.initStored());
    return kj::READY_NOW;
  }
  Result<ObjectValuePtr> value = objects_.lookup(id);
  if (!value.ok()) {
    ErrorInfo error;
    error.code = Status::Code::kNotFound;
    error.message = "object " + id.hex() + " is not held by its owner " + config_.address +
                    " (freed: its last reference there is gone)";
    error.node_id = config_.node_id;
    out.setError(as_data(encode_error_info(error)));
    return kj::READY_NOW;
  }
  if (*value) {
    fill(out, *value);
    return kj::READY_NOW;
  }
  // Pending: wait for it here (the callback may run on any thread; it hands
  // the value to the loop thread).
  auto paf = kj::newPromiseAndFulfiller<ObjectValuePtr>();
  uint64_t token_key = next_wait_++;
  waits_.emplace(token_key, kj::mv(paf.fulfiller));
  std::weak_ptr<ClusterRuntime> weak = self();
  Result<uint64_t> token = objects_.on_ready(id, [weak, token_key](const ObjectValuePtr& v) {
    auto rt = weak.lock();
    if (!rt) return;
    rt->post([rt = rt.get(), token_key, v] {
      auto it = rt->waits_.find(token_key);
      if (it == rt->waits_.end()) return;
      it->second->fulfill(ObjectValuePtr(v));
      rt->waits_.erase(it);
    });
  });
  if (!token.ok()) {
    waits_.erase(token_key);
    ErrorInfo error;
    error.code = Status::Code::kNotFound;
    error.message = "object " + id.hex() + ": " + token.status().message();
    out.setError(as_data(encode_error_info(error)));
    return kj::READY_NOW;
  }
  uint64_t callback_token = *token;
  auto timeout = config_.loop->timer().afterDelay(wait_ms * kj::MILLISECONDS).then([]() -> ObjectValuePtr {
    return nullptr;
  });
  return paf.promise.exclusiveJoin(kj::mv(timeout))
      .then([this, out, fill, token_key, id, callback_token](ObjectValuePtr v) mutable {
        waits_.erase(token_key);
        if (!v) {
          objects_.cancel_callback(id, callback_token);
          ErrorInfo error;
          error.code = Status::Code::kDeadlineExceeded;
          error.message = "not ready";
          out.setError(as_data(encode_error_info(error)));
          return;
        }
        fill(out, v);
      });
}

void ClusterRuntime::fill_node_info(rpc::Node::NodeInfoResults::Builder out) {
  out.setNodeId(config_.node_id);
  std::vector<std::string> names = config_.engine ? Registry::instance().names() : std::vector<std::string>();
  std::set<std::string> classes;
  for (const auto& n : names) {
    if (auto colon = n.find("::"); colon != std::string::npos) classes.insert(n.substr(0, colon));
  }
  auto f = out.initFunctions(static_cast<unsigned>(names.size()));
  for (unsigned i = 0; i < names.size(); ++i) f.set(i, names[i]);
  auto c = out.initActorClasses(static_cast<unsigned>(classes.size()));
  unsigned i = 0;
  for (const auto& name : classes) c.set(i++, name);
  if (config_.engine) {
    Executor::Stats stats = config_.engine->executor_stats();
    out.setQueuedTasks(static_cast<uint32_t>(stats.queued));
    out.setRunningTasks(static_cast<uint32_t>(stats.running));
    out.setActors(static_cast<uint32_t>(config_.engine->live_actor_count()));
  }
}

void ClusterRuntime::queue_spill(uint64_t session, TaskId id) {
  // A null value in the batch means "spilled back".
  history_.ended(id, "SPILLED", "handed back to its owner to run where there is room", wall_now_ms());
  bool need_post = false;
  {
    std::lock_guard lock(host_mutex_);
    auto s = sessions_.find(session);
    if (s == sessions_.end()) return;
    s->second->pending.push_back(OwnerSession::Result{id, nullptr, 0});
    if (!results_posted_) results_posted_ = need_post = true;
  }
  if (need_post) post_results();
}

void ClusterRuntime::queue_result(uint64_t session, TaskId id, const ObjectValuePtr& value) {
  RefPtr dropped;
  bool need_post = false;
  uint64_t barrier;  // the refs its task borrowed are registered first
  {
    std::lock_guard lock(borrow_mutex_);
    barrier = add_seq_;
  }
  {
    std::lock_guard lock(host_mutex_);
    if (auto it = hosted_tasks_.find(id); it != hosted_tasks_.end()) {
      dropped = std::move(it->second.ref);
      hosted_tasks_.erase(it);
    }
    if (fenced_.erase(id) != 0) return;  // declared dead while it ran: stale
    history_.ended(id, value->error ? "FAILED" : "FINISHED", value->error ? value->error->message : std::string(),
                   wall_now_ms());
    auto s = sessions_.find(session);
    if (s == sessions_.end()) return;  // the owner is gone
    s->second->pending.push_back(OwnerSession::Result{id, value, barrier});
    if (!results_posted_) results_posted_ = need_post = true;
  }
  mark_shared(value->contained);
  if (need_post) post_results();
}

void ClusterRuntime::post_results() {
  bool posted = post([this] {
    std::vector<uint64_t> ready;
    {
      std::lock_guard lock(host_mutex_);
      results_posted_ = false;
      for (auto& [session, s] : sessions_) {
        if (!s->pending.empty()) ready.push_back(session);
      }
    }
    for (uint64_t session : ready) send_results(session);
  });
  if (!posted) {
    std::lock_guard lock(host_mutex_);
    results_posted_ = false;  // the members refresh sends them instead
  }
}

void ClusterRuntime::send_results(uint64_t session) {
  std::vector<OwnerSession::Result> batch;
  std::optional<rpc::TaskOwner::Client> client;
  uint64_t first_unacked;
  {
    std::lock_guard lock(borrow_mutex_);
    first_unacked = adds_unacked_.empty() ? UINT64_MAX : *adds_unacked_.begin();
  }
  bool blocked = false;
  {
    std::lock_guard lock(host_mutex_);
    auto it = sessions_.find(session);
    if (it == sessions_.end()) return;
    OwnerSession& s = *it->second;
    if (s.sending || !s.client) return;
    bool heartbeat = s.pending.empty() && Clock::now() - s.last_sent >= kOwnerHeartbeat;
    if (s.pending.empty() && !heartbeat) return;
    std::size_t bytes = 0;
    std::size_t taken = 0;
    for (; taken < s.pending.size(); ++taken) {
      const OwnerSession::Result& r = s.pending[taken];
      if (r.barrier >= first_unacked) break;  // the refs it borrowed are not registered yet
      std::size_t size = r.value && !large(r.value) ? r.value->bytes.size() : 0;
      if (taken > 0 && bytes + size > kBatchBytesMax) break;
      bytes += size;
    }
    blocked = taken == 0 && !s.pending.empty();
    if (blocked) {
      if (s.waiting_adds) return;  // already waiting
      s.waiting_adds = true;
    } else {
      s.last_sent = Clock::now();
      batch.assign(std::make_move_iterator(s.pending.begin()),
                   std::make_move_iterator(s.pending.begin() + static_cast<std::ptrdiff_t>(taken)));
      s.pending.erase(s.pending.begin(), s.pending.begin() + static_cast<std::ptrdiff_t>(taken));
      s.sending = true;
      client = *s.client;
    }
  }
  if (blocked) {
    after_adds([this, session] {
      {
        std::lock_guard lock(host_mutex_);
        auto it = sessions_.find(session);
        if (it == sessions_.end()) return;
        it->second->waiting_adds = false;
      }
      send_results(session);
    });
    return;
  }
  auto request = client->doneRequest();
  auto list = request.initResults(static_cast<unsigned>(batch.size()));
  for (unsigned i = 0; i < batch.size(); ++i) {
    auto r = list[i];
    const TaskId& id = batch[i].id;
    const ObjectValuePtr& value = batch[i].value;
    r.setTaskHi(id.hi);
    r.setTaskLo(id.lo);
    r.setNodeId(config_.node_id);
    if (!value) {
      r.setSpilled(true);
    } else if (value->error) {
      ErrorInfo error = *value->error;
      error.task_id = id;
      if (error.node_id.empty()) error.node_id = config_.node_id;
      r.setError(as_data(encode_error_info(error)));
    } else if (large(value)) {
      // Kept here until the owner frees it; the owner learns where it is.
      hold(ObjectId::for_task_return(id, 0), value, session, /*copy=*/false);
      fill_stored(value->bytes.size(), {config_.address}, r.initStored());
    } else {
      r.setValue(as_data(value->bytes));
      r.setHasRefs(!value->contained.refs.empty());
    }
  }
  std::vector<OwnerSession::Result> kept = std::move(batch);
  tasks_set_->add(request.send().then(
      [this, session](auto) {
        {
          std::lock_guard lock(host_mutex_);
          auto it = sessions_.find(session);
          if (it == sessions_.end()) return;
          it->second->sending = false;
        }
        send_results(session);
      },
      [this, session, kept = std::move(kept)](kj::Exception&& e) mutable {
        // The owner's connection broke. Keep the results: an owner that is
        // alive connects again (its next push, or an empty one) and gets them.
        SHOAL_LOG_DEBUG("owner session {:x} unreachable: {}", session, e.getDescription().cStr());
        std::optional<rpc::TaskOwner::Client> dropped;
        std::lock_guard lock(host_mutex_);
        auto it = sessions_.find(session);
        if (it == sessions_.end()) return;
        OwnerSession& s = *it->second;
        s.sending = false;
        dropped.swap(s.client);
        if (!s.unreachable_since) s.unreachable_since = Clock::now();
        s.pending.insert(s.pending.begin(), std::make_move_iterator(kept.begin()), std::make_move_iterator(kept.end()));
      }));
}

// ---- Placement groups ------------------------------------------------------------------

Result<PlacementGroupId> ClusterRuntime::create_placement_group(std::vector<ResourceRequest> bundles,
                                                                PlacementStrategy strategy, std::string name) {
  if (shutting_down_.load()) return Status::unavailable("shoal is shutting down");
  if (bundles.empty()) return Status::invalid_argument("placement_group(): it needs at least one bundle");
  auto group = std::make_shared<GroupState>();
  for (std::size_t i = 0; i < bundles.size(); ++i) {
    Result<ResourceSet> set = ResourceSet::from_request(bundles[i]);
    if (!set.ok()) {
      return Status::invalid_argument("placement_group(): bundle " + std::to_string(i) + ": " +
                                      set.status().message());
    }
    if (set->empty()) {
      return Status::invalid_argument("placement_group(): bundle " + std::to_string(i) + " asks for nothing");
    }
    group->bundles.push_back(std::move(*set));
  }
  TaskId seq = new_task_id();
  group->id = PlacementGroupId{seq.hi, seq.lo};
  group->bundle_count = group->bundles.size();
  group->strategy = strategy;
  group->name = std::move(name);
  group->owned = true;
  group->reason = "placing";
  PlacementGroupId id = group->id;
  {
    std::lock_guard lock(mutex_);
    groups_.emplace(id, group);
  }
  post([this, id] { try_place_group(id); });
  return id;
}

Result<bool> ClusterRuntime::wait_placement_group(const PlacementGroupId& id, Deadline deadline) {
  Executor::BlockingScope blocking;
  std::unique_lock lock(mutex_);
  auto it = groups_.find(id);
  if (it == groups_.end()) return Status::not_found("placement group " + id.hex() + " is unknown here");
  std::shared_ptr<GroupState> group = it->second;
  auto settled = [&] { return group->state != GroupState::State::kPending || shutting_down_.load(); };
  if (deadline) {
    groups_cv_.wait_until(lock, *deadline, settled);
  } else {
    groups_cv_.wait(lock, settled);
  }
  if (group->state == GroupState::State::kRemoved) {
    return Status::cancelled("placement group " + id.hex() + " was removed");
  }
  return group->state == GroupState::State::kCreated;
}

Status ClusterRuntime::remove_placement_group(const PlacementGroupId& id) {
  std::set<std::string> nodes;
  {
    std::lock_guard lock(mutex_);
    auto it = groups_.find(id);
    if (it == groups_.end()) return Status::not_found("placement group " + id.hex() + " is unknown here");
    GroupState& group = *it->second;
    if (group.state == GroupState::State::kRemoved) return Status();
    nodes.insert(group.nodes.begin(), group.nodes.end());
    group.state = GroupState::State::kRemoved;
    groups_cv_.notify_all();
  }
  post([this, id, nodes] {
    release_group_on(id, nodes);
    kv_delete(group_key(id));
  });
  return Status();
}

std::optional<std::vector<std::string>> ClusterRuntime::plan_group(const GroupState& group,
                                                                   std::string* reason) const {
  // Free resources per node as gossiped, and what each bundle takes.
  std::vector<const ClusterMember*> nodes;
  for (const auto& [address, member] : members_) {
    if (functions_.contains(address)) nodes.push_back(&member);
  }
  std::sort(nodes.begin(), nodes.end(), [](const ClusterMember* a, const ClusterMember* b) { return a->id < b->id; });
  // First from what gossip says is free; gossip lags by a second, so if
  // that finds no room, plan from the totals and let the nodes (which know)
  // accept or refuse.
  for (int pass = 0; pass < 2; ++pass) {
  std::vector<ResourceSet> free;
  for (const ClusterMember* m : nodes) free.push_back(pass == 0 ? m->available : m->total);
  const std::size_t n = group.bundles.size();
  std::vector<int> choice(n, -1);
  std::vector<int> used(nodes.size(), 0);
  auto take = [&](std::size_t b, std::size_t node) {
    free[node].subtract(group.bundles[b]);
    choice[b] = static_cast<int>(node);
    ++used[node];
  };
  ResourceSet sum;
  for (const auto& b : group.bundles) sum.add(b);
  const bool strict_pack = group.strategy == PlacementStrategy::kStrictPack;
  const bool strict_spread = group.strategy == PlacementStrategy::kStrictSpread;
  if (group.strategy == PlacementStrategy::kPack || strict_pack) {
    for (std::size_t i = 0; i < nodes.size(); ++i) {
      if (!sum.fits_in(free[i])) continue;
      for (std::size_t b = 0; b < n; ++b) take(b, i);
      break;
    }
  }
  if (choice[0] < 0 && !strict_pack) {
    for (std::size_t b = 0; b < n; ++b) {
      int best = -1;
      for (std::size_t i = 0; i < nodes.size(); ++i) {
        if (!group.bundles[b].fits_in(free[i])) continue;
        if (strict_spread && used[i] > 0) continue;
        if (best < 0) {
          best = static_cast<int>(i);
          continue;
        }
        bool pack = group.strategy == PlacementStrategy::kPack;
        // PACK: the node holding most of the group; SPREAD: the fewest.
        if (pack ? used[i] > used[best] : used[i] < used[best]) best = static_cast<int>(i);
      }
      if (best < 0) {
        std::fill(choice.begin(), choice.end(), -1);
        break;
      }
      take(b, static_cast<std::size_t>(best));
    }
  }
  if (choice[0] >= 0) {
    std::vector<std::string> out;
    for (int c : choice) out.push_back(nodes[static_cast<std::size_t>(c)]->address);
    return out;
  }
  }  // pass
  const std::size_t n = group.bundles.size();
  ResourceSet sum;
  for (const auto& b : group.bundles) sum.add(b);
  const bool strict_pack = group.strategy == PlacementStrategy::kStrictPack;
  const bool strict_spread = group.strategy == PlacementStrategy::kStrictSpread;
  std::string what = std::string(placement_strategy_name(group.strategy)) + " of " + std::to_string(n) +
                     " bundle(s)";
  if (strict_spread && n > nodes.size()) {
    *reason = what + " needs " + std::to_string(n) + " nodes; " + std::to_string(nodes.size()) + " are live";
  } else if (strict_pack) {
    *reason = what + " needs one node with " + sum.to_string() + " free";
  } else {
    *reason = what + ": the live nodes do not have the bundles' resources free (" + sum.to_string() +
              " in all)";
  }
  return std::nullopt;
}

void ClusterRuntime::try_place_group(const PlacementGroupId& id) {
  std::shared_ptr<GroupState> group;
  std::vector<std::string> plan;
  {
    std::lock_guard lock(mutex_);
    auto it = groups_.find(id);
    if (it == groups_.end()) return;
    group = it->second;
    if (!group->owned || group->state != GroupState::State::kPending || group->placing) return;
    if (learning_recently()) {
      group->reason = "learning the members";
      return;
    }
    std::string reason;
    auto planned = plan_group(*group, &reason);
    if (!planned) {
      group->reason = reason;
      return;
    }
    plan = std::move(*planned);
    group->placing = true;
  }
  // Reserve on every node at once; all or nothing.
  std::map<std::string, std::vector<uint32_t>> by_node;
  for (uint32_t b = 0; b < plan.size(); ++b) by_node[plan[b]].push_back(b);
  kj::Vector<kj::Promise<std::pair<std::string, std::string>>> calls;  // (node, why not) "" = reserved
  for (const auto& entry : by_node) {
    std::string node = entry.first;
    std::vector<uint32_t> indexes = entry.second;
    std::vector<ResourceSet> sets;
    for (uint32_t b : indexes) sets.push_back(group->bundles[b]);
    rpc::TaskOwner::Client owner = *owner_cap_;
    uint64_t session = session_;
    calls.add(config_.peers
                  ->call<std::string>(node,
                                      [id, indexes, sets, owner, session](rpc::Node::Client& n) mutable {
                                        auto request = n.reserveBundlesRequest();
                                        request.setGroupHi(id.hi);
                                        request.setGroupLo(id.lo);
                                        request.setOwner(owner);
                                        request.setSession(session);
                                        auto list = request.initBundles(static_cast<unsigned>(indexes.size()));
                                        for (unsigned i = 0; i < indexes.size(); ++i) {
                                          list[i].setIndex(indexes[i]);
                                          request_to_wire(plain_request(sets[i]), list[i].initResources());
                                        }
                                        return request.send().then([](auto r) {
                                          return r.getReserved() ? std::string()
                                                                 : std::string(r.getReason().cStr());
                                        });
                                      })
                  .then([node](std::string why) { return std::make_pair(node, why); },
                        [node](kj::Exception&& e) { return std::make_pair(node, kj_text(e)); }));
  }
  tasks_set_->add(kj::joinPromises(calls.releaseAsArray())
                      .then([this, id, group, plan](kj::Array<std::pair<std::string, std::string>> results) {
                        std::set<std::string> all(plan.begin(), plan.end());
                        std::string failed;
                        for (const auto& [node, why] : results) {
                          if (!why.empty()) failed += (failed.empty() ? "" : "; ") + node + ": " + why;
                        }
                        bool removed = false;
                        {
                          std::lock_guard lock(mutex_);
                          group->placing = false;
                          removed = group->state == GroupState::State::kRemoved;
                          if (!removed && failed.empty()) {
                            group->state = GroupState::State::kCreated;
                            group->nodes = plan;
                            group->reason.clear();
                            groups_cv_.notify_all();
                          } else if (!removed) {
                            group->reason = "reserving failed (" + failed + "); trying again";
                          }
                        }
                        if (removed || !failed.empty()) {
                          release_group_on(id, all);  // whatever was reserved goes back
                          return;
                        }
                        std::string nodes;
                        for (const auto& a : plan) nodes += (nodes.empty() ? "" : "|") + a;
                        kv_put(group_key(id), flat_json({{"id", id.hex()},
                                                          {"name", group->name},
                                                          {"strategy", placement_strategy_name(group->strategy)},
                                                          {"bundles", std::to_string(plan.size())},
                                                          {"nodes", nodes},
                                                          {"owner", config_.address},
                                                          {"state", "CREATED"}}));
                        if (!pending_.empty()) schedule_pending();
                      }));
}

void ClusterRuntime::release_group_on(const PlacementGroupId& id, const std::set<std::string>& nodes) {
  for (const std::string& node : nodes) {
    tasks_set_->add(config_.peers
                        ->call<bool>(node,
                                     [id](rpc::Node::Client& n) {
                                       auto request = n.releaseBundlesRequest();
                                       request.setGroupHi(id.hi);
                                       request.setGroupLo(id.lo);
                                       return request.send().then([](auto r) { return r.getFound(); });
                                     })
                        .then([this](bool) { place_pending_groups(); },  // what waited may fit now
                              [id, node](kj::Exception&& e) {
                                SHOAL_LOG_WARN("releasing placement group {} on {}: {}", id.hex(), node,
                                               e.getDescription().cStr());
                              }));
  }
}

void ClusterRuntime::look_up_group(const PlacementGroupId& id) {
  {
    std::lock_guard lock(mutex_);
    auto& group = groups_[id];
    if (group) return;
    group = std::make_shared<GroupState>();
    group->id = id;
    group->looking_up = true;
    group->reason = "looking it up in the metadata store";
  }
  tasks_set_->add(kv_get(group_key(id)).then(
      [this, id](std::optional<std::string> record) {
        std::lock_guard lock(mutex_);
        auto it = groups_.find(id);
        if (it == groups_.end()) return;
        auto& group = *it->second;
        group.looking_up = false;
        auto fields = record ? parse_flat_json(*record) : Result<std::map<std::string, std::string>>(Status::not_found(""));
        if (!fields.ok() || (*fields)["nodes"].empty()) {
          // Not placed yet (its creator records it once placed), or gone:
          // asked again at the next placement attempt.
          groups_.erase(it);
          return;
        }
        if (group.state == GroupState::State::kRemoved) return;
        std::string nodes = (*fields)["nodes"];
        for (std::size_t start = 0;;) {
          std::size_t bar = nodes.find('|', start);
          group.nodes.push_back(nodes.substr(start, bar == std::string::npos ? std::string::npos : bar - start));
          if (bar == std::string::npos) break;
          start = bar + 1;
        }
        group.bundle_count = group.nodes.size();
        group.state = GroupState::State::kCreated;
        groups_cv_.notify_all();
      },
      [this, id](kj::Exception&& e) {
        std::lock_guard lock(mutex_);
        groups_.erase(id);  // asked again at the next placement attempt
      }));
}

bool ClusterRuntime::serve_reserve_bundles(PlacementGroupId group, capnp::List<rpc::BundleWire>::Reader bundles,
                                           rpc::TaskOwner::Client owner, uint64_t session, std::string* reason) {
  if (!config_.engine) {
    *reason = "this process runs no tasks (a driver)";
    return false;
  }
  {
    std::lock_guard lock(host_mutex_);
    if (hosted_bundles_.contains(group)) return true;  // a repeated request
  }
  std::vector<std::pair<ResourceSet, ResourceSet>> done;
  Executor& executor = config_.engine->executor();
  for (auto wire : bundles) {
    Result<ResourceSet> demand = ResourceSet::from_request(request_from_wire(wire.getResources()));
    bool ok = demand.ok() && executor.reserve_bundle(*demand, bundle_set(*demand, group, wire.getIndex()));
    if (!ok) {
      *reason = demand.ok() ? "bundle " + std::to_string(wire.getIndex()) + " needs " + demand->to_string() +
                                  "; free here: " + config_.engine->executor_stats().available.to_string()
                            : demand.status().message();
      for (auto& [d, b] : done) executor.release_bundle(d, b);
      return false;
    }
    done.emplace_back(*demand, bundle_set(*demand, group, wire.getIndex()));
  }
  touch_session(session, kj::mv(owner));
  std::lock_guard lock(host_mutex_);
  hosted_bundles_[group] = HostedGroup{session, std::move(done)};
  return true;
}

bool ClusterRuntime::serve_release_bundles(PlacementGroupId group) {
  std::vector<std::pair<ResourceSet, ResourceSet>> bundles;
  {
    std::lock_guard lock(host_mutex_);
    auto it = hosted_bundles_.find(group);
    if (it == hosted_bundles_.end()) return false;
    bundles = std::move(it->second.bundles);
    hosted_bundles_.erase(it);
  }
  if (!config_.engine) return false;
  for (auto& [demand, bundle] : bundles) config_.engine->executor().release_bundle(demand, bundle);
  return true;
}

// ---- Shutdown --------------------------------------------------------------------------------

void ClusterRuntime::fail_unfinished() {
  std::vector<std::shared_ptr<Task>> unfinished;
  {
    std::lock_guard lock(mutex_);
    for (auto& [id, task] : tasks_) unfinished.push_back(task);
  }
  for (auto& task : unfinished) {
    ErrorInfo error = system_error(task, Status::Code::kCancelled, "shoal shut down");
    error.kind = ErrorKind::kCancelled;
    fail(task, std::move(error));
  }
}

kj::Promise<void> ClusterRuntime::shutdown_on_loop() {
  // Loop thread (the loop may be stopped): fail what this process owns and
  // has not finished; its actors die with it (detached ones live on), and
  // so do its placement groups; its records in the metadata store go.
  fail_unfinished();
  struct Actor {
    ActorId id;
    std::string address;
    std::string name;
    std::string name_space;
  };
  std::vector<Actor> actors;
  std::vector<std::pair<PlacementGroupId, std::set<std::string>>> groups;
  {
    std::lock_guard lock(mutex_);
    for (auto& [id, actor] : actors_) {
      if (actor->created_here && !actor->detached && !actor->dead && !actor->address.empty())
        actors.push_back(Actor{id, actor->address, actor->name, actor->name_space});
    }
    for (auto& [id, group] : groups_) {
      if (group->owned && group->state == GroupState::State::kCreated) {
        groups.emplace_back(id, std::set<std::string>(group->nodes.begin(), group->nodes.end()));
      }
      group->state = GroupState::State::kRemoved;
    }
    groups_cv_.notify_all();
  }
  kj::Vector<kj::Promise<void>> calls;
  auto delete_key = [&](const std::string& key) {
    meta::Request request;
    meta::DeleteRangeRequest del;
    del.key = key;
    request.body = std::move(del);
    if (auto encoded = meta::encode_request(request); encoded.ok()) {
      calls.add(kv_call(std::move(*encoded)).then([](std::string) {}, [](kj::Exception&&) {}));
    }
  };
  for (const auto& [id, nodes] : groups) {
    for (const std::string& node : nodes) {
      PlacementGroupId group = id;
      calls.add(config_.peers
                    ->call<bool>(node,
                                 [group](rpc::Node::Client& n) {
                                   auto request = n.releaseBundlesRequest();
                                   request.setGroupHi(group.hi);
                                   request.setGroupLo(group.lo);
                                   return request.send().then([](auto r) { return r.getFound(); });
                                 })
                    .then([](bool) {}, [](kj::Exception&&) {}));
    }
    delete_key(group_key(id));
  }
  for (const Actor& actor : actors) {
    ActorId id = actor.id;
    calls.add(config_.peers
                  ->call<bool>(actor.address,
                               [id](rpc::Node::Client& node) {
                                 auto request = node.killActorRequest();
                                 request.setActorHi(id.hi);
                                 request.setActorLo(id.lo);
                                 request.setNoRestart(true);
                                 request.setReason("its creator shut down");
                                 return request.send().then([](auto r) { return r.getFound(); });
                               })
                  .then([](bool) {}, [](kj::Exception&&) {}));
    delete_key(actor_key(id));
    if (!actor.name.empty()) delete_key(named_key(actor.name_space, actor.name));
  }
  if (!demand_published_.empty()) delete_key(std::string(kDemandPrefix) + config_.node_id);
  return kj::joinPromises(calls.releaseAsArray()).exclusiveJoin(config_.loop->timer().afterDelay(2 * kj::SECONDS));
}

void ClusterRuntime::shutdown() {
  if (shutting_down_.exchange(true)) {
    return;
  }
  if (std::this_thread::get_id() == loop_thread_) {
    // The node, on its loop thread after the loop stopped.
    if (!torn_down_ && tasks_set_) {
      shutdown_on_loop().wait(config_.loop->wait_scope());
    } else {
      fail_unfinished();
    }
  } else {
    // A user thread (a driver's shutdown): the loop thread does it, so task
    // state is only touched there.
    auto done = std::make_shared<std::promise<void>>();
    auto future = done->get_future();
    bool posted = post([this, done] {
      if (!tasks_set_) {
        fail_unfinished();
        done->set_value();
        return;
      }
      tasks_set_->add(shutdown_on_loop().then([done] { done->set_value(); }));
    });
    if (!posted || future.wait_for(std::chrono::seconds(5)) != std::future_status::ready) fail_unfinished();
  }
  {
    std::lock_guard lock(mutex_);
    groups_cv_.notify_all();
  }
  // Whoever still waits (borrowed objects, user code inside tasks) wakes
  // before the engine waits for its running tasks to return.
  ErrorInfo stopped;
  stopped.kind = ErrorKind::kCancelled;
  stopped.code = Status::Code::kCancelled;
  stopped.message = "shoal shut down";
  stopped.node_id = config_.node_id;
  objects_.complete_all_pending(std::make_shared<const ObjectValue>(ObjectValue{{}, {}, stopped}));
  if (config_.engine) config_.engine->shutdown();
  std::unordered_map<ObjectId, Lineage> lineage;  // the refs its tasks keep go after the lock
  {
    std::lock_guard lock(mutex_);
    lineage.swap(lineage_);
    lineage_order_.clear();
    lineage_bytes_ = 0;
    lineage_evicted_.clear();
  }
  lineage.clear();
  objects_.clear();
  if (on_shutdown_) {
    std::function<void()> fn = std::move(on_shutdown_);
    fn();
  }
}

void ClusterRuntime::teardown_on_loop() {
  // Loop thread: drop every promise and capability before the loop goes.
  {
    std::lock_guard lock(post_mutex_);
    loop_ = nullptr;
  }
  torn_down_ = true;
  join_restore_threads();  // their posts now find no loop
  restores_.clear();
  restore_queue_.clear();
  tasks_set_.reset();
  bulk_.reset();
  links_.clear();
  waits_.clear();
  pulls_.clear();
  actor_tails_.clear();
  {
    Unheld unheld;  // released after the lock
    std::lock_guard lock(host_mutex_);
    sessions_.clear();
    hosted_.clear();
    hosted_tasks_.clear();
    while (!held_.empty()) unhold_locked(held_.begin(), unheld);
  }
  owner_cap_.reset();
}

}  // namespace shoal::detail
