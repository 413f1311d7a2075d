// shoal::ObjectRef<T>: a reference to a value that exists, or will exist,
// somewhere in the cluster — a task's return value or a put().
//
//   shoal::ObjectRef<int> r = shoal::task(add).remote(1, 2);
//   int three = r.get();                        // blocks; or shoal::get(r)
//   shoal::task(add).remote(r, 4);              // passed as the int it holds
//
// Copies are cheap (one shared_ptr) and name the same object. The object
// lives while any ObjectRef to it exists anywhere it was passed — in this
// process, inside another object, or in an argument of a pending task — and
// is freed after the last one goes.
//
// On the wire (inside msgpack values) a ref is the ext type 17 holding the
// 16-byte ObjectId followed by the owner's address: the process that tracks
// the object and can say where its value is. A default-constructed (empty)
// ObjectRef is msgpack nil. Refs inside task arguments, results and put()
// values keep their objects alive with that value; bytes you make yourself
// with shoal::serialize() do not (read back after the last ref is gone, the
// ref's get() fails with kNotFound).
//
// Threading: any thread may copy, destroy, pass and get() refs. get() blocks
// the calling thread; called from inside a task, it lends the task's CPUs to
// other tasks while it waits. An ObjectRef may outlive shoal::shutdown();
// get() then throws shoal::Error.
#pragma once

#include <chrono>
#include <cstring>
#include <memory>
#include <string>
#include <type_traits>
#include <utility>

#include "shoal/detail/core.h"
#include "shoal/errors.h"
#include "shoal/ids.h"

namespace shoal {

namespace detail {

template <typename Packer>
void pack_object_ref(Packer& packer, const RefPtr& state) {
  if (!state) {
    packer.pack_nil();
    return;
  }
  note_contained(state);
  const std::string& owner = state->owner_address;
  char id[ObjectId::kSizeBytes];
  state->id.to_bytes(id);
  packer.pack_ext(static_cast<uint32_t>(sizeof id + owner.size()), kObjectRefExtType);
  packer.pack_ext_body(id, sizeof id);
  packer.pack_ext_body(owner.data(), owner.size());
}
RefPtr unpack_object_ref(const msgpack::object& object);

}  // namespace detail

// The part of ObjectRef<T> that does not depend on T.
class ObjectRefBase {
 public:
  // False for a default-constructed ref, which names nothing.
  bool valid() const { return state_ != nullptr; }
  // The nil id for an empty ref.
  ObjectId id() const { return state_ ? state_->id : ObjectId{}; }
  const std::string& owner_address() const {
    static const std::string kNone;
    return state_ ? state_->owner_address : kNone;
  }
  const detail::RefPtr& state() const { return state_; }

  template <typename Packer>
  void msgpack_pack(Packer& packer) const {
    detail::pack_object_ref(packer, state_);
  }
  void msgpack_unpack(const msgpack::object& object) { state_ = detail::unpack_object_ref(object); }

  friend bool operator==(const ObjectRefBase& a, const ObjectRefBase& b) {
    return a.id() == b.id();
  }

 protected:
  ObjectRefBase() = default;
  explicit ObjectRefBase(detail::RefPtr state) : state_(std::move(state)) {}

  detail::RefPtr state_;
};

template <typename T>
class ObjectRef : public ObjectRefBase {
 public:
  using value_type = T;

  ObjectRef() = default;
  // For the runtime and the templates; users get refs from remote() and put().
  explicit ObjectRef(detail::RefPtr state) : ObjectRefBase(std::move(state)) {}

  // The value: waits until it exists. Throws TaskError (or TaskCancelled,
  // ActorDied) when the task failed, shoal::Error when the ref is empty,
  // shoal is not running or the bytes are not a T.
  T get() const { return get_impl(std::nullopt); }
  // As get(), but throws shoal::GetTimeout after `timeout`.
  T get(std::chrono::nanoseconds timeout) const { return get_impl(timeout); }

 private:
  T get_impl(detail::Timeout timeout) const {
    if (!state_) throw Error(Status::invalid_argument("get() of an empty ObjectRef"));
    detail::ObjectValuePtr value = detail::get_value(*state_, timeout);
    return detail::value_as<T>(*value, state_->id);
  }
};

// The result of a function returning void: get() waits and rethrows failures.
template <>
class ObjectRef<void> : public ObjectRefBase {
 public:
  using value_type = void;

  ObjectRef() = default;
  explicit ObjectRef(detail::RefPtr state) : ObjectRefBase(std::move(state)) {}

  void get() const { get_impl(std::nullopt); }
  void get(std::chrono::nanoseconds timeout) const { get_impl(timeout); }

 private:
  void get_impl(detail::Timeout timeout) const {
    if (!state_) throw Error(Status::invalid_argument("get() of an empty ObjectRef"));
    detail::throw_if_failed(*detail::get_value(*state_, timeout));
  }
};

namespace detail {
template <typename T>
struct IsObjectRef : std::false_type {};
template <typename T>
struct IsObjectRef<ObjectRef<T>> : std::true_type {
  using value_type = T;
};
}  // namespace detail

template <typename T>
concept ObjectRefType = detail::IsObjectRef<std::remove_cvref_t<T>>::value;

}  // namespace shoal

template <typename T>
struct std::hash<shoal::ObjectRef<T>> {
  std::size_t operator()(const shoal::ObjectRef<T>& ref) const noexcept {
    return std::hash<shoal::ObjectId>()(ref.id());
  }
};
