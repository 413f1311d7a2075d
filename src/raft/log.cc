#include "raft/log.h"

#include <algorithm>

#include "base/assert.h"

namespace shoal::raft {

namespace {

// Keeps a prefix of at most max_bytes, but at least one entry.
void limit_size(std::vector<Entry>& ents, uint64_t max_bytes) {
  uint64_t bytes = 0;
  for (size_t i = 0; i < ents.size(); ++i) {
    bytes += entry_size_bytes(ents[i]);
    if (i > 0 && bytes > max_bytes) {
      ents.resize(i);
      return;
    }
  }
}

uint64_t total_bytes(const std::vector<Entry>& ents) {
  uint64_t bytes = 0;
  for (const Entry& e : ents) bytes += entry_size_bytes(e);
  return bytes;
}

}  // namespace

// ---- Unstable ----------------------------------------------------------------

std::optional<Index> Unstable::maybe_first_index() const {
  if (snapshot_) return snapshot_->meta.index + 1;
  return std::nullopt;
}

std::optional<Index> Unstable::maybe_last_index() const {
  if (!entries_.empty()) return offset_ + entries_.size() - 1;
  if (snapshot_) return snapshot_->meta.index;
  return std::nullopt;
}

std::optional<Term> Unstable::maybe_term(Index i) const {
  if (i < offset_) {
    if (snapshot_ && snapshot_->meta.index == i) return snapshot_->meta.term;
    return std::nullopt;
  }
  std::optional<Index> last = maybe_last_index();
  if (!last || i > *last) return std::nullopt;
  if (entries_.empty()) return std::nullopt;  // i == snapshot index handled above
  return entries_[i - offset_].term;
}

void Unstable::stable_to(Index i, Term t) {
  std::optional<Term> got = maybe_term(i);
  if (!got || *got != t || i < offset_) return;
  entries_.erase(entries_.begin(), entries_.begin() + static_cast<std::ptrdiff_t>(i + 1 - offset_));
  offset_ = i + 1;
}

void Unstable::stable_snap_to(Index i) {
  if (snapshot_ && snapshot_->meta.index == i) snapshot_.reset();
}

void Unstable::restore(Snapshot snapshot) {
  offset_ = snapshot.meta.index + 1;
  entries_.clear();
  snapshot_ = std::move(snapshot);
}

void Unstable::truncate_and_append(std::vector<Entry> ents) {
  if (ents.empty()) return;
  const Index from = ents.front().index;
  if (from == offset_ + entries_.size()) {
    for (Entry& e : ents) entries_.push_back(std::move(e));
  } else if (from <= offset_) {
    // Replaces everything unstable; the persisted entries at >= from are
    // superseded (term() and slice() look here first).
    offset_ = from;
    entries_ = std::move(ents);
  } else {
    entries_.resize(from - offset_);
    for (Entry& e : ents) entries_.push_back(std::move(e));
  }
}

std::vector<Entry> Unstable::slice(Index lo, Index hi, uint64_t max_bytes) const {
  SHOAL_ASSERT(lo <= hi && lo >= offset_ && hi <= offset_ + entries_.size(), lo, hi, offset_,
               entries_.size());
  std::vector<Entry> out(entries_.begin() + static_cast<std::ptrdiff_t>(lo - offset_),
                         entries_.begin() + static_cast<std::ptrdiff_t>(hi - offset_));
  limit_size(out, max_bytes);
  return out;
}

// ---- RaftLog -----------------------------------------------------------------

RaftLog::RaftLog(const Storage* storage)
    : storage_(storage),
      unstable_(storage->last_index() + 1),
      committed_(storage->first_index() - 1),
      applied_(storage->first_index() - 1) {}

Index RaftLog::first_index() const {
  if (auto i = unstable_.maybe_first_index()) return *i;
  return storage_->first_index();
}

Index RaftLog::last_index() const {
  if (auto i = unstable_.maybe_last_index()) return *i;
  return storage_->last_index();
}

Result<Term> RaftLog::term(Index i) const {
  if (auto t = unstable_.maybe_term(i)) return *t;
  // The valid range is [first_index - 1, last_index]: the entry before the
  // first is compacted but its term is kept for matching.
  if (i + 1 < first_index()) return compacted_error(i);
  if (i > last_index()) return unavailable_error(i);
  return storage_->term(i);
}

Term RaftLog::term_or_zero(Index i) const {
  Result<Term> t = term(i);
  return t.ok() ? *t : 0;
}

Term RaftLog::last_term() const { return term_or_zero(last_index()); }

bool RaftLog::match_term(Index i, Term t) const {
  Result<Term> got = term(i);
  return got.ok() && *got == t;
}

bool RaftLog::is_up_to_date(Index last, Term term) const {
  const Term our_term = last_term();
  return term > our_term || (term == our_term && last >= last_index());
}

Result<RaftLog::AppendOutcome> RaftLog::maybe_append(Index index, Term log_term, Index committed,
                                                     const std::vector<Entry>& ents) {
  AppendOutcome out;
  if (!match_term(index, log_term)) return out;
  out.matched = true;
  out.last_new_index = index + ents.size();
  out.first_appended = ents.size();
  const Index conflict = find_conflict(ents);
  if (conflict != 0) {
    if (conflict <= committed_) {
      return Status::invalid_argument("raft append would overwrite committed entry " +
                                      std::to_string(conflict) + " (commit " +
                                      std::to_string(committed_) + ")");
    }
    out.first_appended = conflict - (index + 1);
    append(std::vector<Entry>(ents.begin() + static_cast<std::ptrdiff_t>(out.first_appended),
                              ents.end()));
  }
  commit_to(std::min(committed, out.last_new_index));
  return out;
}

Index RaftLog::append(std::vector<Entry> ents) {
  if (ents.empty()) return last_index();
  SHOAL_ASSERT(ents.front().index > committed_, ents.front().index, committed_);
  SHOAL_ASSERT(ents.front().index <= last_index() + 1, ents.front().index, last_index());
  unstable_.truncate_and_append(std::move(ents));
  return last_index();
}

Index RaftLog::find_conflict(const std::vector<Entry>& ents) const {
  for (const Entry& e : ents) {
    if (!match_term(e.index, e.term)) return e.index;
  }
  return 0;
}

std::pair<Index, Term> RaftLog::find_conflict_by_term(Index index, Term term) const {
  for (; index > 0; --index) {
    Result<Term> ours = this->term(index);
    if (!ours.ok()) return {index, 0};  // unknown: assume a possible match
    if (*ours <= term) return {index, *ours};
  }
  return {0, 0};
}

Result<std::vector<Entry>> RaftLog::slice(Index lo, Index hi, uint64_t max_bytes) const {
  if (lo > hi) return Status::invalid_argument("raft log slice is inverted");
  if (lo < first_index()) return compacted_error(lo);
  if (hi > last_index() + 1) return unavailable_error(hi - 1);
  if (lo == hi) return std::vector<Entry>{};
  const Index offset = unstable_.offset();
  if (lo >= offset) return unstable_.slice(lo, hi, max_bytes);
  const Index cut = std::min(hi, offset);
  Result<std::vector<Entry>> stored = storage_->entries(lo, cut, max_bytes);
  if (!stored.ok()) return stored;
  std::vector<Entry> ents = std::move(stored).value();
  if (ents.empty()) return Status::internal("raft storage returned no entries for a range");
  if (hi <= offset || ents.size() < cut - lo) return ents;
  const uint64_t bytes = total_bytes(ents);
  if (bytes >= max_bytes) return ents;
  std::vector<Entry> more = unstable_.slice(offset, hi, max_bytes - bytes);
  if (more.size() == 1 && bytes + entry_size_bytes(more[0]) > max_bytes) return ents;
  for (Entry& e : more) ents.push_back(std::move(e));
  return ents;
}

Result<std::vector<Entry>> RaftLog::entries_from(Index i, uint64_t max_bytes) const {
  if (i > last_index()) return std::vector<Entry>{};
  return slice(i, last_index() + 1, max_bytes);
}

bool RaftLog::has_next_committed_entries() const {
  return committed_ + 1 > std::max(applied_ + 1, first_index());
}

Result<std::vector<Entry>> RaftLog::next_committed_entries(uint64_t max_bytes) const {
  const Index from = std::max(applied_ + 1, first_index());
  if (committed_ + 1 <= from) return std::vector<Entry>{};
  return slice(from, committed_ + 1, max_bytes);
}

Result<Snapshot> RaftLog::snapshot() const {
  if (unstable_.snapshot()) return *unstable_.snapshot();
  return storage_->snapshot();
}

void RaftLog::commit_to(Index i) {
  if (i <= committed_) return;
  SHOAL_ASSERT(i <= last_index(), i, last_index());
  committed_ = i;
}

bool RaftLog::maybe_commit(Index max_index, Term term) {
  if (max_index > committed_ && term_or_zero(max_index) == term) {
    commit_to(max_index);
    return true;
  }
  return false;
}

void RaftLog::applied_to(Index i) {
  if (i == 0) return;
  SHOAL_ASSERT(i <= committed_ && i >= applied_, i, committed_, applied_);
  applied_ = i;
}

void RaftLog::restore(Snapshot snapshot) {
  committed_ = snapshot.meta.index;
  unstable_.restore(std::move(snapshot));
}

}  // namespace shoal::raft
