// LogStore: the durable half of a node's Raft state, in RocksDB under
// <data-dir>/meta, mirrored into a raft::MemoryStorage that the Raft core reads.
//
// Column families:
//   state    "identity"   -> format version, raft id, cluster id
//            "hard_state" -> term, vote, commit
//   log      8-byte big-endian index -> entry (term, type, data)
//   snapshot "meta"       -> index, term, conf state, image size
//            "image/<n>"  -> the n-th 1 MiB piece of the state machine image
//
// Every persist() is ONE synced WriteBatch (entries, truncation of a replaced
// suffix, hard state, snapshot), so a crash leaves either all of a Ready or
// none of it. The memory mirror is updated only after the write succeeded.
// The state machine itself is the latest snapshot plus the committed log: on
// start the node restores the snapshot image and Raft re-applies every
// committed entry after it.
//
// Threading: loop thread only. The RocksDB handle is private to this file's
// .cc (rocksdb headers stay out of widely included headers).
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>

#include "raft/raft.h"
#include "shoal/status.h"

namespace rocksdb {
class Env;
}

namespace shoal::control {

inline constexpr uint32_t kLogStoreFormat = 1;
inline constexpr size_t kSnapshotPieceBytes = 1 << 20;

struct LogStoreIdentity {
  raft::NodeId raft_id = 0;
  uint64_t cluster_id = 0;  // 0 = not known yet (a joining node learns it)
};

class LogStore {
 public:
  // Opens or creates <dir>. A store written by another node (different raft
  // id), an unknown format or damaged data is refused with a message naming
  // the problem; nothing is served from it.
  // `env` (tests: fault injection) defaults to RocksDB's default Env.
  static Result<std::unique_ptr<LogStore>> open(const std::string& dir, raft::NodeId raft_id,
                                                rocksdb::Env* env = nullptr);
  ~LogStore();
  LogStore(const LogStore&) = delete;
  LogStore& operator=(const LogStore&) = delete;

  raft::MemoryStorage& memory() { return *memory_; }
  const LogStoreIdentity& identity() const { return identity_; }
  // True while nothing was ever written: no hard state, no entries, no snapshot.
  bool fresh() const { return fresh_; }
  // The snapshot loaded at open (or the last one saved), if any.
  const std::optional<raft::Snapshot>& snapshot() const { return snapshot_; }

  // Records the cluster this store belongs to (bootstrap, or the first message
  // from a leader). Synced.
  Status set_cluster_id(uint64_t cluster_id);

  // Makes a Ready's hard state, entries and snapshot durable in one synced
  // write, then mirrors them into memory().
  Status persist(const raft::Ready& ready);

  // Saves a snapshot the node made of its own state machine at `index`, and
  // drops log entries up to `compact_to` (<= index) from disk and memory.
  Status save_local_snapshot(raft::Index index, const raft::ConfState& conf, std::string image,
                             raft::Index compact_to);

  struct Stats {
    uint64_t synced_writes = 0;
    uint64_t entries_written = 0;
  };
  const Stats& stats() const { return stats_; }

 private:
  struct Db;
  LogStore();
  Status load();
  Status write_snapshot(void* batch, const raft::Snapshot& snapshot);

  std::unique_ptr<Db> db_;
  std::unique_ptr<raft::MemoryStorage> memory_;
  LogStoreIdentity identity_;
  std::optional<raft::Snapshot> snapshot_;
  std::string dir_;
  bool fresh_ = true;
  Stats stats_;
};

// Encodings shared with tests (pure functions; decode validates).
std::string encode_entry_value(const raft::Entry& entry);
Result<raft::Entry> decode_entry_value(raft::Index index, std::string_view bytes);
std::string encode_hard_state(const raft::HardState& hs);
Result<raft::HardState> decode_hard_state(std::string_view bytes);
std::string encode_conf_state(const raft::ConfState& cs);
Result<raft::ConfState> decode_conf_state(std::string_view& bytes);  // consumes

}  // namespace shoal::control
