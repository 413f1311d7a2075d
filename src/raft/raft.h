// shoal::raft: a pure Raft core (Ongaro & Ousterhout 2014; Ongaro's thesis),
// shaped like etcd-io/raft's RawNode: no I/O, no clock, no threads. The owner
// feeds it ticks and messages and drains Ready values: entries and state to
// persist, messages to send, committed entries to apply.
//
// Features: leader election with pre-vote (thesis §9.6) and check-quorum;
// log replication with flow control (bounded in-flight appends and bytes per
// message; probe/replicate/snapshot progress states); commit only by counting
// entries of the current term (§5.4.2); learners; membership changes one
// server at a time (thesis §4.1); leader transfer (thesis §3.10); ReadIndex
// (thesis §6.4); snapshots and log compaction. No leader lease.
//
// Ownership and threads: a RawNode belongs to one thread; it is not
// thread-safe. It reads the Storage passed in Config, which the owner keeps
// alive and writes (see the loop below). Nothing here blocks.
//
// The loop the owner runs (etcd's RawNode contract):
//
//   tick() every tick interval; step() every message received;
//   propose()/propose_conf_change()/read_index()/transfer_leader() on demand;
//   if (node.has_ready()) {
//     Ready rd = node.ready();
//     1. persist, durably (fsync), in this order: rd.snapshot (if any: it
//        replaces the log; MemoryStorage::apply_snapshot), rd.entries (append,
//        replacing any conflicting suffix; MemoryStorage::append), rd.hard_state.
//        Then update the Storage the node reads from.
//     2. send rd.messages. For each kSnapshot message, call report_snapshot()
//        once the transport knows whether it was delivered.
//     3. if rd.snapshot: restore the state machine from it (empty data means
//        the empty state: that is what bootstrap() hands out).
//     4. apply rd.committed_entries in order; for each kConfChange entry call
//        apply_conf_change() with its decoded ConfChange (skip entries that
//        fail to decode: every node skips them alike).
//     5. answer rd.read_states once the applied index reaches their index.
//     6. advance().
//   }
// has_ready() is false between ready() and advance(). The other calls may be
// made in between; what they produce comes in the next Ready.
//
// Membership changes take effect when APPENDED, not when committed (thesis
// §4.1): every node uses the latest configuration in its log, and goes back to
// the previous one if that entry is truncated away. A leader accepts a new
// change only after the previous one has committed and after it has
// committed an entry of its own term (the fix for the single-server change
// bug, raft-dev 2015). A leader whose log drops it from the voters keeps
// leading until that entry commits, without counting itself, then sends a
// last round of appends (so followers learn the commit), hands leadership to
// the most up-to-date voter (MsgTimeoutNow) and steps down. A node that is not
// a voter in its configuration (removed, never added, or a learner) never
// campaigns; votes from non-voters are never counted.
//
// The leader keeps replicating to a removed peer until that peer has the entry
// that removed it (then it knows, and never campaigns) or has been silent for
// an election timeout.
//
// apply_conf_change() does not change what the core does (that happened on
// append): it returns the configuration as of the applied entry, which the
// owner stores with its snapshots (MemoryStorage::create_snapshot).
//
// Restart: Config.applied is the owner's applied index (at least the snapshot
// index; the core raises it to that). Storage::initial_state() returns the
// snapshot's ConfState; the core replays later conf change entries itself.
//
// Deviations from the original API sketch, all additive:
//   - Config has more limits (max_inflight_bytes, max_uncommitted_bytes,
//     max_committed_bytes_per_ready, max_pending_read_index).
//   - kTransferLeader forwarded by a follower carries the transferee in `index`.
//   - Storage::snapshot_index() (virtual, with a default that calls snapshot());
//     MemoryStorage::hard_state(), entries_bytes().
//   - RawNode::applied_conf_state(), lead_transferee(), status_line().
//   - types.h: kNoNode, limits (kEntryDataBytesMax, kContextBytesMax,
//     kConfMembersMax, kEntryOverheadBytes), entry_size_bytes(), apply_change(),
//     validate_conf_state(), message_type_name(), kMessageTypeCount,
//     kCampaignTransfer, validate_message(), describe(); storage.h: the error
//     helpers; raft.h: role_name(), validate_config().
#pragma once

#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "raft/storage.h"
#include "raft/types.h"

namespace shoal::raft {

struct SoftState {
  enum class Role : uint8_t { kFollower, kPreCandidate, kCandidate, kLeader };
  NodeId leader = 0;
  Role role = Role::kFollower;
  bool operator==(const SoftState&) const = default;
};
const char* role_name(SoftState::Role role);

// A linearizable read may be served once the applied index reaches `index`.
struct ReadState {
  Index index = 0;
  std::string context;
};

struct Ready {
  std::optional<SoftState> soft_state;   // set when changed; not persisted
  std::optional<HardState> hard_state;   // set when changed: persist
  std::vector<Entry> entries;            // persist (append; may overwrite a suffix) BEFORE sending
  std::optional<Snapshot> snapshot;      // persist, then restore the state machine from it
  std::vector<Entry> committed_entries;  // apply in order (may include some of `entries`)
  std::vector<Message> messages;         // send after persisting the above
  std::vector<ReadState> read_states;    // safe once applied index >= index
  bool empty() const;
};

struct Config {
  NodeId id = 0;
  // Ticks without hearing from a leader before a follower campaigns; each
  // node waits a random number of ticks in [election_tick, 2 * election_tick).
  int election_tick = 10;
  int heartbeat_tick = 1;                   // must be below election_tick
  uint64_t max_size_per_msg = 1 << 20;      // bytes of entries per append (at least one entry)
  size_t max_inflight_msgs = 256;           // un-acked appends per follower in replicate state
  uint64_t max_inflight_bytes = 64u << 20;  // and their bytes
  // Proposals beyond this many bytes of uncommitted entries fail with
  // kResourceExhausted (the leader's own empty entries do not count).
  uint64_t max_uncommitted_bytes = 64u << 20;
  uint64_t max_committed_bytes_per_ready = 8u << 20;  // at least one entry per Ready
  size_t max_pending_read_index = 4096;  // more concurrent read_index() requests are dropped
  bool pre_vote = true;
  bool check_quorum = true;
  Index applied = 0;  // last applied index on restart (at or above the snapshot index)
  Storage* storage = nullptr;
  uint64_t seed = 0;  // randomized election timeouts; mixed with id
};
Status validate_config(const Config& config);

class Raft;

class RawNode {
 public:
  // Validates the config and loads state from config.storage: kInvalidArgument
  // for a bad config, kInternal for an inconsistent storage.
  static Result<std::unique_ptr<RawNode>> create(const Config& config);
  ~RawNode();
  RawNode(const RawNode&) = delete;
  RawNode& operator=(const RawNode&) = delete;

  // For a fresh storage only (kAlreadyExists otherwise): the next Ready holds
  // a snapshot at index 1, term 1, with `voters` as the configuration and
  // empty data. A node given {self} elects itself at its first election.
  Status bootstrap(const std::vector<NodeId>& voters);

  void tick();
  // Starts an election now (pre-vote first when enabled). kUnavailable when
  // this node may not campaign (not a voter, or already leader).
  Status campaign();
  // Errors: kUnavailable (not leader, leadership transfer in progress, being
  // removed: retry elsewhere), kResourceExhausted (too many uncommitted
  // bytes), kInvalidArgument (data larger than kEntryDataBytesMax).
  Status propose(std::string data);
  // As propose(), plus kResourceExhausted while another change is pending
  // (uncommitted, or no entry of this term committed yet), kInvalidArgument
  // for a change that makes no sense (remove the last voter, demote a voter)
  // and kAlreadyExists/kNotFound for a change that would be a no-op.
  Status propose_conf_change(const ConfChange& cc);
  // A message from the network. Invalid messages get kInvalidArgument and
  // change nothing; they never crash the node.
  Status step(const Message& m);
  // Requests a linearizable read point; the answer comes as a ReadState with
  // this context (non-empty, unique among pending reads). Dropped silently
  // (the caller times out and retries) when there is no leader, the context
  // is empty or too long, or max_pending_read_index is reached.
  void read_index(std::string context);
  // Asks the leader to hand leadership to `to` (forwarded by followers).
  void transfer_leader(NodeId to);
  void report_unreachable(NodeId id);
  void report_snapshot(NodeId id, bool failed);
  // See the top of this file: returns the configuration as of this entry.
  ConfState apply_conf_change(const ConfChange& cc);

  bool has_ready() const;
  Ready ready();   // asserts that the previous Ready was advanced
  void advance();  // after persisting and applying the last Ready

  NodeId id() const;
  NodeId leader() const;
  Term term() const;
  SoftState::Role role() const;
  Index commit_index() const;
  Index applied_index() const;
  Index last_index() const;
  ConfState conf_state() const;          // the active configuration (latest in the log)
  ConfState applied_conf_state() const;  // as of applied_index()
  NodeId lead_transferee() const;
  struct PeerProgress {
    NodeId id;
    Index match, next;
    bool learner;
    bool recent_active;
  };
  std::vector<PeerProgress> progress() const;  // leader only (empty otherwise)
  std::string status_line() const;             // one line for logs and traces

 private:
  explicit RawNode(std::unique_ptr<Raft> raft);

  std::unique_ptr<Raft> raft_;
  SoftState prev_soft_;
  HardState prev_hard_;
  struct InFlight {
    Index last_entry_index = 0;
    Term last_entry_term = 0;
    Index snapshot_index = 0;
    Index applied_to = 0;
    uint64_t committed_payload_bytes = 0;  // released from the uncommitted budget
  };
  std::optional<InFlight> in_flight_;  // a Ready handed out, not yet advanced
};

}  // namespace shoal::raft
