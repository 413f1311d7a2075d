// Options of tasks and actors: resources, retries, placement.
//
// Plain values, filled in by the builders of task.h and actor.h
// (shoal::task(f).cpus(2).max_retries(5)...). Resource quantities may be
// fractional down to 1/10,000 (0.5 CPU shares a CPU with another 0.5 task).
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <utility>
#include <variant>

#include "shoal/ids.h"

namespace shoal {

// Scheduling strategies (Ray's DEFAULT, SPREAD, NodeAffinity, placement group).
struct DefaultStrategy {
  friend bool operator==(const DefaultStrategy&, const DefaultStrategy&) = default;
};
// Spread tasks over nodes instead of packing them on the least loaded one.
struct SpreadStrategy {
  friend bool operator==(const SpreadStrategy&, const SpreadStrategy&) = default;
};
// Run on the node with this id; if `soft`, run elsewhere when it is gone or
// cannot fit the task, otherwise fail.
struct NodeAffinityStrategy {
  std::string node_id;
  bool soft = false;
  friend bool operator==(const NodeAffinityStrategy&, const NodeAffinityStrategy&) = default;
};
// Run inside a bundle of a placement group (-1: any bundle of it).
struct PlacementGroupStrategy {
  PlacementGroupId placement_group;
  int bundle_index = -1;
  friend bool operator==(const PlacementGroupStrategy&, const PlacementGroupStrategy&) = default;
};
using SchedulingStrategy =
    std::variant<DefaultStrategy, SpreadStrategy, NodeAffinityStrategy, PlacementGroupStrategy>;

inline SchedulingStrategy spread() { return SpreadStrategy{}; }
inline SchedulingStrategy node_affinity(std::string node_id, bool soft = false) {
  return NodeAffinityStrategy{std::move(node_id), soft};
}
inline SchedulingStrategy placement_group_bundle(PlacementGroupId placement_group,
                                                 int bundle_index = -1) {
  return PlacementGroupStrategy{placement_group, bundle_index};
}

// What one task or actor asks of a node. "CPU", "GPU" and "memory" are the
// built-in resources; any other name is a custom resource a node advertises.
struct ResourceRequest {
  double cpus = 1;
  double gpus = 0;
  uint64_t memory_bytes = 0;
  std::map<std::string, double> custom;
};

struct TaskOptions {
  static constexpr int kDefaultMaxRetries = 3;

  ResourceRequest resources;  // default: 1 CPU
  // Retries after the task's node died (and, with retry_exceptions, after its
  // code threw). -1: retry forever.
  int max_retries = kDefaultMaxRetries;
  bool retry_exceptions = false;
  SchedulingStrategy strategy;
  // The node's labels must have these keys with these values.
  std::map<std::string, std::string> labels;
};

struct ActorOptions {
  static constexpr int kMaxConcurrencyMax = 1024;

  // Held for the actor's whole life. Unlike Ray (1 CPU to schedule, 0 to
  // run), an actor asks for nothing unless told: its methods run on its own
  // thread(s), not in the task executor.
  ResourceRequest resources{.cpus = 0, .gpus = 0, .memory_bytes = 0, .custom = {}};
  std::string name;         // non-empty: get_actor(name, name_space) finds it
  std::string name_space;   // empty: the namespace given to init()
  bool detached = false;    // false: dies when the last handle is gone
  int max_restarts = 0;     // -1: restart forever
  // Calls running when the actor's node died: sent again to the restarted
  // actor this many times (-1: always), in order, before newer calls; else
  // they fail with ActorDied. Like Ray, 0 by default: a call may have had
  // effects before the node died.
  int max_task_retries = 0;
  int max_concurrency = 1;  // > 1: methods run on this many threads, unordered
  SchedulingStrategy strategy;
  std::map<std::string, std::string> labels;
};

}  // namespace shoal
