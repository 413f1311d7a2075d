#include "task/task_history.h"

#include <algorithm>

namespace shoal::detail {

void TaskHistory::received(TaskAttempt attempt) {
  std::lock_guard lock(mutex_);
  attempt.state = "RUNNING";
  attempt.ended_ms = 0;
  uint64_t seq = next_seq_++;
  running_[attempt.id] = seq;
  attempts_.emplace_back(seq, std::move(attempt));
  while (attempts_.size() > max_) {
    auto& oldest = attempts_.front();
    auto it = running_.find(oldest.second.id);
    if (it != running_.end() && it->second == oldest.first) running_.erase(it);
    attempts_.pop_front();
  }
}

void TaskHistory::ended(const TaskId& id, const std::string& state, const std::string& detail, int64_t now_ms) {
  std::lock_guard lock(mutex_);
  auto it = running_.find(id);
  if (it == running_.end()) return;
  uint64_t seq = it->second;
  running_.erase(it);
  if (attempts_.empty() || seq < attempts_.front().first) return;
  auto& a = attempts_[static_cast<std::size_t>(seq - attempts_.front().first)].second;
  a.state = state;
  a.detail = detail;
  a.ended_ms = now_ms;
}

std::vector<TaskAttempt> TaskHistory::newest(std::size_t max, bool* truncated) const {
  std::lock_guard lock(mutex_);
  std::size_t n = std::min(max, attempts_.size());
  if (truncated != nullptr) *truncated = n < attempts_.size();
  std::vector<TaskAttempt> out;
  out.reserve(n);
  for (std::size_t i = attempts_.size() - n; i < attempts_.size(); ++i) out.push_back(attempts_[i].second);
  return out;
}

}  // namespace shoal::detail
