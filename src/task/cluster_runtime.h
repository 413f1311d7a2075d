// ClusterRuntime: the task API across the machines of a cluster (DESIGN.md,
// "Data plane"). One per process, in one of two roles:
//
//   node    the process is a shoal node (`shoal start`, or a program that
//           embeds libshoal.a and runs `myapp start --join ...`). It owns
//           tasks its user code submits, AND runs tasks and actors that other
//           owners push to it, on its engine (a LocalRuntime used only as an
//           executor: threads, resource accounting, actor queues).
//   driver  a program attached to a running cluster (`--address`): it owns
//           what it submits and runs nothing itself. It listens on an
//           ephemeral port so that nodes can fetch the objects it owns.
//
// Ownership (Ray's model, first layer). The process that calls remote() owns
// the task and its return object: it resolves the task's ObjectRef
// arguments (its own objects at once, borrowed ones by fetching them from
// their owners), picks a node, pushes the task there over RPC with every
// argument inline, and completes the object when the node reports back
// through the owner's TaskOwner capability. Metadata is never on this path.
//
// Placement (the owner decides, from its view of the members and their
// gossiped resources): node affinity and label selectors filter; SPREAD
// rotates over the nodes that can run it; the default runs on this node
// while fewer tasks run here than it has CPUs, else packs onto the first
// node (by id) under half its CPUs, else the least loaded. A node qualifies
// only when its binary registered the function (nodes advertise it through
// nodeInfo) and its totals fit the demand. No node with the function: the
// task fails at once with a clear error. Nodes with the function but none
// that fits: the task stays pending with its reason (pending_demand()),
// re-examined whenever the members change.
//
// Node loss: when a node leaves the view (dead or left), the tasks it was
// running are pushed again elsewhere while attempts remain (max_retries),
// else they fail; its actors' calls fail with ActorDied.
//
// Actors: the creator picks the node like a task (its class must be
// registered there) and records the actor in the metadata store:
//   /shoal/actors/<actor id>            {"class","address","node","name","namespace","owner","detached"}
//   /shoal/named_actors/<ns>/<name>     the same record (created only if absent)
// so get_actor() works from any process and survives leader changes. Calls
// from one caller go out in submission order (a call waits for the ones
// before it to be sent), over one connection, and the hosting node enqueues
// them in arrival order. An actor that is not detached is killed when its
// creator drops its last handle, unless a handle to it was sent to another
// process, in which case it lives until its creator shuts down.
//
// Threading: public methods from any thread. Network state lives on the
// loop thread; user threads hand work over with Loop::post. One mutex
// (mutex_) guards the task and actor tables; ObjectTable and the engine have
// their own locks and are never called with mutex_ held when they may call
// back.
#pragma once

#include <kj/async.h>

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <functional>
#include <list>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <thread>
#include <unordered_map>
#include <unordered_set>
#include <vector>

#include "rpc.capnp.h"
#include "task/local_runtime.h"
#include "task/object_table.h"
#include "task/resources.h"
#include "task/runtime.h"
#include "task/task_history.h"

namespace shoal::loop {
class Loop;
}
namespace shoal::rpc {
class PeerPool;
}

namespace shoal::detail {

inline ObjectId object_id(uint64_t hi, uint64_t lo) {
  ObjectId id;
  id.hi = hi;
  id.lo = lo;
  return id;
}

// One member as the owner sees it.
class BulkServer;

struct ClusterMember {
  std::string id;       // 32 hex digits
  std::string address;  // host:port of its RPC
  ResourceSet total;
  ResourceSet available;  // gossiped, may lag
  std::map<std::string, std::string> labels;
};

struct ClusterRuntimeConfig {
  loop::Loop* loop = nullptr;       // the process's loop (network calls run there)
  rpc::PeerPool* peers = nullptr;   // connections to nodes
  std::string node_id;              // this node's id, or the driver's
  std::string address;              // owner address of refs made here (host:port)
  uint64_t id_prefix = 1;           // high word of ids made here; not 0
  std::string name_space = "default";
  // Live members (alive or suspect), on the loop thread.
  std::function<std::vector<ClusterMember>()> members;
  // A metadata key-value request (meta codec bytes) -> response bytes, on the
  // loop thread.
  std::function<kj::Promise<std::string>(std::string request)> kv;
  // Node role: runs pushed tasks and actors. Null for a driver.
  std::shared_ptr<LocalRuntime> engine;
  // Where this process's large values live and spill (a node shares its
  // engine's); null: in memory only.
  std::shared_ptr<ObjectStore> store;
  // Serve and pull values over 100 KiB as raw bytes on a side connection
  // (bulk_channel.h), listening on bulk_bind (an ephemeral port) instead of
  // in readObject chunks. Off where RPC runs over TLS: those bytes are not
  // encrypted.
  bool bulk_transfers = false;
  std::string bulk_bind;
  // True while this process restarts the detached actors whose node died
  // (the metadata leader's node; see cluster_detached.cc). Loop thread.
  std::function<bool()> keeps_detached_actors;
};

class ClusterRuntime final : public Runtime {
 public:
  static std::shared_ptr<ClusterRuntime> create(ClusterRuntimeConfig config);
  ~ClusterRuntime() noexcept override;

  const std::string& node_id() const override { return config_.node_id; }
  const std::string& address() const override { return config_.address; }
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
  // Fails what is pending, kills the actors it created (unless detached),
  // stops the engine. Call from a user thread (not the loop thread) while
  // the loop still runs, or from the loop thread after it stopped.
  void shutdown() override;
  // Runs at the end of shutdown() (a driver stops its loop thread there).
  void set_on_shutdown(std::function<void()> fn) { on_shutdown_ = std::move(fn); }

  // ---- Served to other processes (NodeService delegates; loop thread) -------
  kj::Promise<void> serve_push_tasks(rpc::TaskOwner::Client owner, uint64_t session,
                                     capnp::List<rpc::TaskWire>::Reader tasks);
  kj::Promise<void> serve_create_actor(rpc::TaskOwner::Client owner, uint64_t session,
                                       rpc::ActorWire::Reader actor);
  kj::Promise<void> serve_push_actor_calls(rpc::TaskOwner::Client owner, uint64_t session,
                                           ActorId actor,
                                           capnp::List<rpc::TaskWire>::Reader calls);
  bool serve_kill_actor(ActorId actor, bool no_restart, const std::string& reason);
  bool serve_cancel_task(TaskId task, bool force);
  kj::Promise<void> serve_get_object(ObjectId id, uint32_t wait_ms, rpc::TaskResult::Builder out);
  void fill_node_info(rpc::Node::NodeInfoResults::Builder out);
  // Objects over 100 KiB (cluster_objects.cc): a chunk of a value held
  // here; the owner dropping copies held here for it.
  // A spilled value is read back from disk on a thread of its own, not on
  // the loop (a 1 GiB file would stall every connection of the process).
  kj::Promise<void> serve_read_object(ObjectId id, uint64_t offset, uint32_t length,
                                      rpc::Node::ReadObjectResults::Builder out);
  // A ticket for bytes [offset, size) of a value held here on the bulk
  // channel; port 0 when there is none now.
  void serve_open_object_stream(ObjectId id, uint64_t offset, rpc::Node::OpenObjectStreamResults::Builder out);
  void serve_free_objects(capnp::List<rpc::ObjectIdWire>::Reader objects);
  // What this process holds or owns; with `cluster`, every live member's too.
  kj::Promise<void> serve_object_stats(bool cluster, rpc::Node::ObjectStatsResults::Builder out);
  kj::Promise<void> serve_task_history(bool cluster, uint32_t limit, rpc::Node::TaskHistoryResults::Builder out);
  // Borrowers (cluster_borrows.cc): a process that holds references to
  // objects this process owns registers (adds) and unregisters (removes).
  void serve_borrow(std::string borrower, capnp::List<rpc::ObjectIdWire>::Reader adds,
                    capnp::List<rpc::ObjectIdWire>::Reader removes, rpc::Node::BorrowResults::Builder out);
  // The address of the owner behind a session (shown by shoalctl memory).
  void note_owner_address(uint64_t session, std::string address);
  // Placement group bundles on this node: all or none; reason when none.
  bool serve_reserve_bundles(PlacementGroupId group, capnp::List<rpc::BundleWire>::Reader bundles,
                             rpc::TaskOwner::Client owner, uint64_t session, std::string* reason);
  bool serve_release_bundles(PlacementGroupId group);

  // Called on the loop thread when membership changed (or periodically).
  void on_members_changed();
  // Loop thread: the cluster declared this node dead (it was frozen or cut
  // off) — its owners gave its work to other nodes; it drops all of it.
  void on_declared_dead();

  // Tasks waiting for a node that can fit them, with why (shoalctl status).
  struct PendingDemand {
    std::string function;
    std::string demand;
    std::string reason;
    std::size_t count = 0;
  };
  std::vector<PendingDemand> pending_demand() const;
  std::size_t owned_objects() const { return objects_.size(); }

 private:
  struct Task;
  struct ActorState;
  struct Link;
  struct HostedActor;
  struct OwnerSession;
  struct GroupState;
  class OwnerServer;
  struct Pull;
  struct RefArg;
  // A value held here for other processes: a large result this node made
  // (kept until its owner frees it or goes away), or a copy pulled for an
  // argument (a cache, bounded, least recently used first out). A result
  // lives in the object store when there is one, so it spills under memory
  // pressure like the values of this process's own table; a copy is dropped
  // instead (it can be pulled again).
  struct Held {
    ObjectValuePtr value;  // null when the store has it
    uint64_t session = 0;  // the owner session it was made or pulled for
    bool copy = false;
    bool in_store = false;
    uint64_t size = 0;
    std::list<ObjectId>::iterator lru;  // copies only
  };
  // What unhold_locked() took out of held_, released when this goes: after
  // host_mutex_ (a value may hold the last refs of others, and the store
  // frees its own values on the caller's thread).
  struct Unheld {
    std::shared_ptr<ObjectStore> store;
    std::vector<ObjectValuePtr> values;
    std::vector<ObjectId> stored;
    Unheld() = default;
    Unheld(const Unheld&) = delete;
    Unheld& operator=(const Unheld&) = delete;
    ~Unheld();
  };
  // Owner (and borrower) side: where a value held elsewhere lives.
  struct Locations {
    uint64_t size = 0;
    std::vector<std::string> holders;  // processes with a copy to read from
    std::vector<std::string> copies;   // nodes that ran a task needing it, so pulled a copy
    std::set<std::string> sent_to;     // nodes a task took it to (they may cache it)
    std::map<std::string, uint32_t> pulls_sent;  // pullers told to start at each process
    bool owned = false;                // this process owns it: frees the copies
  };

  explicit ClusterRuntime(ClusterRuntimeConfig config);

  std::weak_ptr<ClusterRuntime> self() {
    return std::static_pointer_cast<ClusterRuntime>(weak_from_this().lock());
  }
  TaskId new_task_id();
  RefPtr new_ref(const ObjectId& id);
  // Runs fn on the loop thread; false when it could not be queued.
  bool post(std::function<void()> fn);
  ErrorInfo system_error(const std::shared_ptr<Task>& task, Status::Code code,
                         std::string message) const;
  // Actor handles inside `contained` reached another process.
  void mark_shared(const Contained& contained);
  // Each argument's bytes (mutex_ held).
  std::vector<std::string_view> argument_bytes(const Task& task) const;
  // The argument travels by reference: a ref whose value is large (mutex_ held).
  bool by_reference(const Task& task, std::size_t index) const;

  // Owner side, any thread.
  void resolve_args(const std::shared_ptr<Task>& task);
  void on_argument(const std::shared_ptr<Task>& task, std::size_t index,
                   const ObjectValuePtr& value);
  void on_args_resolved(const std::shared_ptr<Task>& task);
  bool try_run_here(const std::shared_ptr<Task>& task);
  void run_on_engine(const std::shared_ptr<Task>& task);
  void complete(const std::shared_ptr<Task>& task, ObjectValuePtr value);  // null: no object
  void fail(const std::shared_ptr<Task>& task, ErrorInfo error);
  void ensure_fetch(const ObjectId& id, const std::string& owner);
  Status wait_for(std::span<const RefState* const> refs, std::size_t needed, Deadline deadline,
                  std::vector<ObjectValuePtr>& values, bool& done);
  std::string describe_pending(std::span<const RefState* const> refs,
                               const std::vector<ObjectValuePtr>& values) const;

  // Owner side, loop thread.
  void schedule_pending();
  std::optional<std::string> pick_node(const std::shared_ptr<Task>& task, std::string* reason,
                                       bool* never);
  void send_to(const std::string& address, const std::shared_ptr<Task>& task);
  void schedule_flush(const std::string& address);
  void flush_link(const std::string& address);
  void fill_task_wire(const Task& task, const std::string& address, rpc::TaskWire::Builder wire);
  void on_push_failed(const std::string& address, const std::vector<TaskId>& ids,
                      const kj::Exception& e);
  // A task whose node is gone: again elsewhere, or failed (calls: ActorDied).
  void lost_task(const std::shared_ptr<Task>& task, const std::string& why);
  void on_results(capnp::List<rpc::TaskResult>::Reader results);
  void learn_node(const ClusterMember& member);
  void node_lost(const std::string& address);
  void publish_demand();
  void fail_unfinished();
  kj::Promise<void> shutdown_on_loop();
  // Links whose connection broke with tasks in flight: a new push (empty if
  // need be) carries the owner capability again, so the node sends what it
  // kept.
  void reconnect_owners_links();
  // A member's nodeInfo is in flight since less than 2 s: placement waits.
  bool learning_recently() const;
  void check_owners();  // node side: heartbeats, and what vanished owners left
  // Stops what an owner session left here (its actors unless detached, its
  // bundles, its results) and forgets the session.
  void drop_session(uint64_t session);
  // Placement groups (loop thread).
  void try_place_group(const PlacementGroupId& id);
  void place_pending_groups();
  std::optional<std::vector<std::string>> plan_group(const GroupState& group, std::string* reason) const;
  void release_group_on(const PlacementGroupId& id, const std::set<std::string>& nodes);
  void look_up_group(const PlacementGroupId& id);
  void fetch_object(ObjectId id, std::string owner, uint32_t failures);
  void on_actor_created(const std::shared_ptr<Task>& task, const std::string& address);
  void actor_died(const ActorId& id, ErrorInfo error);
  void restart_actor(const ActorId& id, const std::string& why);
  // Calls sent to an actor whose node died: back to the front of its queue
  // while max_task_retries allows; returns the others (mutex_ held).
  std::vector<std::shared_ptr<Task>> requeue_in_flight_locked(ActorState& actor);
  // Detached actors (cluster_detached.cc): restarted by the metadata
  // leader's node from their directory record, whoever created them.
  void keep_detached_actors();
  static void append_detached_spec(const ActorState& actor, std::vector<std::pair<std::string, std::string>>& fields);
  void adopt_detached_actor(const ActorId& id, std::map<std::string, std::string> record, int64_t revision);
  void pump_actor(const ActorId& id);
  void locate_actor(const ActorId& id);
  kj::Promise<std::string> kv_call(std::string request);
  kj::Promise<std::optional<std::string>> kv_get(const std::string& key);
  void kv_put(const std::string& key, const std::string& value);
  void kv_delete(const std::string& key);
  // Puts `value` at `key` only if the key's mod revision is `revision` (0:
  // the key does not exist); true when it did.
  kj::Promise<Result<bool>> kv_put_if(const std::string& key, const std::string& value, int64_t revision);
  // Queues a killActor for `id` on the link to `address` (reason empty: its
  // owner released it).
  void send_kill(const std::string& address, const ActorId& id, std::string reason);
  // Blocks a user thread on something the loop thread computes.
  template <typename T>
  Result<T> on_loop_and_wait(std::function<kj::Promise<Result<T>>()> fn, Deadline deadline);

  // Objects over kInlineBytesMax (object_store.h; cluster_objects.cc).
  static bool large(const ObjectValuePtr& value);
  // A ready value this process holds (a result kept here, a pulled copy,
  // or an object in its table), else null.
  ObjectValuePtr local_copy(const ObjectId& id);
  // Pulls a value (loop thread) from the first of `sources` that answers,
  // in chunks; concurrent pulls of one object share one transfer. Never
  // rejects: a failure is a value with an error.
  kj::Promise<ObjectValuePtr> pull(ObjectId id, uint64_t size, std::vector<std::string> sources,
                                   bool from_spill = true);
  // The bulk channel first (from the current holder), then readObject
  // chunks for whatever it did not bring.
  void pull_bulk(const std::shared_ptr<Pull>& pull);
  void pull_chunks(const std::shared_ptr<Pull>& pull);
  void finish_pull(const std::shared_ptr<Pull>& pull, ObjectValuePtr value);
  // Where to read a value that is large or held elsewhere (mutex_ held):
  // the processes known to hold it, then the nodes tasks took it to.
  // `held_here`: the bytes are in this process (not only a remote size).
  std::vector<std::string> holders_locked(const ObjectId& id, bool held_here) const;
  // The same list for one puller: the known holders ordered by how many
  // pullers were sent to each before (fewest first), so pulls of one value
  // spread over its copies instead of funnelling through its first holder.
  std::vector<std::string> pull_sources_locked(const ObjectId& id, bool held_here);
  // A task needing these by-reference arguments completed on `address`:
  // that node pulled them first, so later pullers may read them there.
  void note_copies(const Task& task, const std::string& address);
  void fill_stored(uint64_t size, const std::vector<std::string>& holders, rpc::StoredWire::Builder out);
  // Records where a value held elsewhere lives.
  void add_locations(const ObjectId& id, uint64_t size, capnp::List<capnp::Text>::Reader holders, bool owned);
  // After the last local reference: the copies elsewhere are freed (owned
  // objects) and the record goes.
  void forget_locations(const ObjectId& id);
  // Queues freeObjects for every process that may hold a copy (mutex_
  // held); true when the caller must post_frees_after_adds().
  bool queue_frees_locked(const ObjectId& id, const Locations& l);
  void post_frees_after_adds();  // any thread, mutex_ not held
  void send_frees();  // loop thread
  // This process's objects (loop thread).
  void fill_node_objects(rpc::NodeObjects::Builder out);
  // Replaces values held elsewhere by their bytes (a user thread, blocking).
  Status materialize(std::span<const RefState* const> refs, std::vector<ObjectValuePtr>& values,
                     Deadline deadline);
  // Makes a task's remote argument values local, then runs `next` (any thread).
  void with_local_args(const std::shared_ptr<Task>& task, std::function<void()> next);
  bool has_remote_args(const Task& task) const;  // mutex_ held
  // The process holding the most bytes of the task's large arguments, when
  // that is at least 1 MiB.
  std::optional<std::string> largest_args_holder(const Task& task) const;
  void fail_task_or_creation(const std::shared_ptr<Task>& task, ErrorInfo error);
  // Lineage (cluster_lineage.cc): how to make a lost object again.
  static uint64_t lineage_bytes_max();
  bool owns(const ObjectId& id) const;  // made by this process
  void keep_lineage(const std::shared_ptr<Task>& task);  // a finished task, its result held elsewhere
  void drop_lineage(const ObjectId& id);                  // the object was freed
  // Runs the task that made `id` again; nullopt when it runs (or already
  // runs), else the error the object fails with (ObjectLost, LineageEvicted).
  std::optional<ErrorInfo> reconstruct(const ObjectId& id, const std::string& why);
  // A task whose node could not pull `lost_id` (an argument, or a ref
  // inside one): makes it again if this process owns it (when nil: the
  // arguments it owns that no live member holds), then runs the task again.
  // False when there was nothing to make again, or (error set) when one of
  // them cannot be made again (loop thread).
  bool rerun_after_lost_args(const std::shared_ptr<Task>& task, const ObjectId& lost_id, ErrorInfo& error);

  // Borrowing (Ray's borrower protocol; cluster_borrows.cc). A process that
  // gets its first reference to an object another process owns registers
  // with the owner (an add), and unregisters when its last one goes (a
  // remove); the owner keeps the object while any borrower has it. Whoever
  // hands a reference on keeps its own until the receiver's add is acked:
  // results to an owner, frees and removes wait for the adds started before
  // them (after_adds), and an owner acks a batch of results only once the
  // refs inside them are registered.
  void start_borrow(const ObjectId& id, const std::string& owner);  // any thread
  void end_borrow(const ObjectId& id);                              // any thread
  void post_borrows();                                              // any thread
  void flush_borrows();                                             // loop thread
  void send_borrow_batch(std::string owner, std::vector<std::pair<ObjectId, uint64_t>> adds,
                         std::vector<ObjectId> removes, uint32_t attempt);  // loop thread
  void on_adds_acked(const std::vector<std::pair<ObjectId, uint64_t>>& adds);  // loop thread
  // Runs fn (loop thread) once every add started before the call is acked.
  void after_adds(std::function<void()> fn);
  kj::Promise<void> adds_settled();  // loop thread: after_adds as a promise
  // The refs inside a value that arrived inline: adopted as its contained.
  void adopt_inner_refs(ObjectValue& value);
  // Owner side: forgets what a borrower that is gone held (loop thread).
  void drop_borrower(const std::string& address);
  void check_borrowers();  // loop thread, periodic: probes borrowers that are not members
  std::size_t borrowers_of(const ObjectId& id);

  // Node side: keeps a value for other processes to read.
  void hold(const ObjectId& id, ObjectValuePtr value, uint64_t session, bool copy);
  // Forgets a held value (host_mutex_ held); `out` releases it after.
  void unhold_locked(std::unordered_map<ObjectId, Held>::iterator it, Unheld& out);
  static std::vector<RefArg> ref_args_from_wire(rpc::TaskWire::Reader wire);
  // The values of a pushed task's by-reference arguments (loop thread).
  kj::Promise<std::vector<ObjectValuePtr>> fetch_ref_args(std::vector<RefArg> refs, uint64_t session);
  // Sets the by-reference arguments of a pushed spec; an error names the
  // first that could not be read.
  static std::optional<ErrorInfo> attach_ref_args(TaskSpec& spec, const std::vector<RefArg>& refs,
                                                  const std::vector<ObjectValuePtr>& values);

  // Node side.
  void touch_session(uint64_t session, rpc::TaskOwner::Client owner);  // loop thread
  static TaskSpec spec_from_wire(rpc::TaskWire::Reader wire);
  void host(uint64_t session, TaskId id, Result<RefPtr> ref, const std::string& function);
  void submit_hosted_call(uint64_t session, ActorId actor, TaskId id, TaskSpec spec);
  void queue_result(uint64_t session, TaskId id, const ObjectValuePtr& value);  // any thread
  void queue_spill(uint64_t session, TaskId id);                               // loop thread
  void post_results();
  void send_results(uint64_t session);                                         // loop thread

 public:
  // Loop thread, once, after shutdown() and before the loop is destroyed:
  // drops every promise and capability this runtime holds.
  void teardown_on_loop();

 private:
  const ClusterRuntimeConfig config_;
  std::function<void()> on_shutdown_;
  std::mutex post_mutex_;
  loop::Loop* loop_;  // guarded by post_mutex_; null once torn down
  std::atomic<uint64_t> next_sequence_{1};
  std::atomic<bool> shutting_down_{false};
  const uint64_t session_;  // this owner's id in the eyes of nodes
  const std::thread::id loop_thread_;
  bool torn_down_ = false;  // loop thread
  ObjectTable objects_;
  std::optional<rpc::TaskOwner::Client> owner_cap_;  // loop thread

  mutable std::mutex mutex_;
  std::unordered_map<TaskId, std::shared_ptr<Task>> tasks_;  // guarded: owned, not finished
  std::deque<std::shared_ptr<Task>> to_schedule_;           // guarded: resolved, not placed
  bool drain_posted_ = false;                               // guarded
  std::unordered_map<ActorId, std::shared_ptr<ActorState>> actors_;  // guarded: known handles
  std::unordered_map<ObjectId, std::string> borrowed_;      // guarded: fetch started (owner)
  std::size_t local_running_ = 0;                           // guarded: own tasks on the engine
  std::unordered_map<PlacementGroupId, std::shared_ptr<GroupState>> groups_;  // guarded
  std::unordered_map<ObjectId, Locations> locations_;       // guarded: values held elsewhere
  std::atomic<bool> any_locations_{false};                   // locations_ was ever used
  std::map<std::string, std::vector<ObjectId>> to_free_;   // guarded: freeObjects to send
  bool frees_posted_ = false;                                // guarded
  std::condition_variable groups_cv_;                        // a group's state changed

  // Loop thread only.
  std::map<std::string, std::unique_ptr<Link>> links_;      // by node address
  std::map<std::string, ClusterMember> members_;            // by address
  // Detached actors whose record names a node that is gone: since when.
  std::unordered_map<ActorId, Clock::time_point> orphaned_since_;
  Clock::time_point detached_sweep_at_{};
  bool detached_sweep_running_ = false;
  // The directory is read only after a node left the view (or this node
  // began to keep detached actors) and while an orphan waits out its grace.
  bool detached_sweep_due_ = true;
  bool keeping_detached_ = false;
  std::map<std::string, Clock::time_point> last_seen_;      // node id -> last in the view
  std::map<std::string, std::set<std::string>> functions_;  // by address: names, "@Class"
  std::set<std::string> learning_;                          // nodeInfo in flight
  std::map<std::string, Clock::time_point> first_learning_; // when asking began, until answered
  std::vector<std::shared_ptr<Task>> pending_;              // placed nowhere yet
  std::size_t spread_next_ = 0;
  std::string demand_published_;  // the summary last written to /shoal/demand/<id>
  uint64_t demand_published_ms_ = 0;
  std::map<uint64_t, kj::Own<kj::PromiseFulfiller<ObjectValuePtr>>> waits_;  // getObject
  uint64_t next_wait_ = 1;
  std::unordered_map<ObjectId, kj::ForkedPromise<ObjectValuePtr>> pulls_;  // in progress
  // Spilled values being read back for readObject (loop thread), and the
  // threads reading them (joined at teardown, before the loop goes).
  struct Restore {
    kj::Own<kj::PromiseFulfiller<ObjectValuePtr>> fulfiller;
    kj::ForkedPromise<ObjectValuePtr> promise;
  };
  static constexpr int kRestoresAtOnce = 2;
  std::unordered_map<ObjectId, Restore> restores_;
  std::deque<ObjectId> restore_queue_;  // waiting for one of the kRestoresAtOnce threads
  int restores_running_ = 0;
  std::mutex restore_threads_mutex_;
  std::map<uint64_t, std::thread> restore_threads_;  // guarded by restore_threads_mutex_
  uint64_t next_restore_ = 0;                        // guarded by restore_threads_mutex_
  kj::Promise<ObjectValuePtr> restore_off_loop(const ObjectId& id);
  // The store key under which `id` is spilled here: its own (a value of this
  // process's table) or the key of a result held for another process.
  std::optional<ObjectId> spilled_key(const ObjectId& id) const;
  void start_restore(const ObjectId& id);
  // Throws (to the puller) unless `value` can be sent: held here, not an error.
  void require_servable(const ObjectId& id, const ObjectValuePtr& value) const;
  void copy_chunk(const ObjectId& id, const ObjectValuePtr& value, uint64_t offset, uint32_t length,
                  rpc::Node::ReadObjectResults::Builder out);
  // Joins one restore thread (it has posted its answer), or all of them.
  void join_restore_threads(std::optional<uint64_t> only = std::nullopt);
  // Calls to a hosted actor wait here, in order, while arguments are pulled.
  std::unordered_map<ActorId, std::pair<uint64_t, kj::ForkedPromise<void>>> actor_tails_;
  uint64_t next_tail_ = 1;
  std::unique_ptr<kj::TaskSet::ErrorHandler> error_handler_;
  std::unique_ptr<kj::TaskSet> tasks_set_;
  std::unique_ptr<BulkServer> bulk_;  // loop thread; null without bulk_transfers

  // Node side: hosted actors and owner sessions.
  std::mutex host_mutex_;
  std::unordered_map<ActorId, std::shared_ptr<HostedActor>> hosted_;  // guarded by host_mutex_
  struct HostedTask {
    uint64_t session = 0;
    RefPtr ref;  // the engine's
  };
  std::unordered_map<TaskId, HostedTask> hosted_tasks_;               // guarded: running for owners
  TaskHistory history_;  // attempts pushed here (shoalctl tasks); its own lock
  std::unordered_set<TaskId> fenced_;  // guarded: running when this node was declared dead
  std::map<uint64_t, std::unique_ptr<OwnerSession>> sessions_;        // guarded
  // Bundles reserved here: group -> its owner's session and (demand, bundle) per bundle.
  struct HostedGroup {
    uint64_t session = 0;
    std::vector<std::pair<ResourceSet, ResourceSet>> bundles;
  };
  std::unordered_map<PlacementGroupId, HostedGroup> hosted_bundles_;  // guarded
  bool results_posted_ = false;                                       // guarded
  std::unordered_map<ObjectId, Held> held_;                           // guarded
  std::list<ObjectId> copies_lru_;                                    // guarded: oldest first
  uint64_t copies_bytes_ = 0;                                         // guarded
  std::atomic<uint64_t> bytes_served_{0};  // bytes of values served to pullers (chunks and bulk tickets)
  std::atomic<uint64_t> bulk_bytes_served_{0};  // of which on bulk tickets
  // Lineage (cluster_lineage.cc), guarded by mutex_.
  struct Lineage {
    std::shared_ptr<Task> task;  // finished; its arguments kept
    uint64_t bytes = 0;
    std::list<ObjectId>::iterator order;
  };
  std::unordered_map<ObjectId, Lineage> lineage_;
  std::list<ObjectId> lineage_order_;  // oldest first
  uint64_t lineage_bytes_ = 0;
  std::unordered_set<ObjectId> lineage_evicted_;  // dropped for the limit; until freed

  // Borrowing (cluster_borrows.cc).
  struct BorrowOut {
    std::string owner;
    bool acked = false;     // the owner registered it
    bool released = false;  // the last local reference went before the ack
  };
  struct BorrowBatch {
    std::vector<std::pair<ObjectId, uint64_t>> adds;  // with their sequence numbers
    std::vector<ObjectId> removes;
  };
  struct RemoveWaiting {
    uint64_t barrier = 0;  // sent once every add up to this one is acked
    std::string owner;
    ObjectId id;
  };
  std::mutex borrow_mutex_;
  std::unordered_map<ObjectId, BorrowOut> borrows_;         // guarded by borrow_mutex_
  std::map<std::string, BorrowBatch> borrow_batches_;       // guarded: to send, by owner
  std::vector<RemoveWaiting> removes_waiting_;              // guarded
  std::set<uint64_t> adds_unacked_;                         // guarded
  uint64_t add_seq_ = 0;                                    // guarded: the last add's number
  bool borrows_posted_ = false;                             // guarded
  // Owner side: borrower address -> registrations, per object (guarded).
  std::unordered_map<ObjectId, std::map<std::string, uint32_t>> lent_;
  std::vector<std::pair<uint64_t, std::function<void()>>> after_adds_;  // loop thread
  std::map<std::string, Clock::time_point> borrower_failing_since_;   // loop thread
  std::set<std::string> borrower_probes_;                             // loop thread: in flight
  Clock::time_point borrowers_checked_{};                             // loop thread

  // Spillback budget: CPUs others reported free, refilled each second (loop thread).
  double spill_budget_ = 0;
  Clock::time_point spill_budget_at_{};
};

}  // namespace shoal::detail
