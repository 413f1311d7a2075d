#include "meta/history.h"

#include <algorithm>

#include "base/assert.h"

namespace shoal::meta {

namespace {
constexpr size_t kEventOverheadBytes = 64;  // what an Event costs beyond its keys and values
}  // namespace

EventHistory::EventHistory(size_t events_max, size_t bytes_max)
    : events_max_(events_max), bytes_max_(bytes_max) {
  SHOAL_ASSERT(events_max_ > 0 && bytes_max_ > 0, events_max_, bytes_max_);
}

size_t EventHistory::event_bytes(const Event& e) {
  size_t n = kEventOverheadBytes + e.kv.key.size() + e.kv.value.size();
  if (e.prev) n += e.prev->key.size() + e.prev->value.size();
  return n;
}

void EventHistory::append(const std::vector<Event>& events) {
  if (events.empty()) return;
  int64_t revision = events.front().revision();
  SHOAL_ASSERT(events_.empty() || events_.back().revision() < revision, revision);
  for (const Event& e : events) {
    SHOAL_ASSERT(e.revision() == revision, e.revision(), revision);
    events_.push_back(e);
    bytes_ += event_bytes(e);
  }
  evict();
}

void EventHistory::evict() {
  while (!events_.empty() && (events_.size() > events_max_ || bytes_ > bytes_max_)) {
    int64_t oldest = events_.front().revision();
    while (!events_.empty() && events_.front().revision() == oldest) {
      bytes_ -= event_bytes(events_.front());
      events_.pop_front();
    }
    first_revision_ = oldest + 1;
  }
}

void EventHistory::reset(int64_t revision) {
  events_.clear();
  bytes_ = 0;
  first_revision_ = revision + 1;
}

Result<EventBatch> EventHistory::since(int64_t start_revision, std::string_view key,
                                       std::string_view range_end, size_t max_events,
                                       int64_t current_revision) const {
  if (max_events == 0) return Status::invalid_argument("max_events must be positive");
  if (start_revision < 1) return Status::invalid_argument("start revision must be at least 1");
  if (start_revision < first_revision_) {
    return Status::not_found(
        "compacted: events before revision " + std::to_string(first_revision_) +
        " are no longer kept (asked from revision " + std::to_string(start_revision) +
        "); this node keeps the most recent events applied since it started or restored a "
        "snapshot; read the current state and watch from revision " +
        std::to_string(current_revision + 1));
  }
  EventBatch batch;
  batch.next_revision = std::max(start_revision, current_revision + 1);
  auto it = std::lower_bound(events_.begin(), events_.end(), start_revision,
                             [](const Event& e, int64_t rev) { return e.revision() < rev; });
  size_t bytes = 0;
  while (it != events_.end()) {
    int64_t revision = it->revision();
    if (batch.events.size() >= max_events || bytes >= kResponseKvBytesMax) {
      batch.next_revision = revision;
      break;
    }
    for (; it != events_.end() && it->revision() == revision; ++it) {
      if (!in_range(it->kv.key, key, range_end)) continue;
      batch.events.push_back(*it);
      bytes += event_bytes(*it);
    }
  }
  return batch;
}

}  // namespace shoal::meta
