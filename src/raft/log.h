// The Raft log as the core sees it: what Storage holds (persisted) plus what
// is not persisted yet (Unstable), with the commit and applied cursors.
// A port of etcd-io/raft's log.go and log_unstable.go. Internal to src/raft.
#pragma once

#include <optional>
#include <vector>

#include "raft/storage.h"

namespace shoal::raft {

// Entries and a snapshot handed out in a Ready but not yet persisted. Indexes
// at or above offset() are served from here, below it from Storage.
class Unstable {
 public:
  explicit Unstable(Index offset) : offset_(offset) {}

  std::optional<Index> maybe_first_index() const;
  std::optional<Index> maybe_last_index() const;
  std::optional<Term> maybe_term(Index i) const;

  // Entries up to (i, t) are now persisted; a no-op when the entry at i has
  // since been replaced (its term differs).
  void stable_to(Index i, Term t);
  void stable_snap_to(Index i);
  void restore(Snapshot snapshot);
  // ents[0].index may be anywhere in [offset - ..., offset + size]; the
  // conflicting suffix is dropped.
  void truncate_and_append(std::vector<Entry> ents);
  // [lo, hi), both within [offset, offset + size].
  std::vector<Entry> slice(Index lo, Index hi, uint64_t max_bytes) const;

  const std::optional<Snapshot>& snapshot() const { return snapshot_; }
  const std::vector<Entry>& entries() const { return entries_; }
  Index offset() const { return offset_; }

 private:
  std::optional<Snapshot> snapshot_;
  std::vector<Entry> entries_;
  Index offset_;
};

class RaftLog {
 public:
  // Starts from what `storage` holds: committed = applied = first_index - 1.
  explicit RaftLog(const Storage* storage);

  Index first_index() const;
  Index last_index() const;
  // Errors use the Storage codes (kNotFound: compacted, kUnavailable: beyond last).
  Result<Term> term(Index i) const;
  Term term_or_zero(Index i) const;
  Term last_term() const;
  bool match_term(Index i, Term t) const;
  // §5.4.1: a candidate's log (last index, last term) is at least as up to date as ours.
  bool is_up_to_date(Index last, Term term) const;

  struct AppendOutcome {
    bool matched = false;       // the previous entry (index, log_term) matched
    Index last_new_index = 0;   // index + ents.size() when matched
    size_t first_appended = 0;  // position in ents of the first entry actually written
  };
  // A follower's append (§5.3): if (index, log_term) matches, writes the
  // entries that are new or conflict (dropping our conflicting suffix) and
  // advances commit to min(committed, last new index). kInvalidArgument when
  // the leader would overwrite a committed entry (a corrupt or byzantine peer).
  Result<AppendOutcome> maybe_append(Index index, Term log_term, Index committed,
                                     const std::vector<Entry>& ents);
  // Appends after ents[0].index - 1, which must not be below commit.
  Index append(std::vector<Entry> ents);
  // First entry in ents whose term conflicts with ours or that we lack; 0 if none.
  Index find_conflict(const std::vector<Entry>& ents) const;
  // The largest index <= index whose term is <= term (or any error position),
  // with its term: where a leader should probe after a rejection.
  std::pair<Index, Term> find_conflict_by_term(Index index, Term term) const;

  // [lo, hi), at most max_bytes (at least one entry).
  Result<std::vector<Entry>> slice(Index lo, Index hi, uint64_t max_bytes) const;
  Result<std::vector<Entry>> entries_from(Index i, uint64_t max_bytes) const;

  std::vector<Entry> unstable_entries() const { return unstable_.entries(); }
  bool has_unstable_entries() const { return !unstable_.entries().empty(); }
  const std::optional<Snapshot>& unstable_snapshot() const { return unstable_.snapshot(); }
  // Committed entries not yet applied (applied + 1 ..= committed), within max_bytes.
  bool has_next_committed_entries() const;
  Result<std::vector<Entry>> next_committed_entries(uint64_t max_bytes) const;
  Result<Snapshot> snapshot() const;

  Index committed() const { return committed_; }
  Index applied() const { return applied_; }
  void commit_to(Index i);  // i <= last_index() (asserted); never moves back
  // §5.4.2: commits max_index only when its entry is from `term`.
  bool maybe_commit(Index max_index, Term term);
  void applied_to(Index i);
  void stable_to(Index i, Term t) { unstable_.stable_to(i, t); }
  void stable_snap_to(Index i) { unstable_.stable_snap_to(i); }
  void restore(Snapshot snapshot);

 private:
  const Storage* storage_;
  Unstable unstable_;
  Index committed_;
  Index applied_;
};

}  // namespace shoal::raft
