#include "raft/core.h"

#include <algorithm>
#include <climits>

#include "base/assert.h"

namespace shoal::raft {

namespace {

// Followers that are not voters count election ticks without ever
// campaigning; saturate instead of overflowing.
constexpr int kElapsedMax = INT_MAX / 4;
constexpr int kElectionTickMax = 1'000'000;
// Entries read at a time when replaying the log's conf changes at start.
constexpr uint64_t kReplayBatchBytes = 8u << 20;

uint64_t payload_bytes(const std::vector<Entry>& ents) {
  uint64_t n = 0;
  for (const Entry& e : ents) n += e.data.size();
  return n;
}

uint64_t mix_seed(uint64_t seed, NodeId id) { return seed ^ (id * 0x9e3779b97f4a7c15ull); }

bool is_vote_request(MessageType t) {
  return t == MessageType::kVote || t == MessageType::kPreVote;
}

Message make(MessageType type, NodeId to) {
  Message m;
  m.type = type;
  m.to = to;
  return m;
}

}  // namespace

const char* role_name(SoftState::Role role) {
  switch (role) {
    case SoftState::Role::kFollower:
      return "follower";
    case SoftState::Role::kPreCandidate:
      return "pre-candidate";
    case SoftState::Role::kCandidate:
      return "candidate";
    case SoftState::Role::kLeader:
      return "leader";
  }
  return "?";
}

Status validate_config(const Config& c) {
  auto bad = [](const std::string& what) {
    return Status::invalid_argument("raft config: " + what);
  };
  if (c.id == kNoNode) return bad("id must not be 0");
  if (c.heartbeat_tick <= 0) return bad("heartbeat_tick must be positive");
  if (c.election_tick <= c.heartbeat_tick) return bad("election_tick must exceed heartbeat_tick");
  if (c.election_tick > kElectionTickMax) return bad("election_tick is unreasonably large");
  if (c.max_size_per_msg == 0) return bad("max_size_per_msg must be positive");
  if (c.max_inflight_msgs == 0) return bad("max_inflight_msgs must be positive");
  if (c.max_inflight_bytes == 0) return bad("max_inflight_bytes must be positive");
  if (c.max_uncommitted_bytes == 0) return bad("max_uncommitted_bytes must be positive");
  if (c.max_committed_bytes_per_ready == 0)
    return bad("max_committed_bytes_per_ready must be positive");
  if (c.max_pending_read_index == 0) return bad("max_pending_read_index must be positive");
  if (c.storage == nullptr) return bad("storage must be set");
  return Status::ok_status();
}

// ---- Construction ----------------------------------------------------------------

Raft::Raft(const Config& config)
    : config_(config),
      id_(config.id),
      log_(config.storage),
      prs_(config.max_inflight_msgs, config.max_inflight_bytes),
      rng_(mix_seed(config.seed, config.id)) {}

Result<std::unique_ptr<Raft>> Raft::create(const Config& config) {
  SHOAL_RETURN_IF_ERROR(validate_config(config));
  std::unique_ptr<Raft> r(new Raft(config));  // private constructor
  SHOAL_RETURN_IF_ERROR(r->load());
  return r;
}

Status Raft::load() {
  const Storage& storage = *config_.storage;
  if (storage.first_index() == 0 || storage.last_index() + 1 < storage.first_index()) {
    return Status::internal("raft storage reports first index " +
                            std::to_string(storage.first_index()) + " and last index " +
                            std::to_string(storage.last_index()));
  }
  auto [hs, cs] = storage.initial_state();
  if (Status s = validate_conf_state(cs); !s.ok()) {
    return Status::internal("raft storage holds a bad configuration: " + s.message());
  }
  const Index snapshot_index = storage.snapshot_index();
  const Index last = log_.last_index();
  if (snapshot_index > last || snapshot_index + 1 < log_.first_index()) {
    return Status::internal("raft storage snapshot index " + std::to_string(snapshot_index) +
                            " lies outside its log [" + std::to_string(log_.first_index()) + ", " +
                            std::to_string(last) + "]");
  }
  if (hs.commit > last) {
    return Status::internal("raft storage commit " + std::to_string(hs.commit) +
                            " is beyond its last index " + std::to_string(last));
  }
  term_ = hs.term;
  vote_ = hs.vote;
  log_.commit_to(std::max(hs.commit, snapshot_index));
  const Index applied = std::max(config_.applied, snapshot_index);
  if (applied > log_.committed()) {
    return Status::invalid_argument("raft config: applied " + std::to_string(applied) +
                                    " is beyond the commit index " +
                                    std::to_string(log_.committed()));
  }
  if (applied > log_.applied()) log_.applied_to(applied);

  // The configuration: the snapshot's, then every conf change after it.
  base_conf_ = cs;
  applied_conf_ = cs;
  for (Index lo = snapshot_index + 1; lo <= last;) {
    Result<std::vector<Entry>> ents = log_.slice(lo, last + 1, kReplayBatchBytes);
    if (!ents.ok()) {
      return Status::internal("raft storage: reading the log at " + std::to_string(lo) + ": " +
                              ents.status().to_string());
    }
    for (const Entry& e : *ents) {
      if (e.type != EntryType::kConfChange) continue;
      Result<ConfChange> cc = decode_conf_change(e.data);
      if (!cc.ok()) continue;  // skipped by every node alike
      if (e.index <= applied) applied_conf_ = apply_change(applied_conf_, *cc);
      if (e.index <= log_.committed()) {
        base_conf_ = apply_change(base_conf_, *cc);
      } else {
        conf_log_.emplace_back(e.index, *cc);
      }
    }
    lo = ents->back().index + 1;
  }
  rebuild_conf();
  become_follower(term_, kNoNode);
  return Status::ok_status();
}

Status Raft::bootstrap(const std::vector<NodeId>& voters) {
  ConfState conf;
  conf.voters = voters;
  std::sort(conf.voters.begin(), conf.voters.end());
  if (conf.voters.empty()) return Status::invalid_argument("raft bootstrap: no voters");
  SHOAL_RETURN_IF_ERROR(validate_conf_state(conf));
  if (log_.last_index() != 0 || term_ != 0 || vote_ != kNoNode || log_.committed() != 0) {
    return Status::already_exists("raft bootstrap: the storage is not empty");
  }
  Snapshot snapshot;
  snapshot.meta.index = 1;
  snapshot.meta.term = 1;
  snapshot.meta.conf = conf;
  log_.restore(std::move(snapshot));
  base_conf_ = conf;
  applied_conf_ = conf;
  conf_log_.clear();
  rebuild_conf();
  become_follower(1, kNoNode);
  return Status::ok_status();
}

// ---- Roles ----------------------------------------------------------------------

void Raft::reset(Term term) {
  if (term_ != term) {
    term_ = term;
    vote_ = kNoNode;
  }
  lead_ = kNoNode;
  election_elapsed_ = 0;
  heartbeat_elapsed_ = 0;
  reset_randomized_election_timeout();
  abort_leader_transfer();
  prs_.reset_votes();
  prs_.reset_all(log_.last_index(), id_);
  pending_conf_index_ = 0;
  uncommitted_bytes_ = 0;
  reads_.clear();
  read_contexts_.clear();
  pending_reads_.clear();
}

void Raft::reset_randomized_election_timeout() {
  const auto base = static_cast<uint64_t>(config_.election_tick);
  randomized_election_timeout_ = static_cast<int>(base + rng_.uniform(base));
}

void Raft::become_follower(Term term, NodeId lead) {
  reset(term);
  lead_ = lead;
  role_ = Role::kFollower;
}

void Raft::become_pre_candidate() {
  SHOAL_ASSERT(role_ != Role::kLeader, id_);
  // Pre-vote changes neither the term nor the vote (thesis §9.6).
  prs_.reset_votes();
  lead_ = kNoNode;
  role_ = Role::kPreCandidate;
}

void Raft::become_candidate() {
  SHOAL_ASSERT(role_ != Role::kLeader, id_);
  reset(term_ + 1);
  vote_ = id_;
  role_ = Role::kCandidate;
}

void Raft::become_leader() {
  SHOAL_ASSERT(role_ != Role::kFollower, id_);
  reset(term_);
  lead_ = id_;
  role_ = Role::kLeader;
  if (Progress* self = prs_.find(id_)) {
    self->become_replicate();
    self->recent_active = true;
  }
  // Conf changes wait until everything before our term has committed.
  pending_conf_index_ = log_.last_index();
  // §5.4.2: an empty entry of our term lets earlier entries commit.
  const bool appended = append_entries({Entry{}});
  SHOAL_ASSERT(appended, id_);
}

// ---- Ticks ----------------------------------------------------------------------

void Raft::tick() {
  if (role_ == Role::kLeader) {
    tick_heartbeat();
  } else {
    tick_election();
  }
}

void Raft::tick_election() {
  if (election_elapsed_ < kElapsedMax) ++election_elapsed_;
  if (promotable() && past_election_timeout()) {
    election_elapsed_ = 0;
    hup(config_.pre_vote ? CampaignType::kPreElection : CampaignType::kElection);
  }
}

void Raft::tick_heartbeat() {
  ++heartbeat_elapsed_;
  ++election_elapsed_;
  if (election_elapsed_ >= config_.election_tick) {
    election_elapsed_ = 0;
    // Check quorum: a leader that has not heard from a majority within an
    // election timeout steps down, so a partitioned leader stops serving.
    if (config_.check_quorum && !prs_.quorum_active_and_reset(id_)) {
      become_follower(term_, kNoNode);
      return;
    }
    // A transfer must finish within one election timeout (thesis §3.10).
    if (lead_transferee_ != kNoNode) abort_leader_transfer();
  }
  if (heartbeat_elapsed_ >= config_.heartbeat_tick) {
    heartbeat_elapsed_ = 0;
    bcast_heartbeat(reads_.empty() ? std::string() : reads_.back().context);
  }
}

// ---- Elections --------------------------------------------------------------------

Status Raft::campaign() {
  if (role_ == Role::kLeader) return Status::unavailable("raft: already the leader");
  if (!promotable()) {
    return Status::unavailable("raft: node " + std::to_string(id_) +
                               " is not a voter and may not campaign");
  }
  hup(config_.pre_vote ? CampaignType::kPreElection : CampaignType::kElection);
  return Status::ok_status();
}

void Raft::hup(CampaignType type) {
  if (role_ == Role::kLeader || !promotable()) return;
  start_campaign(type);
}

void Raft::start_campaign(CampaignType type) {
  MessageType vote_type;
  Term vote_term;
  if (type == CampaignType::kPreElection) {
    become_pre_candidate();
    vote_type = MessageType::kPreVote;
    vote_term = term_ + 1;  // what we would campaign in; our term stays
  } else {
    become_candidate();
    vote_type = MessageType::kVote;
    vote_term = term_;
  }
  if (poll(id_, true) == VoteResult::kWon) {  // a single voter
    if (type == CampaignType::kPreElection) {
      start_campaign(CampaignType::kElection);
    } else {
      become_leader();
      bcast_append();
    }
    return;
  }
  for (NodeId id : prs_.voters()) {
    if (id == id_) continue;
    Message m = make(vote_type, id);
    m.term = vote_term;
    m.index = log_.last_index();
    m.log_term = log_.last_term();
    if (type == CampaignType::kTransfer) m.context = std::string(kCampaignTransfer);
    send(std::move(m));
  }
}

VoteResult Raft::poll(NodeId id, bool granted) {
  prs_.record_vote(id, granted);
  return prs_.tally_votes();
}

void Raft::handle_vote_request(const Message& m) {
  // §5.2: one vote per term (vote_ is persisted); a pre-vote for a future
  // term binds nothing. §5.4.1: only for a log at least as up to date as ours.
  const bool can_vote = vote_ == m.from || (vote_ == kNoNode && lead_ == kNoNode) ||
                        (m.type == MessageType::kPreVote && m.term > term_);
  const MessageType resp =
      m.type == MessageType::kVote ? MessageType::kVoteResp : MessageType::kPreVoteResp;
  Message r = make(resp, m.from);
  if (can_vote && log_.is_up_to_date(m.index, m.log_term)) {
    r.term = m.term;
    if (m.type == MessageType::kVote) {
      election_elapsed_ = 0;
      vote_ = m.from;
    }
  } else {
    r.term = term_;
    r.reject = true;
  }
  send(std::move(r));
}

// ---- Step -------------------------------------------------------------------------

Status Raft::step(const Message& m) {
  if (m.term == 0) {
    // Term-less requests forwarded by followers (kReadIndex, kTransferLeader).
  } else if (m.term > term_) {
    if (is_vote_request(m.type)) {
      const bool force = m.context == kCampaignTransfer;
      const bool in_lease =
          config_.check_quorum && lead_ != kNoNode && election_elapsed_ < config_.election_tick;
      // A node that heard from a leader recently ignores would-be leaders,
      // so a partitioned node rejoining cannot depose a healthy leader.
      if (!force && in_lease) return Status::ok_status();
    }
    if (m.type == MessageType::kPreVote) {
      // Never change our term in response to a pre-vote.
    } else if (m.type == MessageType::kPreVoteResp && !m.reject) {
      // A granted pre-vote carries the future term; we move when we win.
    } else if (m.type == MessageType::kAppend || m.type == MessageType::kHeartbeat ||
               m.type == MessageType::kSnapshot) {
      become_follower(m.term, m.from);
    } else {
      become_follower(m.term, kNoNode);
    }
  } else if (m.term < term_) {
    if ((config_.check_quorum || config_.pre_vote) &&
        (m.type == MessageType::kHeartbeat || m.type == MessageType::kAppend)) {
      // A stale leader (e.g. partitioned and rejoining) learns our term and
      // steps down; without this it could keep a node with pre-vote from
      // ever winning.
      send(make(MessageType::kAppendResp, m.from));
    } else if (m.type == MessageType::kPreVote) {
      Message r = make(MessageType::kPreVoteResp, m.from);
      r.term = term_;
      r.reject = true;
      send(std::move(r));
    }
    return Status::ok_status();
  }

  if (is_vote_request(m.type)) {
    handle_vote_request(m);
    return Status::ok_status();
  }
  switch (role_) {
    case Role::kLeader:
      return step_leader(m);
    case Role::kPreCandidate:
    case Role::kCandidate:
      return step_candidate(m);
    case Role::kFollower:
      return step_follower(m);
  }
  return Status::ok_status();
}

Status Raft::step_leader(const Message& m) {
  switch (m.type) {
    case MessageType::kReadIndex:
      leader_read_index(m.from, m.context);
      return Status::ok_status();
    case MessageType::kTransferLeader:
      leader_transfer(m.index);
      return Status::ok_status();
    default:
      break;
  }
  Progress* pr = prs_.find(m.from);
  if (pr == nullptr) return Status::ok_status();  // not (or no longer) a member
  switch (m.type) {
    case MessageType::kAppendResp:
      if (!m.reject && m.index > log_.last_index()) {
        return Status::invalid_argument("raft append-resp from " + std::to_string(m.from) +
                                        " acknowledges index " + std::to_string(m.index) +
                                        " beyond our last index " +
                                        std::to_string(log_.last_index()));
      }
      handle_append_resp(m, *pr);
      prs_.maybe_forget_departed(m.from);
      break;
    case MessageType::kHeartbeatResp:
      handle_heartbeat_resp(m, *pr);
      break;
    default:
      break;  // kTimeoutNow, stale candidate replies: nothing to do
  }
  return Status::ok_status();
}

void Raft::handle_append_resp(const Message& m, Progress& pr) {
  pr.recent_active = true;
  if (m.reject) {
    // Jump over a whole term of conflicting entries (§5.3's optimization).
    Index next_probe = m.reject_hint;
    if (m.log_term > 0) next_probe = log_.find_conflict_by_term(m.reject_hint, m.log_term).first;
    if (pr.maybe_decr_to(m.index, next_probe)) {
      if (pr.state == Progress::State::kReplicate) pr.become_probe();
      maybe_send_append(m.from, true);
    }
    return;
  }
  const bool old_paused = pr.is_paused();
  if (!pr.maybe_update(m.index) && !(pr.match == m.index && pr.state == Progress::State::kProbe)) {
    return;
  }
  switch (pr.state) {
    case Progress::State::kProbe:
      pr.become_replicate();
      break;
    case Progress::State::kSnapshot:
      // Whatever snapshot the follower applied, if the log can take it from
      // here, replicate from the log.
      if (pr.match + 1 >= log_.first_index()) {
        pr.become_probe();
        pr.become_replicate();
      }
      break;
    case Progress::State::kReplicate:
      pr.inflights.free_le(m.index);
      break;
  }
  if (maybe_commit()) {
    bcast_append();
  } else if (role_ != Role::kLeader) {
    return;  // stepped down after its own removal committed
  } else if (old_paused) {
    maybe_send_append(m.from, true);
  }
  if (role_ != Role::kLeader) return;
  // Flow control may now allow several messages (probe -> replicate, or
  // several in-flight appends acknowledged at once).
  while (maybe_send_append(m.from, false)) {
  }
  if (m.from == lead_transferee_ && pr.match == log_.last_index()) send_timeout_now(m.from);
}

void Raft::handle_heartbeat_resp(const Message& m, Progress& pr) {
  pr.recent_active = true;
  if (pr.state == Progress::State::kProbe) {
    pr.paused = false;
  } else if (pr.state == Progress::State::kReplicate && pr.inflights.full()) {
    // Lost acknowledgements must not stall a full window forever.
    pr.inflights.free_first_one();
  }
  if (pr.match < log_.last_index()) maybe_send_append(m.from, true);
  if (m.context.empty()) return;
  // ReadIndex (§6.4): the heartbeat round for this request confirmed us.
  auto it = std::find_if(reads_.begin(), reads_.end(),
                         [&](const ReadRequest& r) { return r.context == m.context; });
  if (it == reads_.end()) return;
  it->acks.insert(m.from);
  if (prs_.vote_result(it->acks) != VoteResult::kWon) return;
  // It and every request before it are safe now.
  std::vector<ReadRequest> done(std::make_move_iterator(reads_.begin()),
                                std::make_move_iterator(std::next(it)));
  reads_.erase(reads_.begin(), std::next(it));
  for (ReadRequest& r : done) {
    read_contexts_.erase(r.context);
    answer_read(r.requester, r.index, std::move(r.context));
  }
}

Status Raft::step_candidate(const Message& m) {
  const MessageType my_resp =
      role_ == Role::kPreCandidate ? MessageType::kPreVoteResp : MessageType::kVoteResp;
  switch (m.type) {
    case MessageType::kAppend:
      become_follower(m.term, m.from);  // a leader won this term
      return handle_append(m);
    case MessageType::kHeartbeat:
      become_follower(m.term, m.from);
      return handle_heartbeat(m);
    case MessageType::kSnapshot:
      become_follower(m.term, m.from);
      handle_snapshot(m);
      return Status::ok_status();
    case MessageType::kPreVoteResp:
    case MessageType::kVoteResp: {
      if (m.type != my_resp) return Status::ok_status();
      switch (poll(m.from, !m.reject)) {
        case VoteResult::kWon:
          if (role_ == Role::kPreCandidate) {
            start_campaign(CampaignType::kElection);
          } else {
            become_leader();
            bcast_append();
          }
          break;
        case VoteResult::kLost:
          // A pre-vote's rejection with a higher term was handled in step().
          become_follower(term_, kNoNode);
          break;
        case VoteResult::kPending:
          break;
      }
      return Status::ok_status();
    }
    default:
      return Status::ok_status();
  }
}

Status Raft::step_follower(const Message& m) {
  switch (m.type) {
    case MessageType::kAppend:
      election_elapsed_ = 0;
      lead_ = m.from;
      return handle_append(m);
    case MessageType::kHeartbeat:
      election_elapsed_ = 0;
      lead_ = m.from;
      return handle_heartbeat(m);
    case MessageType::kSnapshot:
      election_elapsed_ = 0;
      lead_ = m.from;
      handle_snapshot(m);
      return Status::ok_status();
    case MessageType::kTimeoutNow:
      // Leader transfer (thesis §3.10): campaign at once, skipping pre-vote.
      if (m.from == lead_) hup(CampaignType::kTransfer);
      return Status::ok_status();
    case MessageType::kReadIndexResp:
      if (m.from == lead_) read_states_.push_back({m.index, m.context});
      return Status::ok_status();
    default:
      return Status::ok_status();
  }
}

Status Raft::handle_append(const Message& m) {
  if (m.index < log_.committed()) {
    Message r = make(MessageType::kAppendResp, m.from);
    r.index = log_.committed();
    send(std::move(r));
    return Status::ok_status();
  }
  Result<RaftLog::AppendOutcome> out = log_.maybe_append(m.index, m.log_term, m.commit, m.entries);
  if (!out.ok()) return out.status();
  Message r = make(MessageType::kAppendResp, m.from);
  if (out->matched) {
    on_log_appended(m.entries, out->first_appended);
    r.index = out->last_new_index;
  } else {
    // §5.3: reject, with a hint: our last entry at or below m.index whose
    // term is <= m.log_term, so the leader can skip a conflicting term at once.
    const Index hint_index = std::min(m.index, log_.last_index());
    auto [index, term] = log_.find_conflict_by_term(hint_index, m.log_term);
    r.index = m.index;
    r.reject = true;
    r.reject_hint = index;
    r.log_term = term;
  }
  send(std::move(r));
  return Status::ok_status();
}

Status Raft::handle_heartbeat(const Message& m) {
  if (m.commit > log_.last_index()) {
    // A leader sends min(match, commit); beyond our log it cannot be ours.
    return Status::invalid_argument("raft heartbeat from " + std::to_string(m.from) +
                                    " carries commit " + std::to_string(m.commit) +
                                    " beyond our last index " + std::to_string(log_.last_index()));
  }
  log_.commit_to(m.commit);
  Message r = make(MessageType::kHeartbeatResp, m.from);
  r.context = m.context;
  send(std::move(r));
  return Status::ok_status();
}

void Raft::handle_snapshot(const Message& m) {
  Message r = make(MessageType::kAppendResp, m.from);
  r.index = restore(*m.snapshot) ? log_.last_index() : log_.committed();
  send(std::move(r));
}

bool Raft::restore(const Snapshot& snapshot) {
  const SnapshotMeta& meta = snapshot.meta;
  if (meta.index <= log_.committed()) return false;
  if (role_ != Role::kFollower) {
    become_follower(term_ + 1, kNoNode);  // only followers get here; be defensive
    return false;
  }
  if (log_.match_term(meta.index, meta.term)) {
    // We have the snapshot's last entry: just learn that it committed.
    log_.commit_to(meta.index);
    return false;
  }
  log_.restore(snapshot);
  base_conf_ = meta.conf;
  conf_log_.clear();
  rebuild_conf();
  return true;
}

// ---- Replication -----------------------------------------------------------------

void Raft::send(Message m) {
  SHOAL_ASSERT(m.to != id_ && m.to != kNoNode, m.to, id_);
  m.from = id_;
  switch (m.type) {
    case MessageType::kPreVote:
    case MessageType::kPreVoteResp:
    case MessageType::kVote:
    case MessageType::kVoteResp:
      SHOAL_ASSERT(m.term != 0, message_type_name(m.type));  // set by the caller
      break;
    case MessageType::kReadIndex:
    case MessageType::kTransferLeader:
      m.term = 0;
      break;
    default:
      m.term = term_;
      break;
  }
  msgs_.push_back(std::move(m));
}

bool Raft::maybe_send_append(NodeId to, bool send_if_empty) {
  Progress* pr = prs_.find(to);
  if (pr == nullptr || to == id_ || pr->is_paused()) return false;
  const Index prev_index = pr->next - 1;
  Result<Term> prev_term = log_.term(prev_index);
  Result<std::vector<Entry>> ents = log_.entries_from(pr->next, config_.max_size_per_msg);
  if (!prev_term.ok() || !ents.ok()) {
    const Status& s = !prev_term.ok() ? prev_term.status() : ents.status();
    if (!is_compacted(s)) return false;  // not available yet or an I/O error: retry later
    return maybe_send_snapshot(to, *pr);
  }
  if (ents->empty() && !send_if_empty) return false;
  Message m = make(MessageType::kAppend, to);
  m.index = prev_index;
  m.log_term = *prev_term;
  m.commit = log_.committed();
  uint64_t bytes = 0;
  for (const Entry& e : *ents) bytes += entry_size_bytes(e);
  const size_t count = ents->size();
  m.entries = std::move(ents).value();
  pr->sent_entries(count, bytes);
  send(std::move(m));
  return true;
}

bool Raft::maybe_send_snapshot(NodeId to, Progress& pr) {
  // A follower that has not answered lately probably would not take it either.
  if (!pr.recent_active) return false;
  Result<Snapshot> snapshot = log_.snapshot();
  if (!snapshot.ok() || snapshot->meta.index == 0) return false;  // temporarily unavailable
  const Index index = snapshot->meta.index;
  Message m = make(MessageType::kSnapshot, to);
  m.snapshot = std::move(snapshot).value();
  pr.become_snapshot(index);
  send(std::move(m));
  return true;
}

void Raft::send_heartbeat(NodeId to, const std::string& context) {
  const Progress* pr = prs_.find(to);
  Message m = make(MessageType::kHeartbeat, to);
  // Never beyond what the follower is known to have: its log may still hold
  // entries that will be overwritten.
  m.commit = std::min(pr == nullptr ? 0 : pr->match, log_.committed());
  m.context = context;
  send(std::move(m));
}

void Raft::bcast_append() {
  for (const auto& [id, pr] : prs_.all()) {
    if (id != id_) maybe_send_append(id, true);
  }
}

void Raft::bcast_heartbeat(const std::string& context) {
  for (const auto& [id, pr] : prs_.all()) {
    if (id != id_) send_heartbeat(id, context);
  }
}

bool Raft::append_entries(std::vector<Entry> ents) {
  const Index last = log_.last_index();
  for (size_t i = 0; i < ents.size(); ++i) {
    ents[i].term = term_;
    ents[i].index = last + 1 + i;
  }
  const uint64_t bytes = payload_bytes(ents);
  // A single entry may exceed the budget when nothing else is uncommitted.
  if (uncommitted_bytes_ > 0 && bytes > 0 &&
      uncommitted_bytes_ + bytes > config_.max_uncommitted_bytes) {
    return false;
  }
  uncommitted_bytes_ += bytes;
  log_.append(ents);
  if (Progress* self = prs_.find(id_)) self->maybe_update(log_.last_index());
  on_log_appended(ents, 0);
  maybe_commit();
  return true;
}

bool Raft::maybe_commit() {
  if (role_ != Role::kLeader) return false;
  if (!log_.maybe_commit(prs_.committed(), term_)) return false;
  after_commit();
  return role_ == Role::kLeader;
}

bool Raft::committed_entry_in_current_term() const {
  return log_.term_or_zero(log_.committed()) == term_;
}

void Raft::after_commit() {
  release_pending_reads();
  if (!prs_.is_voter(id_) && log_.committed() >= pending_conf_index_) step_down_after_removal();
}

// ---- Proposals ---------------------------------------------------------------------

Status Raft::propose(std::string data) {
  if (data.size() > kEntryDataBytesMax) {
    return Status::invalid_argument("raft proposal of " + std::to_string(data.size()) +
                                    " bytes exceeds " + std::to_string(kEntryDataBytesMax));
  }
  if (role_ != Role::kLeader) {
    return Status::unavailable("raft: node " + std::to_string(id_) + " is not the leader (leader " +
                               std::to_string(lead_) + ")");
  }
  if (!prs_.is_voter(id_)) return Status::unavailable("raft: this leader is being removed");
  if (lead_transferee_ != kNoNode) {
    return Status::unavailable("raft: leadership is being transferred to " +
                               std::to_string(lead_transferee_));
  }
  Entry e;
  e.data = std::move(data);
  if (!append_entries({std::move(e)})) {
    return Status::resource_exhausted("raft: more than " +
                                      std::to_string(config_.max_uncommitted_bytes) +
                                      " bytes of proposals are uncommitted");
  }
  if (role_ == Role::kLeader) bcast_append();
  return Status::ok_status();
}

Status Raft::propose_conf_change(const ConfChange& cc) {
  if (cc.node == kNoNode) return Status::invalid_argument("raft conf change: node id 0");
  if (cc.context.size() > kContextBytesMax) {
    return Status::invalid_argument("raft conf change: context too long");
  }
  if (static_cast<uint8_t>(cc.type) > static_cast<uint8_t>(ConfChangeType::kRemoveNode)) {
    return Status::invalid_argument("raft conf change: unknown type");
  }
  if (role_ != Role::kLeader) {
    return Status::unavailable("raft: node " + std::to_string(id_) + " is not the leader (leader " +
                               std::to_string(lead_) + ")");
  }
  if (!prs_.is_voter(id_)) return Status::unavailable("raft: this leader is being removed");
  if (lead_transferee_ != kNoNode) {
    return Status::unavailable("raft: leadership is being transferred");
  }
  if (pending_conf_index_ > log_.committed()) {
    return Status::resource_exhausted(
        "raft: the configuration change at " + std::to_string(pending_conf_index_) +
        " has not committed yet (commit " + std::to_string(log_.committed()) + ")");
  }
  if (!committed_entry_in_current_term()) {
    return Status::resource_exhausted(
        "raft: the leader has not committed an entry of its term yet");
  }
  const std::string node = "raft conf change: node " + std::to_string(cc.node);
  const bool voter = prs_.is_voter(cc.node);
  const bool learner = prs_.is_learner(cc.node);
  switch (cc.type) {
    case ConfChangeType::kAddVoter:
      if (voter) return Status::already_exists(node + " is already a voter");
      break;
    case ConfChangeType::kAddLearner:
      if (voter) return Status::invalid_argument(node + " is a voter; demotion is not supported");
      if (learner) return Status::already_exists(node + " is already a learner");
      break;
    case ConfChangeType::kRemoveNode:
      if (!voter && !learner) return Status::not_found(node + " is not a member");
      if (voter && prs_.voters().size() == 1) {
        return Status::invalid_argument(node + " is the last voter");
      }
      break;
  }
  if (!voter && !learner && prs_.member_count() >= kConfMembersMax) {
    return Status::resource_exhausted("raft conf change: " + std::to_string(kConfMembersMax) +
                                      " members already");
  }
  Entry e;
  e.type = EntryType::kConfChange;
  e.data = encode_conf_change(cc);
  if (!append_entries({std::move(e)})) {
    return Status::resource_exhausted("raft: too many bytes of proposals are uncommitted");
  }
  pending_conf_index_ = std::max(pending_conf_index_, log_.last_index());
  if (role_ == Role::kLeader) bcast_append();
  return Status::ok_status();
}

// ---- Configuration -------------------------------------------------------------------

void Raft::on_log_appended(const std::vector<Entry>& ents, size_t first) {
  if (first >= ents.size()) return;
  const Index from = ents[first].index;
  bool changed = false;
  // Entries at and after `from` were replaced: so were their conf changes.
  while (!conf_log_.empty() && conf_log_.back().first >= from) {
    conf_log_.pop_back();
    changed = true;
  }
  for (size_t i = first; i < ents.size(); ++i) {
    if (ents[i].type != EntryType::kConfChange) continue;
    Result<ConfChange> cc = decode_conf_change(ents[i].data);
    if (!cc.ok()) continue;
    conf_log_.emplace_back(ents[i].index, std::move(cc).value());
    changed = true;
  }
  if (changed) rebuild_conf();
}

void Raft::rebuild_conf() {
  ConfState conf = base_conf_;
  for (const auto& [index, cc] : conf_log_) conf = apply_change(conf, cc);
  if (conf == prs_.conf_state()) return;
  prs_.set_conf(conf, log_.last_index() + 1, role_ == Role::kLeader ? log_.last_index() : 0);
  on_conf_changed();
}

void Raft::on_conf_changed() {
  if (role_ != Role::kLeader) return;
  if (lead_transferee_ != kNoNode && !prs_.is_voter(lead_transferee_)) abort_leader_transfer();
  // A smaller quorum may commit more; new members need probing.
  if (maybe_commit()) {
    bcast_append();
  } else if (role_ == Role::kLeader) {
    for (const auto& [id, pr] : prs_.all()) {
      if (id != id_) maybe_send_append(id, false);
    }
  }
}

void Raft::step_down_after_removal() {
  // Followers learn the commit (and so their new configuration) first.
  bcast_append();
  NodeId best = kNoNode;
  Index best_match = 0;
  for (NodeId id : prs_.voters()) {
    const Progress* pr = prs_.find(id);
    if (pr != nullptr && id != id_ && pr->match > best_match) {
      best = id;
      best_match = pr->match;
    }
  }
  if (best != kNoNode && best_match == log_.last_index()) send_timeout_now(best);
  become_follower(term_, kNoNode);
}

ConfState Raft::apply_conf_change(const ConfChange& cc) {
  applied_conf_ = apply_change(applied_conf_, cc);
  return applied_conf_;
}

void Raft::on_advance(uint64_t applied_payload_bytes) {
  uncommitted_bytes_ =
      uncommitted_bytes_ > applied_payload_bytes ? uncommitted_bytes_ - applied_payload_bytes : 0;
  // Committed conf changes can never be truncated: fold them into the base.
  size_t folded = 0;
  while (folded < conf_log_.size() && conf_log_[folded].first <= log_.committed()) {
    base_conf_ = apply_change(base_conf_, conf_log_[folded].second);
    ++folded;
  }
  conf_log_.erase(conf_log_.begin(), conf_log_.begin() + static_cast<std::ptrdiff_t>(folded));
}

// ---- ReadIndex -------------------------------------------------------------------------

void Raft::read_index(std::string context) {
  if (context.empty() || context.size() > kContextBytesMax) return;
  if (role_ == Role::kLeader) {
    leader_read_index(id_, std::move(context));
  } else if (role_ == Role::kFollower && lead_ != kNoNode) {
    Message m = make(MessageType::kReadIndex, lead_);
    m.context = std::move(context);
    send(std::move(m));
  }
}

void Raft::leader_read_index(NodeId requester, std::string context) {
  if (prs_.is_single_voter(id_)) {
    answer_read(requester, log_.committed(), std::move(context));
    return;
  }
  // §6.4: a new leader does not know the commit index until it has
  // committed an entry of its term; hold reads until then.
  if (!committed_entry_in_current_term()) {
    if (pending_reads_.size() < config_.max_pending_read_index) {
      pending_reads_.emplace_back(requester, std::move(context));
    }
    return;
  }
  if (reads_.size() >= config_.max_pending_read_index) return;
  if (!read_contexts_.insert(context).second) return;  // already pending
  ReadRequest r;
  r.requester = requester;
  r.context = context;
  r.index = log_.committed();
  r.acks.insert(id_);
  reads_.push_back(std::move(r));
  bcast_heartbeat(context);
}

void Raft::answer_read(NodeId requester, Index index, std::string context) {
  if (requester == id_) {
    read_states_.push_back({index, std::move(context)});
    return;
  }
  Message m = make(MessageType::kReadIndexResp, requester);
  m.index = index;
  m.context = std::move(context);
  send(std::move(m));
}

void Raft::release_pending_reads() {
  if (pending_reads_.empty() || !committed_entry_in_current_term()) return;
  auto pending = std::exchange(pending_reads_, {});
  for (auto& [requester, context] : pending) leader_read_index(requester, std::move(context));
}

// ---- Leader transfer ---------------------------------------------------------------------

void Raft::transfer_leader(NodeId to) {
  if (role_ == Role::kLeader) {
    leader_transfer(to);
  } else if (role_ == Role::kFollower && lead_ != kNoNode && to != kNoNode) {
    Message m = make(MessageType::kTransferLeader, lead_);
    m.index = to;
    send(std::move(m));
  }
}

void Raft::leader_transfer(NodeId transferee) {
  if (transferee == id_ || !prs_.is_voter(transferee)) return;  // learners cannot lead
  if (lead_transferee_ != kNoNode) {
    if (lead_transferee_ == transferee) return;
    abort_leader_transfer();
  }
  Progress* pr = prs_.find(transferee);
  if (pr == nullptr) return;
  election_elapsed_ = 0;  // the transfer gets one election timeout
  lead_transferee_ = transferee;
  if (pr->match == log_.last_index()) {
    send_timeout_now(transferee);
  } else {
    maybe_send_append(transferee, true);
  }
}

void Raft::send_timeout_now(NodeId to) { send(make(MessageType::kTimeoutNow, to)); }

void Raft::report_unreachable(NodeId id) {
  if (role_ != Role::kLeader) return;
  Progress* pr = prs_.find(id);
  if (pr != nullptr && pr->state == Progress::State::kReplicate) pr->become_probe();
}

void Raft::report_snapshot(NodeId id, bool failed) {
  if (role_ != Role::kLeader) return;
  Progress* pr = prs_.find(id);
  if (pr == nullptr || pr->state != Progress::State::kSnapshot) return;
  if (failed) pr->pending_snapshot = 0;
  // Success: wait for the follower's answer; failure: retry after a heartbeat.
  pr->become_probe();
  pr->paused = true;
}

}  // namespace shoal::raft
