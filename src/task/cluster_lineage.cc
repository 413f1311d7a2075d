// ClusterRuntime: lineage reconstruction (issue 8, part 3).
//
// A task result over 100 KiB stays on the node that made it; when that node
// dies with the only copies, the owner can make the value again by running
// the task again. So the owner keeps, for each such result it owns, the
// finished Task — its function, its arguments (inline bytes, and the refs
// of by-reference arguments, which keeps those objects alive too: Ray's
// lineage pinning) — until the object is freed.
//
// Lineage memory is bounded: at most lineage_bytes_max() bytes of argument
// bytes are kept (SHOAL_MAX_LINEAGE_BYTES, default 256 MiB); past it the
// oldest entries go, and their objects, when lost, fail with LineageEvicted.
// A result whose task has no retries left (max_retries) keeps no lineage.
//
// Reconstruction is triggered where a loss is seen:
//   - get() here pulls the value and no holder can send it (ObjectLost):
//     the owner re-runs the task and get() waits for the new value;
//   - a task's node could not pull one of its by-reference arguments from
//     any holder: the owner re-runs the arguments it owns whose holders are
//     all gone, then runs the task again (each attempt counts against the
//     task's max_retries).
// Re-running a task whose own arguments are lost goes the same way, so the
// chain is rebuilt back to what still exists. put() values live with their
// owner (lost only with it: OwnerDied); actor call results are not rebuilt.
#include <cstdlib>

#include "base/log.h"
#include "loop/loop.h"
#include "task/cluster_runtime.h"
#include "task/cluster_task.h"

namespace shoal::detail {

namespace {

constexpr uint64_t kLineageBytesDefault = 256ull << 20;
constexpr uint64_t kLineageEntryOverhead = 256;  // the Task record itself

uint64_t read_lineage_bytes_max() {
  const char* text = std::getenv("SHOAL_MAX_LINEAGE_BYTES");
  if (text == nullptr || *text == '\0') return kLineageBytesDefault;
  char* end = nullptr;
  unsigned long long v = std::strtoull(text, &end, 10);
  if (end == nullptr || *end != '\0') {
    SHOAL_LOG_WARN("SHOAL_MAX_LINEAGE_BYTES={} is not a number of bytes; using {}", text, kLineageBytesDefault);
    return kLineageBytesDefault;
  }
  return v;
}

}  // namespace

uint64_t ClusterRuntime::lineage_bytes_max() {
  static const uint64_t max = read_lineage_bytes_max();
  return max;
}

bool ClusterRuntime::owns(const ObjectId& id) const { return id.hi == config_.id_prefix; }

void ClusterRuntime::keep_lineage(const std::shared_ptr<Task>& task) {
  uint64_t bytes = kLineageEntryOverhead + task->spec.function.size();
  for (const TaskArg& arg : task->spec.args) bytes += arg.value.size();
  std::vector<std::shared_ptr<Task>> evicted;  // destroyed after the lock: their args free objects
  {
    std::lock_guard lock(mutex_);
    auto [it, inserted] = lineage_.try_emplace(task->return_id);
    SHOAL_LOG_DEBUG("lineage: keeping task {} for object {}{}", task->spec.function, task->return_id.hex(),
                    inserted ? "" : " (kept already)");
    if (!inserted) return;
    lineage_order_.push_back(task->return_id);
    it->second = Lineage{task, bytes, std::prev(lineage_order_.end())};
    lineage_bytes_ += bytes;
    while (lineage_bytes_ > lineage_bytes_max() && !lineage_order_.empty()) {
      auto oldest = lineage_.find(lineage_order_.front());
      lineage_order_.pop_front();
      if (oldest == lineage_.end()) continue;
      lineage_bytes_ -= oldest->second.bytes;
      lineage_evicted_.insert(oldest->first);
      evicted.push_back(std::move(oldest->second.task));
      lineage_.erase(oldest);
    }
  }
  if (!evicted.empty()) {
    SHOAL_LOG_DEBUG("lineage over {} bytes: dropped {} entr{}", lineage_bytes_max(), evicted.size(),
                    evicted.size() == 1 ? "y" : "ies");
  }
}

void ClusterRuntime::drop_lineage(const ObjectId& id) {
  std::shared_ptr<Task> dropped;
  {
    std::lock_guard lock(mutex_);
    lineage_evicted_.erase(id);
    auto it = lineage_.find(id);
    if (it == lineage_.end()) return;
    SHOAL_LOG_DEBUG("lineage: object {} freed; its task is no longer kept", id.hex());
    lineage_bytes_ -= it->second.bytes;
    lineage_order_.erase(it->second.order);
    dropped = std::move(it->second.task);
    lineage_.erase(it);
  }
}

std::optional<ErrorInfo> ClusterRuntime::reconstruct(const ObjectId& id, const std::string& why) {
  std::shared_ptr<Task> task;
  bool post_frees = false;
  ErrorInfo error;
  error.code = Status::Code::kUnavailable;
  error.kind = ErrorKind::kObjectLost;
  error.node_id = config_.node_id;
  {
    std::lock_guard lock(mutex_);
    if (auto running = tasks_.find(id.task_id()); running != tasks_.end() && !running->second->done) {
      return std::nullopt;  // being made again already
    }
    auto it = lineage_.find(id);
    if (it == lineage_.end()) {
      if (lineage_evicted_.count(id) != 0) {
        error.kind = ErrorKind::kLineageEvicted;
        error.message = why + "; the task that made it is no longer kept (lineage over " +
                        std::to_string(lineage_bytes_max()) + " bytes; SHOAL_MAX_LINEAGE_BYTES)";
      } else if (id.is_put()) {
        error.message = why + "; it was made by put(), so nothing can make it again";
      } else {
        error.message = why + "; it cannot be made again (an actor call's result, or its task's retries are used up)";
      }
      return error;
    }
    task = std::move(it->second.task);
    lineage_bytes_ -= it->second.bytes;
    lineage_order_.erase(it->second.order);
    lineage_.erase(it);
    const int max_retries = task->spec.options.max_retries;
    if (max_retries >= 0 && task->attempts > static_cast<uint32_t>(max_retries)) {
      error.function = task->spec.function;
      error.task_id = task->id;
      error.attempts = task->attempts;
      error.message = why + "; its task's retries are used up (max_retries " + std::to_string(max_retries) + ")";
      return error;
    }
    task->done = false;
    task->reset_placement();
    task->engine_ref.reset();
    task->avoid.clear();
    task->spills = 0;
    task->lost_why = why;
    task->retry_reason = "its value was lost: " + why;
    tasks_.emplace(task->id, task);
    if (auto l = locations_.find(id); l != locations_.end()) {
      // The old holders are gone (or, if one was only slow, it drops its
      // copy: the new run's value replaces it).
      post_frees = queue_frees_locked(id, l->second);
      locations_.erase(l);
    }
  }
  if (post_frees) post_frees_after_adds();
  SHOAL_LOG_INFO("object {} is lost ({}): running task {} ({}) again", id.hex(), why, task->spec.function,
                 task->id.hex());
  objects_.reopen(id);
  resolve_args(task);
  return std::nullopt;
}

bool ClusterRuntime::rerun_after_lost_args(const std::shared_ptr<Task>& task, const ObjectId& lost_id,
                                           ErrorInfo& error) {
  // What to make again: the object the node named (when this process owns
  // it), else the arguments this process owns that no live member holds.
  // Never a value that is still held: making it again would free its copies.
  std::vector<ObjectId> lost;
  {
    std::lock_guard lock(mutex_);
    const int max_retries = task->spec.options.max_retries;
    if (task->kind != Task::Kind::kTask || task->done ||
        (max_retries >= 0 && task->attempts > static_cast<uint32_t>(max_retries))) {
      return false;
    }
    if (!lost_id.nil()) {
      if (owns(lost_id)) lost.push_back(lost_id);
    } else {
      std::vector<ObjectId> candidates;  // by-reference arguments and refs inside arguments
      for (const TaskArg& arg : task->spec.args) {
        if (arg.ref) candidates.push_back(arg.ref->id);
      }
      for (const RefPtr& ref : task->spec.contained.refs) {
        if (ref) candidates.push_back(ref->id);
      }
      for (const ObjectId& id : candidates) {
        if (!owns(id)) continue;
        auto l = locations_.find(id);
        if (l == locations_.end()) continue;
        bool held = false;
        for (const std::string& h : l->second.holders) held = held || h == config_.address || members_.count(h) != 0;
        if (!held) lost.push_back(id);
      }
    }
    SHOAL_LOG_DEBUG("lineage: task {} ({}) lost an argument ({}): {} to make again", task->spec.function,
                    task->id.hex(), lost_id.nil() ? "unnamed" : lost_id.hex(), lost.size());
  }
  for (const ObjectId& id : lost) {
    // Being rebuilt, or rebuilt now: either way the task waits for it.
    std::optional<ErrorInfo> failed = reconstruct(id, "its holders are gone");
    if (failed) {
      // The task fails with why its argument cannot be made again.
      failed->message = "argument object " + id.hex() + ": " + failed->message;
      failed->function = task->spec.function;
      failed->task_id = task->id;
      failed->attempts = task->attempts;
      error = std::move(*failed);
      return false;
    }
  }
  if (lost.empty()) return false;
  {
    std::lock_guard lock(mutex_);
    task->reset_placement();
  }
  SHOAL_LOG_INFO("task {} ({}) lost an argument: running it again once its arguments are made again",
                 task->spec.function, task->id.hex());
  resolve_args(task);
  return true;
}

}  // namespace shoal::detail
