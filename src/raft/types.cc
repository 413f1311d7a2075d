#include "raft/types.h"

#include <algorithm>
#include <cstring>
#include <set>

namespace shoal::raft {

namespace {

// Conf change encoding: magic, version, type, node (u64 LE), context length
// (u32 LE), context bytes.
constexpr uint8_t kConfChangeMagic = 0x63;  // 'c'
constexpr uint8_t kConfChangeVersion = 1;
constexpr size_t kConfChangeHeaderBytes = 1 + 1 + 1 + 8 + 4;

void put_u64(std::string& out, uint64_t v) {
  for (int i = 0; i < 8; ++i) out.push_back(static_cast<char>((v >> (8 * i)) & 0xff));
}
void put_u32(std::string& out, uint32_t v) {
  for (int i = 0; i < 4; ++i) out.push_back(static_cast<char>((v >> (8 * i)) & 0xff));
}
uint64_t get_u64(std::string_view in, size_t at) {
  uint64_t v = 0;
  for (int i = 0; i < 8; ++i) v |= uint64_t{static_cast<uint8_t>(in[at + i])} << (8 * i);
  return v;
}
uint32_t get_u32(std::string_view in, size_t at) {
  uint32_t v = 0;
  for (int i = 0; i < 4; ++i) v |= uint32_t{static_cast<uint8_t>(in[at + i])} << (8 * i);
  return v;
}

bool contains(const std::vector<NodeId>& ids, NodeId id) {
  return std::find(ids.begin(), ids.end(), id) != ids.end();
}
void insert_sorted(std::vector<NodeId>& ids, NodeId id) {
  ids.insert(std::lower_bound(ids.begin(), ids.end(), id), id);
}
void erase_id(std::vector<NodeId>& ids, NodeId id) {
  ids.erase(std::remove(ids.begin(), ids.end(), id), ids.end());
}

std::string bad(const Message& m, const std::string& what) {
  return std::string("raft message ") + message_type_name(m.type) + " from " +
         std::to_string(m.from) + ": " + what;
}

Status validate_entries(const Message& m) {
  if (m.entries.empty()) return Status::ok_status();
  if (m.entries.size() > kIndexMax - m.index) {
    return Status::invalid_argument(bad(m, "entry indexes out of range"));
  }
  Term prev_term = m.log_term;
  for (size_t i = 0; i < m.entries.size(); ++i) {
    const Entry& e = m.entries[i];
    if (e.index != m.index + 1 + i) {
      return Status::invalid_argument(bad(m, "entry " + std::to_string(i) + " has index " +
                                                 std::to_string(e.index) + ", want " +
                                                 std::to_string(m.index + 1 + i)));
    }
    if (e.term == 0 || e.term < prev_term || e.term > m.term) {
      return Status::invalid_argument(bad(m, "entry " + std::to_string(e.index) + " has term " +
                                                 std::to_string(e.term) + " out of order"));
    }
    if (e.type != EntryType::kNormal && e.type != EntryType::kConfChange) {
      return Status::invalid_argument(
          bad(m, "entry " + std::to_string(e.index) + " has an unknown type"));
    }
    if (e.data.size() > kEntryDataBytesMax) {
      return Status::invalid_argument(bad(m, "entry " + std::to_string(e.index) + " is too big"));
    }
    prev_term = e.term;
  }
  return Status::ok_status();
}

// Index 0 is the empty log, the only position with term 0.
bool position_well_formed(Index index, Term term) { return (index == 0) == (term == 0); }

}  // namespace

std::string encode_conf_change(const ConfChange& cc) {
  std::string out;
  out.reserve(kConfChangeHeaderBytes + cc.context.size());
  out.push_back(static_cast<char>(kConfChangeMagic));
  out.push_back(static_cast<char>(kConfChangeVersion));
  out.push_back(static_cast<char>(cc.type));
  put_u64(out, cc.node);
  put_u32(out, static_cast<uint32_t>(cc.context.size()));
  out += cc.context;
  return out;
}

Result<ConfChange> decode_conf_change(std::string_view data) {
  if (data.size() < kConfChangeHeaderBytes) {
    return Status::invalid_argument("conf change: " + std::to_string(data.size()) +
                                    " bytes is shorter than its header");
  }
  if (static_cast<uint8_t>(data[0]) != kConfChangeMagic) {
    return Status::invalid_argument("conf change: bad magic byte");
  }
  if (static_cast<uint8_t>(data[1]) != kConfChangeVersion) {
    return Status::invalid_argument("conf change: unknown version " +
                                    std::to_string(static_cast<uint8_t>(data[1])));
  }
  uint8_t type = static_cast<uint8_t>(data[2]);
  if (type > static_cast<uint8_t>(ConfChangeType::kRemoveNode)) {
    return Status::invalid_argument("conf change: unknown type " + std::to_string(type));
  }
  ConfChange cc;
  cc.type = static_cast<ConfChangeType>(type);
  cc.node = get_u64(data, 3);
  if (cc.node == kNoNode) return Status::invalid_argument("conf change: node id 0");
  uint32_t context_bytes = get_u32(data, 11);
  if (context_bytes > kContextBytesMax) {
    return Status::invalid_argument("conf change: context of " + std::to_string(context_bytes) +
                                    " bytes exceeds " + std::to_string(kContextBytesMax));
  }
  if (data.size() - kConfChangeHeaderBytes != context_bytes) {
    return Status::invalid_argument(
        "conf change: context length " + std::to_string(context_bytes) + " does not match the " +
        std::to_string(data.size() - kConfChangeHeaderBytes) + " bytes that follow");
  }
  cc.context.assign(data.substr(kConfChangeHeaderBytes));
  return cc;
}

ConfState apply_change(const ConfState& conf, const ConfChange& cc) {
  ConfState out = conf;
  const bool voter = contains(out.voters, cc.node);
  const bool learner = contains(out.learners, cc.node);
  switch (cc.type) {
    case ConfChangeType::kAddVoter:
      if (voter) break;
      if (learner) erase_id(out.learners, cc.node);
      insert_sorted(out.voters, cc.node);
      break;
    case ConfChangeType::kAddLearner:
      if (voter || learner) break;
      insert_sorted(out.learners, cc.node);
      break;
    case ConfChangeType::kRemoveNode:
      if (voter && out.voters.size() == 1) break;
      erase_id(out.voters, cc.node);
      erase_id(out.learners, cc.node);
      break;
  }
  if (out.voters.size() + out.learners.size() > kConfMembersMax) return conf;
  return out;
}

Status validate_conf_state(const ConfState& conf) {
  if (conf.voters.size() + conf.learners.size() > kConfMembersMax) {
    return Status::invalid_argument("configuration has more than " +
                                    std::to_string(kConfMembersMax) + " members");
  }
  std::set<NodeId> seen;
  for (const auto* list : {&conf.voters, &conf.learners}) {
    for (NodeId id : *list) {
      if (id == kNoNode) return Status::invalid_argument("configuration lists node id 0");
      if (!seen.insert(id).second) {
        return Status::invalid_argument("configuration lists node " + std::to_string(id) +
                                        " twice");
      }
    }
  }
  return Status::ok_status();
}

const char* message_type_name(MessageType type) {
  switch (type) {
    case MessageType::kPreVote:
      return "pre-vote";
    case MessageType::kPreVoteResp:
      return "pre-vote-resp";
    case MessageType::kVote:
      return "vote";
    case MessageType::kVoteResp:
      return "vote-resp";
    case MessageType::kAppend:
      return "append";
    case MessageType::kAppendResp:
      return "append-resp";
    case MessageType::kHeartbeat:
      return "heartbeat";
    case MessageType::kHeartbeatResp:
      return "heartbeat-resp";
    case MessageType::kSnapshot:
      return "snapshot";
    case MessageType::kTimeoutNow:
      return "timeout-now";
    case MessageType::kReadIndex:
      return "read-index";
    case MessageType::kReadIndexResp:
      return "read-index-resp";
    case MessageType::kTransferLeader:
      return "transfer-leader";
  }
  return "unknown";
}

Status validate_message(const Message& m, NodeId self) {
  if (static_cast<uint8_t>(m.type) >= kMessageTypeCount) {
    return Status::invalid_argument("raft message of unknown type " +
                                    std::to_string(static_cast<unsigned>(m.type)));
  }
  if (m.from == kNoNode) return Status::invalid_argument(bad(m, "no sender"));
  if (m.from == self) return Status::invalid_argument(bad(m, "claims to come from ourselves"));
  if (m.to != self) {
    return Status::invalid_argument(bad(
        m, "addressed to " + std::to_string(m.to) + ", not to us (" + std::to_string(self) + ")"));
  }
  if (m.context.size() > kContextBytesMax) {
    return Status::invalid_argument(bad(m, "context too long"));
  }
  if (m.term > kTermMax || m.log_term > kTermMax) {
    return Status::invalid_argument(bad(m, "term out of range"));
  }
  // (kTransferLeader's index is a node id, any value.)
  if ((m.index > kIndexMax && m.type != MessageType::kTransferLeader) || m.commit > kIndexMax ||
      m.reject_hint > kIndexMax) {
    return Status::invalid_argument(bad(m, "index out of range"));
  }
  const bool termless = m.type == MessageType::kReadIndex || m.type == MessageType::kTransferLeader;
  if (termless && m.term != 0) return Status::invalid_argument(bad(m, "must carry term 0"));
  if (!termless && m.term == 0) return Status::invalid_argument(bad(m, "term 0"));
  if (m.type != MessageType::kAppend && !m.entries.empty()) {
    return Status::invalid_argument(bad(m, "carries entries"));
  }
  if ((m.type == MessageType::kSnapshot) != m.snapshot.has_value()) {
    return Status::invalid_argument(
        bad(m, m.snapshot ? "carries a snapshot" : "lacks its snapshot"));
  }
  switch (m.type) {
    case MessageType::kPreVote:
    case MessageType::kVote:
      if (!position_well_formed(m.index, m.log_term) || m.log_term > m.term) {
        return Status::invalid_argument(bad(m, "last log position is malformed"));
      }
      break;
    case MessageType::kAppend:
      if (!position_well_formed(m.index, m.log_term) || m.log_term > m.term) {
        return Status::invalid_argument(bad(m, "previous log position is malformed"));
      }
      return validate_entries(m);
    case MessageType::kAppendResp:
      if (m.reject && m.reject_hint > m.index) {
        return Status::invalid_argument(bad(m, "reject hint beyond the rejected index"));
      }
      if (m.log_term > m.term) return Status::invalid_argument(bad(m, "hint term beyond term"));
      break;
    case MessageType::kSnapshot: {
      const SnapshotMeta& meta = m.snapshot->meta;
      if (meta.index == 0 || meta.index > kIndexMax || meta.term == 0 || meta.term > m.term) {
        return Status::invalid_argument(bad(m, "snapshot position is malformed"));
      }
      if (meta.conf.voters.empty()) {
        return Status::invalid_argument(bad(m, "snapshot configuration has no voters"));
      }
      if (Status s = validate_conf_state(meta.conf); !s.ok()) {
        return Status::invalid_argument(bad(m, "snapshot " + s.message()));
      }
      break;
    }
    case MessageType::kReadIndex:
    case MessageType::kReadIndexResp:
      if (m.context.empty()) return Status::invalid_argument(bad(m, "empty request context"));
      break;
    case MessageType::kTransferLeader:
      if (m.index == kNoNode) return Status::invalid_argument(bad(m, "no transferee"));
      break;
    default:
      break;
  }
  return Status::ok_status();
}

std::string describe(const Message& m) {
  std::string s = message_type_name(m.type);
  s += " " + std::to_string(m.from) + "->" + std::to_string(m.to) + " t" + std::to_string(m.term);
  switch (m.type) {
    case MessageType::kAppend:
      s += " prev=" + std::to_string(m.index) + "/t" + std::to_string(m.log_term) +
           " n=" + std::to_string(m.entries.size()) + " commit=" + std::to_string(m.commit);
      break;
    case MessageType::kAppendResp:
      s += " idx=" + std::to_string(m.index);
      if (m.reject) {
        s += " REJECT hint=" + std::to_string(m.reject_hint) + "/t" + std::to_string(m.log_term);
      }
      break;
    case MessageType::kPreVote:
    case MessageType::kVote:
      s += " last=" + std::to_string(m.index) + "/t" + std::to_string(m.log_term);
      break;
    case MessageType::kPreVoteResp:
    case MessageType::kVoteResp:
      s += m.reject ? " REJECT" : " GRANT";
      break;
    case MessageType::kHeartbeat:
      s += " commit=" + std::to_string(m.commit);
      break;
    case MessageType::kSnapshot:
      s += " snap=" + std::to_string(m.snapshot->meta.index) + "/t" +
           std::to_string(m.snapshot->meta.term);
      break;
    case MessageType::kReadIndexResp:
    case MessageType::kTransferLeader:
      s += " idx=" + std::to_string(m.index);
      break;
    default:
      break;
  }
  if (!m.context.empty() && m.context.size() <= 32) s += " ctx=" + m.context;
  return s;
}

}  // namespace shoal::raft
