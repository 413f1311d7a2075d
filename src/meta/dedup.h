// Exactly-once writes: remembers the response to each recent request id so a
// retried write is answered, not applied again. Part of the replicated state
// (it is in snapshots), so everything here is deterministic.
//
// Bounds and eviction (all in apply order, hence the same on every member):
// - at most `entries_max` ids and `bytes_max` bytes of kept responses; the
//   oldest id is evicted first;
// - a response larger than `response_bytes_max` is not kept: a retry learns
//   the request was applied (kAlreadyExists naming the revision) but not the
//   response;
// - when an id is evicted, its client's watermark rises to its seq; a later
//   request from that client with seq <= the watermark is refused
//   (kInvalidArgument), because it may already have been applied. So seqs
//   must increase per client id. Watermarks of at most `clients_max` clients
//   are kept, least recently raised evicted first.
// Owned by KvStore; one thread.
#pragma once

#include <cstddef>
#include <cstdint>
#include <deque>
#include <map>
#include <optional>
#include <string>
#include <utility>

#include "meta/bytes.h"
#include "meta/types.h"
#include "shoal/status.h"

namespace shoal::meta {

struct DedupLimits {
  size_t entries_max = 100'000;
  size_t bytes_max = 64 * 1'024 * 1'024;
  size_t response_bytes_max = 1'024 * 1'024;
  size_t clients_max = 100'000;
};

class DedupTable {
 public:
  explicit DedupTable(DedupLimits limits);

  // The answer for a request whose id was seen (the original response, or an
  // error for a reused, stale or not-kept id); nullopt when it must be applied.
  // `fingerprint` identifies the request's content; `revision` is the store's.
  std::optional<Response> check(const RequestId& id, uint64_t fingerprint, int64_t revision) const;
  // Remembers the response of an applied request (id not empty, not present).
  void record(const RequestId& id, uint64_t fingerprint, const Response& response);

  size_t size() const { return entries_.size(); }
  size_t bytes() const { return bytes_; }
  size_t watermarks() const { return watermarks_.size(); }

  // Snapshot form; read() replaces the contents only on success.
  void write(ByteWriter& out) const;
  Status read(ByteReader& in);

 private:
  using Key = std::pair<uint64_t, uint64_t>;  // client id, seq
  struct Entry {
    uint64_t fingerprint = 0;
    int64_t revision = 0;
    uint64_t response_size = 0;
    bool kept = false;
    std::string response;  // encoded, when kept
  };
  struct Watermark {
    uint64_t seq = 0;
    uint64_t stamp = 0;  // position in stamps_, for least-recently-raised eviction
  };

  static size_t entry_bytes(const Entry& e);
  void insert(const Key& key, Entry entry);
  void raise_watermark(uint64_t client, uint64_t seq);
  void evict();

  DedupLimits limits_;
  std::map<Key, Entry> entries_;
  std::deque<Key> order_;  // oldest first
  size_t bytes_ = 0;
  std::map<uint64_t, Watermark> watermarks_;  // by client id
  std::map<uint64_t, uint64_t> stamps_;       // stamp -> client id, oldest first
  uint64_t next_stamp_ = 1;
};

}  // namespace shoal::meta
