// Raft data types: log entries, persistent state, membership, messages.
//
// Plain values shared by the core (core.h), the log storage interface
// (storage.h) and the node's wire codec. Any thread may create and copy them.
// raft.h includes this header; users include raft.h.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "shoal/status.h"

namespace shoal::raft {

using NodeId = uint64_t;  // 0 = none
using Term = uint64_t;
using Index = uint64_t;
inline constexpr NodeId kNoNode = 0;

// ---- Limits (every one named) ----------------------------------------------
// One proposal's payload. Larger proposals get kInvalidArgument.
inline constexpr size_t kEntryDataBytesMax = 16u << 20;
// ReadIndex request ids and conf change contexts.
inline constexpr size_t kContextBytesMax = 4096;
// Terms and indexes from the network above this are refused, so that no
// arithmetic on them (term + 1, index + 1) can overflow.
inline constexpr uint64_t kTermMax = uint64_t{1} << 62;
inline constexpr uint64_t kIndexMax = uint64_t{1} << 62;
// Voters plus learners in one configuration.
inline constexpr size_t kConfMembersMax = 256;
// Counted per entry, on top of its data, against every byte limit (messages,
// in-flight bytes, committed entries per Ready), so empty entries cost too.
inline constexpr uint64_t kEntryOverheadBytes = 24;

// ---- Log -------------------------------------------------------------------
enum class EntryType : uint8_t { kNormal = 0, kConfChange = 1 };

struct Entry {
  Term term = 0;
  Index index = 0;
  EntryType type = EntryType::kNormal;
  std::string data;
  bool operator==(const Entry&) const = default;
};

inline uint64_t entry_size_bytes(const Entry& e) { return e.data.size() + kEntryOverheadBytes; }

// What must be on disk before anything in the same Ready is sent or applied.
struct HardState {
  Term term = 0;
  NodeId vote = 0;
  Index commit = 0;
  bool operator==(const HardState&) const = default;
};

// A configuration. Both lists are kept sorted and disjoint.
struct ConfState {
  std::vector<NodeId> voters;
  std::vector<NodeId> learners;
  bool operator==(const ConfState&) const = default;
};

struct SnapshotMeta {
  Index index = 0;
  Term term = 0;
  ConfState conf;  // the configuration as of `index`
};

struct Snapshot {
  SnapshotMeta meta;
  std::string data;  // state machine image, opaque to raft
};

// ---- Membership changes (one server at a time) -----------------------------
enum class ConfChangeType : uint8_t { kAddVoter = 0, kAddLearner = 1, kRemoveNode = 2 };

struct ConfChange {
  ConfChangeType type = ConfChangeType::kAddVoter;
  NodeId node = 0;
  std::string context;  // opaque to raft (e.g. the new member's address); <= kContextBytesMax
  bool operator==(const ConfChange&) const = default;
};

// The data of a kConfChange entry: a versioned binary encoding.
std::string encode_conf_change(const ConfChange& cc);
// Validates everything; garbage gives kInvalidArgument, never a crash.
Result<ConfChange> decode_conf_change(std::string_view data);

// The configuration after `cc`. Deterministic, total and idempotent, so every
// node that folds the same log gets the same configuration:
//   kAddVoter    adds a voter or promotes a learner; a voter stays a voter.
//   kAddLearner  adds a learner; a voter is never demoted (no-op).
//   kRemoveNode  removes a voter or learner; the last voter is never removed (no-op).
ConfState apply_change(const ConfState& conf, const ConfChange& cc);

// Ids non-zero, no duplicates, voters and learners disjoint, at most
// kConfMembersMax members.
Status validate_conf_state(const ConfState& conf);

// ---- Messages --------------------------------------------------------------
enum class MessageType : uint8_t {
  kPreVote = 0,
  kPreVoteResp,
  kVote,
  kVoteResp,
  kAppend,
  kAppendResp,
  kHeartbeat,
  kHeartbeatResp,
  kSnapshot,
  kTimeoutNow,
  kReadIndex,       // follower -> leader, term 0; `context` is the request id
  kReadIndexResp,   // leader -> follower; `index` is the read index
  kTransferLeader,  // follower -> leader, term 0; `index` is the transferee's NodeId
};
inline constexpr uint8_t kMessageTypeCount = 13;
const char* message_type_name(MessageType type);

// Field use by type (anything else must be empty/zero, checked by validate_message):
//   kPreVote/kVote        term (pre-vote: the term the sender would campaign in),
//                         index/log_term = sender's last log entry, context = kCampaignTransfer
//                         when the campaign was started by a leader transfer.
//   k*VoteResp            reject.
//   kAppend               index/log_term = entry preceding `entries`, entries, commit.
//   kAppendResp           index = last index now matching (or the rejected index when
//                         reject), reject_hint/log_term = the follower's hint on reject.
//   kHeartbeat            commit, context (ReadIndex round).  kHeartbeatResp: context.
//   kSnapshot             snapshot.
//   kReadIndex            context (non-empty).  kReadIndexResp: index, context.
//   kTransferLeader       index = transferee.
struct Message {
  MessageType type = MessageType::kHeartbeat;
  NodeId from = 0;
  NodeId to = 0;
  Term term = 0;
  Term log_term = 0;
  Index index = 0;
  std::vector<Entry> entries;
  Index commit = 0;
  bool reject = false;
  Index reject_hint = 0;
  std::optional<Snapshot> snapshot;  // kSnapshot only
  std::string context;               // ReadIndex request id, carried through heartbeats
};

// Vote requests of a campaign started by MsgTimeoutNow carry this context so
// that voters skip their leader-lease check.
inline constexpr std::string_view kCampaignTransfer = "raft:transfer";

// Checks what can be checked without the receiver's state: known type,
// from/to set, term rules, entries contiguous and well-formed, snapshot
// metadata and configuration valid, sizes bounded. `self` is the receiver.
// RawNode::step calls it; the transport may call it earlier.
Status validate_message(const Message& m, NodeId self);

// One line for traces and logs ("append 1->2 t3 idx5/t2 n=2 commit4").
std::string describe(const Message& m);

}  // namespace shoal::raft
