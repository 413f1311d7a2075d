// Bounded in-memory history of the events the state machine produced, so a
// watcher can catch up from a past revision (KvStore::events_since).
//
// Node-local and not part of snapshots: it holds the events applied since
// this process started or last restored a snapshot, bounded by a count and a
// byte budget. Eviction drops the oldest revision as a whole (never a part of
// one), so every revision at or after first_revision() is complete.
// Owned by KvStore; one thread.
#pragma once

#include <cstddef>
#include <cstdint>
#include <deque>
#include <string_view>
#include <vector>

#include "meta/types.h"
#include "shoal/status.h"

namespace shoal::meta {

// Events in revision order, and where to continue: pass next_revision as the
// next start revision. A batch never splits a revision.
struct EventBatch {
  std::vector<Event> events;
  int64_t next_revision = 0;
};

class EventHistory {
 public:
  EventHistory(size_t events_max, size_t bytes_max);

  // Appends the events of one revision, newer than everything held.
  void append(const std::vector<Event>& events);
  // Drops everything: the history restarts after `revision` (snapshot restore).
  void reset(int64_t revision);

  // Events with revision >= start_revision whose key lies in (key,
  // range_end) (types.h range rules), up to about max_events and
  // kResponseKvBytesMax bytes, whole revisions only (one revision may exceed
  // max_events alone). `current_revision` is the store's revision. Fails
  // with kNotFound when start_revision < first_revision(): those events are
  // gone (evicted, or from before this node restored a snapshot).
  Result<EventBatch> since(int64_t start_revision, std::string_view key, std::string_view range_end,
                           size_t max_events, int64_t current_revision) const;

  // The smallest start revision since() can serve.
  int64_t first_revision() const { return first_revision_; }
  size_t size() const { return events_.size(); }
  size_t bytes() const { return bytes_; }

 private:
  static size_t event_bytes(const Event& e);
  void evict();

  size_t events_max_;
  size_t bytes_max_;
  std::deque<Event> events_;
  size_t bytes_ = 0;
  int64_t first_revision_ = 1;
};

}  // namespace shoal::meta
