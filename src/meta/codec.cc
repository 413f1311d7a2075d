#include "meta/codec.h"

#include <capnp/message.h>
#include <capnp/serialize.h>
#include <kj/exception.h>

#include <cstring>

#include "base/assert.h"
#include "meta.capnp.h"

namespace shoal::meta {

namespace {

namespace wire = ::shoal::meta::wire;

constexpr int kNestingLimit = 16;
// Cap'n Proto counts every word it reads; an honest message is read about
// once, so four times its size (plus slack for tiny messages) is never hit
// legitimately and stops amplification by shared or zero-sized pointers.
constexpr uint64_t kTraversalFactor = 4;
constexpr uint64_t kTraversalSlackWords = 1'024;
constexpr size_t kLeaseListMax = 1'000'000;
constexpr size_t kStatusMessageBytesMax = 4'096;  // longer messages are cut when encoding

// ---- Encoding ----------------------------------------------------------------

capnp::Data::Reader as_data(std::string_view s) {
  return {reinterpret_cast<const kj::byte*>(s.data()), s.size()};
}

std::string to_string(capnp::Data::Reader d) {
  return {reinterpret_cast<const char*>(d.begin()), d.size()};
}

std::string words_to_string(capnp::MessageBuilder& builder) {
  kj::Array<capnp::word> words = capnp::messageToFlatArray(builder);
  auto bytes = words.asBytes();
  return {reinterpret_cast<const char*>(bytes.begin()), bytes.size()};
}

void fill_kv(wire::KeyValue::Builder b, const KeyValue& kv) {
  b.setKey(as_data(kv.key));
  b.setValue(as_data(kv.value));
  b.setCreateRevision(kv.create_revision);
  b.setModRevision(kv.mod_revision);
  b.setVersion(kv.version);
  b.setLease(kv.lease);
}

void fill_put(wire::PutRequest::Builder b, const PutRequest& r) {
  b.setKey(as_data(r.key));
  b.setValue(as_data(r.value));
  b.setLease(r.lease);
  b.setHasExpectedModRevision(r.expected_mod_revision.has_value());
  b.setExpectedModRevision(r.expected_mod_revision.value_or(0));
  b.setPrevKv(r.prev_kv);
}

void fill_range(wire::RangeRequest::Builder b, const RangeRequest& r) {
  b.setKey(as_data(r.key));
  b.setRangeEnd(as_data(r.range_end));
  b.setLimit(r.limit);
  b.setRevision(r.revision);
  b.setKeysOnly(r.keys_only);
  b.setCountOnly(r.count_only);
}

void fill_delete(wire::DeleteRangeRequest::Builder b, const DeleteRangeRequest& r) {
  b.setKey(as_data(r.key));
  b.setRangeEnd(as_data(r.range_end));
  b.setPrevKv(r.prev_kv);
}

void fill_ops(capnp::List<wire::TxnOp>::Builder list, const std::vector<TxnOp>& ops) {
  for (uint i = 0; i < ops.size(); ++i) {
    if (const auto* put = std::get_if<PutRequest>(&ops[i])) {
      fill_put(list[i].initPut(), *put);
    } else if (const auto* del = std::get_if<DeleteRangeRequest>(&ops[i])) {
      fill_delete(list[i].initDeleteRange(), *del);
    } else {
      fill_range(list[i].initRange(), std::get<RangeRequest>(ops[i]));
    }
  }
}

void fill_txn(wire::TxnRequest::Builder b, const TxnRequest& r) {
  auto compares = b.initCompares(static_cast<uint>(r.compares.size()));
  for (uint i = 0; i < r.compares.size(); ++i) {
    const Compare& c = r.compares[i];
    compares[i].setKey(as_data(c.key));
    compares[i].setTarget(static_cast<wire::CompareTarget>(c.target));
    compares[i].setOp(static_cast<wire::CompareOp>(c.op));
    compares[i].setValue(as_data(c.value));
    compares[i].setNumber(c.number);
  }
  fill_ops(b.initSuccess(static_cast<uint>(r.success.size())), r.success);
  fill_ops(b.initFailure(static_cast<uint>(r.failure.size())), r.failure);
}

struct RequestFiller {
  wire::Request::Builder b;
  void operator()(const PutRequest& r) { fill_put(b.initPut(), r); }
  void operator()(const RangeRequest& r) { fill_range(b.initRange(), r); }
  void operator()(const DeleteRangeRequest& r) { fill_delete(b.initDeleteRange(), r); }
  void operator()(const TxnRequest& r) { fill_txn(b.initTxn(), r); }
  void operator()(const LeaseGrantRequest& r) {
    auto g = b.initLeaseGrant();
    g.setId(r.id);
    g.setTtlSeconds(r.ttl_seconds);
  }
  void operator()(const LeaseRevokeRequest& r) { b.initLeaseRevoke().setId(r.id); }
  void operator()(const LeaseExpireRequest& r) {
    auto ids = b.initLeaseExpire().initIds(static_cast<uint>(r.ids.size()));
    for (uint i = 0; i < r.ids.size(); ++i) ids.set(i, r.ids[i]);
  }
  void operator()(const LeaseKeepAliveRequest& r) { b.initLeaseKeepAlive().setId(r.id); }
  void operator()(const LeaseTimeToLiveRequest& r) {
    auto t = b.initLeaseTimeToLive();
    t.setId(r.id);
    t.setKeys(r.keys);
  }
  void operator()(const LeaseLeasesRequest&) { b.setLeaseLeases(); }
};

void fill_put_response(wire::PutResponse::Builder b, const PutResponse& r) {
  b.setSucceeded(r.succeeded);
  if (r.prev_kv) fill_kv(b.initPrevKv(), *r.prev_kv);
  if (r.current) fill_kv(b.initCurrent(), *r.current);
  b.setPrevKvTruncated(r.prev_kv_truncated);
}

void fill_range_response(wire::RangeResponse::Builder b, const RangeResponse& r) {
  auto kvs = b.initKvs(static_cast<uint>(r.kvs.size()));
  for (uint i = 0; i < r.kvs.size(); ++i) fill_kv(kvs[i], r.kvs[i]);
  b.setCount(r.count);
  b.setMore(r.more);
}

void fill_delete_response(wire::DeleteRangeResponse::Builder b, const DeleteRangeResponse& r) {
  b.setDeleted(r.deleted);
  auto kvs = b.initPrevKvs(static_cast<uint>(r.prev_kvs.size()));
  for (uint i = 0; i < r.prev_kvs.size(); ++i) fill_kv(kvs[i], r.prev_kvs[i]);
  b.setPrevKvsTruncated(r.prev_kvs_truncated);
}

struct ResponseFiller {
  wire::Response::Builder b;
  void operator()(const std::monostate&) { b.setNone(); }
  void operator()(const PutResponse& r) { fill_put_response(b.initPut(), r); }
  void operator()(const RangeResponse& r) { fill_range_response(b.initRange(), r); }
  void operator()(const DeleteRangeResponse& r) { fill_delete_response(b.initDeleteRange(), r); }
  void operator()(const TxnResponse& r) {
    auto t = b.initTxn();
    t.setSucceeded(r.succeeded);
    auto list = t.initResponses(static_cast<uint>(r.responses.size()));
    for (uint i = 0; i < r.responses.size(); ++i) {
      const TxnOpResponse& op = r.responses[i];
      if (const auto* put = std::get_if<PutResponse>(&op)) {
        fill_put_response(list[i].initPut(), *put);
      } else if (const auto* del = std::get_if<DeleteRangeResponse>(&op)) {
        fill_delete_response(list[i].initDeleteRange(), *del);
      } else {
        fill_range_response(list[i].initRange(), std::get<RangeResponse>(op));
      }
    }
  }
  void operator()(const LeaseGrantResponse& r) {
    auto g = b.initLeaseGrant();
    g.setId(r.id);
    g.setTtlSeconds(r.ttl_seconds);
  }
  void operator()(const LeaseRevokeResponse& r) { b.initLeaseRevoke().setDeleted(r.deleted); }
  void operator()(const LeaseExpireResponse& r) {
    auto e = b.initLeaseExpire();
    e.setRevoked(r.revoked);
    e.setDeleted(r.deleted);
  }
  void operator()(const LeaseKeepAliveResponse& r) {
    auto k = b.initLeaseKeepAlive();
    k.setId(r.id);
    k.setTtlSeconds(r.ttl_seconds);
  }
  void operator()(const LeaseTimeToLiveResponse& r) {
    auto t = b.initLeaseTimeToLive();
    t.setId(r.id);
    t.setGrantedTtlSeconds(r.granted_ttl_seconds);
    t.setRemainingMs(r.remaining_ms);
    auto keys = t.initKeys(static_cast<uint>(r.keys.size()));
    for (uint i = 0; i < r.keys.size(); ++i) keys.set(i, as_data(r.keys[i]));
    t.setKeysTruncated(r.keys_truncated);
  }
  void operator()(const LeaseLeasesResponse& r) {
    auto ids = b.initLeaseLeases().initIds(static_cast<uint>(r.ids.size()));
    for (uint i = 0; i < r.ids.size(); ++i) ids.set(i, r.ids[i]);
  }
};

wire::StatusCode to_wire(Status::Code code) {
  return static_cast<wire::StatusCode>(static_cast<uint16_t>(code));
}

// ---- Decoding ----------------------------------------------------------------

Result<std::string> read_bytes(capnp::Data::Reader d, size_t max, const char* what) {
  if (d.size() > max) {
    return Status::resource_exhausted(std::string(what) + " of " + std::to_string(d.size()) +
                                      " bytes exceeds the " + std::to_string(max) + "-byte limit");
  }
  return to_string(d);
}

#define SHOAL_META_READ(dst, data, max, what)               \
  do {                                                      \
    auto bytes_result_ = read_bytes((data), (max), (what)); \
    if (!bytes_result_.ok()) return bytes_result_.status(); \
    (dst) = std::move(*bytes_result_);                      \
  } while (0)

Status check_count(size_t n, size_t max, const char* what) {
  if (n > max) {
    return Status::resource_exhausted(std::string(what) + ": " + std::to_string(n) +
                                      " entries exceed the limit of " + std::to_string(max));
  }
  return {};
}

Status read_kv(wire::KeyValue::Reader r, KeyValue& out, const char* what) {
  SHOAL_META_READ(out.key, r.getKey(), kKeyBytesMax, "key");
  SHOAL_META_READ(out.value, r.getValue(), kValueBytesMax, "value");
  out.create_revision = r.getCreateRevision();
  out.mod_revision = r.getModRevision();
  out.version = r.getVersion();
  out.lease = r.getLease();
  return validate_key_value(out, what);
}

Status read_put(wire::PutRequest::Reader r, PutRequest& out) {
  SHOAL_META_READ(out.key, r.getKey(), kKeyBytesMax, "put key");
  SHOAL_META_READ(out.value, r.getValue(), kValueBytesMax, "put value");
  out.lease = r.getLease();
  if (r.getHasExpectedModRevision()) out.expected_mod_revision = r.getExpectedModRevision();
  out.prev_kv = r.getPrevKv();
  return {};
}

Status read_range(wire::RangeRequest::Reader r, RangeRequest& out) {
  SHOAL_META_READ(out.key, r.getKey(), kKeyBytesMax, "range key");
  SHOAL_META_READ(out.range_end, r.getRangeEnd(), kKeyBytesMax, "range_end");
  out.limit = r.getLimit();
  out.revision = r.getRevision();
  out.keys_only = r.getKeysOnly();
  out.count_only = r.getCountOnly();
  return {};
}

Status read_delete(wire::DeleteRangeRequest::Reader r, DeleteRangeRequest& out) {
  SHOAL_META_READ(out.key, r.getKey(), kKeyBytesMax, "delete key");
  SHOAL_META_READ(out.range_end, r.getRangeEnd(), kKeyBytesMax, "delete range_end");
  out.prev_kv = r.getPrevKv();
  return {};
}

Status read_compare(wire::Compare::Reader r, Compare& out) {
  auto target = static_cast<uint16_t>(r.getTarget());
  auto op = static_cast<uint16_t>(r.getOp());
  if (target > static_cast<uint16_t>(Compare::Target::kExists)) {
    return Status::invalid_argument("unknown compare target " + std::to_string(target));
  }
  if (op > static_cast<uint16_t>(Compare::Op::kGreater)) {
    return Status::invalid_argument("unknown compare op " + std::to_string(op));
  }
  SHOAL_META_READ(out.key, r.getKey(), kKeyBytesMax, "compare key");
  out.target = static_cast<Compare::Target>(target);
  out.op = static_cast<Compare::Op>(op);
  SHOAL_META_READ(out.value, r.getValue(), kValueBytesMax, "compare value");
  out.number = r.getNumber();
  return {};
}

Status read_ops(capnp::List<wire::TxnOp>::Reader list, std::vector<TxnOp>& out,
                const char* branch) {
  SHOAL_RETURN_IF_ERROR(check_count(list.size(), kTxnOpsMax, branch));
  for (auto op : list) {
    switch (op.which()) {
      case wire::TxnOp::PUT: {
        PutRequest put;
        SHOAL_RETURN_IF_ERROR(read_put(op.getPut(), put));
        out.emplace_back(std::move(put));
        break;
      }
      case wire::TxnOp::DELETE_RANGE: {
        DeleteRangeRequest del;
        SHOAL_RETURN_IF_ERROR(read_delete(op.getDeleteRange(), del));
        out.emplace_back(std::move(del));
        break;
      }
      case wire::TxnOp::RANGE: {
        RangeRequest range;
        SHOAL_RETURN_IF_ERROR(read_range(op.getRange(), range));
        out.emplace_back(std::move(range));
        break;
      }
      default:
        return Status::invalid_argument("unknown txn op " +
                                        std::to_string(static_cast<int>(op.which())));
    }
  }
  return {};
}

Status read_txn(wire::TxnRequest::Reader r, TxnRequest& out) {
  auto compares = r.getCompares();
  SHOAL_RETURN_IF_ERROR(check_count(compares.size(), kTxnComparesMax, "txn compares"));
  for (auto c : compares) {
    Compare compare;
    SHOAL_RETURN_IF_ERROR(read_compare(c, compare));
    out.compares.push_back(std::move(compare));
  }
  SHOAL_RETURN_IF_ERROR(read_ops(r.getSuccess(), out.success, "txn success ops"));
  return read_ops(r.getFailure(), out.failure, "txn failure ops");
}

Result<Request::Body> read_request_body(wire::Request::Reader r) {
  switch (r.which()) {
    case wire::Request::PUT: {
      PutRequest put;
      SHOAL_RETURN_IF_ERROR(read_put(r.getPut(), put));
      return Request::Body(std::move(put));
    }
    case wire::Request::RANGE: {
      RangeRequest range;
      SHOAL_RETURN_IF_ERROR(read_range(r.getRange(), range));
      return Request::Body(std::move(range));
    }
    case wire::Request::DELETE_RANGE: {
      DeleteRangeRequest del;
      SHOAL_RETURN_IF_ERROR(read_delete(r.getDeleteRange(), del));
      return Request::Body(std::move(del));
    }
    case wire::Request::TXN: {
      TxnRequest txn;
      SHOAL_RETURN_IF_ERROR(read_txn(r.getTxn(), txn));
      return Request::Body(std::move(txn));
    }
    case wire::Request::LEASE_GRANT:
      return Request::Body(
          LeaseGrantRequest{r.getLeaseGrant().getId(), r.getLeaseGrant().getTtlSeconds()});
    case wire::Request::LEASE_REVOKE:
      return Request::Body(LeaseRevokeRequest{r.getLeaseRevoke().getId()});
    case wire::Request::LEASE_EXPIRE: {
      auto ids = r.getLeaseExpire().getIds();
      SHOAL_RETURN_IF_ERROR(check_count(ids.size(), kLeaseExpireIdsMax, "lease expire ids"));
      LeaseExpireRequest expire;
      for (int64_t id : ids) expire.ids.push_back(id);
      return Request::Body(std::move(expire));
    }
    case wire::Request::LEASE_KEEP_ALIVE:
      return Request::Body(LeaseKeepAliveRequest{r.getLeaseKeepAlive().getId()});
    case wire::Request::LEASE_TIME_TO_LIVE:
      return Request::Body(
          LeaseTimeToLiveRequest{r.getLeaseTimeToLive().getId(), r.getLeaseTimeToLive().getKeys()});
    case wire::Request::LEASE_LEASES:
      return Request::Body(LeaseLeasesRequest{});
  }
  return Status::invalid_argument("unknown request type " +
                                  std::to_string(static_cast<int>(r.which())));
}

Status read_kv_list(capnp::List<wire::KeyValue>::Reader list, std::vector<KeyValue>& out,
                    const char* what) {
  SHOAL_RETURN_IF_ERROR(check_count(list.size(), kResponseKvsMax, what));
  for (auto kv : list) {
    KeyValue value;
    SHOAL_RETURN_IF_ERROR(read_kv(kv, value, what));
    out.push_back(std::move(value));
  }
  return {};
}

Status read_optional_kv(bool present, wire::KeyValue::Reader r, std::optional<KeyValue>& out,
                        const char* what) {
  if (!present) return {};
  KeyValue kv;
  SHOAL_RETURN_IF_ERROR(read_kv(r, kv, what));
  out = std::move(kv);
  return {};
}

Status read_put_response(wire::PutResponse::Reader r, PutResponse& out) {
  out.succeeded = r.getSucceeded();
  out.prev_kv_truncated = r.getPrevKvTruncated();
  SHOAL_RETURN_IF_ERROR(read_optional_kv(r.hasPrevKv(), r.getPrevKv(), out.prev_kv, "prev kv"));
  return read_optional_kv(r.hasCurrent(), r.getCurrent(), out.current, "current kv");
}

Status check_non_negative(int64_t v, const char* what) {
  if (v < 0) return Status::invalid_argument(std::string(what) + " is negative");
  return {};
}

Status read_range_response(wire::RangeResponse::Reader r, RangeResponse& out) {
  SHOAL_RETURN_IF_ERROR(read_kv_list(r.getKvs(), out.kvs, "range kvs"));
  out.count = r.getCount();
  out.more = r.getMore();
  return check_non_negative(out.count, "range count");
}

Status read_delete_response(wire::DeleteRangeResponse::Reader r, DeleteRangeResponse& out) {
  out.deleted = r.getDeleted();
  SHOAL_RETURN_IF_ERROR(read_kv_list(r.getPrevKvs(), out.prev_kvs, "delete prev kvs"));
  out.prev_kvs_truncated = r.getPrevKvsTruncated();
  return check_non_negative(out.deleted, "deleted count");
}

Result<TxnResponse> read_txn_response(wire::TxnResponse::Reader r) {
  TxnResponse out;
  out.succeeded = r.getSucceeded();
  auto list = r.getResponses();
  SHOAL_RETURN_IF_ERROR(check_count(list.size(), kTxnOpsMax, "txn responses"));
  for (auto op : list) {
    switch (op.which()) {
      case wire::TxnOpResponse::PUT: {
        PutResponse put;
        SHOAL_RETURN_IF_ERROR(read_put_response(op.getPut(), put));
        out.responses.emplace_back(std::move(put));
        break;
      }
      case wire::TxnOpResponse::DELETE_RANGE: {
        DeleteRangeResponse del;
        SHOAL_RETURN_IF_ERROR(read_delete_response(op.getDeleteRange(), del));
        out.responses.emplace_back(std::move(del));
        break;
      }
      case wire::TxnOpResponse::RANGE: {
        RangeResponse range;
        SHOAL_RETURN_IF_ERROR(read_range_response(op.getRange(), range));
        out.responses.emplace_back(std::move(range));
        break;
      }
      default:
        return Status::invalid_argument("unknown txn op response " +
                                        std::to_string(static_cast<int>(op.which())));
    }
  }
  return out;
}

Result<LeaseTimeToLiveResponse> read_ttl_response(wire::LeaseTimeToLiveResponse::Reader r) {
  LeaseTimeToLiveResponse out;
  out.id = r.getId();
  out.granted_ttl_seconds = r.getGrantedTtlSeconds();
  out.remaining_ms = r.getRemainingMs();
  auto keys = r.getKeys();
  SHOAL_RETURN_IF_ERROR(check_count(keys.size(), kResponseKvsMax, "lease keys"));
  for (auto key : keys) {
    std::string k;
    SHOAL_META_READ(k, key, kKeyBytesMax, "lease key");
    out.keys.push_back(std::move(k));
  }
  out.keys_truncated = r.getKeysTruncated();
  return out;
}

Result<Response::Body> read_response_body(wire::Response::Reader r) {
  switch (r.which()) {
    case wire::Response::NONE:
      return Response::Body(std::monostate{});
    case wire::Response::PUT: {
      PutResponse put;
      SHOAL_RETURN_IF_ERROR(read_put_response(r.getPut(), put));
      return Response::Body(std::move(put));
    }
    case wire::Response::RANGE: {
      RangeResponse range;
      SHOAL_RETURN_IF_ERROR(read_range_response(r.getRange(), range));
      return Response::Body(std::move(range));
    }
    case wire::Response::DELETE_RANGE: {
      DeleteRangeResponse del;
      SHOAL_RETURN_IF_ERROR(read_delete_response(r.getDeleteRange(), del));
      return Response::Body(std::move(del));
    }
    case wire::Response::TXN: {
      auto txn = read_txn_response(r.getTxn());
      if (!txn.ok()) return txn.status();
      return Response::Body(std::move(*txn));
    }
    case wire::Response::LEASE_GRANT:
      return Response::Body(
          LeaseGrantResponse{r.getLeaseGrant().getId(), r.getLeaseGrant().getTtlSeconds()});
    case wire::Response::LEASE_REVOKE:
      return Response::Body(LeaseRevokeResponse{r.getLeaseRevoke().getDeleted()});
    case wire::Response::LEASE_EXPIRE:
      return Response::Body(
          LeaseExpireResponse{r.getLeaseExpire().getRevoked(), r.getLeaseExpire().getDeleted()});
    case wire::Response::LEASE_KEEP_ALIVE:
      return Response::Body(LeaseKeepAliveResponse{r.getLeaseKeepAlive().getId(),
                                                   r.getLeaseKeepAlive().getTtlSeconds()});
    case wire::Response::LEASE_TIME_TO_LIVE: {
      auto ttl = read_ttl_response(r.getLeaseTimeToLive());
      if (!ttl.ok()) return ttl.status();
      return Response::Body(std::move(*ttl));
    }
    case wire::Response::LEASE_LEASES: {
      auto ids = r.getLeaseLeases().getIds();
      SHOAL_RETURN_IF_ERROR(check_count(ids.size(), kLeaseListMax, "lease list"));
      LeaseLeasesResponse list;
      for (int64_t id : ids) list.ids.push_back(id);
      return Response::Body(std::move(list));
    }
  }
  return Status::invalid_argument("unknown response type " +
                                  std::to_string(static_cast<int>(r.which())));
}

Result<Response> read_response(wire::Response::Reader r) {
  Response out;
  auto code = static_cast<uint16_t>(r.getStatus().getCode());
  if (code > static_cast<uint16_t>(Status::Code::kInternal)) {
    return Status::invalid_argument("unknown status code " + std::to_string(code));
  }
  std::string message;
  SHOAL_META_READ(message, r.getStatus().getMessage().asBytes(), kStatusMessageBytesMax,
                  "status message");
  if (code != 0) {
    out.status = Status(static_cast<Status::Code>(code), std::move(message));
  } else if (!message.empty()) {
    return Status::invalid_argument("an ok status carries a message");
  }
  out.revision = r.getRevision();
  SHOAL_RETURN_IF_ERROR(check_non_negative(out.revision, "response revision"));
  auto body = read_response_body(r);
  if (!body.ok()) return body.status();
  out.body = std::move(*body);
  return out;
}

// Parses `bytes` as one single capnp message and hands its root to `read`,
// turning every capnp exception into a Status.
template <typename Root, typename T, typename Read>
Result<T> parse(std::string_view bytes, size_t bytes_max, const char* what, Read read) {
  if (bytes.size() > bytes_max) {
    return Status::resource_exhausted(std::string(what) + " of " + std::to_string(bytes.size()) +
                                      " bytes exceeds the " + std::to_string(bytes_max) +
                                      "-byte limit");
  }
  if (bytes.empty() || bytes.size() % sizeof(capnp::word) != 0) {
    return Status::invalid_argument(std::string(what) + " of " + std::to_string(bytes.size()) +
                                    " bytes is not a whole number of capnp words");
  }
  // Copy into word-aligned storage: capnp reads words in place.
  kj::Array<capnp::word> words = kj::heapArray<capnp::word>(bytes.size() / sizeof(capnp::word));
  std::memcpy(words.begin(), bytes.data(), bytes.size());
  capnp::ReaderOptions options;
  options.traversalLimitInWords = words.size() * kTraversalFactor + kTraversalSlackWords;
  options.nestingLimit = kNestingLimit;
  std::optional<Result<T>> result;
  KJ_IF_MAYBE (exception, kj::runCatchingExceptions([&]() {
                 capnp::FlatArrayMessageReader reader(words.asPtr(), options);
                 if (reader.getEnd() != words.end()) {
                   result.emplace(Status::invalid_argument(std::string(what) +
                                                           ": trailing bytes after the message"));
                   return;
                 }
                 result.emplace(read(reader.template getRoot<Root>()));
               })) {
    return Status::invalid_argument(std::string("malformed ") + what + ": " +
                                    exception->getDescription().cStr());
  }
  SHOAL_ASSERT(result.has_value());
  return std::move(*result);
}

}  // namespace

Result<std::string> encode_request(const Request& request) {
  Status valid = validate_request(request);
  if (!valid.ok()) {
    return Status(valid.code(), std::string(request_name(request.body)) + ": " + valid.message());
  }
  capnp::MallocMessageBuilder builder;
  auto root = builder.initRoot<wire::Request>();
  root.getId().setClientId(request.id.client_id);
  root.getId().setSeq(request.id.seq);
  std::visit(RequestFiller{root}, request.body);
  std::string bytes = words_to_string(builder);
  if (bytes.size() > kRequestBytesMax) {
    return Status::resource_exhausted(std::string(request_name(request.body)) +
                                      " request encodes to " + std::to_string(bytes.size()) +
                                      " bytes (limit " + std::to_string(kRequestBytesMax) + ")");
  }
  return bytes;
}

Result<Request> decode_request(std::string_view bytes) {
  return parse<wire::Request, Request>(
      bytes, kRequestBytesMax, "request", [](wire::Request::Reader r) -> Result<Request> {
        Request out;
        out.id.client_id = r.getId().getClientId();
        out.id.seq = r.getId().getSeq();
        auto body = read_request_body(r);
        if (!body.ok()) return body.status();
        out.body = std::move(*body);
        Status valid = validate_request(out);
        if (!valid.ok()) {
          return Status(valid.code(), std::string(request_name(out.body)) + ": " + valid.message());
        }
        return out;
      });
}

std::string encode_response(const Response& response) {
  capnp::MallocMessageBuilder builder;
  auto root = builder.initRoot<wire::Response>();
  root.getStatus().setCode(to_wire(response.status.code()));
  std::string message = response.status.message().substr(0, kStatusMessageBytesMax);
  root.getStatus().setMessage(capnp::Text::Reader(message.c_str(), message.size()));
  root.setRevision(response.revision);
  std::visit(ResponseFiller{root}, response.body);
  std::string bytes = words_to_string(builder);
  SHOAL_ASSERT(bytes.size() <= kResponseBytesMax, bytes.size());
  return bytes;
}

Result<Response> decode_response(std::string_view bytes) {
  return parse<wire::Response, Response>(bytes, kResponseBytesMax, "response", read_response);
}

Result<std::optional<std::string>> single_value(std::string_view response_bytes) {
  auto decoded = decode_response(response_bytes);
  if (!decoded.ok()) return decoded.status();
  if (!decoded->status.ok()) return decoded->status;
  const auto* range = std::get_if<RangeResponse>(&decoded->body);
  if (range == nullptr) return Status::invalid_argument("a get was answered with another kind of response");
  if (range->kvs.empty()) return std::optional<std::string>();
  return std::optional<std::string>(range->kvs.front().value);
}

}  // namespace shoal::meta
