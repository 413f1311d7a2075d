// Requests, responses and limits of the metadata key-value store.
//
// These plain structs are what the state machine (kv.h) applies and answers;
// codec.h turns them into the Cap'n Proto bytes of schemas/meta.capnp (the
// payload of a Raft entry, and what travels over RPC). The model is etcd v3:
// ordered byte-string keys, one global revision, per-key create/mod revision
// and version, leases, transactions with compares.
//
// Values only: any thread may build, copy and inspect them.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

#include "shoal/status.h"

namespace shoal::meta {

// ---- Limits ---------------------------------------------------------------------
// Every one is checked when a request is encoded, decoded and applied; a
// request over a limit gets kResourceExhausted naming the limit.

inline constexpr size_t kKeyBytesMax = 1'536;                    // 1.5 KiB
inline constexpr size_t kValueBytesMax = 1'536 * 1'024;          // 1.5 MiB
inline constexpr size_t kRequestBytesMax = 2 * 1'024 * 1'024;    // one encoded Request
inline constexpr size_t kResponseBytesMax = 32 * 1'024 * 1'024;  // one encoded Response
inline constexpr size_t kTxnComparesMax = 128;
inline constexpr size_t kTxnOpsMax = 128;  // in each of success and failure
inline constexpr size_t kLeaseExpireIdsMax = 1'000;
inline constexpr int64_t kLeaseTtlSecondsMin = 1;
inline constexpr int64_t kLeaseTtlSecondsMax = 365 * 24 * 3'600;  // one year
// One response (a range, a delete's prev_kvs, a lease's keys, or all of a
// txn's op responses together) carries at most this many keys and this many
// key+value bytes; the rest is signalled with `more`/`*_truncated`.
inline constexpr size_t kResponseKvsMax = 10'000;
inline constexpr size_t kResponseKvBytesMax = 16 * 1'024 * 1'024;

// ---- Data -------------------------------------------------------------------------

struct KeyValue {
  std::string key;
  std::string value;
  int64_t create_revision = 0;
  int64_t mod_revision = 0;
  int64_t version = 0;  // puts since creation; 1 for a new key
  int64_t lease = 0;    // 0: none

  bool operator==(const KeyValue&) const = default;
};

// A change produced by one applied request, for watchers. All events of one
// request share one revision. A DELETE event's kv holds the key and, as
// mod_revision, the revision of the delete; its other fields are zero.
struct Event {
  enum class Type : uint8_t { kPut, kDelete };
  Type type = Type::kPut;
  KeyValue kv;
  std::optional<KeyValue> prev;  // the key before this change, if it existed

  int64_t revision() const { return kv.mod_revision; }
  bool operator==(const Event&) const = default;
};

// Exactly-once id of a write. client_id 0 means none. A client picks a
// random client_id per session and increases seq with every request.
struct RequestId {
  uint64_t client_id = 0;
  uint64_t seq = 0;

  bool empty() const { return client_id == 0; }
  bool operator==(const RequestId&) const = default;
};

// ---- Requests ---------------------------------------------------------------------
// Key ranges, as in etcd: range_end empty selects the single key `key`;
// range_end "\0" selects every key >= key; otherwise [key, range_end), and
// range_end must sort after key. Keys are never empty.

struct PutRequest {
  std::string key;
  std::string value;
  int64_t lease = 0;  // the lease must exist; 0 detaches the key from any lease
  // Compare-and-swap: the key's mod_revision must equal this; 0 means the key
  // must not exist. Not allowed inside a txn (use compares there).
  std::optional<int64_t> expected_mod_revision;
  bool prev_kv = false;

  bool operator==(const PutRequest&) const = default;
};

struct RangeRequest {
  std::string key;
  std::string range_end;
  int64_t limit = 0;     // 0: only the response bound applies
  int64_t revision = 0;  // 0 or the current revision: only current state is kept
  bool keys_only = false;
  bool count_only = false;

  static RangeRequest single(std::string key);
  static RangeRequest prefix(std::string_view prefix);  // every key starting with prefix
  static RangeRequest all();
  bool operator==(const RangeRequest&) const = default;
};

struct DeleteRangeRequest {
  std::string key;
  std::string range_end;
  bool prev_kv = false;

  bool operator==(const DeleteRangeRequest&) const = default;
};

struct Compare {
  enum class Target : uint8_t { kValue, kVersion, kCreateRevision, kModRevision, kLease, kExists };
  enum class Op : uint8_t { kEqual, kNotEqual, kLess, kGreater };
  std::string key;
  Target target = Target::kVersion;
  Op op = Op::kEqual;
  std::string value;   // for kValue: bytewise comparison
  int64_t number = 0;  // for the rest; kExists compares 1 (present) or 0 (absent)

  bool operator==(const Compare&) const = default;
};

using TxnOp = std::variant<PutRequest, DeleteRangeRequest, RangeRequest>;

// If every compare holds, runs `success`, else `failure`. Ops run in order and
// a range sees the writes of earlier ops; all writes share one revision. Like
// etcd, one branch may not put the same key twice nor put a key that one of
// its deletes covers. A compare on a missing key sees zeros, except that a
// kValue compare on a missing key is false whatever the op.
struct TxnRequest {
  std::vector<Compare> compares;
  std::vector<TxnOp> success;
  std::vector<TxnOp> failure;

  bool operator==(const TxnRequest&) const = default;
};

struct LeaseGrantRequest {
  int64_t id = 0;  // 0: assigned by the state machine (see kv.h)
  int64_t ttl_seconds = 0;

  bool operator==(const LeaseGrantRequest&) const = default;
};

struct LeaseRevokeRequest {
  int64_t id = 0;

  bool operator==(const LeaseRevokeRequest&) const = default;
};

// Proposed by the leader's Lessor; revokes each known id, ignores the rest.
struct LeaseExpireRequest {
  std::vector<int64_t> ids;

  bool operator==(const LeaseExpireRequest&) const = default;
};

// Served by the leader's Lessor (lessor.h); never replicated.
struct LeaseKeepAliveRequest {
  int64_t id = 0;

  bool operator==(const LeaseKeepAliveRequest&) const = default;
};

struct LeaseTimeToLiveRequest {
  int64_t id = 0;
  bool keys = false;  // also list the attached keys

  bool operator==(const LeaseTimeToLiveRequest&) const = default;
};

struct LeaseLeasesRequest {
  bool operator==(const LeaseLeasesRequest&) const = default;
};

struct Request {
  using Body = std::variant<PutRequest, RangeRequest, DeleteRangeRequest, TxnRequest,
                            LeaseGrantRequest, LeaseRevokeRequest, LeaseExpireRequest,
                            LeaseKeepAliveRequest, LeaseTimeToLiveRequest, LeaseLeasesRequest>;
  RequestId id;
  Body body;

  bool operator==(const Request&) const = default;
};

// ---- Responses --------------------------------------------------------------------

struct PutResponse {
  bool succeeded = true;            // false only when the compare-and-swap failed
  std::optional<KeyValue> prev_kv;  // when asked for and the key existed
  std::optional<KeyValue> current;  // when the compare-and-swap failed and the key exists
  bool prev_kv_truncated = false;   // in a txn: prev_kv did not fit the response bound

  bool operator==(const PutResponse&) const = default;
};

struct RangeResponse {
  std::vector<KeyValue> kvs;
  int64_t count = 0;  // keys in the whole range, regardless of limit and bounds
  bool more = false;  // continue with RangeRequest{key = kvs.back().key + '\0', same range_end}

  bool operator==(const RangeResponse&) const = default;
};

struct DeleteRangeResponse {
  int64_t deleted = 0;
  std::vector<KeyValue> prev_kvs;
  bool prev_kvs_truncated = false;  // the response bound cut prev_kvs; every key was deleted

  bool operator==(const DeleteRangeResponse&) const = default;
};

using TxnOpResponse = std::variant<PutResponse, DeleteRangeResponse, RangeResponse>;

struct TxnResponse {
  bool succeeded = false;  // which branch ran
  std::vector<TxnOpResponse> responses;

  bool operator==(const TxnResponse&) const = default;
};

struct LeaseGrantResponse {
  int64_t id = 0;
  int64_t ttl_seconds = 0;

  bool operator==(const LeaseGrantResponse&) const = default;
};

struct LeaseRevokeResponse {
  int64_t deleted = 0;

  bool operator==(const LeaseRevokeResponse&) const = default;
};

struct LeaseExpireResponse {
  int64_t revoked = 0;
  int64_t deleted = 0;

  bool operator==(const LeaseExpireResponse&) const = default;
};

struct LeaseKeepAliveResponse {
  int64_t id = 0;
  int64_t ttl_seconds = 0;

  bool operator==(const LeaseKeepAliveResponse&) const = default;
};

struct LeaseTimeToLiveResponse {
  int64_t id = 0;
  int64_t granted_ttl_seconds = 0;
  int64_t remaining_ms = -1;  // the state machine does not know; the leader's Lessor fills it
  std::vector<std::string> keys;
  bool keys_truncated = false;

  bool operator==(const LeaseTimeToLiveResponse&) const = default;
};

struct LeaseLeasesResponse {
  std::vector<int64_t> ids;  // ascending

  bool operator==(const LeaseLeasesResponse&) const = default;
};

// status.ok() or an error whose code means:
//   kInvalidArgument   malformed request, bad range, reused or stale request id
//   kResourceExhausted a size or count limit (the message names it), or the store quota
//   kAlreadyExists     compare-and-swap failed (body is a PutResponse with succeeded=false),
//                      a lease id already granted, or a retried request whose
//                      response was too large to keep (it WAS applied)
//   kNotFound          an unknown lease
// revision is the store's revision after the request. On error the body is
// std::monostate unless said otherwise.
struct Response {
  using Body =
      std::variant<std::monostate, PutResponse, RangeResponse, DeleteRangeResponse, TxnResponse,
                   LeaseGrantResponse, LeaseRevokeResponse, LeaseExpireResponse,
                   LeaseKeepAliveResponse, LeaseTimeToLiveResponse, LeaseLeasesResponse>;
  Status status;
  int64_t revision = 0;
  Body body;

  bool operator==(const Response& other) const;
};

// ---- Helpers ----------------------------------------------------------------------

// The range_end that selects every key starting with `prefix`: the prefix with
// its last byte below 0xff incremented (trailing 0xff bytes dropped), or "\0"
// (every key >= prefix) when there is no such byte.
std::string prefix_range_end(std::string_view prefix);

// True when `key` lies in the range (key, range_end) as described above.
bool in_range(std::string_view key, std::string_view range_key, std::string_view range_end);

// Checks every field of a request against the limits above. Does not look at
// store state (lease existence, current revision) nor at the encoded size.
Status validate_request(const Request& request);

// Checks sizes and signs of a key-value from a response or a snapshot.
Status validate_key_value(const KeyValue& kv, const char* what);

// "put", "range", "txn", ... for messages and logs.
std::string_view request_name(const Request::Body& body);

// True for the requests the state machine applies through Raft and that may
// change it (put, delete, txn, lease grant/revoke/expire).
bool is_write(const Request::Body& body);

}  // namespace shoal::meta
