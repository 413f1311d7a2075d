#include "control/log_store.h"

#include <rocksdb/db.h>
#include <rocksdb/options.h>
#include <rocksdb/write_batch.h>

#include <cstring>
#include <filesystem>

#include "base/assert.h"
#include "base/log.h"

namespace shoal::control {
namespace {

constexpr char kMagic[] = "shoal-raft";
constexpr size_t kMagicLen = sizeof(kMagic) - 1;
constexpr uint32_t kConfMembersMax = 4096;

void put_u64(std::string& out, uint64_t v) {
  for (int i = 0; i < 8; ++i) out.push_back(static_cast<char>(v >> (8 * i)));
}
void put_u32(std::string& out, uint32_t v) {
  for (int i = 0; i < 4; ++i) out.push_back(static_cast<char>(v >> (8 * i)));
}
bool get_u64(std::string_view& in, uint64_t& v) {
  if (in.size() < 8) return false;
  v = 0;
  for (int i = 0; i < 8; ++i) v |= static_cast<uint64_t>(static_cast<uint8_t>(in[i])) << (8 * i);
  in.remove_prefix(8);
  return true;
}
bool get_u32(std::string_view& in, uint32_t& v) {
  if (in.size() < 4) return false;
  v = 0;
  for (int i = 0; i < 4; ++i) v |= static_cast<uint32_t>(static_cast<uint8_t>(in[i])) << (8 * i);
  in.remove_prefix(4);
  return true;
}

std::string index_key(raft::Index index) {
  std::string key(8, '\0');
  for (int i = 0; i < 8; ++i) key[i] = static_cast<char>(index >> (8 * (7 - i)));
  return key;
}
raft::Index key_index(const rocksdb::Slice& key) {
  raft::Index index = 0;
  for (size_t i = 0; i < 8; ++i) index = (index << 8) | static_cast<uint8_t>(key[i]);
  return index;
}
std::string piece_key(size_t n) {
  char buf[32];
  std::snprintf(buf, sizeof(buf), "image/%08zu", n);
  return buf;
}

Status from_rocks(const rocksdb::Status& s, const std::string& what) {
  if (s.ok()) return {};
  if (s.IsCorruption()) return Status::io_error(what + ": the metadata store is damaged: " + s.ToString());
  return Status::io_error(what + ": " + s.ToString());
}

}  // namespace

std::string encode_entry_value(const raft::Entry& entry) {
  std::string out;
  out.reserve(9 + entry.data.size());
  put_u64(out, entry.term);
  out.push_back(static_cast<char>(entry.type));
  out += entry.data;
  return out;
}

Result<raft::Entry> decode_entry_value(raft::Index index, std::string_view bytes) {
  raft::Entry entry;
  entry.index = index;
  if (!get_u64(bytes, entry.term) || bytes.empty()) {
    return Status::io_error("log entry " + std::to_string(index) + " is truncated");
  }
  uint8_t type = static_cast<uint8_t>(bytes[0]);
  if (type > static_cast<uint8_t>(raft::EntryType::kConfChange)) {
    return Status::io_error("log entry " + std::to_string(index) + " has unknown type " + std::to_string(type));
  }
  if (entry.term == 0) return Status::io_error("log entry " + std::to_string(index) + " has term 0");
  entry.type = static_cast<raft::EntryType>(type);
  bytes.remove_prefix(1);
  entry.data.assign(bytes);
  return entry;
}

std::string encode_hard_state(const raft::HardState& hs) {
  std::string out;
  put_u64(out, hs.term);
  put_u64(out, hs.vote);
  put_u64(out, hs.commit);
  return out;
}

Result<raft::HardState> decode_hard_state(std::string_view bytes) {
  raft::HardState hs;
  if (!get_u64(bytes, hs.term) || !get_u64(bytes, hs.vote) || !get_u64(bytes, hs.commit) || !bytes.empty()) {
    return Status::io_error("the Raft hard state record has the wrong size");
  }
  return hs;
}

std::string encode_conf_state(const raft::ConfState& cs) {
  std::string out;
  put_u32(out, static_cast<uint32_t>(cs.voters.size()));
  for (auto id : cs.voters) put_u64(out, id);
  put_u32(out, static_cast<uint32_t>(cs.learners.size()));
  for (auto id : cs.learners) put_u64(out, id);
  return out;
}

Result<raft::ConfState> decode_conf_state(std::string_view& bytes) {
  raft::ConfState cs;
  for (auto* list : {&cs.voters, &cs.learners}) {
    uint32_t n = 0;
    if (!get_u32(bytes, n) || n > kConfMembersMax || bytes.size() < 8ull * n) {
      return Status::io_error("the Raft configuration record is damaged");
    }
    for (uint32_t i = 0; i < n; ++i) {
      uint64_t id = 0;
      get_u64(bytes, id);
      if (id == 0) return Status::io_error("the Raft configuration names node 0");
      list->push_back(id);
    }
  }
  return cs;
}

struct LogStore::Db {
  std::unique_ptr<rocksdb::DB> db;
  rocksdb::ColumnFamilyHandle* state = nullptr;
  rocksdb::ColumnFamilyHandle* log = nullptr;
  rocksdb::ColumnFamilyHandle* snapshot = nullptr;
  std::vector<rocksdb::ColumnFamilyHandle*> handles;

  ~Db() {
    for (auto* h : handles) db->DestroyColumnFamilyHandle(h);
    if (db) db->Close().PermitUncheckedError();
  }
};

LogStore::LogStore() = default;
LogStore::~LogStore() = default;

Result<std::unique_ptr<LogStore>> LogStore::open(const std::string& dir, raft::NodeId raft_id, rocksdb::Env* env) {
  SHOAL_ASSERT(raft_id != 0);
  std::unique_ptr<LogStore> store(new LogStore());
  store->dir_ = dir;
  store->identity_.raft_id = raft_id;
  store->memory_ = std::make_unique<raft::MemoryStorage>();

  std::error_code ec;
  bool existed = std::filesystem::exists(dir, ec);
  rocksdb::DBOptions options;
  options.create_if_missing = !existed;
  options.create_missing_column_families = !existed;
  options.paranoid_checks = true;
  options.max_background_jobs = 2;
  options.keep_log_file_num = 4;
  options.max_manifest_file_size = 16 << 20;
  options.info_log_level = rocksdb::InfoLogLevel::WARN_LEVEL;
  if (env != nullptr) options.env = env;
  rocksdb::ColumnFamilyOptions cf;
  cf.write_buffer_size = 8 << 20;
  std::vector<rocksdb::ColumnFamilyDescriptor> cfs = {
      {rocksdb::kDefaultColumnFamilyName, cf}, {"state", cf}, {"log", cf}, {"snapshot", cf}};
  auto db = std::make_unique<Db>();
  rocksdb::DB* raw = nullptr;
  rocksdb::Status s = rocksdb::DB::Open(options, dir, cfs, &db->handles, &raw);
  if (!s.ok()) {
    if (existed && s.IsInvalidArgument()) {
      return Status::io_error("cannot open the metadata store " + dir +
                              ": it is not a shoal metadata store (" + s.ToString() + ")");
    }
    return from_rocks(s, "cannot open the metadata store " + dir);
  }
  db->db.reset(raw);
  db->state = db->handles[1];
  db->log = db->handles[2];
  db->snapshot = db->handles[3];
  store->db_ = std::move(db);
  SHOAL_RETURN_IF_ERROR(store->load());
  return store;
}

Status LogStore::load() {
  rocksdb::DB* db = db_->db.get();
  std::string value;
  rocksdb::Status s = db->Get(rocksdb::ReadOptions(), db_->state, "identity", &value);
  if (s.IsNotFound()) {
    // A new store: stamp it with our identity at once.
    std::string id(kMagic, kMagicLen);
    put_u32(id, kLogStoreFormat);
    put_u64(id, identity_.raft_id);
    put_u64(id, 0);
    rocksdb::WriteOptions wo;
    wo.sync = true;
    return from_rocks(db->Put(wo, db_->state, "identity", id), "cannot initialise the metadata store " + dir_);
  }
  SHOAL_RETURN_IF_ERROR(from_rocks(s, "cannot read the metadata store " + dir_));
  std::string_view in = value;
  if (in.size() < kMagicLen || in.substr(0, kMagicLen) != std::string_view(kMagic, kMagicLen)) {
    return Status::io_error("the metadata store " + dir_ + " is not a shoal metadata store");
  }
  in.remove_prefix(kMagicLen);
  uint32_t format = 0;
  uint64_t raft_id = 0, cluster_id = 0;
  if (!get_u32(in, format) || !get_u64(in, raft_id) || !get_u64(in, cluster_id) || !in.empty()) {
    return Status::io_error("the metadata store " + dir_ + " has a damaged identity record");
  }
  if (format != kLogStoreFormat) {
    return Status::io_error("the metadata store " + dir_ + " has format " + std::to_string(format) +
                            "; this shoal reads format " + std::to_string(kLogStoreFormat));
  }
  if (raft_id != identity_.raft_id) {
    return Status::io_error("the metadata store " + dir_ + " belongs to another node (raft id " +
                            std::to_string(raft_id) + ", this node is " + std::to_string(identity_.raft_id) +
                            "): was the node_id file replaced?");
  }
  identity_.cluster_id = cluster_id;

  // Snapshot first: the log continues after it.
  s = db->Get(rocksdb::ReadOptions(), db_->snapshot, "meta", &value);
  if (!s.IsNotFound()) {
    SHOAL_RETURN_IF_ERROR(from_rocks(s, "cannot read the snapshot in " + dir_));
    std::string_view meta = value;
    raft::Snapshot snap;
    uint64_t size = 0;
    if (!get_u64(meta, snap.meta.index) || !get_u64(meta, snap.meta.term) || !get_u64(meta, size)) {
      return Status::io_error("the snapshot record in " + dir_ + " is damaged");
    }
    auto conf = decode_conf_state(meta);
    if (!conf.ok()) return conf.status();
    snap.meta.conf = std::move(*conf);
    snap.data.reserve(size);
    for (size_t n = 0; snap.data.size() < size; ++n) {
      std::string piece;
      SHOAL_RETURN_IF_ERROR(from_rocks(db->Get(rocksdb::ReadOptions(), db_->snapshot, piece_key(n), &piece),
                                       "the snapshot image in " + dir_ + " is incomplete"));
      snap.data += piece;
    }
    if (snap.data.size() != size) return Status::io_error("the snapshot image in " + dir_ + " has the wrong size");
    SHOAL_RETURN_IF_ERROR(memory_->apply_snapshot(snap));
    snapshot_ = std::move(snap);
    fresh_ = false;
  }

  s = db->Get(rocksdb::ReadOptions(), db_->state, "hard_state", &value);
  std::optional<raft::HardState> hard_state;
  if (!s.IsNotFound()) {
    SHOAL_RETURN_IF_ERROR(from_rocks(s, "cannot read the Raft state in " + dir_));
    auto hs = decode_hard_state(value);
    if (!hs.ok()) return hs.status();
    hard_state = *hs;
    fresh_ = false;
  }

  std::vector<raft::Entry> entries;
  raft::Index first = snapshot_ ? snapshot_->meta.index + 1 : 1;
  std::unique_ptr<rocksdb::Iterator> it(db->NewIterator(rocksdb::ReadOptions(), db_->log));
  for (it->Seek(index_key(first)); it->Valid(); it->Next()) {
    if (it->key().size() != 8) return Status::io_error("the Raft log in " + dir_ + " has a malformed key");
    raft::Index index = key_index(it->key());
    raft::Index expected = entries.empty() ? first : entries.back().index + 1;
    if (index != expected) {
      return Status::io_error("the Raft log in " + dir_ + " has a gap: expected entry " + std::to_string(expected) +
                              ", found " + std::to_string(index));
    }
    auto entry = decode_entry_value(index, std::string_view(it->value().data(), it->value().size()));
    if (!entry.ok()) return Status::io_error("the Raft log in " + dir_ + ": " + entry.status().message());
    if (!entries.empty() && entry->term < entries.back().term) {
      return Status::io_error("the Raft log in " + dir_ + " has a term going backwards at entry " +
                              std::to_string(index));
    }
    entries.push_back(std::move(*entry));
  }
  SHOAL_RETURN_IF_ERROR(from_rocks(it->status(), "cannot read the Raft log in " + dir_));
  if (!entries.empty()) {
    fresh_ = false;
    SHOAL_RETURN_IF_ERROR(memory_->append(std::move(entries)));
  }
  if (hard_state) {
    if (hard_state->commit > memory_->last_index()) {
      return Status::io_error("the Raft state in " + dir_ + " says entry " + std::to_string(hard_state->commit) +
                              " is committed but the log ends at " + std::to_string(memory_->last_index()));
    }
    memory_->set_hard_state(*hard_state);
  }
  return {};
}

Status LogStore::set_cluster_id(uint64_t cluster_id) {
  std::string id(kMagic, kMagicLen);
  put_u32(id, kLogStoreFormat);
  put_u64(id, identity_.raft_id);
  put_u64(id, cluster_id);
  rocksdb::WriteOptions wo;
  wo.sync = true;
  SHOAL_RETURN_IF_ERROR(
      from_rocks(db_->db->Put(wo, db_->state, "identity", id), "cannot write the metadata store " + dir_));
  identity_.cluster_id = cluster_id;
  return {};
}

Status LogStore::write_snapshot(void* batch_ptr, const raft::Snapshot& snapshot) {
  auto& batch = *static_cast<rocksdb::WriteBatch*>(batch_ptr);
  std::string meta;
  put_u64(meta, snapshot.meta.index);
  put_u64(meta, snapshot.meta.term);
  put_u64(meta, snapshot.data.size());
  meta += encode_conf_state(snapshot.meta.conf);
  // Pieces of an older, larger image are removed with the range delete.
  batch.DeleteRange(db_->snapshot, "image/", "image0");
  for (size_t n = 0, off = 0; off < snapshot.data.size(); ++n, off += kSnapshotPieceBytes) {
    size_t len = std::min(kSnapshotPieceBytes, snapshot.data.size() - off);
    batch.Put(db_->snapshot, piece_key(n), rocksdb::Slice(snapshot.data.data() + off, len));
  }
  batch.Put(db_->snapshot, "meta", meta);
  return {};
}

Status LogStore::persist(const raft::Ready& ready) {
  if (!ready.hard_state && ready.entries.empty() && !ready.snapshot) return {};
  rocksdb::WriteBatch batch;
  if (ready.snapshot) {
    SHOAL_RETURN_IF_ERROR(write_snapshot(&batch, *ready.snapshot));
    // Everything up to and including the snapshot is replaced by it.
    batch.DeleteRange(db_->log, index_key(0), index_key(ready.snapshot->meta.index + 1));
  }
  if (!ready.entries.empty()) {
    raft::Index first = ready.entries.front().index;
    raft::Index last = ready.entries.back().index;
    // A replaced suffix beyond the new entries must not survive.
    if (memory_->last_index() > last) {
      batch.DeleteRange(db_->log, index_key(last + 1), index_key(memory_->last_index() + 1));
    }
    for (const auto& e : ready.entries) {
      SHOAL_ASSERT(e.index >= first && e.index <= last);
      batch.Put(db_->log, index_key(e.index), encode_entry_value(e));
    }
  }
  if (ready.hard_state) batch.Put(db_->state, "hard_state", encode_hard_state(*ready.hard_state));
  // Entries, snapshots, terms and votes must be on disk before anything is
  // sent. A commit index alone need not be (etcd does the same): losing it
  // only makes a restarted node apply less until the leader tells it again,
  // and RocksDB's log is sequential, so it never survives without the
  // entries written before it.
  const raft::HardState& prev = memory_->hard_state();
  bool must_sync = ready.snapshot || !ready.entries.empty() ||
                   (ready.hard_state && (ready.hard_state->term != prev.term || ready.hard_state->vote != prev.vote));
  rocksdb::WriteOptions wo;
  wo.sync = must_sync;
  SHOAL_RETURN_IF_ERROR(from_rocks(db_->db->Write(wo, &batch), "cannot write the Raft log"));
  if (must_sync) ++stats_.synced_writes;
  stats_.entries_written += ready.entries.size();
  fresh_ = false;

  if (ready.snapshot) {
    SHOAL_RETURN_IF_ERROR(memory_->apply_snapshot(*ready.snapshot));
    snapshot_ = *ready.snapshot;
  }
  if (ready.hard_state) memory_->set_hard_state(*ready.hard_state);
  if (!ready.entries.empty()) SHOAL_RETURN_IF_ERROR(memory_->append(ready.entries));
  return {};
}

Status LogStore::save_local_snapshot(raft::Index index, const raft::ConfState& conf, std::string image,
                                     raft::Index compact_to) {
  SHOAL_ASSERT(compact_to <= index);
  auto term = memory_->term(index);
  if (!term.ok()) return term.status();
  raft::Snapshot snap;
  snap.meta.index = index;
  snap.meta.term = *term;
  snap.meta.conf = conf;
  snap.data = std::move(image);
  rocksdb::WriteBatch batch;
  SHOAL_RETURN_IF_ERROR(write_snapshot(&batch, snap));
  if (compact_to > 0) batch.DeleteRange(db_->log, index_key(0), index_key(compact_to + 1));
  rocksdb::WriteOptions wo;
  wo.sync = true;
  SHOAL_RETURN_IF_ERROR(from_rocks(db_->db->Write(wo, &batch), "cannot write a snapshot"));
  ++stats_.synced_writes;
  SHOAL_RETURN_IF_ERROR(memory_->create_snapshot(index, &conf, snap.data));
  if (compact_to >= memory_->first_index()) SHOAL_RETURN_IF_ERROR(memory_->compact(compact_to));
  snapshot_ = std::move(snap);
  return {};
}

}  // namespace shoal::control
