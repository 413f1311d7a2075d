// ObjectStore: the large object values of one process, kept in memory up to
// a capacity and spilled to files beyond it.
//
// What it holds. Values with more than inline_max bytes and no error (small
// ones stay plain in the ObjectTable, where copying them costs nothing). The
// ObjectTable hands a value over when the object becomes ready and takes it
// back through get(); the store owns the entry until remove(). The capacity
// also covers the small values a table keeps itself (hold_inline /
// release_inline): they cannot be spilled, but they use the same memory.
//
// Pinning. A value is *pinned* while anyone besides the store holds its
// ObjectValuePtr (use_count() > 1): a task reading its argument, get() in
// user code, a callback. Readers read the bytes in place, with no copy, and
// a pinned value is never spilled. Only the store hands out pointers to a
// value it holds, under its lock, so "use_count() == 1 under the lock" means
// no one else can be reading it.
//
// Spilling. When the values in memory exceed the capacity, the least
// recently used unpinned ones are written to files in spill_dir
// (spill_file.h), at most spills_in_flight_max at a time, by libuv's async
// file I/O on a loop the store runs on a thread of its own (the process may
// have no other loop). Memory is freed when a write completes; until then
// usage may exceed the capacity. A value read back (restored) keeps its file,
// so spilling it again only frees memory. The refs inside a value
// (Contained) never go to disk: the entry keeps them in memory, so the
// objects they name stay alive while the value is on disk.
//
// Restoring is synchronous, on the thread that calls get(): that thread
// needs the bytes before it can go on anyway, and several readers then read
// in parallel instead of queueing behind spill writes on the loop thread. A
// file that is missing, short or fails its checksum gives a value whose
// error (kIoError) names the file; other objects are unaffected.
//
// Room. add() admits any value up to the whole capacity at once (a bigger
// one fails: ObjectStoreFull, kResourceExhausted). Code that must not grow
// memory past the capacity (put() from user code, task results) first calls
// wait_for_room(), which starts spills and waits for the ones in flight
// (bounded by room_wait_ms_max) and, when only pinned values are left, for
// readers to let go (bounded by pinned_wait_ms_max: pins are usually a get()
// that is deserializing). It fails with ObjectStoreFull when no room can be
// made: everything in memory stays pinned, or the disk refused.
//
// Disk errors. A failed spill write (ENOSPC, EDQUOT, EIO, ...) deletes the
// partial file and leaves the value in memory: nothing admitted is lost.
// The store then writes no new spill files until a spill file was deleted
// (space came back) or disk_retry_backoff_ms passed on the injected clock;
// meanwhile wait_for_room() fails at once, naming the spill dir and the OS
// error. So a full disk costs one failed write per backoff period, not a
// retry loop.
//
// Files. Spill files are named <object id>.<sequence>.spill. create() makes
// spill_dir if it does not exist (empty: a private mkdtemp directory
// "shoal-spill-XXXXXX" under $TMPDIR or /tmp) and deletes *.spill files left
// there by an earlier process (a node restarting on its data dir).
// shutdown() deletes every spill file and removes the directory if create()
// made it.
//
// Threading: every method is thread-safe and may be called from any thread
// (the loop thread included). Values are destroyed with no store lock held,
// because destroying a value's refs calls back into the runtime, the
// ObjectTable and this store.
#pragma once

#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <list>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <unordered_map>
#include <vector>

#include "base/clock.h"
#include "shoal/detail/core.h"
#include "shoal/ids.h"
#include "shoal/status.h"

namespace shoal::detail {

// Values over this size live in a store and move between processes in
// chunks, pulled by whoever needs them; smaller ones travel inline in
// messages and stay in the object table (issue 5: "up to 100 KiB inline").
inline constexpr uint64_t kInlineBytesMax = 100 * 1024;

class ObjectStore {
 public:
  // Readers do not tell the store when they drop a value, so a wait for
  // pins to go re-checks this often.
  static constexpr uint64_t kPinPollMs = 5;

  struct Config {
    uint64_t capacity_bytes = 0;             // values in memory, all together; more than 0
    std::string spill_dir;                   // empty: a private temporary directory
    uint64_t inline_max = kInlineBytesMax;   // values of at most this many bytes stay in the table
    std::size_t spills_in_flight_max = 8;    // file writes at once
    uint64_t disk_retry_backoff_ms = 5'000;  // after the disk refused a write
    uint64_t room_wait_ms_max = 60'000;      // wait_for_room() gives up after this (steady clock)
    // How long wait_for_room() waits for readers to let go of pinned values
    // when nothing else can make room (it re-checks every kPinPollMs).
    uint64_t pinned_wait_ms_max = 1'000;
    const Clock* clock = nullptr;  // for the backoff; null: the system clock. Outlives the store.
  };

  enum class State : uint8_t {
    kInMemory,  // in memory (a file may hold a copy too, after a restore)
    kSpilling,  // in memory, its file being written
    kSpilled,   // only in its file
  };

  struct Stats {
    uint64_t capacity_bytes = 0;
    uint64_t memory_bytes = 0;   // values in memory (spilling ones too)
    uint64_t inline_bytes = 0;   // small values the tables hold (hold_inline)
    uint64_t spilled_bytes = 0;  // values only on disk
    uint64_t disk_bytes = 0;     // payload bytes in spill files (restored values' too)
    uint64_t objects_in_memory = 0;
    uint64_t objects_spilling = 0;
    uint64_t objects_spilled = 0;
    uint64_t objects_pinned = 0;
    uint64_t spills = 0;    // spill files written, since creation
    uint64_t restores = 0;  // values read back from spill files
    uint64_t spilled_bytes_total = 0;
    uint64_t restored_bytes_total = 0;
    uint64_t disk_errors = 0;      // spill writes the disk refused
    uint64_t restore_errors = 0;   // spill files found missing or corrupted
    uint64_t files_in_flight = 0;  // spill writes and deletes not finished
    std::string disk_error;        // why the disk refused, while new spills are held back
  };

  struct ObjectInfo {
    ObjectId id;
    uint64_t size_bytes = 0;
    State state = State::kInMemory;
    bool pinned = false;
    std::string spill_path;  // its complete spill file; empty when none
  };

  // Starts the store and its loop thread. kIoError when spill_dir cannot be
  // made or read; kInvalidArgument for a capacity of 0.
  static Result<std::shared_ptr<ObjectStore>> create(Config config);
  ~ObjectStore();  // shutdown()
  ObjectStore(const ObjectStore&) = delete;
  ObjectStore& operator=(const ObjectStore&) = delete;

  // True for the values the store takes: more than inline_max bytes, no error.
  bool manages(const ObjectValue& value) const;

  // Takes a value `manages` accepts (asserted) under a new id. Fails with
  // ObjectStoreFull (kResourceExhausted) when the value is bigger than the
  // whole capacity, kAlreadyExists for an id the store holds, kUnavailable
  // after shutdown; the caller keeps the value then. Otherwise it is admitted, even over the capacity, and spills
  // start.
  Status add(const ObjectId& id, ObjectValuePtr value);

  // Blocks until `bytes` more fit in memory, spilling to make room. Fails
  // with ObjectStoreFull (kResourceExhausted, the message says why: the
  // value is bigger than the store, everything in memory is pinned, the
  // disk refused naming spill_dir and the OS error, or the spills did not
  // finish within room_wait_ms_max), or kUnavailable after shutdown.
  // Another thread may take the room before the caller adds its value: the
  // capacity is a target that concurrent puts may overshoot briefly.
  Status wait_for_room(uint64_t bytes);

  // The value of `id`, read back from its spill file when spilled (see
  // Restoring above); the returned pointer pins it. A missing or corrupted
  // file gives a value whose error says so. kNotFound for an id the store
  // does not hold.
  Result<ObjectValuePtr> get(const ObjectId& id);

  // Forgets `id`: frees its memory and deletes its spill file (a write in
  // flight is deleted when it completes). No-op for an unknown id. The value,
  // and the refs inside it, are released on the caller's thread.
  void remove(const ObjectId& id);

  // Small values held elsewhere (ObjectTable) that count against the
  // capacity; they make the store spill large ones.
  void hold_inline(uint64_t bytes);
  // The size of a value that is on disk only (get() would read its spill
  // file); nullopt when it is in memory or not here.
  std::optional<uint64_t> spilled_size(const ObjectId& id) const;
  void release_inline(uint64_t bytes);

  Stats stats() const;
  std::vector<ObjectInfo> list() const;
  const std::string& spill_dir() const { return spill_dir_; }
  uint64_t capacity_bytes() const { return config_.capacity_bytes; }

  // Blocks until no spill write or file delete is queued or in flight. For
  // tests, and for shutdown.
  void wait_idle();

  // Waits for the file operations in flight, stops the loop thread, deletes
  // every spill file and (if create() made it) spill_dir, and drops every
  // value. Later calls: add() and wait_for_room() answer kUnavailable.
  // Idempotent; not on the store's own loop thread (asserted).
  void shutdown();

  struct FileWork;  // internal: one spill write or delete for the loop thread

 private:
  struct Entry {
    uint64_t size = 0;
    Contained contained;   // the refs inside the value; kept while it is on disk
    ObjectValuePtr value;  // null when spilled
    State state = State::kInMemory;
    uint64_t file_sequence = 0;         // 0: no complete spill file
    uint64_t writing_sequence = 0;      // kSpilling: the file being written
    std::list<ObjectId>::iterator lru;  // valid while the value is in memory
  };
  struct Loop;  // the libuv loop and its thread

  explicit ObjectStore(Config config, std::string spill_dir, bool made_dir);

  std::string spill_path(const ObjectId& id, uint64_t sequence) const;
  bool pinned(const Entry& entry) const;
  bool any_pinned_locked() const;
  uint64_t resident_bytes() const;  // guarded by mutex_
  // Frees memory until what stays after the spills in flight, plus
  // `incoming`, fits: drops values that already have a file, queues spill
  // writes. Called with mutex_ held; values to release go to `garbage`.
  void make_room_locked(uint64_t incoming, std::vector<ObjectValuePtr>& garbage);
  void drop_to_disk_locked(Entry& entry, std::vector<ObjectValuePtr>& garbage);
  void queue_delete_locked(const ObjectId& id, uint64_t sequence);
  std::string full_message_locked(uint64_t bytes, const std::string& why) const;
  void wake_locked();

  // Loop thread: a spill is open -> write_more (until done) -> close_spill ->
  // finish_spill; a failure after open goes through fail_spill (close,
  // delete the partial file). `error` is a libuv error code.
  void on_wake();
  void done_with_file();  // one file operation less in flight
  void close_if_done();
  void start_spill(std::unique_ptr<FileWork> work);
  void write_more(std::unique_ptr<FileWork> work);
  void close_spill(std::unique_ptr<FileWork> work);
  void fail_spill(std::unique_ptr<FileWork> work, int error, const char* step);
  void finish_spill(std::unique_ptr<FileWork> work, int error, const char* step);
  void start_delete(std::unique_ptr<FileWork> work);
  void finish_delete(std::unique_ptr<FileWork> work, int error);

  const Config config_;
  const std::string spill_dir_;
  const bool made_dir_;  // create() made spill_dir: shutdown() removes it
  SystemClock system_clock_;
  const Clock& clock_;

  mutable std::mutex mutex_;
  std::condition_variable changed_;              // a spill or delete finished, or memory was freed
  std::unordered_map<ObjectId, Entry> entries_;  // guarded by mutex_
  std::list<ObjectId> lru_;  // guarded: values in memory, most recently used first
  std::vector<std::unique_ptr<FileWork>> queue_;  // guarded: for the loop thread
  uint64_t next_sequence_ = 1;                    // guarded
  uint64_t memory_bytes_ = 0;                     // guarded
  uint64_t spilling_bytes_ = 0;                   // guarded
  uint64_t inline_bytes_ = 0;                     // guarded
  std::size_t spills_in_flight_ = 0;              // guarded: queued or running writes
  std::size_t files_in_flight_ = 0;               // guarded: queued or running writes and deletes
  bool disk_refused_ = false;                     // guarded: no new spill writes for now
  uint64_t disk_refused_at_ms_ = 0;               // guarded
  std::string disk_error_;                        // guarded: the last refusal
  bool stopping_ = false;                         // guarded
  bool wake_closed_ = false;  // guarded: the loop closed its wake handle (it is ending)
  // Guarded: values of objects freed while being spilled. Their refs may be
  // the last ones, and releasing refs runs runtime code that must not run on
  // the loop thread (it could end with this store's shutdown), so the next
  // caller of remove(), wait_for_room() or wait_idle() releases them.
  std::vector<ObjectValuePtr> orphans_;
  Stats counters_;  // guarded: the cumulative counters (spills, restores, ...)

  std::unique_ptr<Loop> loop_;
};

}  // namespace shoal::detail
