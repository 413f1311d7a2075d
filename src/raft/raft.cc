#include "raft/raft.h"

#include "base/assert.h"
#include "raft/core.h"

namespace shoal::raft {

bool Ready::empty() const {
  return !soft_state && !hard_state && entries.empty() && !snapshot && committed_entries.empty() &&
         messages.empty() && read_states.empty();
}

RawNode::RawNode(std::unique_ptr<Raft> raft)
    : raft_(std::move(raft)), prev_soft_(raft_->soft_state()), prev_hard_(raft_->hard_state()) {}

RawNode::~RawNode() = default;

Result<std::unique_ptr<RawNode>> RawNode::create(const Config& config) {
  Result<std::unique_ptr<Raft>> raft = Raft::create(config);
  if (!raft.ok()) return raft.status();
  return std::unique_ptr<RawNode>(new RawNode(std::move(raft).value()));  // private constructor
}

Status RawNode::bootstrap(const std::vector<NodeId>& voters) {
  if (in_flight_) return Status::internal("raft bootstrap: a Ready is being handled");
  return raft_->bootstrap(voters);
}

void RawNode::tick() { raft_->tick(); }
Status RawNode::campaign() { return raft_->campaign(); }
Status RawNode::propose(std::string data) { return raft_->propose(std::move(data)); }
Status RawNode::propose_conf_change(const ConfChange& cc) { return raft_->propose_conf_change(cc); }

Status RawNode::step(const Message& m) {
  SHOAL_RETURN_IF_ERROR(validate_message(m, raft_->id()));
  return raft_->step(m);
}

void RawNode::read_index(std::string context) { raft_->read_index(std::move(context)); }
void RawNode::transfer_leader(NodeId to) { raft_->transfer_leader(to); }
void RawNode::report_unreachable(NodeId id) { raft_->report_unreachable(id); }
void RawNode::report_snapshot(NodeId id, bool failed) { raft_->report_snapshot(id, failed); }
ConfState RawNode::apply_conf_change(const ConfChange& cc) { return raft_->apply_conf_change(cc); }

bool RawNode::has_ready() const {
  if (in_flight_) return false;
  const RaftLog& log = raft_->log();
  return raft_->soft_state() != prev_soft_ || raft_->hard_state() != prev_hard_ ||
         log.unstable_snapshot().has_value() || log.has_unstable_entries() ||
         raft_->has_messages() || raft_->has_read_states() || log.has_next_committed_entries();
}

Ready RawNode::ready() {
  SHOAL_ASSERT(!in_flight_, "ready() called again before advance()");
  RaftLog& log = raft_->log();
  Ready rd;
  InFlight f;
  rd.entries = log.unstable_entries();
  if (!rd.entries.empty()) {
    f.last_entry_index = rd.entries.back().index;
    f.last_entry_term = rd.entries.back().term;
  }
  if (log.unstable_snapshot()) {
    rd.snapshot = *log.unstable_snapshot();
    f.snapshot_index = rd.snapshot->meta.index;
    f.applied_to = f.snapshot_index;
    raft_->set_applied_conf(rd.snapshot->meta.conf);
  }
  // An I/O error reading committed entries leaves them for the next Ready.
  Result<std::vector<Entry>> committed = log.next_committed_entries(raft_->committed_bytes_max());
  if (committed.ok() && !committed->empty()) {
    rd.committed_entries = std::move(committed).value();
    f.applied_to = rd.committed_entries.back().index;
    for (const Entry& e : rd.committed_entries) f.committed_payload_bytes += e.data.size();
  }
  const SoftState soft = raft_->soft_state();
  if (soft != prev_soft_) {
    rd.soft_state = soft;
    prev_soft_ = soft;
  }
  const HardState hard = raft_->hard_state();
  if (hard != prev_hard_) {
    rd.hard_state = hard;
    prev_hard_ = hard;
  }
  rd.messages = raft_->take_messages();
  rd.read_states = raft_->take_read_states();
  in_flight_ = std::move(f);
  return rd;
}

void RawNode::advance() {
  SHOAL_ASSERT(in_flight_.has_value(), "advance() without a Ready");
  InFlight f = std::move(*in_flight_);
  in_flight_.reset();
  RaftLog& log = raft_->log();
  if (f.applied_to != 0) log.applied_to(f.applied_to);
  if (f.last_entry_index != 0) log.stable_to(f.last_entry_index, f.last_entry_term);
  if (f.snapshot_index != 0) log.stable_snap_to(f.snapshot_index);
  raft_->on_advance(f.committed_payload_bytes);
}

NodeId RawNode::id() const { return raft_->id(); }
NodeId RawNode::leader() const { return raft_->leader(); }
Term RawNode::term() const { return raft_->term(); }
SoftState::Role RawNode::role() const { return raft_->role(); }
Index RawNode::commit_index() const { return raft_->log().committed(); }
Index RawNode::applied_index() const { return raft_->log().applied(); }
Index RawNode::last_index() const { return raft_->log().last_index(); }
ConfState RawNode::conf_state() const { return raft_->conf_state(); }
ConfState RawNode::applied_conf_state() const { return raft_->applied_conf_state(); }
NodeId RawNode::lead_transferee() const { return raft_->lead_transferee(); }

std::vector<RawNode::PeerProgress> RawNode::progress() const {
  std::vector<PeerProgress> out;
  if (raft_->role() != SoftState::Role::kLeader) return out;
  for (const auto& [id, pr] : raft_->tracker().all()) {
    if (!raft_->tracker().is_member(id)) continue;  // departing
    out.push_back({id, pr.match, pr.next, pr.learner, pr.recent_active});
  }
  return out;
}

std::string RawNode::status_line() const {
  auto ids = [](const std::vector<NodeId>& v) {
    std::string s;
    for (NodeId id : v) s += (s.empty() ? "" : ",") + std::to_string(id);
    return s;
  };
  const ConfState conf = raft_->conf_state();
  std::string s =
      "id=" + std::to_string(id()) + " " + role_name(role()) + " term=" + std::to_string(term()) +
      " lead=" + std::to_string(leader()) + " vote=" + std::to_string(raft_->vote()) +
      " commit=" + std::to_string(commit_index()) + " applied=" + std::to_string(applied_index()) +
      " last=" + std::to_string(last_index()) + " voters=[" + ids(conf.voters) + "]";
  if (!conf.learners.empty()) s += " learners=[" + ids(conf.learners) + "]";
  return s;
}

}  // namespace shoal::raft
