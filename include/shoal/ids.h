// Identifiers of tasks, objects and actors.
//
// Each id is 128 bits: `hi` names the process (the owner) that created it,
// `lo` a sequence number there. An ObjectId that a task returns is its
// TaskId with the return index in the low 16 bits (1, 2, ...); an object
// made by put() has index 0. Ids are plain values: any thread may copy,
// compare and hash them. hex() is what logs and error messages show.
#pragma once

#include <compare>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <string>
#include <string_view>

namespace shoal {

namespace detail {

// One 128-bit id type per Tag, so a TaskId cannot be passed as an ObjectId.
template <typename Tag>
struct Id128 {
  static constexpr std::size_t kSizeBytes = 16;

  uint64_t hi = 0;
  uint64_t lo = 0;

  constexpr bool nil() const { return hi == 0 && lo == 0; }
  friend constexpr auto operator<=>(const Id128&, const Id128&) = default;

  // 32 lowercase hex digits, hi first.
  std::string hex() const {
    static constexpr char kDigits[] = "0123456789abcdef";
    std::string out(32, '0');
    for (int i = 0; i < 16; ++i) {
      out[15 - i] = kDigits[(hi >> (4 * i)) & 0xf];
      out[31 - i] = kDigits[(lo >> (4 * i)) & 0xf];
    }
    return out;
  }

  // Big-endian bytes, for the wire.
  void to_bytes(char out[kSizeBytes]) const {
    for (int i = 0; i < 8; ++i) {
      out[i] = static_cast<char>(hi >> (56 - 8 * i));
      out[8 + i] = static_cast<char>(lo >> (56 - 8 * i));
    }
  }
  static Id128 from_bytes(const char in[kSizeBytes]) {
    Id128 id;
    for (int i = 0; i < 8; ++i) {
      id.hi = (id.hi << 8) | static_cast<uint8_t>(in[i]);
      id.lo = (id.lo << 8) | static_cast<uint8_t>(in[8 + i]);
    }
    return id;
  }
};

struct TaskIdTag {};
struct ObjectIdTag {};
struct ActorIdTag {};
struct PlacementGroupIdTag {};

}  // namespace detail

using TaskId = detail::Id128<detail::TaskIdTag>;
using ActorId = detail::Id128<detail::ActorIdTag>;
using PlacementGroupId = detail::Id128<detail::PlacementGroupIdTag>;

// The id of one object (a task's return value or a put()).
struct ObjectId : detail::Id128<detail::ObjectIdTag> {
  static constexpr uint64_t kIndexMask = 0xffff;

  // The object a task returns (index 0 is the task's first return value).
  static constexpr ObjectId for_task_return(TaskId task, uint16_t index) {
    ObjectId id;
    id.hi = task.hi;
    id.lo = task.lo | (static_cast<uint64_t>(index) + 1);
    return id;
  }
  // The object made by put(); `put_id` is a TaskId the owner never runs.
  static constexpr ObjectId for_put(TaskId put_id) {
    ObjectId id;
    id.hi = put_id.hi;
    id.lo = put_id.lo;
    return id;
  }
  static ObjectId from_bytes(const char in[kSizeBytes]) {
    ObjectId id;
    static_cast<detail::Id128<detail::ObjectIdTag>&>(id) = Id128::from_bytes(in);
    return id;
  }

  // The task that creates this object (for a put(), the id put() reserved).
  constexpr TaskId task_id() const { return TaskId{hi, lo & ~kIndexMask}; }
  // True for objects made by put().
  constexpr bool is_put() const { return (lo & kIndexMask) == 0; }
};

}  // namespace shoal

template <typename Tag>
struct std::hash<shoal::detail::Id128<Tag>> {
  std::size_t operator()(const shoal::detail::Id128<Tag>& id) const noexcept {
    return static_cast<std::size_t>(id.hi * 0x9e3779b97f4a7c15ull ^ id.lo);
  }
};

template <>
struct std::hash<shoal::ObjectId> {
  std::size_t operator()(const shoal::ObjectId& id) const noexcept {
    return static_cast<std::size_t>(id.hi * 0x9e3779b97f4a7c15ull ^ id.lo);
  }
};
