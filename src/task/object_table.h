// ObjectTable: the objects a local runtime owns — pending or ready values,
// who waits for them, and how many local references keep them.
//
// An entry is created pending (a task's return) or ready (put) with one
// reference, for the RefState its creator is about to make. Every other
// RefState naming the object adds one. When the count reaches zero the entry
// goes — at once if ready, else when its value arrives. Values hold the refs
// they contain (Contained), which is how nested objects stay alive.
//
// Where values live. Without an ObjectStore the table holds every value
// itself. With one (the process's store, object_store.h), a ready value the
// store manages (over its inline_max bytes, no error) goes into the store,
// which may spill it to disk while nobody reads it; the table entry then
// holds no pointer to it. lookup() and on_ready() of such an object ask the
// store, which restores a spilled value (blocking the caller on the file
// read); the pointer they return pins the value in memory while the caller
// holds it. The values the table keeps itself (small ones and errors) are
// counted against the store's capacity too (hold_inline). When the entry
// goes, the store frees the value or deletes its spill file.
//
// Threading: every method is thread-safe. Callbacks run on the thread that
// made the object ready (or the caller of on_ready, if it already was) with
// no table lock held; values are destroyed with no lock held, because
// destroying a value destroys RefStates, which call back into remove_ref.
// The table calls the store with its lock held (add, hold_inline,
// release_inline) or without (get, remove); the store never calls the table.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <span>
#include <unordered_map>
#include <utility>
#include <vector>

#include "shoal/detail/core.h"
#include "shoal/ids.h"
#include "shoal/status.h"
#include "task/object_store.h"

namespace shoal::detail {

class ObjectTable {
 public:
  using Callback = std::function<void(const ObjectValuePtr&)>;

  ObjectTable() = default;
  // Large values go to `store` (shared with the process's other tables);
  // null: the table keeps every value itself.
  explicit ObjectTable(std::shared_ptr<ObjectStore> store) : store_(std::move(store)) {}
  ObjectTable(const ObjectTable&) = delete;
  ObjectTable& operator=(const ObjectTable&) = delete;
  ~ObjectTable();  // clear()

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

  // Makes a ready object pending again, keeping its references (its value
  // was lost and its task runs again). False when unknown or not ready.
  bool reopen(const ObjectId& id);

  // The value (null while pending); kNotFound for an unknown object. A
  // spilled value is read back first (see above).
  Result<ObjectValuePtr> lookup(const ObjectId& id) const;
  // Runs `callback` once the object is ready: now (returning 0) if it is,
  // else later (returning a token for cancel_callback). kNotFound for an
  // unknown object.
  Result<uint64_t> on_ready(const ObjectId& id, Callback callback);
  // Forgets a callback that has not run (no-op if it ran or is unknown).
  void cancel_callback(const ObjectId& id, uint64_t token);

  // False (and no-op) for an unknown id.
  bool add_ref(const ObjectId& id);
  // add_ref, or a new pending entry with one reference when the id is
  // unknown (a borrowed object: its value comes from its owner).
  enum class Adopted {
    kAdded,    // the entry had references already
    kRevived,  // a pending entry with none (its references went, it stayed)
    kCreated,  // a new entry
  };
  Adopted add_ref_or_create(const ObjectId& id);
  // No-op (false) for unknown ids. True when it removed the last
  // reference. An entry that is still pending then stays until it
  // completes (a task result on its way) unless `drop_pending`.
  bool remove_ref(const ObjectId& id, bool drop_pending = false);

  std::size_t size() const;
  // Up to `max` entries (shoalctl memory): id, value (null while pending)
  // and local references.
  struct Listed {
    ObjectId id;
    ObjectValuePtr value;  // null while pending and while the store holds it
    uint32_t refs = 0;
    bool in_store = false;
  };
  std::vector<Listed> list(std::size_t max) const;
  // Bytes of the values the table holds in memory itself (ready objects
  // only). With a store, that is the values it does not manage (small ones
  // and errors); the store counts the rest (ObjectStore::stats()).
  uint64_t bytes() const;
  // The store large values go to; null when there is none.
  const std::shared_ptr<ObjectStore>& store() const { return store_; }
  // Completes every pending object with `value` (shutdown: wakes whoever
  // waits for them).
  void complete_all_pending(const ObjectValuePtr& value);
  // Drops every entry (shutdown); pending callbacks never run.
  void clear();

 private:
  struct Entry {
    ObjectValuePtr value;   // null while pending, and while the store holds it
    bool in_store = false;  // ready, and the store holds the value
    uint32_t refs = 1;
    std::vector<std::pair<uint64_t, Callback>> callbacks;
    bool ready() const { return value != nullptr || in_store; }
  };

  // Gives a ready value to the store or keeps it here. mutex_ held.
  void hold_locked(const ObjectId& id, Entry& entry, ObjectValuePtr value);
  // The value of a ready entry the store holds, read with no lock held.
  Result<ObjectValuePtr> from_store(const ObjectId& id) const;

  const std::shared_ptr<ObjectStore> store_;
  mutable std::mutex mutex_;
  std::unordered_map<ObjectId, Entry> entries_;  // guarded by mutex_
  uint64_t next_token_ = 1;                      // guarded by mutex_
  uint64_t bytes_ = 0;  // guarded by mutex_: values held here (not in the store)
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
