// Serialization of task arguments, return values and put() objects: msgpack
// (msgpack-c, Debian's libmsgpack-cxx-dev).
//
// Supported (the shoal::Serializable concept):
//   - arithmetic types, bool, enums (as their underlying integer), std::byte,
//     std::string;
//   - std::vector, std::list, std::deque, std::array, std::set, std::multiset,
//     std::unordered_set, std::map, std::multimap, std::unordered_map,
//     std::optional, std::pair and std::tuple of supported types;
//   - shoal::ObjectRef<T> and shoal::ActorHandle<T>, also inside other values;
//   - user structs with MSGPACK_DEFINE(members...) (or MSGPACK_DEFINE_MAP) and
//     a default constructor (the members must be serializable too: the
//     concept cannot see them, msgpack-c reports a bad member). Reading an
//     array with fewer elements than members leaves the rest default (an
//     older writer); extra elements are ignored;
//   - a type with hand-written msgpack adaptors, once it says so:
//       template <> struct shoal::msgpack_adaptor_defined<MyType> : std::true_type {};
// Anything else (pointers, std::string_view, std::variant, classes without
// MSGPACK_DEFINE) fails to compile with a static_assert that starts with
// "shoal: this type cannot be serialized"; the type is named in the
// instantiation of shoal::detail::NotSerializable<T> the compiler prints with it.
//
// Reading bytes is safe for bytes from anywhere: deserialize() first checks
// that the bytes are exactly one well-formed msgpack value within the limits
// (size, nesting depth, elements per container, and no container that claims
// more elements than there are bytes left), so truncated, malformed or
// hostile input gets a Status naming what was wrong and never allocates more
// than a small multiple of its size. A value that is well-formed but of the
// wrong shape for T (a string where an int was expected, an int out of range)
// is an error too.
//
// Threading: all functions are reentrant; any thread may call them.
#pragma once

#include <msgpack.hpp>

#include <array>
#include <cstddef>
#include <deque>
#include <list>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <tuple>
#include <type_traits>
#include <typeinfo>
#include <unordered_map>
#include <unordered_set>
#include <utility>
#include <vector>

#include "shoal/detail/copy.h"
#include "shoal/errors.h"
#include "shoal/status.h"

namespace shoal {

template <typename T>
class ObjectRef;
template <typename T>
class ActorHandle;

// Specialize to std::true_type for a type you wrote msgpack adaptors for
// (msgpack::adaptor::pack/convert/object_with_zone), so shoal accepts it.
template <typename T>
struct msgpack_adaptor_defined : std::false_type {};

// Limits on bytes being read. The defaults suit values made by shoal itself;
// the distributed runtime applies its (smaller) message limits first.
struct DeserializeLimits {
  static constexpr std::size_t kBytesMax = std::size_t{1} << 31;  // 2 GiB
  static constexpr std::size_t kDepthMax = 64;
  static constexpr std::size_t kContainerElementsMax = std::size_t{1} << 26;

  std::size_t bytes_max = kBytesMax;                           // size of the whole value
  std::size_t depth_max = kDepthMax;                           // arrays/maps inside arrays/maps
  std::size_t container_elements_max = kContainerElementsMax;  // per array/map
};

namespace detail {

// A msgpack output stream that appends to a std::string.
struct StringWriter {
  std::string* out;
  void write(const char* data, std::size_t size) {
    if (size < (std::size_t{1} << 20)) {
      out->append(data, size);
      return;
    }
    // A large string or binary body (see detail/copy.h); pack_into reserved
    // the room, so nothing written moves.
    append_bytes(*out, data, size);
  }
};

template <typename T>
concept HasMsgpackMembers = std::is_class_v<T> &&
    requires(const T& c, T& m, msgpack::packer<StringWriter>& p, const msgpack::object& o) {
  c.msgpack_pack(p);
  m.msgpack_unpack(o);
};

// CulpritOf<T>::type is NoCulprit when T is serializable, else the first
// type inside T that is not (so the error names vector<Foo*>'s Foo*).
struct NoCulprit {};

template <typename T>
struct CulpritOf;

template <typename... Ts>
struct FirstCulprit {
  using type = NoCulprit;
};
template <typename T, typename... Ts>
struct FirstCulprit<T, Ts...> {
  using type =
      std::conditional_t<std::is_same_v<typename CulpritOf<std::remove_cv_t<T>>::type, NoCulprit>,
                         typename FirstCulprit<Ts...>::type,
                         typename CulpritOf<std::remove_cv_t<T>>::type>;
};

template <typename T>
consteval auto leaf_culprit() {
  if constexpr (msgpack_adaptor_defined<T>::value) {
    return std::type_identity<NoCulprit>{};
  } else if constexpr (std::is_arithmetic_v<T> || std::is_enum_v<T>) {
    return std::type_identity<NoCulprit>{};
  } else if constexpr (std::is_same_v<T, std::string>) {
    return std::type_identity<NoCulprit>{};
  } else if constexpr (HasMsgpackMembers<T> && std::is_default_constructible_v<T>) {
    return std::type_identity<NoCulprit>{};
  } else {
    return std::type_identity<T>{};
  }
}

template <typename T>
struct CulpritOf {
  using type = typename decltype(leaf_culprit<T>())::type;
};
template <typename T, typename A>
struct CulpritOf<std::vector<T, A>> : FirstCulprit<T> {};
template <typename T, typename A>
struct CulpritOf<std::list<T, A>> : FirstCulprit<T> {};
template <typename T, typename A>
struct CulpritOf<std::deque<T, A>> : FirstCulprit<T> {};
template <typename T, std::size_t N>
struct CulpritOf<std::array<T, N>> : FirstCulprit<T> {};
template <typename K, typename C, typename A>
struct CulpritOf<std::set<K, C, A>> : FirstCulprit<K> {};
template <typename K, typename C, typename A>
struct CulpritOf<std::multiset<K, C, A>> : FirstCulprit<K> {};
template <typename K, typename H, typename E, typename A>
struct CulpritOf<std::unordered_set<K, H, E, A>> : FirstCulprit<K> {};
template <typename K, typename V, typename C, typename A>
struct CulpritOf<std::map<K, V, C, A>> : FirstCulprit<K, V> {};
template <typename K, typename V, typename C, typename A>
struct CulpritOf<std::multimap<K, V, C, A>> : FirstCulprit<K, V> {};
template <typename K, typename V, typename H, typename E, typename A>
struct CulpritOf<std::unordered_map<K, V, H, E, A>> : FirstCulprit<K, V> {};
template <typename T>
struct CulpritOf<std::optional<T>> : FirstCulprit<T> {};
template <typename A, typename B>
struct CulpritOf<std::pair<A, B>> : FirstCulprit<A, B> {};
template <typename... Ts>
struct CulpritOf<std::tuple<Ts...>> : FirstCulprit<Ts...> {};
template <>
struct CulpritOf<std::byte> : FirstCulprit<> {};
template <typename T>
struct CulpritOf<ObjectRef<T>> : FirstCulprit<> {};
template <typename T>
struct CulpritOf<ActorHandle<T>> : FirstCulprit<> {};

template <typename T>
inline constexpr bool kAlwaysFalse = false;

// Instantiated only for a type that cannot be serialized, so that the
// compiler's "required from" note names the type.
template <typename Culprit>
struct NotSerializable {
  static_assert(kAlwaysFalse<Culprit>,
                "shoal: this type cannot be serialized (it is the template argument of "
                "shoal::detail::NotSerializable<...> in this error). Supported: arithmetic types, "
                "enums, std::byte, std::string, std containers, std::optional, std::pair and "
                "std::tuple of supported types, shoal::ObjectRef, shoal::ActorHandle, and "
                "default-constructible structs with MSGPACK_DEFINE(members...). A type with "
                "hand-written msgpack adaptors needs shoal::msgpack_adaptor_defined<T> : "
                "std::true_type.");
  static constexpr bool value = false;
};

}  // namespace detail

// True for the types listed at the top of this file.
template <typename T>
concept Serializable =
    std::is_same_v<typename detail::CulpritOf<std::remove_cv_t<T>>::type, detail::NoCulprit>;

namespace detail {

// Fails to compile, naming the culprit, when T is not Serializable.
template <typename T>
constexpr void check_serializable() {
  if constexpr (!Serializable<T>) {
    (void)NotSerializable<typename CulpritOf<std::remove_cv_t<T>>::type>{};
  }
}

template <typename T>
std::string type_name() {
  return demangle(typeid(T).name());
}

// Checks that `bytes` hold exactly one well-formed msgpack value within
// `limits`, without allocating.
Status validate_msgpack(std::string_view bytes, const DeserializeLimits& limits);
msgpack::unpack_limit unpack_limit_for(std::size_t size, const DeserializeLimits& limits);
inline bool reference_all(msgpack::type::object_type, std::size_t, void*) { return true; }
// Call inside a catch block: a Status for the exception msgpack (or a
// type's msgpack_unpack) threw while reading a `type_name`.
Status deserialize_error(const std::string& type_name);

// While alive, refs and actor handles packed on this thread are not noted
// as contained in the value (api.cc; a sizing pass packs them twice).
class ContainedNotesPaused {
 public:
  ContainedNotesPaused();
  ~ContainedNotesPaused();
  ContainedNotesPaused(const ContainedNotesPaused&) = delete;
  ContainedNotesPaused& operator=(const ContainedNotesPaused&) = delete;

 private:
  void* saved_;
};

// Counts the bytes a value packs to, writing nothing.
struct CountingWriter {
  std::size_t* bytes;
  void write(const char*, std::size_t size) { *bytes += size; }
};

template <typename T>
void pack_into(std::string& out, const T& value) {
  // Two passes: the size first, so that a large value is written once into
  // memory of the right size (growing the string would copy it again and
  // again). The first pass's notes of refs inside are discarded.
  std::size_t size = 0;
  {
    ContainedNotesPaused paused;
    CountingWriter counter{&size};
    msgpack::packer<CountingWriter> sizer(counter);
    sizer.pack(value);
  }
  out.reserve(out.size() + size);
  StringWriter writer{&out};
  msgpack::packer<StringWriter> packer(writer);
  packer.pack(value);
}

}  // namespace detail

// msgpack bytes of `value`. ObjectRefs and ActorHandles inside are written as
// ids; see object_ref.h for how the runtime keeps what they name alive.
// Throws what a user type's msgpack_pack throws (nothing, for std types).
template <typename T>
std::string serialize(const T& value) {
  detail::check_serializable<T>();
  std::string out;
  if constexpr (Serializable<T>) detail::pack_into(out, value);  // else: only the message above
  return out;
}

// Reads a T from msgpack bytes into `out`. On error `out` may be partly
// written; the Status names the problem (kInvalidArgument, or
// kResourceExhausted for a limit).
template <typename T>
Status deserialize_into(std::string_view bytes, T& out, const DeserializeLimits& limits = {}) {
  detail::check_serializable<T>();
  if constexpr (!Serializable<T>) {
    return Status::internal("not serializable");  // unreachable: the message above stops the build
  } else {
    SHOAL_RETURN_IF_ERROR(detail::validate_msgpack(bytes, limits));
    try {
      std::size_t offset = 0;
      // Strings, binaries and extensions are referenced in `bytes` (which
      // outlive the handle), not copied into msgpack's zone first.
      msgpack::object_handle handle =
          msgpack::unpack(bytes.data(), bytes.size(), offset, &detail::reference_all, nullptr,
                          detail::unpack_limit_for(bytes.size(), limits));
      handle.get().convert(out);
      return Status();
    } catch (...) {
      return detail::deserialize_error(detail::type_name<T>());
    }
  }
}

template <typename T>
Result<T> deserialize(std::string_view bytes, const DeserializeLimits& limits = {}) {
  T value{};
  Status status = deserialize_into(bytes, value, limits);
  if (!status.ok()) return status;
  return value;
}

}  // namespace shoal

// Enums travel as their underlying integer (the same bytes MSGPACK_ADD_ENUM
// writes; an enum with MSGPACK_ADD_ENUM keeps using its own adaptor).
namespace msgpack {
MSGPACK_API_VERSION_NAMESPACE(MSGPACK_DEFAULT_API_NS) {
  namespace adaptor {

  template <typename E>
  struct convert<E, typename std::enable_if<std::is_enum<E>::value>::type> {
    msgpack::object const& operator()(msgpack::object const& o, E& v) const {
      typename std::underlying_type<E>::type raw;
      o.convert(raw);
      v = static_cast<E>(raw);
      return o;
    }
  };

  template <typename E>
  struct pack<E, typename std::enable_if<std::is_enum<E>::value>::type> {
    template <typename Stream>
    msgpack::packer<Stream>& operator()(msgpack::packer<Stream>& o, const E& v) const {
      o.pack(static_cast<typename std::underlying_type<E>::type>(v));
      return o;
    }
  };

  template <typename E>
  struct object_with_zone<E, typename std::enable_if<std::is_enum<E>::value>::type> {
    void operator()(msgpack::object::with_zone& o, const E& v) const {
      o << static_cast<typename std::underlying_type<E>::type>(v);
    }
  };

  }  // namespace adaptor
}  // MSGPACK_API_VERSION_NAMESPACE(MSGPACK_DEFAULT_API_NS)
}  // namespace msgpack
