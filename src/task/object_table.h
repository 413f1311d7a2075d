// ObjectTable: the objects a local runtime owns — pending or ready values,
// who waits for them, and how many local references keep them.
//
// An entry is created pending (a task's return) or ready (put) with one
// reference, for the RefState its creator is about to make. Every other
// RefState naming the object adds one. When the count reaches zero the entry
// goes — at once if ready, else when its value arrives. Values hold the refs
// they contain (Contained), which is how nested objects stay alive.
//
// Threading: every method is thread-safe. Callbacks run on the thread that
// made the object ready (or the caller of on_ready, if it already was) with
// no table lock held; values are destroyed with no lock held, because
// destroying a value destroys RefStates, which call back into remove_ref.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <mutex>
#include <optional>
#include <span>
#include <unordered_map>
#include <utility>
#include <vector>

#include "shoal/detail/core.h"
#include "shoal/ids.h"
#include "shoal/status.h"

namespace shoal::detail {

class ObjectTable {
 public:
  using Callback = std::function<void(const ObjectValuePtr&)>;

  // A pending object with one reference. The id must be new (asserted).
  void create_pending(const ObjectId& id);
  // A ready object with one reference (put). The id must be new (asserted).
  void create_ready(const ObjectId& id, ObjectValuePtr value);
  // Makes a pending object ready and runs its callbacks. False (and the
  // value is dropped) when the object is unknown or already ready.
  bool complete(const ObjectId& id, ObjectValuePtr value);

  // Replaces a ready value held by another process (remote_size != 0) with
  // its pulled bytes, so later reads are local. False (value dropped) when
  // the object is unknown or its value is not remote.
  bool materialize(const ObjectId& id, ObjectValuePtr value);

  // The value (null while pending); kNotFound for an unknown object.
  Result<ObjectValuePtr> lookup(const ObjectId& id) const;
  // Runs `callback` once the object is ready: now (returning 0) if it is,
  // else later (returning a token for cancel_callback). kNotFound for an
  // unknown object.
  Result<uint64_t> on_ready(const ObjectId& id, Callback callback);
  // Forgets a callback that has not run (no-op if it ran or is unknown).
  void cancel_callback(const ObjectId& id, uint64_t token);

  void add_ref(const ObjectId& id);     // no-op for unknown ids
  // add_ref, or a new pending entry with one reference when the id is
  // unknown (a borrowed object: its value comes from its owner). True when
  // it created the entry.
  bool add_ref_or_create(const ObjectId& id);
  void remove_ref(const ObjectId& id);  // no-op for unknown ids

  std::size_t size() const;
  // Up to `max` entries (shoalctl memory): id, value (null while pending)
  // and local references.
  struct Listed {
    ObjectId id;
    ObjectValuePtr value;
    uint32_t refs = 0;
  };
  std::vector<Listed> list(std::size_t max) const;
  // Bytes of the values held (ready objects only).
  uint64_t bytes() const;
  // Completes every pending object with `value` (shutdown: wakes whoever
  // waits for them).
  void complete_all_pending(const ObjectValuePtr& value);
  // Drops every entry (shutdown); pending callbacks never run.
  void clear();

 private:
  struct Entry {
    ObjectValuePtr value;  // null while pending
    uint32_t refs = 1;
    std::vector<std::pair<uint64_t, Callback>> callbacks;
  };

  mutable std::mutex mutex_;
  std::unordered_map<ObjectId, Entry> entries_;  // guarded by mutex_
  uint64_t next_token_ = 1;                      // guarded by mutex_
  uint64_t bytes_ = 0;                           // guarded by mutex_
};

// Blocks the caller until `needed` of the objects are ready or the deadline
// passes (nullopt: never). values[i] is each object's value (null while
// pending). `done` says whether `needed` were reached. kNotFound for an id the
// table does not know. Lends the caller's executor resources while it waits
// (Executor::BlockingScope), so a task blocked in get() never starves others.
Status wait_ready(ObjectTable& table, std::span<const ObjectId> ids, std::size_t needed,
                  std::optional<std::chrono::steady_clock::time_point> deadline,
                  std::vector<ObjectValuePtr>& values, bool& done);

}  // namespace shoal::detail
