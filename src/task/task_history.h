// What a node ran for owners, for `shoalctl tasks`: one record per task
// attempt pushed here, bounded (the oldest go first). A retried task shows
// each attempt on the node that ran it, with the reason its owner gave for
// running it again (the node of an earlier attempt may be gone).
#pragma once

#include <cstdint>
#include <deque>
#include <mutex>
#include <string>
#include <unordered_map>
#include <vector>

#include "shoal/ids.h"

namespace shoal::detail {

inline constexpr std::size_t kTaskHistoryMax = 10'000;

struct TaskAttempt {
  TaskId id;
  std::string function;
  std::string owner;         // the owner's address, when known
  uint32_t attempt = 0;      // 1 on the first try
  std::string retry_reason;  // why the owner ran it again (attempt > 1)
  std::string state;         // RUNNING, FINISHED, FAILED, SPILLED, FENCED
  std::string detail;        // the error of a failed attempt, ...
  int64_t received_ms = 0;   // wall clock
  int64_t ended_ms = 0;      // 0 while it runs
};

class TaskHistory {
 public:
  explicit TaskHistory(std::size_t max = kTaskHistoryMax) : max_(max) {}

  void received(TaskAttempt attempt);
  // Ends the running attempt of `id` here; one already ended stays as it is
  // (a fenced task's late result, a spilled task's spill notice).
  void ended(const TaskId& id, const std::string& state, const std::string& detail, int64_t now_ms);
  // The newest `max` attempts, oldest first; `truncated` says more exist.
  std::vector<TaskAttempt> newest(std::size_t max, bool* truncated) const;

 private:
  mutable std::mutex mutex_;
  std::size_t max_;
  uint64_t next_seq_ = 0;
  std::deque<std::pair<uint64_t, TaskAttempt>> attempts_;  // by arrival
  std::unordered_map<TaskId, uint64_t> running_;           // task -> seq of its running attempt
};

}  // namespace shoal::detail
