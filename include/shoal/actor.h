// Actors: an object that lives on one node and runs its methods there, one
// call at a time (or on max_concurrency threads).
//
//   struct Counter {
//     explicit Counter(int start) : n(start) {}
//     int incr(int by) { return n += by; }
//     int n;
//   };
//   SHOAL_ACTOR(Counter, &Counter::incr);                       // registry.h
//
//   shoal::ActorHandle<Counter> c = shoal::actor<Counter>(10).name("hits").remote();
//   shoal::ObjectRef<int> r = c.task(&Counter::incr).remote(5);  // 15
//   auto same = shoal::get_actor<Counter>("hits");
//   shoal::kill(c);
//
// Ordering: calls made through handles in one process run in the order they
// were submitted (a call whose ObjectRef arguments are not ready yet holds
// back the calls behind it). With max_concurrency(n > 1) up to n calls run at
// once, in no particular order.
//
// Lifetime: remote() returns at once; the constructor runs on the actor's own
// thread. If it throws, the actor is dead and every call fails with ActorDied
// carrying the constructor's error. A non-detached actor is stopped (after
// the calls already submitted) when the last ActorHandle to it is gone; a
// detached one lives until kill() or shutdown. kill() stops it now: queued
// calls fail with ActorDied, a running call finishes first. kill(h, false)
// restarts it (constructor run again) while max_restarts allows.
//
// ActorHandles are values: copy them, pass them to tasks and other actors,
// store them inside serialized values (msgpack ext type 18: the 16-byte
// ActorId, the class name's length and bytes, the owner's address).
//
// Threading: any thread may use handles and builders. Methods of one actor
// run on its thread(s) only, never on the caller's. A method that calls get()
// on a later call of its own actor waits forever (the call cannot start until
// the method returns), as in Ray.
#pragma once

#include <cstring>
#include <string>
#include <string_view>
#include <type_traits>
#include <typeinfo>
#include <utility>
#include <vector>

#include "shoal/detail/core.h"
#include "shoal/detail/function_traits.h"
#include "shoal/errors.h"
#include "shoal/object_ref.h"
#include "shoal/options.h"
#include "shoal/registry.h"
#include "shoal/task.h"

namespace shoal {

template <typename T, typename M>
class ActorTaskBuilder;

namespace detail {

template <typename Packer>
void pack_actor_handle(Packer& packer, const ActorPtr& state) {
  if (!state) {
    packer.pack_nil();
    return;
  }
  note_contained(state);
  char id[ActorId::kSizeBytes];
  state->id.to_bytes(id);
  const std::string& class_name = state->class_name;
  const std::string& owner = state->owner_address;
  const char class_size = static_cast<char>(class_name.size());  // <= kClassNameBytesMax
  packer.pack_ext(static_cast<uint32_t>(sizeof id + 1 + class_name.size() + owner.size()),
                  kActorHandleExtType);
  packer.pack_ext_body(id, sizeof id);
  packer.pack_ext_body(&class_size, 1);
  packer.pack_ext_body(class_name.data(), class_name.size());
  packer.pack_ext_body(owner.data(), owner.size());
}
// Reads a handle; throws when the class is not `expected_class` (the name T
// is registered under, or nullptr when T is not registered).
ActorPtr unpack_actor_handle(const msgpack::object& object, const std::string* expected_class,
                             const char* type_name);

[[noreturn]] void throw_unregistered_class(const std::string& type);
[[noreturn]] void throw_unregistered_method(const std::string& class_name,
                                            const std::string& method_type);
[[noreturn]] void throw_wrong_actor_class(std::string_view name, const std::string& actual,
                                          const std::string& wanted);

template <typename T>
const std::string& registered_class_name() {
  const std::string* name = Registry::instance().class_name(typeid(T));
  if (name == nullptr) throw_unregistered_class(type_name<T>());
  return *name;
}

// What a constructor argument is sent as: an ObjectRef<U> as the U it holds,
// a string literal as std::string, anything else decayed.
template <typename A>
struct ConstructorParam {
  using D = std::decay_t<A>;
  using type = std::conditional_t<std::is_same_v<D, const char*> || std::is_same_v<D, char*>,
                                  std::string, D>;
};
template <typename U>
struct ConstructorParam<ObjectRef<U>> {
  static_assert(!std::is_void_v<U>,
                "shoal::actor<T>(...): an ObjectRef<void> cannot be an argument");
  using type = U;
};
template <typename A>
using ConstructorParamT = typename ConstructorParam<std::remove_cvref_t<A>>::type;

}  // namespace detail

template <typename T>
class ActorHandle {
 public:
  ActorHandle() = default;
  explicit ActorHandle(detail::ActorPtr state) : state_(std::move(state)) {}

  bool valid() const { return state_ != nullptr; }
  ActorId id() const { return state_ ? state_->id : ActorId{}; }
  const detail::ActorPtr& state() const { return state_; }

  // A call of `method` (registered with SHOAL_ACTOR); .remote(args...) sends it.
  template <typename M>
  ActorTaskBuilder<T, M> task(M method) const {
    static_assert(detail::MethodPointer<M>,
                  "ActorHandle::task() takes a member function pointer (&Class::method)");
    if (!state_) throw Error(Status::invalid_argument("task() on an empty ActorHandle"));
    const std::string* name =
        detail::Registry::instance().method_name(typeid(T), detail::method_key(method));
    if (name == nullptr)
      detail::throw_unregistered_method(state_->class_name, detail::type_name<M>());
    return ActorTaskBuilder<T, M>(state_, *name);
  }

  template <typename Packer>
  void msgpack_pack(Packer& packer) const {
    detail::pack_actor_handle(packer, state_);
  }
  void msgpack_unpack(const msgpack::object& object) {
    state_ = detail::unpack_actor_handle(object, detail::Registry::instance().class_name(typeid(T)),
                                         typeid(T).name());
  }

  friend bool operator==(const ActorHandle& a, const ActorHandle& b) { return a.id() == b.id(); }

 private:
  detail::ActorPtr state_;
};

// Built by handle.task(&T::method).
template <typename T, typename M>
class ActorTaskBuilder {
  using Traits = detail::FunctionTraits<M>;
  static_assert(
      std::is_base_of_v<typename Traits::Class, T>,
      "shoal: handle.task(&Class::method): the method is not a member of the actor's class");

 public:
  using Return = std::conditional_t<std::is_void_v<typename Traits::Return>, void,
                                    std::decay_t<typename Traits::Return>>;

  ActorTaskBuilder(detail::ActorPtr actor, std::string method)
      : actor_(std::move(actor)), method_(std::move(method)) {}

  const std::string& name() const { return method_; }

  template <typename... Args>
  ObjectRef<Return> remote(Args&&... args) const {
    detail::check_arguments<typename Traits::Params, Args&&...>();
    detail::TaskSpec spec;
    spec.function = method_;
    spec.options.max_retries = 0;
    spec.args = detail::make_arguments<typename Traits::Params>(spec.contained,
                                                                std::forward<Args>(args)...);
    return ObjectRef<Return>(detail::submit_actor_task(*actor_, std::move(spec)));
  }

 private:
  detail::ActorPtr actor_;
  std::string method_;
};

// Built by shoal::actor<T>(args...).
template <typename T>
class ActorBuilder : public detail::PlacementSetters<ActorBuilder<T>> {
 public:
  ActorBuilder(std::string class_name, std::string constructor, std::vector<detail::TaskArg> args,
               detail::Contained contained)
      : class_name_(std::move(class_name)),
        constructor_(std::move(constructor)),
        args_(std::move(args)),
        contained_(std::move(contained)) {}

  // get_actor<T>(name, name_space) finds it; a name taken in that namespace
  // makes remote() throw (kAlreadyExists). Empty namespace: init()'s.
  ActorBuilder& name(std::string name, std::string name_space = {}) {
    options_.name = std::move(name);
    options_.name_space = std::move(name_space);
    return *this;
  }
  ActorBuilder& detached(bool detached = true) {
    options_.detached = detached;
    return *this;
  }
  ActorBuilder& max_restarts(int n) {
    options_.max_restarts = n;
    return *this;
  }
  ActorBuilder& max_task_retries(int n) {
    options_.max_task_retries = n;
    return *this;
  }
  ActorBuilder& max_concurrency(int n) {
    options_.max_concurrency = n;
    return *this;
  }
  const ActorOptions& options() const { return options_; }

  // Creates the actor (each call creates another one).
  ActorHandle<T> remote() const {
    detail::ActorSpec spec;
    spec.class_name = class_name_;
    spec.constructor = constructor_;
    spec.args = args_;
    spec.contained = contained_;
    spec.options = options_;
    return ActorHandle<T>(detail::create_actor(std::move(spec)));
  }

 private:
  friend class detail::PlacementSetters<ActorBuilder>;
  std::string class_name_;
  std::string constructor_;
  std::vector<detail::TaskArg> args_;
  detail::Contained contained_;
  ActorOptions options_;
};

// An actor of class T (registered with SHOAL_ACTOR) constructed from `args`
// (ObjectRef arguments are resolved first). Throws shoal::Error (kNotFound)
// if T is not registered.
template <typename T, typename... A>
ActorBuilder<T> actor(A&&... args) {
  static_assert(std::is_constructible_v<T, detail::ConstructorParamT<A>&&...>,
                "shoal::actor<T>(args...): T has no constructor taking these arguments (an "
                "ObjectRef<U> argument is passed as U, a string literal as std::string)");
  using Registration = detail::ConstructorRegistration<T, detail::ConstructorParamT<A>...>;
  (void)Registration::registered;  // instantiates the registration in this program
  const std::string& class_name = detail::registered_class_name<T>();
  detail::Contained contained;
  std::vector<detail::TaskArg> targs =
      detail::make_arguments<std::tuple<detail::ConstructorParamT<A>...>>(contained,
                                                                          std::forward<A>(args)...);
  return ActorBuilder<T>(class_name, Registration::key(), std::move(targs), std::move(contained));
}

// The live actor named `name` in `name_space` (empty: init()'s namespace).
// Throws shoal::Error: kNotFound when there is none, kInvalidArgument when
// it is not a T.
template <typename T>
ActorHandle<T> get_actor(std::string_view name, std::string_view name_space = {}) {
  const std::string& class_name = detail::registered_class_name<T>();
  detail::ActorPtr state = detail::lookup_actor(name, name_space);
  if (state->class_name != class_name)
    detail::throw_wrong_actor_class(name, state->class_name, class_name);
  return ActorHandle<T>(std::move(state));
}

// Stops the actor; see the top of this file. Throws shoal::Error for an
// empty handle or when shoal is not initialized.
template <typename T>
void kill(const ActorHandle<T>& actor, bool no_restart = true) {
  if (!actor.valid()) throw Error(Status::invalid_argument("kill() of an empty ActorHandle"));
  detail::kill_actor(*actor.state(), no_restart);
}

}  // namespace shoal
