// Registering remote functions and actor classes.
//
// At namespace scope, in one .cc file of the program:
//
//   int add(int a, int b) { return a + b; }
//   double scale(double x, double k);
//   int scale(int x, int k);                   // an overload
//   struct Counter {
//     explicit Counter(int start);
//     int incr(int by);
//     int get() const;
//   };
//
//   SHOAL_REMOTE(add, SHOAL_OVERLOAD(scale, int, int));
//   SHOAL_ACTOR(Counter, &Counter::incr, &Counter::get);
//
// Every registered function has a stable name, which is what crosses the
// wire: the text written in the macro ("add"; "Counter::incr"; an overload
// picked with SHOAL_OVERLOAD(f, Args...) is "f(Args...)", here
// "scale(int, int)"). The same source gives the same names in every binary,
// so write names the same way everywhere (qualify them, "ns::f", when two
// namespaces have an f). Two different functions under one name are reported
// by shoal::init() as an error naming both spellings.
//
// Calling: shoal::task(add), shoal::task(SHOAL_OVERLOAD(scale, int, int)) (or
// shoal::overload<int, int>(scale), or static_cast<int (*)(int, int)>(scale)),
// handle.task(&Counter::incr). A function or method that was not registered
// is an error at that call (shoal::Error, kNotFound).
//
// Actor constructors need no registration: shoal::actor<Counter>(5) registers
// the constructor it uses (by its argument types) when the program starts.
//
// Parameter and return types must be Serializable (serialize.h); parameters
// may be references (const or not: the function gets a reference to its own
// copy). Registration happens during static initialization and is
// thread-safe; lookups may come from any thread.
#pragma once

#include <cstdint>
#include <cstring>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <shared_mutex>
#include <span>
#include <string>
#include <string_view>
#include <tuple>
#include <typeindex>
#include <typeinfo>
#include <unordered_map>
#include <utility>
#include <vector>

#include "shoal/detail/core.h"
#include "shoal/detail/function_traits.h"
#include "shoal/object_ref.h"

namespace shoal {

// Picks one overload of a function or member function by its parameter
// types: shoal::overload<int, int>(scale), shoal::overload<>(&Counter::get).
template <typename... A>
struct OverloadPicker {
  template <typename R>
  constexpr auto operator()(R (*f)(A...)) const {
    return f;
  }
  template <typename R, typename C>
  constexpr auto operator()(R (C::*m)(A...)) const {
    return m;
  }
  template <typename R, typename C>
  constexpr auto operator()(R (C::*m)(A...) const) const {
    return m;
  }
};
template <typename... A>
inline constexpr OverloadPicker<A...> overload{};

namespace detail {

// What running a function, method or constructor produced.
struct InvokeResult {
  SerializedValue value;           // the return value (msgpack nil for void)
  std::optional<ErrorInfo> error;  // set instead when it failed
};

using ArgBytes = std::span<const std::string_view>;
// self: the actor object for methods, nullptr for functions.
using Invoker = std::function<InvokeResult(void* self, ArgBytes args)>;

// An actor object of any class.
class ActorInstance {
 public:
  virtual ~ActorInstance() = default;
  virtual void* object() = 0;
};
template <typename T>
class ActorInstanceOf final : public ActorInstance {
 public:
  template <typename... A>
  explicit ActorInstanceOf(std::in_place_t, A&&... args) : value_(std::forward<A>(args)...) {}
  void* object() override { return &value_; }

 private:
  T value_;
};
using Constructor = std::function<InvokeResult(ArgBytes args, std::unique_ptr<ActorInstance>* out)>;

// name -> invoker for functions; class -> constructors and methods.
class Registry {
 public:
  static Registry& instance();

  void add_function(std::string name, std::uintptr_t key, Invoker invoker);
  void add_actor_class(std::string name, std::type_index type);
  void add_method(std::type_index type, std::string name, std::string key, Invoker invoker);
  void add_constructor(std::type_index type, std::string key, Constructor constructor);

  // Lookups return nullptr for unknown names; returned pointers stay valid
  // for the life of the process.
  const std::string* function_name(std::uintptr_t key) const;
  const Invoker* function(std::string_view name) const;
  const std::string* class_name(std::type_index type) const;
  const std::string* method_name(std::type_index type, std::string_view key) const;
  const Invoker* method(std::string_view class_name, std::string_view method_name) const;
  const Constructor* constructor(std::string_view class_name, std::string_view key) const;

  // Every registered function and "Class::method" name, sorted: what a node
  // advertises it can run.
  std::vector<std::string> names() const;
  // Not ok when two functions share a name (or a registration was malformed).
  Status status() const;

 private:
  struct ClassEntry {
    std::string name;  // empty until SHOAL_ACTOR ran
    std::map<std::string, Invoker, std::less<>> methods;
    std::map<std::string, std::string, std::less<>> method_names_by_key;
    std::map<std::string, Constructor, std::less<>> constructors;
  };
  const ClassEntry* class_by_name(std::string_view name) const;  // lock held

  mutable std::shared_mutex mutex_;
  std::map<std::string, std::pair<std::uintptr_t, Invoker>, std::less<>> functions_;  // guarded
  std::unordered_map<std::uintptr_t, std::string> function_names_;                    // guarded
  std::unordered_map<std::type_index, ClassEntry> classes_;                           // guarded
  std::map<std::string, std::type_index, std::less<>> class_types_;                   // guarded
  std::vector<std::string> errors_;                                                   // guarded
};

// "add, SHOAL_OVERLOAD(scale, int), &Counter::incr" ->
// {"add", "scale(int)", "Counter::incr"}: splits the macro's text at
// top-level commas and normalizes each name.
std::vector<std::string> parse_registration_names(std::string_view text);
void note_registration_error(std::string message);

template <typename F>
std::uintptr_t function_key(F fn) {
  return reinterpret_cast<std::uintptr_t>(fn);
}
template <typename M>
std::string method_key(M method) {
  std::string key(sizeof(M), '\0');
  std::memcpy(key.data(), &method, sizeof(M));
  key += typeid(M).name();
  return key;
}

template <typename Params>
struct DecayedTupleOf;
template <typename... P>
struct DecayedTupleOf<std::tuple<P...>> {
  using type = std::tuple<std::decay_t<P>...>;
};

// Compile-time checks of a registered signature.
template <typename Params>
struct CheckParams;
template <typename... P>
struct CheckParams<std::tuple<P...>> {
  static constexpr bool check() {
    (check_serializable<std::decay_t<P>>(), ...);
    return true;
  }
};
template <typename Traits>
constexpr void check_signature() {
  static_assert(CheckParams<typename Traits::Params>::check());
  if constexpr (!std::is_void_v<typename Traits::Return>) {
    check_serializable<std::decay_t<typename Traits::Return>>();
  }
}

ErrorInfo argument_count_error(const std::string& name, std::size_t expected, std::size_t got);
ErrorInfo argument_error(const std::string& name, std::size_t index, const std::string& type,
                         const Status& status);

template <typename V>
bool read_argument(const std::string& name, std::size_t index, std::string_view bytes, V& value,
                   InvokeResult& result) {
  Status status = deserialize_into(bytes, value);
  if (status.ok()) return true;
  result.error = argument_error(name, index, type_name<V>(), status);
  return false;
}

// Reads each argument as its parameter's decayed type, calls `call` with
// them (moved where the parameter takes a value or an rvalue reference), and
// serializes what it returns. Exceptions from the call become the error.
template <typename Params, typename Call>
InvokeResult invoke_with_args(const std::string& name, ArgBytes args, Call&& call) {
  constexpr std::size_t kArity = std::tuple_size_v<Params>;
  InvokeResult result;
  if (args.size() != kArity) {
    result.error = argument_count_error(name, kArity, args.size());
    return result;
  }
  typename DecayedTupleOf<Params>::type values;
  bool read = [&]<std::size_t... I>(std::index_sequence<I...>) {
    return (read_argument(name, I, args[I], std::get<I>(values), result) && ...);
  }
  (std::make_index_sequence<kArity>{});
  if (!read) return result;
  try {
    [&]<std::size_t... I>(std::index_sequence<I...>) {
      using R =
          decltype(call(static_cast<std::tuple_element_t<I, Params>&&>(std::get<I>(values))...));
      if constexpr (std::is_void_v<R>) {
        call(static_cast<std::tuple_element_t<I, Params>&&>(std::get<I>(values))...);
        result.value.bytes.assign(1, static_cast<char>(0xc0));  // msgpack nil
      } else {
        result.value = serialize_value(
            call(static_cast<std::tuple_element_t<I, Params>&&>(std::get<I>(values))...));
      }
    }
    (std::make_index_sequence<kArity>{});
  } catch (...) {
    result.error = error_from_current_exception();
  }
  return result;
}

template <FunctionPointer F>
void register_function(std::string name, F fn) {
  using Traits = FunctionTraits<F>;
  check_signature<Traits>();
  std::uintptr_t key = function_key(fn);
  Invoker invoker = [fn, display = name](void*, ArgBytes args) {
    return invoke_with_args<typename Traits::Params>(
        display, args,
        [fn](auto&&... a) -> decltype(auto) { return fn(std::forward<decltype(a)>(a)...); });
  };
  Registry::instance().add_function(std::move(name), key, std::move(invoker));
}

template <typename F>
void register_function(std::string, F) {
  static_assert(kAlwaysFalse<F>,
                "shoal: SHOAL_REMOTE takes free functions (or static member functions); pick an "
                "overload with SHOAL_OVERLOAD(f, ArgTypes...), register classes with SHOAL_ACTOR");
}

template <typename... Fs>
bool register_functions(const char* names_text, Fs... fns) {
  std::vector<std::string> names = parse_registration_names(names_text);
  if (names.size() != sizeof...(Fs)) {
    note_registration_error(std::string("SHOAL_REMOTE(") + names_text +
                            "): could not split the names");
    return false;
  }
  std::size_t i = 0;
  (register_function(std::move(names[i++]), fns), ...);
  return true;
}

template <typename T, MethodPointer M>
void register_method(std::string name, M method) {
  using Traits = FunctionTraits<M>;
  static_assert(std::is_base_of_v<typename Traits::Class, T>,
                "shoal: SHOAL_ACTOR(Class, &Class::method...) lists a method of another class");
  check_signature<Traits>();
  Invoker invoker = [method, display = name](void* self, ArgBytes args) {
    return invoke_with_args<typename Traits::Params>(
        display, args, [&](auto&&... a) -> decltype(auto) {
          return (static_cast<T*>(self)->*method)(std::forward<decltype(a)>(a)...);
        });
  };
  Registry::instance().add_method(typeid(T), std::move(name), method_key(method),
                                  std::move(invoker));
}

template <typename T, typename M>
void register_method(std::string, M) {
  static_assert(kAlwaysFalse<M>,
                "shoal: SHOAL_ACTOR(Class, ...) takes member function pointers (&Class::method); "
                "pick an overload with SHOAL_OVERLOAD(Class::method, ArgTypes...)");
}

template <typename T, typename... Ms>
bool register_actor(const char* class_name, const char* names_text, Ms... methods) {
  static_assert(std::is_class_v<T>, "shoal: SHOAL_ACTOR's first argument must be a class");
  Registry::instance().add_actor_class(class_name, typeid(T));
  std::vector<std::string> names = parse_registration_names(names_text);
  if (names.size() != sizeof...(Ms)) {
    note_registration_error(std::string("SHOAL_ACTOR(") + class_name + ", " + names_text +
                            "): could not split the names");
    return false;
  }
  std::size_t i = 0;
  (register_method<T>(std::move(names[i++]), methods), ...);
  return true;
}

// The constructor of T taking (A...) (decayed, as sent); registered at
// static initialization by every program that calls shoal::actor<T>(A...).
template <typename T, typename... A>
struct ConstructorRegistration {
  static std::string key() { return typeid(std::tuple<A...>).name(); }
  static bool add() {
    Constructor constructor = [display = "constructor of " + type_name<T>()](
                                  ArgBytes args, std::unique_ptr<ActorInstance>* out) {
      return invoke_with_args<std::tuple<A...>>(display, args, [out](auto&&... a) {
        *out = std::make_unique<ActorInstanceOf<T>>(std::in_place, std::forward<decltype(a)>(a)...);
      });
    };
    Registry::instance().add_constructor(typeid(T), key(), std::move(constructor));
    return true;
  }
  static inline const bool registered = add();
};

}  // namespace detail
}  // namespace shoal

#define SHOAL_PP_CAT_IMPL(a, b) a##b
#define SHOAL_PP_CAT(a, b) SHOAL_PP_CAT_IMPL(a, b)

// Registers free functions (and overloads picked with SHOAL_OVERLOAD).
#define SHOAL_REMOTE(...)                                                                  \
  [[maybe_unused]] static const bool SHOAL_PP_CAT(shoal_remote_registered_, __COUNTER__) = \
      ::shoal::detail::register_functions(#__VA_ARGS__, __VA_ARGS__)

// Registers an actor class and the methods that may be called remotely.
#define SHOAL_ACTOR(Class, ...)                                                           \
  [[maybe_unused]] static const bool SHOAL_PP_CAT(shoal_actor_registered_, __COUNTER__) = \
      ::shoal::detail::register_actor<Class>(#Class, #__VA_ARGS__ __VA_OPT__(, ) __VA_ARGS__)

// One overload of `f` (a function, or Class::method — without '&'), by its
// parameter types. Inside SHOAL_REMOTE/SHOAL_ACTOR it names the function
// "f(Types...)".
#define SHOAL_OVERLOAD(f, ...) (::shoal::overload<__VA_ARGS__>(&f))
