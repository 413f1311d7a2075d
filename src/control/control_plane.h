// ControlPlane: a node's member of the metadata Raft group and the key-value
// store it replicates (src/raft + src/meta, persisted by LogStore).
//
// What runs where (loop thread only; nothing here blocks except the synced
// RocksDB write of each Ready, ~0.2 ms on this machine's disk):
//   - A uv_timer ticks Raft every tick_ms.
//   - Client requests (RPC Node.kv) and Raft messages (Node.raftSend) call
//     into the RawNode during KJ turns; a uv_prepare handle, which runs once
//     per loop iteration before libuv polls, collects the Ready: one synced
//     write for everything proposed or received in that iteration, then the
//     messages go out and committed entries are applied.
//   - Writes are proposed at the leader (followers forward the RPC to it);
//     the proposer learns its result when it applies the entry (entries carry
//     the proposer's raft id and a sequence number). Reads use ReadIndex and
//     are served from the local state machine once it has caught up.
//   - The leader manages the group: adds nodes gossip knows as learners,
//     promotes caught-up learners until there are `voters` voters, removes a
//     voter gossip has declared dead for longer than dead_grace_ms, and
//     expires leases.
//   - Every node registers itself under /shoal/nodes/<id> with a lease it
//     keeps alive, so the entry vanishes when the node dies.
#pragma once

#include <kj/async.h>

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "base/clock.h"
#include "raft/raft.h"
#include "raft.capnp.h"
#include "rpc.capnp.h"
#include "shoal/status.h"

typedef struct uv_timer_s uv_timer_t;
typedef struct uv_prepare_s uv_prepare_t;

namespace shoal::loop {
class Loop;
}
namespace shoal::rpc {
class PeerPool;
}
namespace shoal::gossip {
class GossipService;
}

namespace shoal::control {

class LogStore;
class StateMachine;
struct WatchHub;

struct ControlOptions {
  bool bootstrap = false;           // no --join: a fresh store starts a one-voter group
  int voters = 3;                   // target voter count (odd, 1..7)
  uint64_t dead_grace_ms = 30'000;  // a voter dead this long is replaced
  uint64_t tick_ms = 50;
  int election_ticks = 6;           // election timeout: [6, 12) ticks = 300-600 ms
  int heartbeat_ticks = 1;
  uint64_t snapshot_every = 10'000;   // applied entries between snapshots
  uint64_t snapshot_keep = 2'000;     // entries kept behind a snapshot for slow followers
  uint64_t request_timeout_ms = 10'000;
  uint64_t register_ttl_s = 30;       // lease of /shoal/nodes/<id>
};

// Limits of the client-facing paths.
inline constexpr int kForwardHopsMax = 3;
inline constexpr size_t kPendingProposalsMax = 65'536;
inline constexpr size_t kPendingReadsMax = 65'536;
inline constexpr size_t kWatchersMax = 4'096;
inline constexpr size_t kWatchQueueMax = 100'000;  // events queued for one slow watcher
inline constexpr size_t kWatchBatchMax = 1'000;
inline constexpr size_t kSnapshotChunkBytes = 1 << 20;
inline constexpr size_t kSnapshotImageMax = 4ull << 30;

// Deaths the cluster declared: /shoal/deaths/<node id> holds the highest
// gossip incarnation of that node declared dead, written only by the
// metadata leader from its own gossip view. A minority's leader cannot
// commit, so what lands here is what the majority saw.
inline constexpr const char* kDeathsPrefix = "/shoal/deaths/";

// The raft id of a node: its 32-hex node id's first 16 hex digits.
raft::NodeId raft_id_of(const std::string& node_id);

class ControlPlane {
 public:
  ControlPlane(loop::Loop& loop, rpc::PeerPool& peers, gossip::GossipService& gossip, Clock& clock, Rng& rng,
               std::string node_id, std::string store_dir, ControlOptions options);
  ~ControlPlane();
  ControlPlane(const ControlPlane&) = delete;
  ControlPlane& operator=(const ControlPlane&) = delete;

  // Opens the store (refusing a damaged or foreign one), restores the state
  // machine and starts ticking. `fatal` is called if the store fails later
  // (the node must stop: it cannot keep its promises without a disk).
  Status start(std::function<void(const Status&)> fatal);
  void stop();
  // Stopping gracefully: a leader hands leadership to its most up-to-date
  // live voter (Raft leader transfer), so the group does not wait out an
  // election timeout. No-op elsewhere.
  void hand_off_leadership();

  // --- RPC entry points (NodeService) ---------------------------------------
  Status on_raft_send(uint64_t cluster_id, capnp::List<raftwire::Message>::Reader messages);
  kj::Promise<void> on_raft_snapshot(uint64_t cluster_id, uint64_t from, uint64_t snapshot_index, uint64_t offset,
                                     kj::ArrayPtr<const kj::byte> chunk, raftwire::Message::Reader message);
  // Answers with response bytes (errors of the request are inside them);
  // throws only when the node cannot serve at all.
  kj::Promise<std::string> kv(std::string request, int hops);
  kj::Promise<int64_t> lease_keep_alive(int64_t id, int hops);
  kj::Promise<kj::Own<rpc::WatchHandle::Server>> watch(std::string key, std::string range_end, int64_t start_revision,
                                                       rpc::Watcher::Client watcher, int64_t& revision_out);
  void fill_status(rpc::ControlStatus::Builder out) const;
  // Whether the metadata records this node's death at `incarnation` or
  // later (a linearizable read): told it was declared dead, the node fences
  // the work it ran for others only when the majority did so — not when a
  // minority it was cut off from said so of it when the network healed.
  kj::Promise<bool> death_recorded(uint64_t incarnation);

  // For tests and the bench.
  bool is_leader() const;
  // True when start() found Raft state from an earlier run.
  bool resumed() const { return resumed_; }
  raft::NodeId raft_id() const { return raft_id_; }

 private:
  struct Proposal;
  struct ReadWait;
  struct Peer;
  class WatchHandleImpl;
  friend class WatchHandleImpl;

  static void on_tick(uv_timer_t* t);
  static void on_prepare(uv_prepare_t* p);
  static void on_manage(uv_timer_t* t);

  void process_ready();
  void apply_entries(std::vector<raft::Entry>& entries);
  void apply_normal(const raft::Entry& entry);
  void on_role_change(const raft::SoftState& soft);
  void send_messages(std::vector<raft::Message>& messages);
  // Steps a received message into the core, or holds it while a leader's
  // appends go out ahead of its own synced write (process_ready).
  void step(raft::Message message);
  void step_held_messages();
  void send_snapshot(raft::Message message);
  void maybe_snapshot();
  void serve_reads();
  void fail_pending(const Status& status, bool proposals_only);
  void manage_group();
  void record_deaths(uint64_t now);
  void refresh_peers();
  void maybe_register();
  void maybe_rejoin();
  void fatal(const Status& status);

  kj::Promise<std::string> propose_write(std::string command, uint64_t deadline_ms);
  kj::Promise<std::string> linearizable_read(std::string request, uint64_t deadline_ms);
  kj::Promise<std::string> write_with_retries(std::string command, int hops, uint64_t deadline_ms);
  kj::Promise<std::string> forward_kv(const std::string& address, std::string request, int hops);
  std::optional<std::string> leader_address() const;
  uint64_t now_ms() const { return clock_.now_ms(); }
  void mark_dirty();

  loop::Loop& loop_;
  rpc::PeerPool& peers_;
  gossip::GossipService& gossip_;
  Clock& clock_;
  Rng& rng_;
  std::string node_id_;
  std::string store_dir_;
  ControlOptions options_;
  raft::NodeId raft_id_;
  std::function<void(const Status&)> fatal_;

  std::unique_ptr<LogStore> store_;
  std::unique_ptr<raft::RawNode> raft_;
  std::unique_ptr<StateMachine> machine_;
  std::unique_ptr<WatchHub> watches_;
  std::unique_ptr<kj::TaskSet> tasks_;
  std::unique_ptr<kj::TaskSet::ErrorHandler> task_errors_;

  uv_timer_t* tick_timer_ = nullptr;
  uv_timer_t* manage_timer_ = nullptr;
  uv_prepare_t* prepare_ = nullptr;
  bool stopped_ = false;
  bool failed_ = false;
  bool resumed_ = false;

  raft::SoftState soft_{};
  // The term and vote of the last hard state this node wrote (0: none yet
  // this run); see process_ready().
  raft::Term persisted_term_ = 0;
  raft::NodeId persisted_vote_ = 0;
  bool holding_steps_ = false;
  std::vector<raft::Message> held_steps_;
  raft::Index applied_ = 0;
  raft::Index snapshot_index_ = 0;
  uint64_t proposal_seq_ = 0;
  uint64_t read_seq_ = 0;
  uint64_t client_id_ = 0;   // request ids this node gives writes that have none
  uint64_t client_seq_ = 0;
  std::map<uint64_t, std::unique_ptr<Proposal>> proposals_;       // by sequence number
  std::map<std::string, std::vector<std::unique_ptr<ReadWait>>> read_batches_;  // ReadIndex context -> reads
  std::vector<std::unique_ptr<ReadWait>> reads_unsent_;           // waiting for the next ReadIndex
  std::multimap<raft::Index, std::unique_ptr<ReadWait>> reads_ready_;  // waiting for applied >= index

  std::map<raft::NodeId, std::unique_ptr<Peer>> peer_info_;  // raft id -> gossip view
  std::map<raft::NodeId, uint64_t> dead_since_ms_;           // leader: voters/learners gossip calls dead
  std::map<std::string, uint64_t> deaths_recorded_;          // leader: node id -> incarnation committed
  std::map<std::string, uint64_t> deaths_proposed_;          // leader: node id -> incarnation in flight
  std::map<std::pair<raft::NodeId, raft::Index>, std::string> snapshot_inbox_;  // (from, index) -> image so far

  // Registration of this node under /shoal/nodes/<id>.
  int64_t register_lease_ = 0;
  uint64_t register_next_ms_ = 0;
  bool register_in_flight_ = false;
  uint64_t start_ms_ = 0;
  uint64_t rejoin_next_ms_ = 0;
};

}  // namespace shoal::control
