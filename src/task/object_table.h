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

#include <cstddef>
#include <cstdint>
#include <functional>
#include <mutex>
#include <optional>
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

  // The value (null while pending); kNotFound for an unknown object.
  Result<ObjectValuePtr> lookup(const ObjectId& id) const;
  // Runs `callback` once the object is ready: now (returning 0) if it is,
  // else later (returning a token for cancel_callback). kNotFound for an
  // unknown object.
  Result<uint64_t> on_ready(const ObjectId& id, Callback callback);
  // Forgets a callback that has not run (no-op if it ran or is unknown).
  void cancel_callback(const ObjectId& id, uint64_t token);

  void add_ref(const ObjectId& id);     // no-op for unknown ids
  void remove_ref(const ObjectId& id);  // no-op for unknown ids

  std::size_t size() const;
  // Bytes of the values held (ready objects only).
  uint64_t bytes() const;
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

}  // namespace shoal::detail
