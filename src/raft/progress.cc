#include "raft/progress.h"

#include <algorithm>

#include "base/assert.h"

namespace shoal::raft {

// ---- Inflights -----------------------------------------------------------------

void Inflights::add(Index last, uint64_t bytes) {
  SHOAL_ASSERT(!full(), items_.size(), bytes_);
  SHOAL_ASSERT(items_.empty() || items_.back().last < last, last);
  items_.push_back({last, bytes});
  bytes_ += bytes;
}

void Inflights::free_le(Index to) {
  while (!items_.empty() && items_.front().last <= to) {
    bytes_ -= items_.front().bytes;
    items_.pop_front();
  }
}

void Inflights::free_first_one() {
  if (items_.empty()) return;
  bytes_ -= items_.front().bytes;
  items_.pop_front();
}

void Inflights::reset() {
  items_.clear();
  bytes_ = 0;
}

// ---- Progress ------------------------------------------------------------------

const char* progress_state_name(Progress::State state) {
  switch (state) {
    case Progress::State::kProbe:
      return "probe";
    case Progress::State::kReplicate:
      return "replicate";
    case Progress::State::kSnapshot:
      return "snapshot";
  }
  return "?";
}

void Progress::reset_state(State s) {
  paused = false;
  pending_snapshot = 0;
  state = s;
  inflights.reset();
}

void Progress::become_probe() {
  // Coming back from a snapshot, the follower has at least the snapshot
  // (if it was applied): probe right after it.
  const Index after_snapshot = state == State::kSnapshot ? pending_snapshot + 1 : 0;
  reset_state(State::kProbe);
  next = std::max(match + 1, after_snapshot);
}

void Progress::become_replicate() {
  reset_state(State::kReplicate);
  next = match + 1;
}

void Progress::become_snapshot(Index snapshot_index) {
  reset_state(State::kSnapshot);
  pending_snapshot = snapshot_index;
  next = snapshot_index + 1;
}

void Progress::sent_entries(size_t entries, uint64_t bytes) {
  switch (state) {
    case State::kReplicate:
      if (entries > 0) {
        next += entries;
        inflights.add(next - 1, bytes);
      }
      break;
    case State::kProbe:
      paused = true;  // one probe per heartbeat until it is answered
      break;
    case State::kSnapshot:
      SHOAL_ASSERT(false, "append sent in snapshot state");
  }
}

bool Progress::maybe_update(Index n) {
  if (n <= match) return false;
  match = n;
  next = std::max(next, n + 1);
  paused = false;
  return true;
}

bool Progress::maybe_decr_to(Index rejected, Index match_hint) {
  if (state == State::kReplicate) {
    // Stale unless it rejects something beyond what we know matches.
    if (rejected <= match) return false;
    next = match + 1;
    return true;
  }
  // In probe state only the latest probe's rejection counts.
  if (next - 1 != rejected) return false;
  next = std::max(std::min(rejected, match_hint + 1), match + 1);
  paused = false;
  return true;
}

bool Progress::is_paused() const {
  switch (state) {
    case State::kProbe:
      return paused;
    case State::kReplicate:
      return inflights.full();
    case State::kSnapshot:
      return true;
  }
  return true;
}

// ---- ProgressTracker -----------------------------------------------------------

void ProgressTracker::set_conf(const ConfState& conf, Index next, Index departing_at) {
  voters_ = std::set<NodeId>(conf.voters.begin(), conf.voters.end());
  learners_ = std::set<NodeId>(conf.learners.begin(), conf.learners.end());
  for (auto it = progress_.begin(); it != progress_.end();) {
    if (is_member(it->first)) {
      departing_.erase(it->first);
      ++it;
    } else if (departing_at != 0) {
      departing_.try_emplace(it->first, departing_at);
      ++it;
    } else {
      departing_.erase(it->first);
      it = progress_.erase(it);
    }
  }
  for (const auto* ids : {&voters_, &learners_}) {
    for (NodeId id : *ids) {
      auto [it, inserted] = progress_.try_emplace(id, next, inflight_max_, inflight_bytes_max_);
      if (inserted) it->second.recent_active = true;
      it->second.learner = is_learner(id);
    }
  }
  for (auto it = votes_.begin(); it != votes_.end();) {
    it = is_voter(it->first) ? std::next(it) : votes_.erase(it);
  }
}

ConfState ProgressTracker::conf_state() const {
  ConfState cs;
  cs.voters.assign(voters_.begin(), voters_.end());
  cs.learners.assign(learners_.begin(), learners_.end());
  return cs;
}

Progress* ProgressTracker::find(NodeId id) {
  auto it = progress_.find(id);
  return it == progress_.end() ? nullptr : &it->second;
}

const Progress* ProgressTracker::find(NodeId id) const {
  auto it = progress_.find(id);
  return it == progress_.end() ? nullptr : &it->second;
}

void ProgressTracker::maybe_forget_departed(NodeId id) {
  auto it = departing_.find(id);
  if (it == departing_.end()) return;
  const Progress* pr = find(id);
  if (pr == nullptr || pr->match >= it->second) {
    progress_.erase(id);
    departing_.erase(it);
  }
}

void ProgressTracker::reset_all(Index last_index, NodeId self) {
  for (const auto& [id, at] : departing_) progress_.erase(id);
  departing_.clear();
  for (auto& [id, pr] : progress_) {
    const bool learner = pr.learner;
    pr = Progress(last_index + 1, inflight_max_, inflight_bytes_max_);
    pr.learner = learner;
    if (id == self) pr.match = last_index;
  }
}

Index ProgressTracker::committed() const {
  if (voters_.empty()) return 0;
  std::vector<Index> matches;
  matches.reserve(voters_.size());
  for (NodeId id : voters_) {
    const Progress* pr = find(id);
    matches.push_back(pr == nullptr ? 0 : pr->match);
  }
  std::sort(matches.begin(), matches.end(), std::greater<>());
  return matches[voters_.size() / 2];  // the majority-th largest
}

bool ProgressTracker::quorum_active_and_reset(NodeId self) {
  // Departing peers silent for a whole election timeout are gone for good.
  for (auto it = departing_.begin(); it != departing_.end();) {
    const Progress* pr = find(it->first);
    if (pr == nullptr || !pr->recent_active) {
      progress_.erase(it->first);
      it = departing_.erase(it);
    } else {
      ++it;
    }
  }
  std::set<NodeId> active;
  for (auto& [id, pr] : progress_) {
    if (id == self) {
      active.insert(id);
      continue;
    }
    if (pr.recent_active) active.insert(id);
    pr.recent_active = false;
  }
  return vote_result(active) == VoteResult::kWon;
}

VoteResult ProgressTracker::vote_result(const std::set<NodeId>& yes) const {
  if (voters_.empty()) return VoteResult::kLost;
  size_t granted = 0;
  for (NodeId id : voters_) granted += yes.count(id);
  return granted >= voters_.size() / 2 + 1 ? VoteResult::kWon : VoteResult::kLost;
}

void ProgressTracker::record_vote(NodeId id, bool granted) {
  if (!is_voter(id)) return;  // learners' and strangers' votes never count
  votes_.try_emplace(id, granted);
}

VoteResult ProgressTracker::tally_votes() const {
  if (voters_.empty()) return VoteResult::kLost;
  const size_t quorum = voters_.size() / 2 + 1;
  size_t granted = 0;
  size_t rejected = 0;
  for (const auto& [id, yes] : votes_) (yes ? granted : rejected) += 1;
  if (granted >= quorum) return VoteResult::kWon;
  if (voters_.size() - rejected >= quorum) return VoteResult::kPending;
  return VoteResult::kLost;
}

}  // namespace shoal::raft
