// LocalRuntime: the whole runtime inside one process (shoal::local()).
//
// Objects live in an ObjectTable; tasks wait there for their ObjectRef
// arguments, then go to the Executor (one node's resources, a thread pool);
// large values go on into the runtime's ObjectStore, which spills them to
// files under spill_dir beyond object_store_bytes_max;
// each actor is an ActorRunner with its own thread(s). Everything is
// serialized exactly as it would be for the network, so a program that runs
// here runs unchanged on the distributed runtime, and types that cannot
// cross the wire fail here too.
//
// Local mode has one node: a task that asks for more than the node has in
// total, for a label the node lacks, for node affinity to another node
// (unless soft), or for a placement group fails at once with a clear error
// (kResourceExhausted / kUnavailable) at get(), instead of pending forever.
//
// Locks: tasks_mutex_ guards tasks_ and actor_calls_ (and the argument
// bookkeeping of tasks and calls); actors_mutex_ guards actors_, named_ and
// graveyard_. ObjectTable, Executor and ActorRunner locks are leaves: they
// are never held while calling back into this class, and this class never
// holds its own locks while completing objects or dropping RefStates.
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <deque>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <unordered_map>
#include <utility>
#include <vector>

#include "task/actor_runner.h"
#include "task/executor.h"
#include "task/object_table.h"
#include "task/resources.h"
#include "task/runtime.h"

namespace shoal::detail {

class LocalRuntime final : public Runtime {
 public:
  struct Config {
    std::string node_id;     // 32 hex digits
    uint64_t id_prefix = 1;  // the high word of every id made here; not 0
    ResourceSet total;       // the node's resources
    std::map<std::string, std::string> labels;
    std::string name_space = "default";
    int executor_threads_max = 64;
    // Values of ready objects kept in memory, all together (the ObjectStore's
    // capacity): large values beyond it spill to spill_dir. put() and task
    // results wait for spills to make room, and fail with ObjectStoreFull
    // (kResourceExhausted) when none can be made.
    uint64_t object_store_bytes_max = uint64_t{1} << 32;
    // Where large values spill. Empty: a private directory made with mkdtemp
    // under $TMPDIR or /tmp ("shoal-spill-XXXXXX"), removed at shutdown.
    std::string spill_dir;
    std::size_t tasks_in_flight_max =
        kTasksInFlightMax;                // submitted, not finished (actor calls too)
    std::size_t actors_max = kActorsMax;  // live actors (each has its own threads)
    // The engine of a cluster node (cluster_runtime.h): the owner already
    // applied scheduling strategies and label selectors, so they are not
    // checked again here.
    bool placed_by_owner = false;
  };
  static constexpr std::size_t kTasksInFlightMax = 1'000'000;
  static constexpr std::size_t kActorsMax = 4096;

  static std::shared_ptr<LocalRuntime> create(Config config);
  ~LocalRuntime() override;

  const std::string& node_id() const override { return config_.node_id; }
  const std::string& address() const override { return address_; }
  const std::string& default_namespace() const override { return config_.name_space; }

  Result<RefPtr> submit_task(TaskSpec spec) override;
  Result<RefPtr> submit_actor_task(const ActorHandleState& actor, TaskSpec spec) override;
  Result<ActorPtr> create_actor(ActorSpec spec) override;
  Result<RefPtr> put(SerializedValue value) override;
  Result<std::vector<ObjectValuePtr>> get(std::span<const RefState* const> refs,
                                          Deadline deadline) override;
  Result<std::vector<bool>> wait(std::span<const RefState* const> refs, std::size_t num_ready,
                                 Deadline deadline) override;
  Result<bool> cancel(const RefState& ref, bool force) override;
  Status kill_actor(const ActorHandleState& actor, bool no_restart) override;
  Result<ActorPtr> get_actor(std::string_view name, std::string_view name_space) override;
  Result<PlacementGroupId> create_placement_group(std::vector<ResourceRequest> bundles,
                                                  PlacementStrategy strategy, std::string name) override;
  Result<bool> wait_placement_group(const PlacementGroupId& id, Deadline deadline) override;
  Status remove_placement_group(const PlacementGroupId& id) override;
  RefPtr adopt_ref(ObjectId id, std::string owner_address) override;
  ActorPtr adopt_actor(ActorId id, std::string class_name, std::string owner_address) override;
  void release_ref(const RefState& ref) noexcept override;
  void release_actor(const ActorHandleState& actor) noexcept override;
  void shutdown() override;

  // Engine use: runs `callback` once the object `ref` names is ready (now, if
  // it is). kNotFound for an object this runtime does not hold.
  Result<uint64_t> when_ready(const RefState& ref, ObjectTable::Callback callback) {
    return objects_.on_ready(ref.id, std::move(callback));
  }

  // For tests and benchmarks.
  std::size_t object_count() const { return objects_.size(); }
  // The store of large values (null if it could not be made: then values
  // never spill and object_store_bytes_max is a hard limit).
  const std::shared_ptr<ObjectStore>& object_store() const { return objects_.store(); }
  std::size_t live_actor_count() const;
  Executor::Stats executor_stats() const { return executor_.stats(); }
  ResourceSet executor_total() const { return executor_.total(); }
  Executor& executor() { return executor_; }

 private:
  struct Task;
  struct ActorRecord {
    std::shared_ptr<ActorRunner> runner;
    std::string class_name;
    std::string name;  // empty: unnamed
    std::string name_space;
    bool detached = false;
    uint64_t handles = 0;
    ResourceSet demand;
    bool holds_resources = false;
    GpuGrant gpus;  // the GPUs it holds (with holds_resources)
  };
  struct CallEntry {
    ActorCallPtr call;
    ActorId actor;
  };

  explicit LocalRuntime(Config config);

  TaskId new_task_id();
  RefPtr new_ref(const ObjectId& id);
  std::optional<ErrorInfo> placement_error(const ResourceSet& demand,
                                           const SchedulingStrategy& strategy,
                                           const std::map<std::string, std::string>& labels,
                                           std::string_view kind, const std::string& name) const;
  // An error when a value of `bytes` cannot be stored (over one object's
  // limit, or the store is full: waits for spills to make room first).
  std::optional<ErrorInfo> storage_error(uint64_t bytes, std::string_view what,
                                         const std::string& name) const;
  Status check_in_flight(std::string_view kind, const std::string& function) const;
  ErrorInfo cancelled_error(const std::string& function, const TaskId& id,
                            const std::string& message) const;

  // Normal tasks.
  void on_task_argument(const std::shared_ptr<Task>& task, std::size_t index,
                        const ObjectValuePtr& value);
  void enqueue(const std::shared_ptr<Task>& task);
  void run_task(const std::shared_ptr<Task>& task);
  void finish(const std::shared_ptr<Task>& task, ObjectValue value);
  void fail(const std::shared_ptr<Task>& task, ErrorInfo error);

  // Actor calls (and constructor calls): resolve arguments, then mark ready.
  void resolve_call(const ActorCallPtr& call, const std::shared_ptr<ActorRunner>& runner);
  void on_call_argument(const ActorCallPtr& call, const std::shared_ptr<ActorRunner>& runner,
                        std::size_t index, const ObjectValuePtr& value);
  void on_call_complete(const ActorCallPtr& call, ObjectValue value);
  void on_actor_exit(const ActorId& id, const ErrorInfo& death);
  void complete_object(const ObjectId& id, ObjectValue value);

  // get()/wait(): waits until `needed` of `refs` are ready or the deadline.
  Status wait_for(std::span<const RefState* const> refs, std::size_t needed, Deadline deadline,
                  std::vector<ObjectValuePtr>& values, bool timeout_is_error);
  std::string describe_pending(std::span<const RefState* const> refs,
                               const std::vector<ObjectValuePtr>& values) const;

  const Config config_;
  const std::string address_;
  std::atomic<uint64_t> next_sequence_{1};
  std::atomic<bool> shutting_down_{false};

  ObjectTable objects_;
  Executor executor_;

  mutable std::mutex tasks_mutex_;
  std::unordered_map<TaskId, std::shared_ptr<Task>> tasks_;  // guarded: not yet finished
  std::unordered_map<TaskId, CallEntry> actor_calls_;        // guarded: not yet finished

  mutable std::mutex actors_mutex_;
  std::unordered_map<ActorId, ActorRecord> actors_;               // guarded: live actors
  std::map<std::pair<std::string, std::string>, ActorId> named_;  // guarded: (namespace, name)
  std::vector<std::shared_ptr<ActorRunner>> graveyard_;           // guarded: exited, to join
  // Why recent actors died, for calls through handles that outlive them.
  static constexpr std::size_t kDeadActorsRemembered = 10'000;
  std::unordered_map<ActorId, ErrorInfo> dead_;  // guarded
  std::deque<ActorId> dead_order_;               // guarded: oldest first
};

}  // namespace shoal::detail
