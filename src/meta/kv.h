// KvStore: the metadata state machine, an etcd-v3-like key-value store that
// every member of the metadata Raft group applies in the same order.
//
// Pure and deterministic: no clock, no randomness, no unordered iteration.
// Given the same Options (the replicated ones, below), the same snapshot and
// the same committed entries, every member returns the same responses and
// events and ends in the same state (byte-identical snapshots). State lives
// in memory; it is made durable by Raft snapshots (snapshot()/restore()) plus
// replay of the log entries after the snapshot's applied_index().
//
// Requests and limits are in types.h, their wire form in codec.h. How the
// node drives it:
//   - every committed entry: apply(index, entry.data) for meta commands,
//     apply_noop(index) for entries that are not (empty leader entries,
//     configuration changes). Indexes must increase (asserted).
//   - hand ApplyResult::events to watchers; on the leader, feed the result to
//     Lessor::observe (lease timers). Respond to the proposer with `response`.
//   - linearizable reads: Raft ReadIndex, wait until applied_index() reaches
//     it, then read(). Watch catch-up: events_since().
//
// Revisions: one global revision, +1 for every request that changes at least
// one key (a put; a delete, txn, lease revoke or lease expire that removes or
// writes a key). A txn's writes all share that one revision. Lease grants and
// revokes without keys do not change it. Response::revision is the revision
// after the request.
//
// Lease ids: LeaseGrant with id 0 gets the Raft index of its entry (as
// int64), or the next higher id not in use; a nonzero id is taken as is
// (kAlreadyExists if in use). The store keeps each lease's granted TTL; the
// countdown is the leader's Lessor (lessor.h), which re-arms every lease with
// its full TTL when a member becomes leader.
//
// Request ids (exactly-once): a write with a nonzero RequestId::client_id is
// remembered (dedup.h) with a fingerprint of its content. A retry with the
// same id and content gets the original response without being applied (no
// events); the same id with other content gets kInvalidArgument. Read-only
// requests are never remembered. Requests that fail validation are not
// remembered; every other outcome (including a failed compare-and-swap) is.
//
// One thread owns a KvStore; const methods may run concurrently with each
// other but not with apply()/restore().
#pragma once

#include <cstddef>
#include <cstdint>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <vector>

#include "meta/dedup.h"
#include "meta/history.h"
#include "meta/types.h"
#include "shoal/status.h"

namespace shoal::meta {

struct KvOptions {
  // Replicated behaviour: must be equal on every member, or members would
  // answer the same entry differently. restore() refuses snapshots that do
  // not fit the dedup limits.
  DedupLimits dedup;
  uint64_t data_bytes_max = 2ull * 1'024 * 1'024 * 1'024;  // keys + values; puts beyond fail
  size_t leases_max = 1'000'000;
  // Node-local: only how far back events_since() reaches.
  size_t history_events_max = 100'000;
  size_t history_bytes_max = 64 * 1'024 * 1'024;
};

struct LeaseInfo {
  int64_t id = 0;
  int64_t ttl_seconds = 0;  // as granted
  size_t key_count = 0;

  bool operator==(const LeaseInfo&) const = default;
};

// What one applied entry did.
struct ApplyResult {
  Response response;
  std::vector<Event> events;              // in order, all at response.revision
  std::vector<LeaseInfo> leases_granted;  // key_count 0
  std::vector<int64_t> leases_revoked;    // by revoke or expire, with or without keys
};

class KvStore {
 public:
  explicit KvStore(KvOptions options = {});

  // Applies one committed Raft entry's data. Never fails and never crashes on
  // bad bytes: a malformed or invalid command yields an error response and
  // changes nothing but applied_index(). raft_index > applied_index().
  ApplyResult apply(uint64_t raft_index, std::string_view command);
  // The same for a decoded request (tests; a caller that already decoded).
  ApplyResult apply(uint64_t raft_index, const Request& request);
  // Records that entry `raft_index` carried no meta command.
  void apply_noop(uint64_t raft_index);

  // Serves range, lease time-to-live and lease list requests from local state;
  // anything else gets kInvalidArgument.
  Response read(const Request& request) const;
  Response range(const RangeRequest& request) const;

  // Watch catch-up: events with revision >= start_revision in the key range
  // (types.h rules), at most about max_events, whole revisions; continue from
  // next_revision. kNotFound ("compacted: ...") when start_revision is older
  // than oldest_event_revision(): the history is bounded (KvOptions) and is
  // not in snapshots, so after restore() it starts at revision() + 1.
  Result<EventBatch> events_since(int64_t start_revision, std::string_view key,
                                  std::string_view range_end, size_t max_events) const;
  int64_t oldest_event_revision() const { return history_.first_revision(); }

  int64_t revision() const { return state_.revision; }
  uint64_t applied_index() const { return state_.applied_index; }
  size_t key_count() const { return state_.keys.size(); }
  uint64_t data_bytes() const { return state_.data_bytes; }
  std::vector<LeaseInfo> leases() const;  // ascending id
  std::optional<LeaseInfo> lease(int64_t id) const;
  const DedupTable& dedup() const { return state_.dedup; }

  // The whole replicated state: "SHKV", a version byte, the body, CRC32C.
  // The event history is not included.
  std::string snapshot() const;
  // Replaces the state with a snapshot's after checking it completely; on any
  // error the store is unchanged. Clears the event history.
  Status restore(std::string_view bytes);

 private:
  struct Entry {
    std::string value;
    int64_t create_revision = 0;
    int64_t mod_revision = 0;
    int64_t version = 0;
    int64_t lease = 0;
  };
  struct Lease {
    int64_t ttl_seconds = 0;
    std::set<std::string, std::less<>> keys;
  };
  using KeyMap = std::map<std::string, Entry, std::less<>>;
  struct State {
    explicit State(const DedupLimits& limits) : dedup(limits) {}
    KeyMap keys;
    std::map<int64_t, Lease> leases;
    int64_t revision = 0;
    uint64_t applied_index = 0;
    uint64_t data_bytes = 0;
    DedupTable dedup;
  };
  // The writes of one request: they all get `revision`, which becomes the
  // store's when at least one key changed.
  struct Write {
    int64_t revision = 0;
    ApplyResult result;
    bool changed() const { return !result.events.empty(); }
  };
  struct Budget {  // what one response may still carry
    size_t kvs = kResponseKvsMax;
    size_t bytes = kResponseKvBytesMax;
  };

  ApplyResult apply_request(uint64_t raft_index, const Request& request);
  Response execute(uint64_t raft_index, const Request& request, Write& write);
  Response put(const PutRequest& r, Write& write);
  Response delete_range(const DeleteRangeRequest& r, Write& write);
  Response txn(const TxnRequest& r, Write& write);
  Response lease_grant(uint64_t raft_index, const LeaseGrantRequest& r, Write& write);
  Response lease_revoke(const LeaseRevokeRequest& r, Write& write);
  Response lease_expire(const LeaseExpireRequest& r, Write& write);
  Response read_body(const Request::Body& body) const;

  PutResponse do_put(const PutRequest& r, Write& write, Budget& budget);
  DeleteRangeResponse do_delete(const DeleteRangeRequest& r, Write& write, Budget& budget);
  RangeResponse do_range(const RangeRequest& r, Budget& budget) const;
  int64_t revoke(int64_t id, Write& write);
  KeyValue erase_key(KeyMap::iterator it, Write& write);  // returns the erased key-value
  bool compare_holds(const Compare& c) const;
  Status check_put(const PutRequest& put, int64_t& growth) const;
  Status check_growth(int64_t growth) const;
  Status check_ops(const std::vector<TxnOp>& ops) const;
  Status check_revision(int64_t revision) const;
  Response ok_response() const;
  Response error(Status status) const;
  KeyValue to_kv(const std::string& key, const Entry& e) const;

  void write_state(ByteWriter& out) const;
  Status read_state(std::string_view body, State& out) const;

  KvOptions options_;
  State state_;
  EventHistory history_;
};

}  // namespace shoal::meta
