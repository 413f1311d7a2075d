// ClusterRuntime's record of a task it owns, shared by the files that
// implement ClusterRuntime (cluster_runtime.cc, cluster_objects.cc).
#pragma once

#include <chrono>
#include <deque>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <string_view>
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

struct ClusterRuntime::ActorState {
  ActorId id;
  std::string class_name;
  std::string owner;
  // Guarded by mutex_:
  uint64_t handles = 0;
  bool created_here = false;
  bool detached = false;
  bool shared = false;  // a handle went to another process
  std::string name;
  std::string name_space;
  std::string address;  // where it lives; empty until known
  bool creating = false;
  bool locating = false;
  uint32_t locate_attempts = 0;
  bool release_requested = false;
  bool released = false;
  std::deque<std::shared_ptr<Task>> queue;  // calls not sent yet, in submission order
  std::set<TaskId> in_flight;               // sent, not finished
  std::optional<ErrorInfo> dead;
  // Created here: how to create it again after its node is lost. The
  // arguments as given (refs kept: a value passed by reference, or refs
  // inside a value, stay alive while the actor may restart), and their
  // bytes for a detached actor's directory record.
  std::vector<TaskArg> constructor_task_args;
  Contained constructor_contained;
  std::vector<std::string> constructor_args;
  bool constructor_by_reference = false;  // an argument over 100 KiB, passed by reference
  std::string constructor;
  ActorOptions options;
  ResourceSet demand;
  int restarts = 0;
};

// The actor directory in the metadata store: one record per actor (where it
// runs; for a detached one, how to create it again), and names.
inline constexpr std::string_view kActorsPrefix = "/shoal/actors/";
inline constexpr std::string_view kNamedActorsPrefix = "/shoal/named_actors/";
inline std::string actor_key(const ActorId& id) { return std::string(kActorsPrefix) + id.hex(); }
inline std::string named_key(std::string_view name_space, std::string_view name) {
  return std::string(kNamedActorsPrefix) + std::string(name_space) + "/" + std::string(name);
}

// An actor id from its 32 lowercase hex digits (directory records); nullopt
// for anything else.
inline std::optional<ActorId> actor_id_from_hex(std::string_view hex) {
  if (hex.size() != 32) return std::nullopt;
  uint64_t words[2] = {0, 0};
  for (std::size_t i = 0; i < 32; ++i) {
    char c = hex[i];
    uint64_t digit;
    if (c >= '0' && c <= '9') {
      digit = static_cast<uint64_t>(c - '0');
    } else if (c >= 'a' && c <= 'f') {
      digit = static_cast<uint64_t>(c - 'a' + 10);
    } else {
      return std::nullopt;
    }
    words[i / 16] = (words[i / 16] << 4) | digit;
  }
  return ActorId{words[0], words[1]};
}

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
