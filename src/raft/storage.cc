#include "raft/storage.h"

#include "base/assert.h"

namespace shoal::raft {

Status compacted_error(Index i) {
  return Status::not_found("raft log index " + std::to_string(i) + " is compacted");
}

Status unavailable_error(Index i) {
  return Status::unavailable("raft log index " + std::to_string(i) + " is not available yet");
}

Index Storage::snapshot_index() const {
  Result<Snapshot> s = snapshot();
  return s.ok() ? s->meta.index : first_index() - 1;
}

MemoryStorage::MemoryStorage() { entries_.emplace_back(); }

std::pair<HardState, ConfState> MemoryStorage::initial_state() const {
  return {hard_state_, snapshot_.meta.conf};
}

Index MemoryStorage::first_index() const { return offset() + 1; }

Index MemoryStorage::last_index() const { return offset() + entries_.size() - 1; }

Result<Term> MemoryStorage::term(Index i) const {
  if (i < offset()) return compacted_error(i);
  if (i > last_index()) return unavailable_error(i);
  return entries_[i - offset()].term;
}

Result<std::vector<Entry>> MemoryStorage::entries(Index lo, Index hi, uint64_t max_bytes) const {
  if (lo > hi) {
    return Status::invalid_argument("raft log range [" + std::to_string(lo) + ", " +
                                    std::to_string(hi) + ") is inverted");
  }
  if (lo <= offset()) return compacted_error(lo);
  if (hi > last_index() + 1) return unavailable_error(hi - 1);
  std::vector<Entry> out;
  uint64_t bytes = 0;
  for (Index i = lo; i < hi; ++i) {
    const Entry& e = entries_[i - offset()];
    bytes += entry_size_bytes(e);
    if (!out.empty() && bytes > max_bytes) break;
    out.push_back(e);
  }
  return out;
}

Result<Snapshot> MemoryStorage::snapshot() const { return snapshot_; }

Status MemoryStorage::append(std::vector<Entry> entries) {
  if (entries.empty()) return Status::ok_status();
  for (size_t i = 1; i < entries.size(); ++i) {
    if (entries[i].index != entries[i - 1].index + 1) {
      return Status::invalid_argument("raft entries to append are not contiguous at index " +
                                      std::to_string(entries[i].index));
    }
  }
  const Index first = first_index();
  if (entries.back().index < first) return Status::ok_status();  // all compacted
  size_t skip = entries.front().index < first ? first - entries.front().index : 0;
  const Index from = entries[skip].index;
  if (from > last_index() + 1) {
    return Status::invalid_argument("raft entries to append start at " + std::to_string(from) +
                                    ", after a gap (last index " + std::to_string(last_index()) +
                                    ")");
  }
  // Truncate the conflicting suffix, then append.
  for (size_t k = from - offset(); k < entries_.size(); ++k) {
    entries_bytes_ -= entry_size_bytes(entries_[k]);
  }
  entries_.resize(from - offset());
  for (size_t k = skip; k < entries.size(); ++k) {
    entries_bytes_ += entry_size_bytes(entries[k]);
    entries_.push_back(std::move(entries[k]));
  }
  return Status::ok_status();
}

Status MemoryStorage::apply_snapshot(Snapshot snapshot) {
  if (snapshot.meta.index <= snapshot_.meta.index) {
    return Status::already_exists("raft snapshot at " + std::to_string(snapshot.meta.index) +
                                  " is not newer than the one at " +
                                  std::to_string(snapshot_.meta.index));
  }
  entries_.clear();
  Entry dummy;
  dummy.index = snapshot.meta.index;
  dummy.term = snapshot.meta.term;
  entries_.push_back(std::move(dummy));
  entries_bytes_ = 0;
  snapshot_ = std::move(snapshot);
  return Status::ok_status();
}

Status MemoryStorage::create_snapshot(Index i, const ConfState* conf, std::string data) {
  if (i <= snapshot_.meta.index) {
    return Status::already_exists("raft snapshot at " + std::to_string(i) +
                                  " is not newer than the one at " +
                                  std::to_string(snapshot_.meta.index));
  }
  if (i > last_index()) {
    return Status::invalid_argument("raft snapshot at " + std::to_string(i) +
                                    " is beyond the last index " + std::to_string(last_index()));
  }
  snapshot_.meta.index = i;
  snapshot_.meta.term = entries_[i - offset()].term;
  if (conf != nullptr) snapshot_.meta.conf = *conf;
  snapshot_.data = std::move(data);
  return Status::ok_status();
}

Status MemoryStorage::compact(Index i) {
  if (i <= offset()) return compacted_error(i);
  if (i > snapshot_.meta.index) {
    return Status::invalid_argument("raft log compaction to " + std::to_string(i) +
                                    " would pass the snapshot at " +
                                    std::to_string(snapshot_.meta.index));
  }
  SHOAL_ASSERT(i <= last_index(), i, last_index());
  const size_t drop = i - offset();
  for (size_t k = 1; k <= drop; ++k) entries_bytes_ -= entry_size_bytes(entries_[k]);
  Entry dummy;
  dummy.index = i;
  dummy.term = entries_[drop].term;
  entries_.erase(entries_.begin(), entries_.begin() + static_cast<std::ptrdiff_t>(drop));
  entries_[0] = std::move(dummy);
  return Status::ok_status();
}

}  // namespace shoal::raft
