// The log storage the Raft core reads from, and an in-memory implementation.
//
// The core only reads a Storage; the application writes it, after it has made
// a Ready durable (see raft.h). Owned by the application, which must keep it
// alive as long as the RawNode using it; both belong to one thread.
//
// Error codes of Storage reads (helpers below make and test them):
//   kNotFound     the index is compacted: entries() with lo <= snapshot index,
//                 term() with i < snapshot index. The core answers with a snapshot.
//   kUnavailable  the index is beyond last_index(), or snapshot() is temporarily
//                 unavailable (being built); the core tries again later.
//   kInvalidArgument  a malformed request (lo > hi).
//   anything else an I/O failure; the core skips the work and retries later,
//                 it never crashes on it.
#pragma once

#include <utility>
#include <vector>

#include "raft/types.h"

namespace shoal::raft {

Status compacted_error(Index i);
Status unavailable_error(Index i);
inline bool is_compacted(const Status& s) { return s.code() == Status::Code::kNotFound; }
inline bool is_unavailable(const Status& s) { return s.code() == Status::Code::kUnavailable; }

class Storage {
 public:
  virtual ~Storage() = default;
  // The persisted HardState, and the configuration as of snapshot_index()
  // (the latest snapshot's ConfState; an empty one before any snapshot). The
  // core replays the conf change entries after the snapshot itself.
  virtual std::pair<HardState, ConfState> initial_state() const = 0;
  // Entries [lo, hi), at most max_bytes in total (entry_size_bytes) but at
  // least one entry when the range is not empty.
  virtual Result<std::vector<Entry>> entries(Index lo, Index hi, uint64_t max_bytes) const = 0;
  // Term of entry i; for i == snapshot index, the snapshot's term.
  virtual Result<Term> term(Index i) const = 0;
  // The first entry still stored: snapshot index + 1, or lower while entries
  // covered by the snapshot are kept; term(first_index() - 1) must succeed.
  virtual Index first_index() const = 0;
  virtual Index last_index() const = 0;  // first_index() - 1 when there are no entries
  virtual Result<Snapshot> snapshot() const = 0;
  // Index of the latest snapshot (0: none). The default reads snapshot();
  // implementations should override it with something cheap.
  virtual Index snapshot_index() const;
};

// Storage in memory: for tests and the simulation, and the in-memory mirror of
// a node's on-disk log. Copyable (the simulation restarts nodes from copies).
class MemoryStorage final : public Storage {
 public:
  MemoryStorage();

  void set_hard_state(const HardState& hs) { hard_state_ = hs; }
  const HardState& hard_state() const { return hard_state_; }
  // Appends entries; an entry that conflicts with one already stored replaces
  // it and everything after it. Entries at or below the snapshot index are
  // skipped. A gap after last_index() gives kInvalidArgument.
  Status append(std::vector<Entry> entries);
  // Replaces everything with the snapshot. kAlreadyExists when it is not
  // newer than the current snapshot.
  Status apply_snapshot(Snapshot snapshot);
  // Records a snapshot of the state machine at applied index i (which must be
  // in the log, above the current snapshot). `conf`: the configuration as of
  // i (nullptr keeps the previous snapshot's). Does not drop entries; see compact.
  Status create_snapshot(Index i, const ConfState* conf, std::string data);
  // Drops entries <= i; i must not be above the snapshot index (so that
  // first_index() stays snapshot index + 1).
  Status compact(Index i);

  std::pair<HardState, ConfState> initial_state() const override;
  Result<std::vector<Entry>> entries(Index lo, Index hi, uint64_t max_bytes) const override;
  Result<Term> term(Index i) const override;
  Index first_index() const override;
  Index last_index() const override;
  Result<Snapshot> snapshot() const override;
  Index snapshot_index() const override { return snapshot_.meta.index; }

  uint64_t entries_bytes() const { return entries_bytes_; }

 private:
  Index offset() const { return entries_.front().index; }

  HardState hard_state_;
  Snapshot snapshot_;
  // entries_[0] is a dummy at the snapshot position (index, term); real
  // entries follow. Never empty.
  std::vector<Entry> entries_;
  uint64_t entries_bytes_ = 0;
};

}  // namespace shoal::raft
