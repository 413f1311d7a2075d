// ClusterRuntime's record of a task it owns, shared by the files that
// implement ClusterRuntime (cluster_runtime.cc, cluster_objects.cc).
#pragma once

#include <chrono>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "task/cluster_runtime.h"

namespace shoal::detail {

struct ClusterRuntime::Task {
  enum class Kind { kTask, kActorCall, kActorCreation };
  Kind kind = Kind::kTask;
  TaskId id;
  ObjectId return_id;  // nil for a creation
  TaskSpec spec;       // a creation: function = the class name
  std::string constructor;
  ActorOptions actor_options;
  ResourceSet demand;
  ActorId actor;
  // Guarded by mutex_:
  std::vector<ObjectValuePtr> arg_values;
  std::size_t deps_remaining = 0;
  std::optional<ErrorInfo> dep_error;
  bool resolved = false;
  bool done = false;
  std::string node;  // address it went to, kEngine, or empty
  uint32_t attempts = 0;
  RefPtr engine_ref;
  std::string pending_reason;
  // Placed into a placement group bundle: the bundle's resource names.
  std::optional<ResourceRequest> bundle_resources;
  std::string avoid;  // a node that spilled it back: not again next time
  uint32_t spills = 0;
  std::string lost_why;  // running again because its value was lost (lineage)
  std::string retry_reason;  // why this attempt runs (TaskWire.retryReason; shoalctl tasks)

  // Before its arguments are resolved and it is placed again (mutex_ held).
  void reset_placement() {
    resolved = false;
    node.clear();
    arg_values.clear();
    deps_remaining = 0;
    dep_error.reset();
    pending_reason.clear();
  }
};

// Node side: what a node keeps per owner session.
struct ClusterRuntime::OwnerSession {
  // A result to send (a null value: spilled back). It goes once every
  // borrow add numbered up to `barrier` is acked (cluster_borrows.cc).
  struct Result {
    TaskId id;
    ObjectValuePtr value;
    uint64_t barrier = 0;
  };
  std::optional<rpc::TaskOwner::Client> client;              // loop thread
  std::vector<Result> pending;                               // guarded by host_mutex_
  bool sending = false;                                      // loop thread
  bool waiting_adds = false;  // guarded: the next result waits for borrow adds
  Clock::time_point last_sent{};                             // a batch or a heartbeat
  std::optional<Clock::time_point> unreachable_since;        // its connection broke
  std::string address;                                       // guarded: the owner's, when it said
};

// An argument a pushed task takes by reference (RefArgWire).
struct ClusterRuntime::RefArg {
  uint32_t index = 0;
  ObjectId id;
  uint64_t size = 0;
  std::vector<std::string> holders;
};

}  // namespace shoal::detail
