// Runtime: what executes the public task API (include/shoal/api.h).
//
// The public templates serialize arguments and call the entry points of
// include/shoal/detail/core.h; those call the process's one Runtime. Two
// implementations are planned, behind this one interface:
//
//   LocalRuntime (local_runtime.h, built): every task and actor runs in this
//     process. An ObjectTable holds values, an Executor runs tasks on a pool
//     of threads with resource accounting, an ActorRunner per actor runs its
//     methods in order.
//
//   The distributed runtime (not built yet) is the same shape with the
//     network in the middle, following DESIGN.md's data plane:
//     - submit_task: the owner (this process) records the task and its return
//       object, picks a node (local first below the utilization threshold,
//       else from the gossip resource view; SPREAD, node affinity, placement
//       group bundles, label selectors — NodeResources in resources.h is the
//       accounting both use) and sends the TaskSpec over Cap'n Proto RPC
//       (args inline when small, as ObjectIds + owner addresses otherwise).
//       The receiving node resolves ref arguments (pulling values from their
//       owners or object stores), runs the body on its Executor through
//       Registry::function(name) and replies with the value (inline if small)
//       or its location; the owner completes the object. A node that cannot
//       fit the task spills it back; a node that dies gets its tasks retried
//       (max_retries).
//     - refs: RefState's owner_address is the owner's RPC address; adopt_ref
//       and release_ref drive Ray-style borrower counts with the owner.
//     - actors: create_actor registers the actor (and its name) in the
//       metadata store, places it like a task and runs an ActorRunner on the
//       chosen node; calls are sent there in per-caller sequence order.
//     Its get()/wait() block on futures completed by the loop thread; user
//     code stays on executor and actor threads, never on the loop thread.
//
// Contract for every implementation:
//   - Thread-safe: every method may be called from any thread, including
//     executor and actor threads of this runtime (nested tasks).
//   - submit_*, create_actor and put never wait for a task to run. They return
//     a Status only when the request cannot be accepted at all (shut down,
//     invalid options, a named actor's name is taken); everything that
//     happens to an accepted task is recorded in its object (ObjectValue::error).
//   - get() and wait() block the caller until the deadline (none: forever);
//     when called on an executor thread they must let other tasks use the
//     caller's resources while blocked (or a fan-in deadlocks the pool).
//   - adopt_*/release_* are called from RefState/ActorHandleState creation and
//     destructors: they must not block on tasks, must not throw, and may be
//     called while the caller holds no runtime locks only — implementations
//     must never destroy RefStates while holding their own locks.
//   - shutdown(): fails queued work, waits for running user code to return,
//     joins every thread it started, drops every object. Idempotent.
#pragma once

#include <atomic>
#include <chrono>
#include <cstddef>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "shoal/detail/core.h"
#include "shoal/placement_group.h"
#include "task/resources.h"
#include "shoal/status.h"

namespace shoal::detail {

using Clock = std::chrono::steady_clock;
using Deadline = std::optional<Clock::time_point>;

class Runtime : public std::enable_shared_from_this<Runtime> {
 public:
  virtual ~Runtime() = default;

  // This node's id (32 hex digits) and the address written into refs and
  // handles made here ("local/<node id>" in local mode, else "HOST:PORT").
  virtual const std::string& node_id() const = 0;
  virtual const std::string& address() const = 0;
  // The namespace of named actors when a call gives none.
  virtual const std::string& default_namespace() const = 0;

  // ---- Submission --------------------------------------------------------------
  virtual Result<RefPtr> submit_task(TaskSpec spec) = 0;
  virtual Result<RefPtr> submit_actor_task(const ActorHandleState& actor, TaskSpec spec) = 0;
  virtual Result<ActorPtr> create_actor(ActorSpec spec) = 0;
  virtual Result<RefPtr> put(SerializedValue value) = 0;

  // ---- Waiting ------------------------------------------------------------------
  // Every value (a failed task's value carries its error). kDeadlineExceeded
  // when the deadline passes first; kNotFound for an object this runtime does
  // not know (freed, or of another runtime).
  virtual Result<std::vector<ObjectValuePtr>> get(std::span<const RefState* const> refs,
                                                  Deadline deadline) = 0;
  // ready[i] per ref, once num_ready (1..refs.size()) are ready or at the
  // deadline. kInvalidArgument for a bad num_ready or duplicate refs.
  virtual Result<std::vector<bool>> wait(std::span<const RefState* const> refs,
                                         std::size_t num_ready, Deadline deadline) = 0;

  // ---- Control ------------------------------------------------------------------
  // True when the task had not finished; its object then fails with
  // TaskCancelled (see shoal::cancel for running tasks).
  virtual Result<bool> cancel(const RefState& ref, bool force) = 0;
  virtual Status kill_actor(const ActorHandleState& actor, bool no_restart) = 0;
  virtual Result<ActorPtr> get_actor(std::string_view name, std::string_view name_space) = 0;

  // ---- Placement groups (shoal/placement_group.h) ------------------------------
  virtual Result<PlacementGroupId> create_placement_group(std::vector<ResourceRequest> bundles,
                                                          PlacementStrategy strategy,
                                                          std::string name) = 0;
  // True once reserved; false at the deadline. An error when it was removed
  // or can never be placed.
  virtual Result<bool> wait_placement_group(const PlacementGroupId& id, Deadline deadline) = 0;
  virtual Status remove_placement_group(const PlacementGroupId& id) = 0;

  // ---- Reference counting ------------------------------------------------------
  // A new local reference to an object/actor named in deserialized bytes.
  virtual RefPtr adopt_ref(ObjectId id, std::string owner_address) = 0;
  virtual ActorPtr adopt_actor(ActorId id, std::string class_name, std::string owner_address) = 0;
  // The destructor of a RefState/ActorHandleState this runtime made.
  virtual void release_ref(const RefState& ref) noexcept = 0;
  virtual void release_actor(const ActorHandleState& actor) noexcept = 0;

  virtual void shutdown() = 0;
};

// The bytes an argument passes: its ref's value (`ref_value`, resolved by
// the runtime), the value the caller resolved, or its inline bytes.
std::string_view argument_view(const TaskArg& arg, const ObjectValuePtr& ref_value);

// Checks shared by every runtime. The demand of a task or an actor, or
// kInvalidArgument naming what is wrong with its options.
Result<ResourceSet> task_demand(const TaskSpec& spec);
Result<ResourceSet> actor_demand(const ActorSpec& spec);
// wait()'s arguments: num_ready from 1 to refs.size(), no object twice.
Status check_wait_args(std::span<const RefState* const> refs, std::size_t num_ready);

// While alive on a thread, shoal::cancel_requested() on that thread reads
// `flag`. Set by runtimes around user code (tasks, actor methods).
class CancelFlagScope {
 public:
  explicit CancelFlagScope(const std::atomic<bool>* flag);
  ~CancelFlagScope();
  CancelFlagScope(const CancelFlagScope&) = delete;
  CancelFlagScope& operator=(const CancelFlagScope&) = delete;

 private:
  const std::atomic<bool>* previous_;
};

// The process's runtime (null when not initialized). init() installs it.
std::shared_ptr<Runtime> current_runtime();

// Connect mode: a driver attached to the cluster options.address names
// (src/node/driver.cc).
}  // namespace shoal::detail
namespace shoal {
struct Options;
}
namespace shoal::detail {
Result<std::shared_ptr<Runtime>> start_driver(const Options& options);

// For a node process (src/node): makes `runtime` the process's runtime so
// the task API in user code reaches it. kAlreadyExists when shoal::init()
// already installed one. Returns the generation to uninstall.
Result<uint64_t> install_runtime(std::shared_ptr<Runtime> runtime);
// Uninstalls the runtime of `generation` if it is still current (does not
// shut it down).
void uninstall_runtime(uint64_t generation);

}  // namespace shoal::detail
