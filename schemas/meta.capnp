@0xc50025fff204df1f;
# Metadata key-value store wire contract (src/meta). A Request is both the
# payload of a committed Raft entry (one message per entry, in the flat
# form capnp::messageToFlatArray writes) and what a client sends over RPC;
# a Response is what the state machine answers. Both are produced and checked by src/meta/codec.cc: decoding
# bounds the message size (Request 2 MiB, Response 32 MiB), the traversal
# and nesting, then validates every field against the limits in
# src/meta/types.h. Keys and values are raw bytes (Data), compared
# bytewise. All revisions, lease ids and counts are non-negative.

$import "/capnp/c++.capnp".namespace("shoal::meta::wire");

struct KeyValue {
  key @0 :Data;
  value @1 :Data;
  createRevision @2 :Int64;  # revision of the put that created the key
  modRevision @3 :Int64;     # revision of the last put (or the delete, in a DELETE event)
  version @4 :Int64;         # puts since creation, 1 for a new key
  lease @5 :Int64;           # 0: no lease
}

# Optional exactly-once id of a write. clientId 0 means "no id". A client
# picks a random clientId per session and increases seq by one per request.
struct RequestId {
  clientId @0 :UInt64;
  seq @1 :UInt64;
}

struct PutRequest {
  key @0 :Data;
  value @1 :Data;
  lease @2 :Int64;
  hasExpectedModRevision @3 :Bool;  # compare-and-swap on the key's modRevision
  expectedModRevision @4 :Int64;    # 0: the key must not exist
  prevKv @5 :Bool;
}

# rangeEnd empty: the single key; "\0": every key >= key; else [key, rangeEnd).
struct RangeRequest {
  key @0 :Data;
  rangeEnd @1 :Data;
  limit @2 :Int64;     # 0: no limit beyond the store's response bound
  revision @3 :Int64;  # 0 or the current revision; history is not kept
  keysOnly @4 :Bool;
  countOnly @5 :Bool;
}

struct DeleteRangeRequest {
  key @0 :Data;
  rangeEnd @1 :Data;
  prevKv @2 :Bool;
}

enum CompareTarget {
  value @0;
  version @1;
  createRevision @2;
  modRevision @3;
  lease @4;
  exists @5;  # compares 1 (present) or 0 (absent) with `number`
}

enum CompareOp {
  equal @0;
  notEqual @1;
  less @2;
  greater @3;
}

struct Compare {
  key @0 :Data;
  target @1 :CompareTarget;
  op @2 :CompareOp;
  value @3 :Data;    # for target `value`
  number @4 :Int64;  # for every other target
}

struct TxnOp {
  union {
    put @0 :PutRequest;
    deleteRange @1 :DeleteRangeRequest;
    range @2 :RangeRequest;
  }
}

struct TxnRequest {
  compares @0 :List(Compare);
  success @1 :List(TxnOp);
  failure @2 :List(TxnOp);
}

struct LeaseGrantRequest {
  id @0 :Int64;          # 0: the state machine assigns one
  ttlSeconds @1 :Int64;
}

struct LeaseRevokeRequest {
  id @0 :Int64;
}

# Proposed by the leader's Lessor when TTLs run out; unknown ids are ignored.
struct LeaseExpireRequest {
  ids @0 :List(Int64);
}

# Served by the leader's Lessor; never a Raft entry.
struct LeaseKeepAliveRequest {
  id @0 :Int64;
}

struct LeaseTimeToLiveRequest {
  id @0 :Int64;
  keys @1 :Bool;
}

struct Request {
  id @0 :RequestId;
  union {
    put @1 :PutRequest;
    range @2 :RangeRequest;
    deleteRange @3 :DeleteRangeRequest;
    txn @4 :TxnRequest;
    leaseGrant @5 :LeaseGrantRequest;
    leaseRevoke @6 :LeaseRevokeRequest;
    leaseExpire @7 :LeaseExpireRequest;
    leaseKeepAlive @8 :LeaseKeepAliveRequest;
    leaseTimeToLive @9 :LeaseTimeToLiveRequest;
    leaseLeases @10 :Void;
  }
}

# ---- Responses ----------------------------------------------------------------

# Mirrors shoal::Status::Code (include/shoal/status.h).
enum StatusCode {
  ok @0;
  invalidArgument @1;
  notFound @2;
  alreadyExists @3;
  unauthenticated @4;
  unavailable @5;
  deadlineExceeded @6;
  resourceExhausted @7;
  ioError @8;
  cancelled @9;
  internal @10;
}

struct Status {
  code @0 :StatusCode;
  message @1 :Text;
}

struct PutResponse {
  succeeded @0 :Bool;     # false only when the compare-and-swap failed
  prevKv @1 :KeyValue;    # set when asked for and the key existed
  current @2 :KeyValue;   # set when the compare-and-swap failed and the key exists
  prevKvTruncated @3 :Bool;  # inside a txn: prevKv did not fit the response bound
}

struct RangeResponse {
  kvs @0 :List(KeyValue);
  count @1 :Int64;  # keys in the whole range, regardless of limit
  more @2 :Bool;    # continue with key = last key + "\0"
}

struct DeleteRangeResponse {
  deleted @0 :Int64;
  prevKvs @1 :List(KeyValue);
  prevKvsTruncated @2 :Bool;  # prevKvs hit the response bound; all keys were deleted
}

struct TxnOpResponse {
  union {
    put @0 :PutResponse;
    deleteRange @1 :DeleteRangeResponse;
    range @2 :RangeResponse;
  }
}

struct TxnResponse {
  succeeded @0 :Bool;
  responses @1 :List(TxnOpResponse);
}

struct LeaseGrantResponse {
  id @0 :Int64;
  ttlSeconds @1 :Int64;
}

struct LeaseRevokeResponse {
  deleted @0 :Int64;
}

struct LeaseExpireResponse {
  revoked @0 :Int64;
  deleted @1 :Int64;
}

struct LeaseKeepAliveResponse {
  id @0 :Int64;
  ttlSeconds @1 :Int64;
}

struct LeaseTimeToLiveResponse {
  id @0 :Int64;
  grantedTtlSeconds @1 :Int64;
  remainingMs @2 :Int64;   # filled by the leader's Lessor; -1 when unknown
  keys @3 :List(Data);
  keysTruncated @4 :Bool;
}

struct LeaseLeasesResponse {
  ids @0 :List(Int64);
}

struct Response {
  status @0 :Status;
  revision @1 :Int64;  # the store's revision after this request
  union {
    none @2 :Void;
    put @3 :PutResponse;
    range @4 :RangeResponse;
    deleteRange @5 :DeleteRangeResponse;
    txn @6 :TxnResponse;
    leaseGrant @7 :LeaseGrantResponse;
    leaseRevoke @8 :LeaseRevokeResponse;
    leaseExpire @9 :LeaseExpireResponse;
    leaseKeepAlive @10 :LeaseKeepAliveResponse;
    leaseTimeToLive @11 :LeaseTimeToLiveResponse;
    leaseLeases @12 :LeaseLeasesResponse;
  }
}
