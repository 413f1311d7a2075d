#include "task/local_runtime.h"

#include <algorithm>
#include <condition_variable>
#include <unordered_set>
#include <variant>

#include "base/assert.h"
#include "base/log.h"

namespace shoal::detail {

struct LocalRuntime::Task {
  enum class State { kWaiting, kQueued, kRunning, kDone };

  TaskId id;
  ObjectId return_id;
  TaskSpec spec;
  ResourceSet demand;
  std::atomic<bool> cancel_requested{false};
  // Guarded by tasks_mutex_:
  State state = State::kWaiting;
  std::size_t deps_remaining = 0;
  std::vector<ObjectValuePtr> arg_values;  // per argument: the ref's value, else null
  uint32_t attempts = 0;
};

namespace {

std::vector<std::string_view> argument_views(const TaskSpec& spec,
                                             const std::vector<ObjectValuePtr>& values) {
  std::vector<std::string_view> views;
  views.reserve(spec.args.size());
  for (std::size_t i = 0; i < spec.args.size(); ++i) {
    views.push_back(argument_view(spec.args[i], i < values.size() ? values[i] : nullptr));
  }
  return views;
}

ErrorInfo system_error(Status::Code code, std::string message) {
  ErrorInfo error;
  error.kind = ErrorKind::kSystem;
  error.code = code;
  error.message = std::move(message);
  return error;
}

// The runtime's store of large values; null (values never spill) when it
// cannot be made.
std::shared_ptr<ObjectStore> make_store(const LocalRuntime::Config& config) {
  ObjectStore::Config store;
  store.capacity_bytes = config.object_store_bytes_max;
  store.spill_dir = config.spill_dir;
  Result<std::shared_ptr<ObjectStore>> made = ObjectStore::create(std::move(store));
  if (!made.ok()) {
    SHOAL_LOG_ERROR("{}; large values will not spill to disk", made.status().message());
    return nullptr;
  }
  return std::move(*made);
}

}  // namespace

std::string_view argument_view(const TaskArg& arg, const ObjectValuePtr& ref_value) {
  if (arg.ref) {
    SHOAL_ASSERT(ref_value != nullptr, arg.ref->id.hex());
    return ref_value->bytes;
  }
  if (arg.resolved) return arg.resolved->bytes;
  return arg.value;
}

Result<ResourceSet> task_demand(const TaskSpec& spec) {
  Result<ResourceSet> demand = ResourceSet::from_request(spec.options.resources);
  if (!demand.ok())
    return Status::invalid_argument("task " + spec.function + ": " + demand.status().message());
  if (spec.options.max_retries < -1) {
    return Status::invalid_argument("task " + spec.function +
                                    ": max_retries must be -1 (no limit) or more");
  }
  return demand;
}

Result<ResourceSet> actor_demand(const ActorSpec& spec) {
  const ActorOptions& options = spec.options;
  std::string what = "actor " + spec.class_name;
  Result<ResourceSet> demand = ResourceSet::from_request(options.resources);
  if (!demand.ok()) return Status::invalid_argument(what + ": " + demand.status().message());
  if (options.max_concurrency < 1 || options.max_concurrency > ActorOptions::kMaxConcurrencyMax) {
    return Status::invalid_argument(what + ": max_concurrency must be from 1 to " +
                                    std::to_string(ActorOptions::kMaxConcurrencyMax));
  }
  if (options.max_restarts < -1) {
    return Status::invalid_argument(what + ": max_restarts must be -1 (no limit) or more");
  }
  return demand;
}

Status check_wait_args(std::span<const RefState* const> refs, std::size_t num_ready) {
  if (num_ready < 1 || num_ready > refs.size()) {
    return Status::invalid_argument("wait(): num_ready is " + std::to_string(num_ready) +
                                    " but there are " + std::to_string(refs.size()) +
                                    " refs (it must be 1 to that)");
  }
  std::unordered_set<ObjectId> seen;
  for (const RefState* ref : refs) {
    if (!seen.insert(ref->id).second) {
      return Status::invalid_argument("wait(): object " + ref->id.hex() + " is in the list twice");
    }
  }
  return Status();
}

std::shared_ptr<LocalRuntime> LocalRuntime::create(Config config) {
  return std::shared_ptr<LocalRuntime>(new LocalRuntime(std::move(config)));
}

LocalRuntime::LocalRuntime(Config config)
    : config_(std::move(config)),
      address_("local/" + config_.node_id),
      objects_(make_store(config_)),
      executor_(Executor::Config{
          .total = config_.total,
          .threads_min = std::max(1, static_cast<int>((config_.total.units(ResourceSet::kCpu) +
                                                       ResourceSet::kUnitsPerWhole - 1) /
                                                      ResourceSet::kUnitsPerWhole)),
          .threads_max = config_.executor_threads_max}) {
  SHOAL_ASSERT(config_.id_prefix != 0);
}

LocalRuntime::~LocalRuntime() { shutdown(); }

TaskId LocalRuntime::new_task_id() {
  return TaskId{config_.id_prefix, next_sequence_.fetch_add(1) << 16};
}

RefPtr LocalRuntime::new_ref(const ObjectId& id) {
  return std::make_shared<const RefState>(id, address_, weak_from_this());
}

ErrorInfo LocalRuntime::cancelled_error(const std::string& function, const TaskId& id,
                                        const std::string& message) const {
  ErrorInfo error;
  error.kind = ErrorKind::kCancelled;
  error.code = Status::Code::kCancelled;
  error.message = message;
  error.function = function;
  error.task_id = id;
  error.node_id = config_.node_id;
  return error;
}

std::optional<ErrorInfo> LocalRuntime::placement_error(
    const ResourceSet& demand, const SchedulingStrategy& strategy,
    const std::map<std::string, std::string>& labels, std::string_view kind,
    const std::string& name) const {
  auto what = [&] { return std::string(kind) + " " + name; };  // only on errors
  if (ResourceSet total = executor_.total(); !demand.fits_in(total)) {
    return system_error(Status::Code::kResourceExhausted,
                        what() + " needs " + demand.to_string() + " but " +
                            (config_.placed_by_owner ? "this node" : "the only node (local mode)") +
                            " has " + total.to_string() + " in total: it can never run");
  }
  if (config_.placed_by_owner) return std::nullopt;
  if (const auto* affinity = std::get_if<NodeAffinityStrategy>(&strategy)) {
    if (affinity->node_id != config_.node_id && !affinity->soft) {
      return system_error(Status::Code::kUnavailable,
                          what() + " must run on node " + affinity->node_id +
                              ", which is not in this cluster (local mode has one node, " +
                              config_.node_id + ")");
    }
  }
  if (std::holds_alternative<PlacementGroupStrategy>(strategy)) {
    return system_error(
        Status::Code::kUnavailable,
        what() +
            " asks for a placement group bundle: placement groups are not available in "
            "local mode yet");
  }
  for (const auto& [key, value] : labels) {
    auto it = config_.labels.find(key);
    if (it == config_.labels.end() || it->second != value) {
      return system_error(Status::Code::kResourceExhausted,
                          what() + " needs label " + key + "=" + value +
                              ", which the only node (local mode) does not have");
    }
  }
  return std::nullopt;
}

std::optional<ErrorInfo> LocalRuntime::storage_error(uint64_t bytes, std::string_view what,
                                                     const std::string& name) const {
  if (bytes > DeserializeLimits::kBytesMax) {
    return system_error(Status::Code::kResourceExhausted,
                        std::string(what) + name + " is " + std::to_string(bytes) +
                            " bytes, over the limit of one object (" +
                            std::to_string(DeserializeLimits::kBytesMax) + ")");
  }
  if (const std::shared_ptr<ObjectStore>& store = objects_.store()) {
    Status room = store->wait_for_room(bytes);
    if (room.ok()) return std::nullopt;
    return system_error(room.code(), std::string(what) + name + " (" + std::to_string(bytes) +
                                         " bytes) does not fit in the object store: " +
                                         room.message());
  }
  uint64_t used = objects_.bytes();
  if (used + bytes > config_.object_store_bytes_max) {
    return system_error(Status::Code::kResourceExhausted,
                        std::string(what) + name + " (" + std::to_string(bytes) +
                            " bytes) does not fit in the object store: " + std::to_string(used) +
                            " of " + std::to_string(config_.object_store_bytes_max) +
                            " bytes are held by live ObjectRefs");
  }
  return std::nullopt;
}

Status LocalRuntime::check_in_flight(std::string_view kind, const std::string& function) const {
  std::lock_guard lock(tasks_mutex_);
  std::size_t in_flight = tasks_.size() + actor_calls_.size();
  if (in_flight < config_.tasks_in_flight_max) return Status();
  return Status::resource_exhausted(
      std::string(kind) + " " + function + ": " + std::to_string(in_flight) +
      " tasks are already submitted and not finished (the limit); get() some first");
}

// ---- Tasks ------------------------------------------------------------------

Result<RefPtr> LocalRuntime::submit_task(TaskSpec spec) {
  if (shutting_down_.load()) return Status::unavailable("shoal is shutting down");
  Result<ResourceSet> demand = task_demand(spec);
  if (!demand.ok()) return demand.status();
  SHOAL_RETURN_IF_ERROR(check_in_flight("task", spec.function));
  auto task = std::make_shared<Task>();
  task->id = new_task_id();
  task->return_id = ObjectId::for_task_return(task->id, 0);
  task->spec = std::move(spec);
  task->demand = std::move(*demand);
  objects_.create_pending(task->return_id);
  RefPtr ref = new_ref(task->return_id);

  std::optional<ErrorInfo> error =
      placement_error(task->demand, task->spec.options.strategy, task->spec.options.labels, "task",
                      task->spec.function);
  if (error) {
    fail(task, std::move(*error));
    return ref;
  }
  std::vector<std::size_t> ref_args;
  for (std::size_t i = 0; i < task->spec.args.size(); ++i) {
    if (task->spec.args[i].ref) ref_args.push_back(i);
  }
  {
    std::lock_guard lock(tasks_mutex_);
    if (shutting_down_.load()) {
      task->state = Task::State::kDone;
    } else {
      task->deps_remaining = ref_args.size();
      task->arg_values.resize(task->spec.args.size());
      tasks_.emplace(task->id, task);
    }
  }
  if (task->state == Task::State::kDone) {
    complete_object(
        task->return_id,
        ObjectValue{{}, {}, cancelled_error(task->spec.function, task->id, "shoal shut down")});
    return ref;
  }
  if (ref_args.empty()) {
    enqueue(task);
    return ref;
  }
  for (std::size_t i : ref_args) {
    const RefState& arg = *task->spec.args[i].ref;
    Result<uint64_t> token = objects_.on_ready(
        arg.id, [this, task, i](const ObjectValuePtr& value) { on_task_argument(task, i, value); });
    if (!token.ok()) {
      auto missing = std::make_shared<ObjectValue>();
      missing->error = system_error(Status::Code::kNotFound, "argument " + std::to_string(i + 1) +
                                                                 " of " + task->spec.function +
                                                                 ": " + token.status().message());
      on_task_argument(task, i, missing);
    }
  }
  return ref;
}

void LocalRuntime::on_task_argument(const std::shared_ptr<Task>& task, std::size_t index,
                                    const ObjectValuePtr& value) {
  ObjectValuePtr failed;
  {
    std::lock_guard lock(tasks_mutex_);
    if (task->state != Task::State::kWaiting) return;
    task->arg_values[index] = value;
    if (--task->deps_remaining > 0) return;
    for (const ObjectValuePtr& arg : task->arg_values) {
      if (arg && arg->error) {
        failed = arg;
        break;
      }
    }
  }
  if (failed) {
    // The task that made the argument failed: so does this one, with that
    // error, so get() at the end of a chain names the root cause.
    fail(task, *failed->error);
    return;
  }
  enqueue(task);
}

void LocalRuntime::enqueue(const std::shared_ptr<Task>& task) {
  {
    std::lock_guard lock(tasks_mutex_);
    if (task->state != Task::State::kWaiting) return;
    task->state = Task::State::kQueued;
  }
  // Refused now, or dropped from the queue when its placement group bundle
  // was removed).
  auto refused = [this, task](const Status& status) {
    if (status.code() == Status::Code::kCancelled) {
      finish(task, ObjectValue{
                       {}, {}, cancelled_error(task->spec.function, task->id, "shoal shut down")});
    } else {
      fail(task, system_error(status.code(),
                              "task " + task->spec.function + " cannot run: " + status.message()));
    }
  };
  WorkItem item{task->id, task->demand, [this, task] { run_task(task); }};
  item.dropped = refused;
  Status status = executor_.submit(std::move(item));
  if (!status.ok()) refused(status);
}

void LocalRuntime::run_task(const std::shared_ptr<Task>& task) {
  {
    std::lock_guard lock(tasks_mutex_);
    if (task->state != Task::State::kQueued) return;
    task->state = Task::State::kRunning;
    ++task->attempts;
  }
  if (task->cancel_requested.load()) {
    finish(task,
           ObjectValue{
               {}, {}, cancelled_error(task->spec.function, task->id, "the task was cancelled")});
    return;
  }
  ObjectValue value;
  const Invoker* invoker = Registry::instance().function(task->spec.function);
  if (invoker == nullptr) {
    value.error = system_error(
        Status::Code::kNotFound,
        "function " + task->spec.function + " is not registered in this binary (SHOAL_REMOTE)");
  } else {
    std::vector<std::string_view> views = argument_views(task->spec, task->arg_values);
    InvokeResult result;
    {
      CancelFlagScope scope(&task->cancel_requested);
      result = (*invoker)(nullptr, views);
    }
    if (result.error) {
      value.error = std::move(result.error);
    } else {
      value.bytes = std::move(result.value.bytes);
      value.contained = std::move(result.value.contained);
    }
  }
  if (task->cancel_requested.load()) {
    finish(task,
           ObjectValue{
               {}, {}, cancelled_error(task->spec.function, task->id, "the task was cancelled")});
    return;
  }
  if (!value.error) {
    if (auto error = storage_error(value.bytes.size(), "the result of ", task->spec.function)) {
      value = ObjectValue{};
      value.error = std::move(error);
    }
  }
  if (value.error) {
    const TaskOptions& options = task->spec.options;
    bool retry =
        value.error->kind == ErrorKind::kTaskException && options.retry_exceptions &&
        (options.max_retries < 0 || task->attempts <= static_cast<uint32_t>(options.max_retries));
    if (retry) {
      {
        std::lock_guard lock(tasks_mutex_);
        if (task->state != Task::State::kRunning) return;
        task->state = Task::State::kWaiting;
      }
      enqueue(task);
      return;
    }
    fail(task, std::move(*value.error));
    return;
  }
  finish(task, std::move(value));
}

void LocalRuntime::fail(const std::shared_ptr<Task>& task, ErrorInfo error) {
  if (error.function.empty()) error.function = task->spec.function;
  if (error.task_id.nil()) error.task_id = task->id;
  if (error.node_id.empty()) error.node_id = config_.node_id;
  if (error.attempts == 0) error.attempts = task->attempts;
  ObjectValue value;
  value.error = std::move(error);
  finish(task, std::move(value));
}

void LocalRuntime::finish(const std::shared_ptr<Task>& task, ObjectValue value) {
  // The arguments go before the result is published, so that whoever sees
  // the result also sees the objects only this task kept alive released.
  std::vector<ObjectValuePtr> arg_values;
  std::vector<TaskArg> args;
  Contained contained;
  {
    std::lock_guard lock(tasks_mutex_);
    task->state = Task::State::kDone;
    tasks_.erase(task->id);
    arg_values.swap(task->arg_values);
    args.swap(task->spec.args);
    contained = std::move(task->spec.contained);
  }
  arg_values.clear();
  args.clear();
  contained = {};
  complete_object(task->return_id, std::move(value));
}

void LocalRuntime::complete_object(const ObjectId& id, ObjectValue value) {
  objects_.complete(id, std::make_shared<const ObjectValue>(std::move(value)));
}

// ---- Actors -----------------------------------------------------------------

Result<ActorPtr> LocalRuntime::create_actor(ActorSpec spec) {
  if (shutting_down_.load()) return Status::unavailable("shoal is shutting down");
  const ActorOptions& options = spec.options;
  std::string what = "actor " + spec.class_name;
  Result<ResourceSet> demand = actor_demand(spec);
  if (!demand.ok()) return demand.status();
  const std::string& name_space =
      options.name_space.empty() ? config_.name_space : options.name_space;

  ActorId id{config_.id_prefix, next_sequence_.fetch_add(1) << 16};
  auto creation = std::make_shared<ActorCall>();
  creation->task_id = new_task_id();
  creation->spec.function = spec.constructor;
  creation->spec.args = std::move(spec.args);
  creation->spec.contained = std::move(spec.contained);
  ActorRunner::Callbacks callbacks{
      [this](const ActorCallPtr& call, ObjectValue value) {
        on_call_complete(call, std::move(value));
      },
      [this, id](const ErrorInfo& death) { on_actor_exit(id, death); }};
  auto runner = std::make_shared<ActorRunner>(
      ActorRunner::Config{id, spec.class_name, config_.node_id, options.max_concurrency,
                          options.max_restarts},
      creation, std::move(callbacks));

  std::vector<std::shared_ptr<ActorRunner>> exited;
  {
    std::lock_guard lock(actors_mutex_);
    if (shutting_down_.load()) return Status::unavailable("shoal is shutting down");
    if (actors_.size() >= config_.actors_max) {
      return Status::resource_exhausted(what + ": " + std::to_string(actors_.size()) +
                                        " actors are alive (the limit); kill some first");
    }
    if (!options.name.empty()) {
      auto [it, inserted] = named_.try_emplace({name_space, options.name}, id);
      if (!inserted) {
        return Status::already_exists("an actor named " + options.name +
                                      " already exists in namespace " + name_space);
      }
    }
    ActorRecord record;
    record.runner = runner;
    record.class_name = spec.class_name;
    record.name = options.name;
    record.name_space = name_space;
    record.detached = options.detached;
    record.handles = 1;
    record.demand = *demand;
    actors_.emplace(id, std::move(record));
    exited.swap(graveyard_);
  }
  for (auto& r : exited) r->join();  // actors that exited earlier
  exited.clear();
  auto handle =
      std::make_shared<const ActorHandleState>(id, spec.class_name, address_, weak_from_this());

  std::optional<ErrorInfo> error =
      placement_error(*demand, options.strategy, options.labels, "actor", spec.class_name);
  if (error) {
    runner->kill(false, error->message);
    on_actor_exit(id, *error);
    return handle;
  }
  resolve_call(creation, runner);
  if (demand->empty()) {
    Status started = runner->start();
    (void)started;  // a failure killed the actor; calls report it
    return handle;
  }
  // Resources are held for the actor's life: a lease from the executor,
  // granted when they are free (the actor waits until then).
  auto refused = [this, runner, id](const Status& status) {
    runner->kill(false, status.message());
    on_actor_exit(id, system_error(status.code(), status.message()));
  };
  WorkItem item{creation->task_id, *demand,
                [this, runner, id] {
                  GpuGrant gpus = Executor::current_grant();
                  {
                    std::lock_guard lock(actors_mutex_);
                    auto it = actors_.find(id);
                    if (it != actors_.end()) {
                      it->second.holds_resources = true;
                      it->second.gpus = gpus;
                    }
                  }
                  Status started = runner->start(GpuInstances::ids(gpus));
                  (void)started;
                },
                true};
  item.dropped = refused;
  Status submitted = executor_.submit(std::move(item));
  if (!submitted.ok()) refused(submitted);
  return handle;
}

void LocalRuntime::resolve_call(const ActorCallPtr& call,
                                const std::shared_ptr<ActorRunner>& runner) {
  std::vector<std::size_t> ref_args;
  for (std::size_t i = 0; i < call->spec.args.size(); ++i) {
    if (call->spec.args[i].ref) ref_args.push_back(i);
  }
  if (ref_args.empty()) {
    runner->mark_ready(call);
    return;
  }
  {
    std::lock_guard lock(tasks_mutex_);
    call->deps_remaining = ref_args.size();
    call->arg_values.resize(call->spec.args.size());
  }
  for (std::size_t i : ref_args) {
    const RefState& arg = *call->spec.args[i].ref;
    Result<uint64_t> token =
        objects_.on_ready(arg.id, [this, call, runner, i](const ObjectValuePtr& value) {
          on_call_argument(call, runner, i, value);
        });
    if (!token.ok()) {
      auto missing = std::make_shared<ObjectValue>();
      missing->error = system_error(Status::Code::kNotFound, "argument " + std::to_string(i + 1) +
                                                                 " of " + call->spec.function +
                                                                 ": " + token.status().message());
      on_call_argument(call, runner, i, missing);
    }
  }
}

void LocalRuntime::on_call_argument(const ActorCallPtr& call,
                                    const std::shared_ptr<ActorRunner>& runner, std::size_t index,
                                    const ObjectValuePtr& value) {
  {
    std::lock_guard lock(tasks_mutex_);
    if (index >= call->arg_values.size()) return;  // the call already completed (actor killed)
    call->arg_values[index] = value;
    if (value->error && !call->dependency_error) call->dependency_error = value->error;
    if (--call->deps_remaining > 0) return;
  }
  runner->mark_ready(call);
}

Result<RefPtr> LocalRuntime::submit_actor_task(const ActorHandleState& actor, TaskSpec spec) {
  if (shutting_down_.load()) return Status::unavailable("shoal is shutting down");
  SHOAL_RETURN_IF_ERROR(check_in_flight("actor call", spec.function));
  auto call = std::make_shared<ActorCall>();
  call->task_id = new_task_id();
  call->return_id = ObjectId::for_task_return(call->task_id, 0);
  call->spec = std::move(spec);
  objects_.create_pending(call->return_id);
  RefPtr ref = new_ref(call->return_id);

  std::shared_ptr<ActorRunner> runner;
  std::optional<ErrorInfo> death;
  {
    std::lock_guard lock(actors_mutex_);
    if (auto it = actors_.find(actor.id); it != actors_.end()) {
      runner = it->second.runner;
    } else if (auto dead = dead_.find(actor.id); dead != dead_.end()) {
      death = dead->second;
    }
  }
  if (runner == nullptr) {
    ErrorInfo error;
    error.kind = ErrorKind::kActorDied;
    error.code = Status::Code::kUnavailable;
    error.message = "actor " + actor.class_name + " (" + actor.id.hex() + ") is dead";
    if (death) {
      error.exception_type = death->exception_type;
      error.message = death->kind == ErrorKind::kActorDied ? death->message
                                                           : error.message + ": " + death->message;
    }
    error.function = call->spec.function;
    error.task_id = call->task_id;
    error.node_id = config_.node_id;
    complete_object(call->return_id, ObjectValue{{}, {}, std::move(error)});
    return ref;
  }
  {
    std::lock_guard lock(tasks_mutex_);
    actor_calls_.emplace(call->task_id, CallEntry{call, actor.id});
  }
  runner->enqueue(call);  // before its arguments resolve: the queue keeps submission order
  resolve_call(call, runner);
  return ref;
}

void LocalRuntime::on_call_complete(const ActorCallPtr& call, ObjectValue value) {
  CallEntry entry;
  std::vector<ObjectValuePtr> arg_values;
  std::vector<TaskArg> args;
  Contained contained;
  {
    std::lock_guard lock(tasks_mutex_);
    auto it = actor_calls_.find(call->task_id);
    if (it != actor_calls_.end()) {
      entry = std::move(it->second);
      actor_calls_.erase(it);
    }
    arg_values.swap(call->arg_values);
    args.swap(call->spec.args);
    contained = std::move(call->spec.contained);
  }
  entry = {};
  arg_values.clear();
  args.clear();
  contained = {};
  if (!value.error) {
    if (auto error = storage_error(value.bytes.size(), "the result of ", call->spec.function)) {
      error->function = call->spec.function;
      error->task_id = call->task_id;
      error->node_id = config_.node_id;
      value = ObjectValue{};
      value.error = std::move(error);
    }
  }
  complete_object(call->return_id, std::move(value));
}

void LocalRuntime::on_actor_exit(const ActorId& id, const ErrorInfo& death) {
  ResourceSet release;
  GpuGrant gpus;
  {
    std::lock_guard lock(actors_mutex_);
    if (dead_.try_emplace(id, death).second) dead_order_.push_back(id);
    if (dead_order_.size() > kDeadActorsRemembered) {
      dead_.erase(dead_order_.front());
      dead_order_.pop_front();
    }
    auto it = actors_.find(id);
    if (it == actors_.end()) return;
    ActorRecord& record = it->second;
    if (!record.name.empty()) {
      auto named = named_.find({record.name_space, record.name});
      if (named != named_.end() && named->second == id) named_.erase(named);
    }
    if (record.holds_resources) {
      release = record.demand;
      gpus = std::move(record.gpus);
    }
    graveyard_.push_back(std::move(record.runner));  // joined later, from another thread
    actors_.erase(it);
  }
  if (!release.empty()) executor_.release(release, gpus);
}

Result<ActorPtr> LocalRuntime::get_actor(std::string_view name, std::string_view name_space) {
  std::string ns(name_space.empty() ? std::string_view(config_.name_space) : name_space);
  std::lock_guard lock(actors_mutex_);
  auto named = named_.find({ns, std::string(name)});
  if (named != named_.end()) {
    auto it = actors_.find(named->second);
    if (it != actors_.end() && !it->second.runner->dead()) {
      ++it->second.handles;
      return std::make_shared<const ActorHandleState>(it->first, it->second.class_name, address_,
                                                      weak_from_this());
    }
  }
  return Status::not_found("no live actor named " + std::string(name) + " in namespace " + ns);
}

Status LocalRuntime::kill_actor(const ActorHandleState& actor, bool no_restart) {
  std::shared_ptr<ActorRunner> runner;
  {
    std::lock_guard lock(actors_mutex_);
    auto it = actors_.find(actor.id);
    if (it == actors_.end()) return Status();  // already dead
    runner = it->second.runner;
  }
  runner->kill(!no_restart, "it was killed by shoal::kill()");
  return Status();
}

ActorPtr LocalRuntime::adopt_actor(ActorId id, std::string class_name, std::string owner_address) {
  if (owner_address == address_) {
    std::lock_guard lock(actors_mutex_);
    auto it = actors_.find(id);
    if (it != actors_.end()) ++it->second.handles;
  }
  return std::make_shared<const ActorHandleState>(id, std::move(class_name),
                                                  std::move(owner_address), weak_from_this());
}

void LocalRuntime::release_actor(const ActorHandleState& actor) noexcept {
  if (actor.owner_address != address_) return;
  std::lock_guard lock(actors_mutex_);
  auto it = actors_.find(actor.id);
  if (it == actors_.end()) return;
  ActorRecord& record = it->second;
  SHOAL_ASSERT(record.handles > 0, actor.id.hex());
  if (--record.handles > 0 || record.detached) return;
  if (!record.name.empty()) {  // the name is free again at once
    named_.erase({record.name_space, record.name});
    record.name.clear();
  }
  record.runner->stop_when_idle();
}

std::size_t LocalRuntime::live_actor_count() const {
  std::lock_guard lock(actors_mutex_);
  return actors_.size();
}

// ---- Objects ----------------------------------------------------------------

Result<RefPtr> LocalRuntime::put(SerializedValue value) {
  if (shutting_down_.load()) return Status::unavailable("shoal is shutting down");
  if (auto error = storage_error(value.bytes.size(), "put(): the value", ""))
    return Status(error->code, error->message);
  ObjectId id = ObjectId::for_put(new_task_id());
  auto stored = std::make_shared<ObjectValue>();
  stored->bytes = std::move(value.bytes);
  stored->contained = std::move(value.contained);
  objects_.create_ready(id, std::move(stored));
  return new_ref(id);
}

RefPtr LocalRuntime::adopt_ref(ObjectId id, std::string owner_address) {
  if (owner_address == address_) objects_.add_ref(id);
  return std::make_shared<const RefState>(id, std::move(owner_address), weak_from_this());
}

void LocalRuntime::release_ref(const RefState& ref) noexcept {
  if (ref.owner_address == address_) objects_.remove_ref(ref.id);
}

std::string LocalRuntime::describe_pending(std::span<const RefState* const> refs,
                                           const std::vector<ObjectValuePtr>& values) const {
  std::size_t pending = 0;
  const RefState* first = nullptr;
  for (std::size_t i = 0; i < refs.size(); ++i) {
    if (values[i] == nullptr) {
      ++pending;
      if (first == nullptr) first = refs[i];
    }
  }
  std::string out =
      std::to_string(pending) + " of " + std::to_string(refs.size()) + " objects not ready";
  if (first == nullptr) return out;
  out += "; the first is " + first->id.hex();
  TaskId producer = first->id.task_id();
  std::lock_guard lock(tasks_mutex_);
  if (auto it = tasks_.find(producer); it != tasks_.end()) {
    const char* state = it->second->state == Task::State::kRunning ? "running" : "waiting to run";
    out += ", from task " + it->second->spec.function + " (" + state + ")";
  } else if (auto call = actor_calls_.find(producer); call != actor_calls_.end()) {
    out += ", from actor call " + call->second.call->spec.function;
  }
  return out;
}

Status LocalRuntime::wait_for(std::span<const RefState* const> refs, std::size_t needed,
                              Deadline deadline, std::vector<ObjectValuePtr>& values,
                              bool timeout_is_error) {
  std::vector<ObjectId> ids;
  ids.reserve(refs.size());
  for (const RefState* ref : refs) {
    if (ref->owner_address != address_) {
      return Status::not_found("object " + ref->id.hex() + " is owned by " + ref->owner_address +
                               ", which this process (local mode) cannot reach");
    }
    ids.push_back(ref->id);
  }
  bool done = false;
  SHOAL_RETURN_IF_ERROR(wait_ready(objects_, ids, needed, deadline, values, done));
  if (!done && timeout_is_error) return Status::deadline_exceeded(describe_pending(refs, values));
  return Status();
}

Result<std::vector<ObjectValuePtr>> LocalRuntime::get(std::span<const RefState* const> refs,
                                                      Deadline deadline) {
  std::vector<ObjectValuePtr> values;
  Status status = wait_for(refs, refs.size(), deadline, values, true);
  if (!status.ok()) return status;
  return values;
}

Result<std::vector<bool>> LocalRuntime::wait(std::span<const RefState* const> refs,
                                             std::size_t num_ready, Deadline deadline) {
  SHOAL_RETURN_IF_ERROR(check_wait_args(refs, num_ready));
  std::vector<ObjectValuePtr> values;
  Status status = wait_for(refs, num_ready, deadline, values, false);
  if (!status.ok()) return status;
  std::vector<bool> ready(refs.size());
  for (std::size_t i = 0; i < refs.size(); ++i) ready[i] = values[i] != nullptr;
  return ready;
}

Result<bool> LocalRuntime::cancel(const RefState& ref, bool /*force*/) {
  if (ref.owner_address != address_ || ref.id.is_put()) return false;
  TaskId id = ref.id.task_id();
  std::shared_ptr<Task> task;
  ActorCallPtr call;
  ActorId actor;
  Task::State state = Task::State::kDone;
  {
    std::lock_guard lock(tasks_mutex_);
    if (auto it = tasks_.find(id); it != tasks_.end()) {
      task = it->second;
      task->cancel_requested.store(true);
      state = task->state;
      if (state == Task::State::kWaiting) {
        task->state = Task::State::kDone;
        tasks_.erase(it);
      }
    } else if (auto c = actor_calls_.find(id); c != actor_calls_.end()) {
      call = c->second.call;
      actor = c->second.actor;
    }
  }
  if (task) {
    const std::string message = "the task was cancelled";
    switch (state) {
      case Task::State::kWaiting:
        complete_object(task->return_id,
                        ObjectValue{{}, {}, cancelled_error(task->spec.function, id, message)});
        return true;
      case Task::State::kQueued: {
        std::optional<WorkItem> item = executor_.cancel(id);
        if (item)
          finish(task, ObjectValue{{}, {}, cancelled_error(task->spec.function, id, message)});
        return true;  // else it is starting: run_task sees the flag
      }
      case Task::State::kRunning:
        return true;
      case Task::State::kDone:
        return false;
    }
  }
  if (call) {
    call->cancel_requested.store(true);
    std::shared_ptr<ActorRunner> runner;
    {
      std::lock_guard lock(actors_mutex_);
      if (auto it = actors_.find(actor); it != actors_.end()) runner = it->second.runner;
    }
    if (runner) runner->cancel(id);
    return true;
  }
  return false;
}

// ---- Shutdown ---------------------------------------------------------------

void LocalRuntime::shutdown() {
  if (shutting_down_.exchange(true)) return;
  // Running user code sees cancel_requested() from now on.
  {
    std::lock_guard lock(tasks_mutex_);
    for (auto& [id, task] : tasks_) task->cancel_requested.store(true);
    for (auto& [id, entry] : actor_calls_) entry.call->cancel_requested.store(true);
  }
  std::vector<std::shared_ptr<ActorRunner>> runners;
  {
    std::lock_guard lock(actors_mutex_);
    for (auto& [id, record] : actors_) runners.push_back(record.runner);
    named_.clear();
  }
  for (auto& runner : runners) runner->kill(false, "shoal is shutting down");

  std::vector<WorkItem> queued = executor_.drain();
  std::vector<std::shared_ptr<Task>> unfinished;
  {
    std::lock_guard lock(tasks_mutex_);
    for (auto& [id, task] : tasks_) {
      if (task->state == Task::State::kWaiting || task->state == Task::State::kQueued) {
        task->state = Task::State::kDone;
        unfinished.push_back(task);
      }
    }
    for (auto& task : unfinished) tasks_.erase(task->id);
  }
  for (auto& task : unfinished) {
    complete_object(
        task->return_id,
        ObjectValue{{}, {}, cancelled_error(task->spec.function, task->id, "shoal shut down")});
  }
  queued.clear();
  unfinished.clear();

  executor_.join();
  for (auto& runner : runners) runner->join();
  std::vector<std::shared_ptr<ActorRunner>> graveyard;
  std::unordered_map<ActorId, ActorRecord> actors;
  {
    std::lock_guard lock(actors_mutex_);
    graveyard.swap(graveyard_);
    actors.swap(actors_);
  }
  for (auto& runner : graveyard) runner->join();
  {
    std::lock_guard lock(tasks_mutex_);
    SHOAL_ASSERT(tasks_.empty(), tasks_.size());
    actor_calls_.clear();
  }
  objects_.clear();
  if (objects_.store()) objects_.store()->shutdown();  // deletes the spill files
}

// ---- Placement groups --------------------------------------------------------

Result<PlacementGroupId> LocalRuntime::create_placement_group(std::vector<ResourceRequest>, PlacementStrategy,
                                                              std::string) {
  return Status::unavailable(
      "placement groups need a cluster (init with --address, or a node); local mode has none");
}

Result<bool> LocalRuntime::wait_placement_group(const PlacementGroupId& id, Deadline) {
  return Status::not_found("placement group " + id.hex() + " is unknown (local mode has none)");
}

Status LocalRuntime::remove_placement_group(const PlacementGroupId& id) {
  return Status::not_found("placement group " + id.hex() + " is unknown (local mode has none)");
}

}  // namespace shoal::detail
