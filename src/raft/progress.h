// The leader's view of each follower (Progress, with its flow control) and
// the configuration with its quorum rules (ProgressTracker). A port of the
// parts of etcd-io/raft's tracker/ and quorum/ that single-server membership
// changes need. Internal to src/raft.
#pragma once

#include <cstdint>
#include <deque>
#include <map>
#include <set>
#include <vector>

#include "raft/types.h"

namespace shoal::raft {

// Append messages sent to one follower and not yet acknowledged, bounded in
// count and in bytes. Each is remembered by the last index it carried.
class Inflights {
 public:
  Inflights(size_t count_max, uint64_t bytes_max) : count_max_(count_max), bytes_max_(bytes_max) {}

  void add(Index last, uint64_t bytes);
  void free_le(Index to);  // acknowledged through `to`
  void free_first_one();
  bool full() const { return items_.size() >= count_max_ || bytes_ >= bytes_max_; }
  size_t count() const { return items_.size(); }
  uint64_t bytes() const { return bytes_; }
  void reset();

 private:
  struct Item {
    Index last;
    uint64_t bytes;
  };
  size_t count_max_;
  uint64_t bytes_max_;
  std::deque<Item> items_;
  uint64_t bytes_ = 0;
};

// How the leader replicates to one follower (etcd's three states):
//   kProbe      one append per heartbeat interval until the follower's match is found.
//   kReplicate  optimistic streaming, bounded by Inflights.
//   kSnapshot   a snapshot is in flight; nothing else is sent until
//               report_snapshot() or an acknowledgement past it.
class Progress {
 public:
  enum class State : uint8_t { kProbe, kReplicate, kSnapshot };

  Progress(Index next, size_t inflight_max, uint64_t inflight_bytes_max)
      : next(next), inflights(inflight_max, inflight_bytes_max) {}

  void become_probe();
  void become_replicate();
  void become_snapshot(Index snapshot_index);
  // Records an append with `entries` entries of `bytes` sent at next.
  void sent_entries(size_t entries, uint64_t bytes);
  // The follower has everything through n. False if that is old news.
  bool maybe_update(Index n);
  // The follower rejected an append at `rejected`; `match_hint` is where to
  // probe next. False if the rejection is stale.
  bool maybe_decr_to(Index rejected, Index match_hint);
  bool is_paused() const;

  Index match = 0;
  Index next = 1;
  State state = State::kProbe;
  Index pending_snapshot = 0;
  bool recent_active = false;  // heard from within the last election timeout
  bool paused = false;         // kProbe: a probe is out, wait for an answer or a heartbeat
  bool learner = false;
  Inflights inflights;

 private:
  void reset_state(State s);
};

const char* progress_state_name(Progress::State state);

enum class VoteResult : uint8_t { kPending, kLost, kWon };

// The active configuration, one Progress per member, the votes of the
// current election. Majorities are of voters only; learners never count.
class ProgressTracker {
 public:
  ProgressTracker(size_t inflight_max, uint64_t inflight_bytes_max)
      : inflight_max_(inflight_max), inflight_bytes_max_(inflight_bytes_max) {}

  // Switches to `conf`: members that stay keep their Progress, new members
  // get one at `next` (recently active, so check-quorum gives them time).
  // With `departing_at` != 0 (a leader), removed members keep theirs as
  // departing peers until they have the entry at `departing_at`: the leader
  // keeps replicating to them so that they learn of their removal (and so
  // never campaign). They never count in any majority.
  void set_conf(const ConfState& conf, Index next, Index departing_at);
  ConfState conf_state() const;

  bool is_voter(NodeId id) const { return voters_.count(id) != 0; }
  bool is_learner(NodeId id) const { return learners_.count(id) != 0; }
  bool is_member(NodeId id) const { return is_voter(id) || is_learner(id); }
  const std::set<NodeId>& voters() const { return voters_; }
  bool is_single_voter(NodeId id) const { return voters_.size() == 1 && is_voter(id); }

  Progress* find(NodeId id);
  const Progress* find(NodeId id) const;
  // Members and departing peers.
  std::map<NodeId, Progress>& all() { return progress_; }
  const std::map<NodeId, Progress>& all() const { return progress_; }
  size_t member_count() const { return voters_.size() + learners_.size(); }
  // Drops departing peers on every role change.
  void reset_all(Index last_index, NodeId self);
  // Forgets `id` if it is departing and has the entry that removed it.
  void maybe_forget_departed(NodeId id);

  // §5.3/§5.4.2: the largest index a majority of voters has; 0 with no voters.
  Index committed() const;
  // Check-quorum: a majority of voters was recently active (`self` always is);
  // then clears recent_active for everyone but `self`.
  bool quorum_active_and_reset(NodeId self);
  VoteResult vote_result(const std::set<NodeId>& yes) const;

  void reset_votes() { votes_.clear(); }
  void record_vote(NodeId id, bool granted);
  VoteResult tally_votes() const;

 private:
  size_t inflight_max_;
  uint64_t inflight_bytes_max_;
  std::set<NodeId> voters_;
  std::set<NodeId> learners_;
  std::map<NodeId, Progress> progress_;
  std::map<NodeId, bool> votes_;
  std::map<NodeId, Index> departing_;  // id -> index of the entry that removed it
};

}  // namespace shoal::raft
