// Internals shared by the public templates and the runtime (src/task).
// Not part of the API: names here may change.
//
// What the templates hand the runtime, and what the runtime hands back:
//
//   TaskSpec / ActorSpec   the call: registered name, arguments (msgpack bytes,
//                          or an ObjectRef resolved before the call), options
//   RefState               the shared core of ObjectRef copies: id + owner
//   ActorHandleState       the shared core of ActorHandle copies
//   ObjectValue            an object as stored: bytes, or the error instead
//
// Reference counting. Each RefState (and ActorHandleState) is one *local
// reference*: the runtime that made it counts it and is told by the
// destructor when it goes. Copies of an ObjectRef share one RefState, so
// copying is a shared_ptr copy. Refs written into a value (serialized) are
// collected into a Contained list kept with that value, so an object named
// inside another object lives as long as the outer one (Ray's "captured in
// object"). Reading a value back makes new RefStates (adopt_ref).
#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "shoal/errors.h"
#include "shoal/ids.h"
#include "shoal/options.h"
#include "shoal/serialize.h"

namespace shoal::detail {

class Runtime;  // src/task/runtime.h

// Bounds on what a ref carries on the wire.
inline constexpr std::size_t kOwnerAddressBytesMax = 255;
inline constexpr std::size_t kClassNameBytesMax = 255;
// msgpack ext types of refs and handles inside values.
inline constexpr int8_t kObjectRefExtType = 17;
inline constexpr int8_t kActorHandleExtType = 18;

struct RefState {
  RefState(ObjectId object_id, std::string owner, std::weak_ptr<Runtime> owning_runtime)
      : id(object_id), owner_address(std::move(owner)), runtime(std::move(owning_runtime)) {}
  ~RefState();  // tells the runtime, if it still exists, that this reference is gone
  RefState(const RefState&) = delete;
  RefState& operator=(const RefState&) = delete;

  const ObjectId id;
  const std::string owner_address;  // who tracks the object ("local/..." or "host:port")
  const std::weak_ptr<Runtime> runtime;
};
using RefPtr = std::shared_ptr<const RefState>;

struct ActorHandleState {
  ActorHandleState(ActorId actor_id, std::string class_name_, std::string owner,
                   std::weak_ptr<Runtime> owning_runtime)
      : id(actor_id),
        class_name(std::move(class_name_)),
        owner_address(std::move(owner)),
        runtime(std::move(owning_runtime)) {}
  ~ActorHandleState();
  ActorHandleState(const ActorHandleState&) = delete;
  ActorHandleState& operator=(const ActorHandleState&) = delete;

  const ActorId id;
  const std::string class_name;     // as registered with SHOAL_ACTOR
  const std::string owner_address;  // the process that created the actor
  const std::weak_ptr<Runtime> runtime;
};
using ActorPtr = std::shared_ptr<const ActorHandleState>;

// Refs and actor handles written inside a value.
struct Contained {
  std::vector<RefPtr> refs;
  std::vector<ActorPtr> actors;
  bool empty() const { return refs.empty() && actors.empty(); }
};

struct SerializedValue {
  std::string bytes;  // msgpack
  Contained contained;
};

// An object as a runtime stores it: the value, or why there is none.
struct ObjectValue {
  std::string bytes;  // msgpack; empty when `error` is set
  Contained contained;
  std::optional<ErrorInfo> error;
  // Not 0: the value (this many bytes) is held by another process, and
  // `bytes` is empty until the runtime pulls it (cluster mode, values over
  // 100 KiB). Runtimes never hand such a value to user code.
  uint64_t remote_size = 0;
};
using ObjectValuePtr = std::shared_ptr<const ObjectValue>;

// One argument of a call.
struct TaskArg {
  std::string value;  // msgpack bytes of the parameter, when `ref` and `resolved` are null
  RefPtr ref;         // else: the runtime passes this object's bytes instead
  // Or a value the caller already holds (a cluster node's pulled argument),
  // passed without copying its bytes.
  ObjectValuePtr resolved;
};

struct TaskSpec {
  std::string function;  // registered name; for an actor call, "Class::method"
  std::vector<TaskArg> args;
  Contained contained;  // refs/handles inside argument values
  TaskOptions options;
};

struct ActorSpec {
  std::string class_name;   // registered with SHOAL_ACTOR
  std::string constructor;  // the constructor's key (see registry.h)
  std::vector<TaskArg> args;
  Contained contained;
  ActorOptions options;
};

// While one is alive on a thread, refs and handles serialized on that thread
// are appended to `out`. Nests.
class ContainedCollector {
 public:
  explicit ContainedCollector(Contained* out);
  ~ContainedCollector();
  ContainedCollector(const ContainedCollector&) = delete;
  ContainedCollector& operator=(const ContainedCollector&) = delete;

 private:
  Contained* previous_;
};
void note_contained(const RefPtr& ref);
void note_contained(const ActorPtr& actor);

// A value's bytes and the refs inside it.
template <typename T>
SerializedValue serialize_value(const T& value) {
  check_serializable<T>();
  SerializedValue out;
  ContainedCollector collector(&out.contained);
  if constexpr (Serializable<T>) pack_into(out.bytes, value);
  return out;
}
template <typename T>
void serialize_arg(const T& value, TaskArg& arg, Contained& contained) {
  check_serializable<T>();
  ContainedCollector collector(&contained);
  if constexpr (Serializable<T>) pack_into(arg.value, value);
}

// Deserialization of refs and handles: a new local reference in the current
// runtime (one that get() reports as not initialized, if there is none).
RefPtr adopt_ref(ObjectId id, std::string owner_address);
ActorPtr adopt_actor(ActorId id, std::string class_name, std::string owner_address);

// ---- Entry points of the templates into the current runtime ---------------
// All throw shoal::Error (see errors.h) when shoal is not initialized or the
// request is invalid; task failures are reported by get(), not here.
using Timeout = std::optional<std::chrono::nanoseconds>;

RefPtr submit_task(TaskSpec spec);
RefPtr submit_actor_task(const ActorHandleState& actor, TaskSpec spec);
ActorPtr create_actor(ActorSpec spec);
RefPtr put_value(SerializedValue value);
// Blocks until every object is ready (or failed), or throws GetTimeout.
std::vector<ObjectValuePtr> get_values(std::span<const RefState* const> refs, Timeout timeout);
ObjectValuePtr get_value(const RefState& ref, Timeout timeout);
// ready[i] for each ref; returns once `num_ready` are ready or at the timeout.
std::vector<bool> wait_values(std::span<const RefState* const> refs, std::size_t num_ready,
                              Timeout timeout);
bool cancel_task(const RefState& ref, bool force);
void kill_actor(const ActorHandleState& actor, bool no_restart);
ActorPtr lookup_actor(std::string_view name, std::string_view name_space);

// Throws the failure `value` records, if it records one.
inline void throw_if_failed(const ObjectValue& value) {
  if (value.error) throw_task_failure(*value.error);
}
// Reads an object's value as T; throws its failure, or Error if the bytes are
// not a T.
std::string describe_read_failure(const ObjectId& id, const std::string& type,
                                  const Status& status);
template <typename T>
T value_as(const ObjectValue& value, const ObjectId& id) {
  throw_if_failed(value);
  T out{};
  Status status = deserialize_into(value.bytes, out);
  if (!status.ok()) {
    throw Error(Status::invalid_argument(describe_read_failure(id, type_name<T>(), status)));
  }
  return out;
}

}  // namespace shoal::detail
