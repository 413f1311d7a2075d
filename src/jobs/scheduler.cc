#include "jobs/scheduler.h"

#include <algorithm>
#include <set>
#include <climits>
#include <map>
#include <unordered_map>

namespace shoal::jobs {

namespace {

struct NodeCapacity {
  const NodeView* view = nullptr;
  detail::NodeResources resources;
};

std::string largest_nodes_text(const std::vector<NodeView>& nodes) {
  std::string out;
  for (const auto& n : nodes) {
    if (!n.alive) continue;
    if (!out.empty()) out += "; ";
    out += n.id.substr(0, 8) + " has " + n.total.to_string();
  }
  return out.empty() ? "no live node" : out;
}

}  // namespace

std::vector<Decision> schedule(const std::vector<const CachedJob*>& jobs, const std::vector<NodeView>& nodes,
                               uint64_t now_ms, const JobLookup& lookup) {
  std::vector<Decision> out;
  auto emit = [&](const CachedJob& job, Record record) {
    if (out.size() < kDecisionsPerRoundMax) out.push_back(Decision{std::move(record), job.mod_revision});
  };

  std::map<std::string, NodeCapacity> capacity;
  for (const auto& n : nodes) {
    NodeCapacity& c = capacity[n.id];
    c.view = &n;
    c.resources = detail::NodeResources(n.total);
  }

  // Jobs on nodes: lost ones are requeued or failed, the rest take room.
  std::vector<const CachedJob*> pending;
  for (const CachedJob* j : jobs) {
    const Record& r = j->record;
    if (r.state == State::kPending) {
      pending.push_back(j);
      continue;
    }
    if (r.state != State::kAssigned && r.state != State::kRunning) continue;
    auto it = capacity.find(r.node);
    bool lost = it != capacity.end() && it->second.view->lost;
    if (lost) {
      Record next = r;
      next.pid = 0;
      next.gpu_ids.clear();
      std::string lost_node = r.node;
      if (r.stop_requested) {
        next.end_time_ms = now_ms;
        next.transition(State::kStopped, "stopped; node " + lost_node.substr(0, 8) + " was lost", now_ms, lost_node);
      } else if (static_cast<int>(r.attempt) < r.spec.max_retries) {
        next.attempt = r.attempt + 1;
        next.node.clear();
        next.node_address.clear();
        next.start_time_ms = 0;
        next.transition(State::kPending,
                        "requeued: node " + lost_node.substr(0, 8) + " was lost (retry " +
                            std::to_string(next.attempt) + " of " + std::to_string(r.spec.max_retries) + ")",
                        now_ms, lost_node);
      } else {
        next.end_time_ms = now_ms;
        next.transition(State::kFailed, "node lost", now_ms, lost_node);
      }
      emit(*j, std::move(next));
      continue;
    }
    if (it == capacity.end()) continue;
    auto demand = r.spec.demand();
    if (!demand.ok()) continue;
    // Never below zero: a view may be briefly inconsistent (a node restarted
    // with fewer resources); take what is there.
    if (it->second.resources.can_run(*demand)) {
      it->second.resources.acquire(*demand);
    } else {
      it->second.resources = detail::NodeResources(it->second.view->total);
      auto all = it->second.view->total;
      it->second.resources.acquire(all);
    }
  }

  std::stable_sort(pending.begin(), pending.end(), [](const CachedJob* a, const CachedJob* b) {
    if (a->record.spec.priority != b->record.spec.priority) return a->record.spec.priority > b->record.spec.priority;
    return a->create_revision < b->create_revision;
  });

  int blocked_priority = INT_MIN;  // the highest priority that could not be placed
  for (const CachedJob* j : pending) {
    if (out.size() >= kDecisionsPerRoundMax) break;
    const Record& r = j->record;
    auto keep_waiting = [&](const std::string& why) {
      if (r.message != why) {
        Record next = r;
        next.message = why;
        emit(*j, std::move(next));
      }
    };
    auto finish = [&](State state, const std::string& why) {
      Record next = r;
      next.end_time_ms = now_ms;
      next.transition(state, why, now_ms, "");
      emit(*j, std::move(next));
    };
    if (r.stop_requested) {
      finish(State::kStopped, "stopped before it started");
      continue;
    }
    // Dependencies.
    std::string waiting_for;
    std::string failed_because;
    for (const auto& dep : r.spec.after) {
      const CachedJob* found = lookup(dep);
      if (found == nullptr) {
        failed_because = "dependency " + dep + " does not exist";
        break;
      }
      State s = found->record.state;
      if (s == State::kFailed || s == State::kStopped) {
        failed_because = "dependency " + dep + " " + (s == State::kFailed ? "failed" : "was stopped");
        break;
      }
      if (s != State::kSucceeded && waiting_for.empty()) waiting_for = dep;
    }
    if (!failed_because.empty()) {
      finish(State::kFailed, failed_because);
      continue;
    }
    if (!waiting_for.empty()) {
      keep_waiting("dependency: waiting for " + waiting_for + " to succeed");
      continue;
    }
    auto demand = r.spec.demand();
    if (!demand.ok()) {
      finish(State::kFailed, "bad resources: " + demand.status().message());
      continue;
    }
    bool feasible = false;
    for (const auto& [id, c] : capacity) {
      if (c.view->alive && c.resources.feasible(*demand)) feasible = true;
    }
    if (!feasible) {
      keep_waiting("resources: no live node can ever fit " + demand->to_string() + " (" +
                   largest_nodes_text(nodes) + ")");
      continue;
    }
    if (r.spec.priority < blocked_priority) {
      keep_waiting("priority: waiting behind jobs of higher priority");
      continue;
    }
    NodeCapacity* best = nullptr;
    for (auto& [id, c] : capacity) {
      if (!c.view->alive || !c.resources.can_run(*demand)) continue;
      if (best == nullptr || c.resources.available().units(detail::ResourceSet::kCpu) >
                                 best->resources.available().units(detail::ResourceSet::kCpu)) {
        best = &c;
      }
    }
    if (best == nullptr) {
      blocked_priority = std::max(blocked_priority, r.spec.priority);
      keep_waiting("resources: waiting for " + demand->to_string() + " to be free");
      continue;
    }
    best->resources.acquire(*demand);
    Record next = r;
    next.node = best->view->id;
    next.node_address = best->view->address;
    next.log_nodes[next.node] = next.node_address;
    next.transition(State::kAssigned, "assigned to node " + next.node.substr(0, 8), now_ms, next.node);
    emit(*j, std::move(next));
  }
  return out;
}

std::vector<const CachedJob*> finished_to_prune(const std::vector<const CachedJob*>& finished,
                                                const std::vector<const CachedJob*>& unfinished, size_t keep) {
  if (finished.size() <= keep) return {};
  std::set<std::string> awaited;
  for (const CachedJob* job : unfinished) awaited.insert(job->record.spec.after.begin(), job->record.spec.after.end());
  std::vector<const CachedJob*> oldest = finished;
  std::sort(oldest.begin(), oldest.end(), [](const CachedJob* a, const CachedJob* b) {
    if (a->record.end_time_ms != b->record.end_time_ms) return a->record.end_time_ms < b->record.end_time_ms;
    return a->create_revision < b->create_revision;
  });
  std::vector<const CachedJob*> out;
  size_t excess = finished.size() - keep;
  for (const CachedJob* job : oldest) {
    if (out.size() >= excess || out.size() >= kPrunesPerRoundMax) break;
    if (!awaited.count(job->record.id)) out.push_back(job);
  }
  return out;
}

}  // namespace shoal::jobs
