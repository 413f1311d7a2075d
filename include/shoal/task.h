// Tasks and objects: shoal::task(f).remote(...), get, put, wait, cancel.
//
//   SHOAL_REMOTE(add);                                   // registry.h
//   shoal::ObjectRef<int> r = shoal::task(add).remote(1, 2);
//   shoal::ObjectRef<int> s = shoal::task(add).cpus(2).max_retries(0).remote(r, 10);
//   int thirteen = shoal::get(s);
//
// remote() checks the arguments against the function's parameters at compile
// time (each must convert to its parameter; an ObjectRef<T> argument is
// passed as the T it holds, resolved before the call, and T must match the
// parameter), serializes them and submits the task; it does not wait. The
// task's failure, if any, is thrown by get() (errors.h). remote() itself
// throws shoal::Error only when shoal is not initialized, the function is
// not registered or an option is invalid.
//
// Threading: every function here may be called from any thread, including
// from inside tasks and actor methods (nested tasks). Builders are values:
// configure one and call remote() as often as needed.
#pragma once

#include <chrono>
#include <cmath>
#include <cstddef>
#include <optional>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

#include "shoal/detail/core.h"
#include "shoal/detail/function_traits.h"
#include "shoal/errors.h"
#include "shoal/object_ref.h"
#include "shoal/options.h"
#include "shoal/registry.h"

namespace shoal {

// A function known by name and signature only, e.g. registered by another
// binary: shoal::task(shoal::remote_function<int(int, int)>("add")).
template <typename Signature>
struct RemoteFunction;
template <typename R, typename... A>
struct RemoteFunction<R(A...)> {
  std::string name;
};
template <typename Signature>
RemoteFunction<Signature> remote_function(std::string name) {
  return RemoteFunction<Signature>{std::move(name)};
}

namespace detail {
template <typename T>
struct IsRemoteFunction : std::false_type {};
template <typename Signature>
struct IsRemoteFunction<RemoteFunction<Signature>> : std::true_type {};
}  // namespace detail

namespace detail {

// Setters shared by the task and actor builders; Derived has `options_`
// with `resources`, `strategy` and `labels`.
template <typename Derived>
class PlacementSetters {
 public:
  Derived& cpus(double n) {
    self().options_.resources.cpus = n;
    return self();
  }
  Derived& gpus(double n) {
    self().options_.resources.gpus = n;
    return self();
  }
  Derived& memory(uint64_t bytes) {
    self().options_.resources.memory_bytes = bytes;
    return self();
  }
  // A custom resource ("disk_ssd", "license"), as nodes advertise them.
  Derived& resource(std::string name, double quantity) {
    self().options_.resources.custom[std::move(name)] = quantity;
    return self();
  }
  // shoal::spread(), shoal::node_affinity(id, soft), shoal::placement_group_bundle(pg, i).
  Derived& strategy(SchedulingStrategy s) {
    self().options_.strategy = std::move(s);
    return self();
  }
  // Only nodes whose label `key` equals `value`.
  Derived& label(std::string key, std::string value) {
    self().options_.labels[std::move(key)] = std::move(value);
    return self();
  }

 private:
  Derived& self() { return static_cast<Derived&>(*this); }
};

// Whether an argument of type Arg may be passed for a parameter of type Param.
template <typename Param, typename Arg>
consteval bool arg_compatible() {
  using P = std::remove_cvref_t<Param>;
  using A = std::remove_cvref_t<Arg>;
  if constexpr (IsObjectRef<A>::value && !IsObjectRef<P>::value) {
    using V = typename IsObjectRef<A>::value_type;
    if constexpr (std::is_void_v<V>) {
      return false;
    } else if constexpr (std::is_same_v<V, P>) {
      return true;
    } else if constexpr (std::is_integral_v<V> && std::is_integral_v<P>) {
      return !std::is_same_v<V, bool> && !std::is_same_v<P, bool>;  // msgpack checks the range
    } else {
      return std::is_floating_point_v<P> && std::is_arithmetic_v<V> && !std::is_same_v<V, bool>;
    }
  } else {
    return std::is_convertible_v<Arg, P>;
  }
}

// Instantiated per argument so the compiler's note names the position (from
// 0), the parameter type and the argument type.
template <std::size_t Index, typename Param, typename Arg>
struct CheckArgument {
  static_assert(arg_compatible<Param, Arg>(),
                "shoal: a remote() argument does not convert to the function's parameter "
                "(CheckArgument<position from 0, parameter, argument> in this error names them); "
                "an ObjectRef<T> argument must hold the parameter's type");
  static constexpr bool value = true;
};

template <typename Params, typename... Args>
constexpr void check_arguments() {
  static_assert(std::tuple_size_v<Params> == sizeof...(Args),
                "shoal: remote() got a different number of arguments than the function has "
                "parameters");
  if constexpr (std::tuple_size_v<Params> == sizeof...(Args)) {
    []<std::size_t... I>(std::index_sequence<I...>) {
      static_assert((CheckArgument<I, std::tuple_element_t<I, Params>, Args>::value && ...));
    }
    (std::index_sequence_for<Args...>{});
  }
}

// One argument into `spec`: a ref to resolve, or the value's bytes.
template <typename Param, typename Arg>
void add_argument(TaskArg& out, Contained& contained, Arg&& arg) {
  using P = std::decay_t<Param>;
  using A = std::remove_cvref_t<Arg>;
  check_serializable<P>();
  if constexpr (!arg_compatible<Param, Arg>() || !Serializable<P>) {
    // Reported by check_arguments / check_serializable; nothing more to say.
  } else if constexpr (IsObjectRef<A>::value && !IsObjectRef<P>::value) {
    if (!arg.valid())
      throw Error(Status::invalid_argument("remote(): an argument is an empty ObjectRef"));
    out.ref = arg.state();
  } else if constexpr (std::is_same_v<A, P>) {
    serialize_arg(arg, out, contained);
  } else {
    const P converted(std::forward<Arg>(arg));
    serialize_arg(converted, out, contained);
  }
}

template <typename Params, typename... Args>
std::vector<TaskArg> make_arguments(Contained& contained, Args&&... args) {
  std::vector<TaskArg> out(sizeof...(Args));
  if constexpr (std::tuple_size_v<Params> == sizeof...(Args)) {  // else check_arguments reported it
    [&]<std::size_t... I>(std::index_sequence<I...>) {
      (add_argument<std::tuple_element_t<I, Params>>(out[I], contained, std::forward<Args>(args)),
       ...);
    }
    (std::index_sequence_for<Args...>{});
  }
  return out;
}

template <typename R>
using ResultRef = ObjectRef<std::conditional_t<std::is_void_v<R>, void, std::decay_t<R>>>;

[[noreturn]] void throw_unregistered_function(const std::string& signature);

}  // namespace detail

// Built by shoal::task(f); F is the function pointer type.
template <typename F>
class TaskBuilder : public detail::PlacementSetters<TaskBuilder<F>> {
  using Traits = detail::FunctionTraits<F>;

 public:
  using Return = std::conditional_t<std::is_void_v<typename Traits::Return>, void,
                                    std::decay_t<typename Traits::Return>>;

  explicit TaskBuilder(std::string name) : name_(std::move(name)) {}

  // Runs of the task after the first that may happen (node lost; with
  // retry_exceptions, also when its code threw). Default 3; -1: no limit.
  TaskBuilder& max_retries(int n) {
    options_.max_retries = n;
    return *this;
  }
  TaskBuilder& retry_exceptions(bool retry = true) {
    options_.retry_exceptions = retry;
    return *this;
  }

  const std::string& name() const { return name_; }
  const TaskOptions& options() const { return options_; }

  // Submits one run of the task; see the top of this file.
  template <typename... Args>
  ObjectRef<Return> remote(Args&&... args) const {
    detail::check_arguments<typename Traits::Params, Args&&...>();
    detail::TaskSpec spec;
    spec.function = name_;
    spec.options = options_;
    spec.args = detail::make_arguments<typename Traits::Params>(spec.contained,
                                                                std::forward<Args>(args)...);
    return ObjectRef<Return>(detail::submit_task(std::move(spec)));
  }

 private:
  friend class detail::PlacementSetters<TaskBuilder>;
  std::string name_;
  TaskOptions options_;
};

// A task of a function registered with SHOAL_REMOTE. Throws shoal::Error
// (kNotFound) if it is not registered.
template <detail::FunctionPointer F>
TaskBuilder<F> task(F fn) {
  const std::string* name = detail::Registry::instance().function_name(detail::function_key(fn));
  if (name == nullptr) detail::throw_unregistered_function(detail::type_name<F>());
  return TaskBuilder<F>(*name);
}
template <typename R, typename... A>
TaskBuilder<R (*)(A...)> task(const RemoteFunction<R(A...)>& fn) {
  return TaskBuilder<R (*)(A...)>(fn.name);
}
template <typename F>
requires(!detail::FunctionPointer<std::decay_t<F>> &&
         !detail::IsRemoteFunction<std::decay_t<F>>::value) void task(F&&) {
  static_assert(detail::kAlwaysFalse<F>,
                "shoal::task() takes a function registered with SHOAL_REMOTE (not a lambda or a "
                "function object); pick an overload with SHOAL_OVERLOAD(f, ArgTypes...)");
}

// ---- Objects -----------------------------------------------------------------

template <typename T>
T get(const ObjectRef<T>& ref) {
  return ref.get();
}
template <typename T>
T get(const ObjectRef<T>& ref, std::chrono::nanoseconds timeout) {
  return ref.get(timeout);
}

namespace detail {
template <typename T>
auto get_all(const std::vector<ObjectRef<T>>& refs, Timeout timeout) {
  std::vector<const RefState*> states;
  states.reserve(refs.size());
  for (const auto& ref : refs) {
    if (!ref.valid()) throw Error(Status::invalid_argument("get() of an empty ObjectRef"));
    states.push_back(ref.state().get());
  }
  std::vector<ObjectValuePtr> values = get_values(states, timeout);
  if constexpr (std::is_void_v<T>) {
    for (const auto& value : values) throw_if_failed(*value);
  } else {
    std::vector<T> out;
    out.reserve(values.size());
    for (std::size_t i = 0; i < values.size(); ++i)
      out.push_back(value_as<T>(*values[i], refs[i].id()));
    return out;
  }
}
}  // namespace detail

// Every value, in order (void for ObjectRef<void>). Waits for all; throws the
// first failure in list order.
template <typename T>
auto get(const std::vector<ObjectRef<T>>& refs) {
  return detail::get_all(refs, std::nullopt);
}
// As above; throws shoal::GetTimeout when not all are ready within `timeout`.
template <typename T>
auto get(const std::vector<ObjectRef<T>>& refs, std::chrono::nanoseconds timeout) {
  return detail::get_all(refs, timeout);
}

// Stores a copy of `value` in the object store (serialized now).
template <typename T>
auto put(const T& value) {
  using V = std::conditional_t<std::is_array_v<T> || std::is_same_v<std::decay_t<T>, const char*>,
                               std::string, T>;
  if constexpr (std::is_same_v<V, T>) {
    return ObjectRef<V>(detail::put_value(detail::serialize_value(value)));
  } else {
    return ObjectRef<V>(detail::put_value(detail::serialize_value(V(value))));
  }
}

template <typename T>
struct WaitResult {
  std::vector<ObjectRef<T>> ready;      // at most num_ready, in the order given
  std::vector<ObjectRef<T>> not_ready;  // the rest, in the order given
};

// Waits until `num_ready` of `refs` are ready (a failed task counts as
// ready) or `timeout` passes, then splits them. Never throws for a timeout.
// Throws shoal::Error for num_ready of 0 or more than refs.size() (unless
// refs is empty), for duplicate or empty refs.
template <typename T>
WaitResult<T> wait(const std::vector<ObjectRef<T>>& refs, std::size_t num_ready = 1,
                   std::optional<std::chrono::nanoseconds> timeout = std::nullopt) {
  WaitResult<T> out;
  if (refs.empty()) return out;
  std::vector<const detail::RefState*> states;
  states.reserve(refs.size());
  for (const auto& ref : refs) {
    if (!ref.valid()) throw Error(Status::invalid_argument("wait() of an empty ObjectRef"));
    states.push_back(ref.state().get());
  }
  std::vector<bool> ready = detail::wait_values(states, num_ready, timeout);
  for (std::size_t i = 0; i < refs.size(); ++i) {
    if (ready[i] && out.ready.size() < num_ready) {
      out.ready.push_back(refs[i]);
    } else {
      out.not_ready.push_back(refs[i]);
    }
  }
  return out;
}

// Asks the task that makes `ref` to stop. A task that has not started never
// runs; a running one sees cancel_requested() return true (C++ code cannot be
// interrupted). Either way get() then throws TaskCancelled. Returns false when
// the task had already finished (or `ref` came from put()). `force` is
// reserved for killing the worker in the distributed runtime.
template <typename T>
bool cancel(const ObjectRef<T>& ref, bool force = false) {
  if (!ref.valid()) throw Error(Status::invalid_argument("cancel() of an empty ObjectRef"));
  return detail::cancel_task(*ref.state(), force);
}

// Inside a task: true once the task was cancelled or shoal is shutting down;
// long-running tasks should check it and return. False outside tasks.
bool cancel_requested();

// Inside a task or actor method: the ids of the GPUs its node reserved for
// it (a task that asked for 0.5 GPU gets the one device its half is on), so
// that two tasks never pick the same device; ascending. Empty outside tasks
// and for work that asked for no GPU. Like Ray's get_gpu_ids(); command
// jobs see the same ids in CUDA_VISIBLE_DEVICES.
std::vector<int> gpu_ids();

}  // namespace shoal
