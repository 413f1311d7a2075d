// The Raft state machine behind RawNode: roles, terms, votes, replication,
// commit, configuration, ReadIndex and leader transfer. A port of etcd-io/raft's
// raft.go (single-server membership changes taking effect on append instead
// of joint consensus). Internal to src/raft; RawNode (raft.h) is the API.
#pragma once

#include <deque>
#include <map>
#include <memory>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "base/clock.h"
#include "raft/log.h"
#include "raft/progress.h"
#include "raft/raft.h"

namespace shoal::raft {

class Raft {
 public:
  using Role = SoftState::Role;

  static Result<std::unique_ptr<Raft>> create(const Config& config);

  Status bootstrap(const std::vector<NodeId>& voters);
  void tick();
  Status campaign();
  Status propose(std::string data);
  Status propose_conf_change(const ConfChange& cc);
  Status step(const Message& m);  // validated by the caller
  void read_index(std::string context);
  void transfer_leader(NodeId to);
  void report_unreachable(NodeId id);
  void report_snapshot(NodeId id, bool failed);
  ConfState apply_conf_change(const ConfChange& cc);

  // Ready support.
  std::vector<Message> take_messages() { return std::exchange(msgs_, {}); }
  std::vector<ReadState> take_read_states() { return std::exchange(read_states_, {}); }
  bool has_messages() const { return !msgs_.empty(); }
  bool has_read_states() const { return !read_states_.empty(); }
  RaftLog& log() { return log_; }
  const RaftLog& log() const { return log_; }
  // After a Ready was handled: releases uncommitted bytes, folds committed
  // conf changes into the base configuration, tracks the applied configuration.
  void on_advance(uint64_t applied_payload_bytes);
  // A snapshot handed out in a Ready becomes the applied configuration before
  // the owner applies the committed entries that follow it.
  void set_applied_conf(const ConfState& conf) { applied_conf_ = conf; }
  uint64_t committed_bytes_max() const { return config_.max_committed_bytes_per_ready; }

  NodeId id() const { return id_; }
  NodeId leader() const { return lead_; }
  Term term() const { return term_; }
  NodeId vote() const { return vote_; }
  Role role() const { return role_; }
  SoftState soft_state() const { return {lead_, role_}; }
  HardState hard_state() const { return {term_, vote_, log_.committed()}; }
  ConfState conf_state() const { return prs_.conf_state(); }
  ConfState applied_conf_state() const { return applied_conf_; }
  NodeId lead_transferee() const { return lead_transferee_; }
  const ProgressTracker& tracker() const { return prs_; }

 private:
  explicit Raft(const Config& config);
  Status load();

  // Roles.
  void become_follower(Term term, NodeId lead);
  void become_pre_candidate();
  void become_candidate();
  void become_leader();
  void reset(Term term);
  void reset_randomized_election_timeout();
  bool promotable() const { return prs_.is_voter(id_); }

  // Ticks.
  void tick_election();
  void tick_heartbeat();
  bool past_election_timeout() const { return election_elapsed_ >= randomized_election_timeout_; }

  // Elections.
  enum class CampaignType : uint8_t { kPreElection, kElection, kTransfer };
  void hup(CampaignType type);
  void start_campaign(CampaignType type);
  VoteResult poll(NodeId id, bool granted);
  void handle_vote_request(const Message& m);

  // Per-role steps.
  Status step_leader(const Message& m);
  Status step_candidate(const Message& m);
  Status step_follower(const Message& m);
  void handle_append_resp(const Message& m, Progress& pr);
  void handle_heartbeat_resp(const Message& m, Progress& pr);
  Status handle_append(const Message& m);
  Status handle_heartbeat(const Message& m);
  void handle_snapshot(const Message& m);
  bool restore(const Snapshot& snapshot);

  // Replication.
  void send(Message m);
  bool maybe_send_append(NodeId to, bool send_if_empty);
  bool maybe_send_snapshot(NodeId to, Progress& pr);
  void send_heartbeat(NodeId to, const std::string& context);
  void bcast_append();
  void bcast_heartbeat(const std::string& context);
  bool append_entries(std::vector<Entry> entries);
  bool maybe_commit();
  bool committed_entry_in_current_term() const;
  void after_commit();

  // Configuration.
  void on_log_appended(const std::vector<Entry>& ents, size_t first);
  void rebuild_conf();
  void on_conf_changed();
  void step_down_after_removal();

  // ReadIndex and transfer.
  void leader_read_index(NodeId requester, std::string context);
  void answer_read(NodeId requester, Index index, std::string context);
  void release_pending_reads();
  void leader_transfer(NodeId transferee);
  void abort_leader_transfer() { lead_transferee_ = kNoNode; }
  void send_timeout_now(NodeId to);

  Config config_;
  NodeId id_;
  Term term_ = 0;
  NodeId vote_ = 0;
  RaftLog log_;
  ProgressTracker prs_;
  Role role_ = Role::kFollower;
  NodeId lead_ = kNoNode;
  NodeId lead_transferee_ = kNoNode;
  // Index of the latest conf change entry in the log (a new leader: its last
  // index when elected). A new change waits until this commits.
  Index pending_conf_index_ = 0;
  uint64_t uncommitted_bytes_ = 0;

  // Configuration = base_conf_ (as of log committed/snapshot) followed by the
  // conf changes still uncommitted in the log (index, change).
  ConfState base_conf_;
  std::vector<std::pair<Index, ConfChange>> conf_log_;
  ConfState applied_conf_;

  int election_elapsed_ = 0;
  int heartbeat_elapsed_ = 0;
  int randomized_election_timeout_ = 0;
  SeededRng rng_;

  // ReadIndex (§6.4): requests waiting for a heartbeat round, oldest first.
  struct ReadRequest {
    NodeId requester;
    std::string context;
    Index index;
    std::set<NodeId> acks;
  };
  std::deque<ReadRequest> reads_;
  std::set<std::string> read_contexts_;  // contexts in reads_
  // Requests that arrived before this leader committed an entry of its term.
  std::vector<std::pair<NodeId, std::string>> pending_reads_;

  std::vector<Message> msgs_;
  std::vector<ReadState> read_states_;
};

}  // namespace shoal::raft
