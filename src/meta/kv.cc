#include "meta/kv.h"

#include <algorithm>
#include <limits>

#include "base/assert.h"
#include "meta/bytes.h"
#include "meta/codec.h"

namespace shoal::meta {

namespace {

// Reserves `bytes` of a response's budget; false when it does not fit.
template <typename Budget>
bool take(Budget& budget, size_t bytes) {
  if (budget.kvs == 0 || bytes > budget.bytes) return false;
  --budget.kvs;
  budget.bytes -= bytes;
  return true;
}

bool holds(int cmp, Compare::Op op) {
  switch (op) {
    case Compare::Op::kEqual:
      return cmp == 0;
    case Compare::Op::kNotEqual:
      return cmp != 0;
    case Compare::Op::kLess:
      return cmp < 0;
    case Compare::Op::kGreater:
      return cmp > 0;
  }
  return false;
}

std::string lease_name(int64_t id) { return "lease " + std::to_string(id); }

}  // namespace

KvStore::KvStore(KvOptions options)
    : options_(options),
      state_(options.dedup),
      history_(options.history_events_max, options.history_bytes_max) {
  SHOAL_ASSERT(options_.leases_max > 0 && options_.leases_max < static_cast<size_t>(INT64_MAX),
               options_.leases_max);
}

// ---- Applying ------------------------------------------------------------------

ApplyResult KvStore::apply(uint64_t raft_index, std::string_view command) {
  auto request = decode_request(command);
  if (!request.ok()) {
    apply_noop(raft_index);
    ApplyResult result;
    result.response = error(
        Status(request.status().code(), "meta command at index " + std::to_string(raft_index) +
                                            " rejected: " + request.status().message()));
    return result;
  }
  return apply(raft_index, *request);
}

ApplyResult KvStore::apply(uint64_t raft_index, const Request& request) {
  apply_noop(raft_index);
  return apply_request(raft_index, request);
}

void KvStore::apply_noop(uint64_t raft_index) {
  SHOAL_ASSERT(raft_index > state_.applied_index, raft_index, state_.applied_index);
  state_.applied_index = raft_index;
}

ApplyResult KvStore::apply_request(uint64_t raft_index, const Request& request) {
  std::string_view name = request_name(request.body);
  Status valid = validate_request(request);
  if (!valid.ok()) {
    return ApplyResult{
        error(Status(valid.code(), std::string(name) + ": " + valid.message())), {}, {}, {}};
  }
  bool remember = !request.id.empty() && is_write(request.body);
  uint64_t fingerprint = 0;
  if (remember) {
    auto encoded = encode_request(request);
    if (!encoded.ok()) return ApplyResult{error(encoded.status()), {}, {}, {}};
    fingerprint = fnv1a64(*encoded);
    if (auto answer = state_.dedup.check(request.id, fingerprint, state_.revision)) {
      return ApplyResult{std::move(*answer), {}, {}, {}};
    }
  }
  Write write;
  write.revision = state_.revision + 1;
  Response response = execute(raft_index, request, write);
  if (write.changed()) {
    state_.revision = write.revision;
    history_.append(write.result.events);
  }
  response.revision = state_.revision;
  if (remember) state_.dedup.record(request.id, fingerprint, response);
  write.result.response = std::move(response);
  return std::move(write.result);
}

Response KvStore::execute(uint64_t raft_index, const Request& request, Write& write) {
  const Request::Body& body = request.body;
  if (const auto* r = std::get_if<PutRequest>(&body)) return put(*r, write);
  if (const auto* r = std::get_if<DeleteRangeRequest>(&body)) return delete_range(*r, write);
  if (const auto* r = std::get_if<TxnRequest>(&body)) return txn(*r, write);
  if (const auto* r = std::get_if<LeaseGrantRequest>(&body)) {
    return lease_grant(raft_index, *r, write);
  }
  if (const auto* r = std::get_if<LeaseRevokeRequest>(&body)) return lease_revoke(*r, write);
  if (const auto* r = std::get_if<LeaseExpireRequest>(&body)) return lease_expire(*r, write);
  if (std::holds_alternative<LeaseKeepAliveRequest>(body)) {
    return error(Status::invalid_argument(
        "lease keep-alive is served by the leader's Lessor and is never a Raft command"));
  }
  return read_body(body);
}

Response KvStore::ok_response() const {
  Response r;
  r.revision = state_.revision;
  return r;
}

Response KvStore::error(Status status) const {
  Response r;
  r.status = std::move(status);
  r.revision = state_.revision;
  return r;
}

KeyValue KvStore::to_kv(const std::string& key, const Entry& e) const {
  return KeyValue{key, e.value, e.create_revision, e.mod_revision, e.version, e.lease};
}

Response KvStore::put(const PutRequest& r, Write& write) {
  if (r.lease != 0 && state_.leases.count(r.lease) == 0) {
    return error(Status::not_found("put: " + lease_name(r.lease) + " not found"));
  }
  auto it = state_.keys.find(r.key);
  if (r.expected_mod_revision.has_value()) {
    int64_t actual = it == state_.keys.end() ? 0 : it->second.mod_revision;
    if (actual != *r.expected_mod_revision) {
      Response out = error(Status::already_exists(
          "compare failed: put expected the key's mod_revision to be " +
          std::to_string(*r.expected_mod_revision) +
          (*r.expected_mod_revision == 0 ? " (key absent)" : "") + " but it is " +
          std::to_string(actual) + (actual == 0 ? " (key absent)" : "")));
      PutResponse body;
      body.succeeded = false;
      if (it != state_.keys.end()) body.current = to_kv(it->first, it->second);
      out.body = std::move(body);
      return out;
    }
  }
  int64_t growth = 0;
  Status ready = check_put(r, growth);
  if (ready.ok()) ready = check_growth(growth);
  if (!ready.ok()) return error(Status(ready.code(), "put: " + ready.message()));
  Budget budget;
  Response out = ok_response();
  out.body = do_put(r, write, budget);
  return out;
}

PutResponse KvStore::do_put(const PutRequest& r, Write& write, Budget& budget) {
  PutResponse out;
  auto it = state_.keys.find(r.key);
  std::optional<KeyValue> prev;
  if (it == state_.keys.end()) {
    it = state_.keys.emplace(r.key, Entry{}).first;
    it->second.create_revision = write.revision;
  } else {
    prev = to_kv(it->first, it->second);
    state_.data_bytes -= it->first.size() + it->second.value.size();
    if (it->second.lease != 0 && it->second.lease != r.lease) {
      size_t erased = state_.leases.at(it->second.lease).keys.erase(r.key);
      SHOAL_ASSERT(erased == 1, it->second.lease);
    }
  }
  Entry& e = it->second;
  e.value = r.value;
  e.mod_revision = write.revision;
  e.version += 1;
  if (r.lease != 0 && e.lease != r.lease) state_.leases.at(r.lease).keys.insert(r.key);
  e.lease = r.lease;
  state_.data_bytes += it->first.size() + e.value.size();
  if (r.prev_kv && prev) {
    if (take(budget, prev->key.size() + prev->value.size())) {
      out.prev_kv = prev;
    } else {
      out.prev_kv_truncated = true;
    }
  }
  write.result.events.push_back(Event{Event::Type::kPut, to_kv(it->first, e), std::move(prev)});
  return out;
}

KeyValue KvStore::erase_key(KeyMap::iterator it, Write& write) {
  KeyValue prev = to_kv(it->first, it->second);
  if (prev.lease != 0) state_.leases.at(prev.lease).keys.erase(prev.key);
  state_.data_bytes -= prev.key.size() + prev.value.size();
  state_.keys.erase(it);
  write.result.events.push_back(
      Event{Event::Type::kDelete, KeyValue{prev.key, {}, 0, write.revision, 0, 0}, prev});
  return prev;
}

Response KvStore::delete_range(const DeleteRangeRequest& r, Write& write) {
  Budget budget;
  Response out = ok_response();
  out.body = do_delete(r, write, budget);
  return out;
}

DeleteRangeResponse KvStore::do_delete(const DeleteRangeRequest& r, Write& write, Budget& budget) {
  DeleteRangeResponse out;
  auto it = state_.keys.lower_bound(r.key);
  while (it != state_.keys.end() && in_range(it->first, r.key, r.range_end)) {
    auto next = std::next(it);
    KeyValue prev = erase_key(it, write);
    ++out.deleted;
    if (r.prev_kv) {
      if (!out.prev_kvs_truncated && take(budget, prev.key.size() + prev.value.size())) {
        out.prev_kvs.push_back(std::move(prev));
      } else {
        out.prev_kvs_truncated = true;
      }
    }
    it = next;
  }
  return out;
}

RangeResponse KvStore::do_range(const RangeRequest& r, Budget& budget) const {
  RangeResponse out;
  auto limit = r.limit > 0 ? static_cast<size_t>(r.limit) : std::numeric_limits<size_t>::max();
  bool full = r.count_only;
  for (auto it = state_.keys.lower_bound(r.key);
       it != state_.keys.end() && in_range(it->first, r.key, r.range_end); ++it) {
    ++out.count;
    if (full) continue;
    size_t bytes = it->first.size() + (r.keys_only ? 0 : it->second.value.size());
    if (out.kvs.size() >= limit || !take(budget, bytes)) {
      full = true;
      continue;
    }
    KeyValue kv{it->first,
                {},
                it->second.create_revision,
                it->second.mod_revision,
                it->second.version,
                it->second.lease};
    if (!r.keys_only) kv.value = it->second.value;
    out.kvs.push_back(std::move(kv));
  }
  out.more = !r.count_only && static_cast<int64_t>(out.kvs.size()) < out.count;
  return out;
}

bool KvStore::compare_holds(const Compare& c) const {
  auto it = state_.keys.find(c.key);
  bool present = it != state_.keys.end();
  if (c.target == Compare::Target::kValue) {
    if (!present) return false;  // etcd: a value compare on a missing key is false
    int cmp = it->second.value.compare(c.value);
    return holds(cmp, c.op);
  }
  int64_t actual = 0;
  switch (c.target) {
    case Compare::Target::kVersion:
      actual = present ? it->second.version : 0;
      break;
    case Compare::Target::kCreateRevision:
      actual = present ? it->second.create_revision : 0;
      break;
    case Compare::Target::kModRevision:
      actual = present ? it->second.mod_revision : 0;
      break;
    case Compare::Target::kLease:
      actual = present ? it->second.lease : 0;
      break;
    case Compare::Target::kExists:
      actual = present ? 1 : 0;
      break;
    case Compare::Target::kValue:
      break;
  }
  return holds(actual < c.number ? -1 : (actual > c.number ? 1 : 0), c.op);
}

Status KvStore::check_put(const PutRequest& put, int64_t& growth) const {
  if (put.lease != 0 && state_.leases.count(put.lease) == 0) {
    return Status::not_found(lease_name(put.lease) + " not found");
  }
  growth += static_cast<int64_t>(put.key.size() + put.value.size());
  auto it = state_.keys.find(put.key);
  if (it != state_.keys.end()) {
    growth -= static_cast<int64_t>(it->first.size() + it->second.value.size());
  }
  return {};
}

Status KvStore::check_growth(int64_t growth) const {
  if (growth > 0 && state_.data_bytes + static_cast<uint64_t>(growth) > options_.data_bytes_max) {
    return Status::resource_exhausted(
        "the metadata store is full: keys and values take " + std::to_string(state_.data_bytes) +
        " bytes, this write adds " + std::to_string(growth) + ", the quota is " +
        std::to_string(options_.data_bytes_max) + " bytes; delete keys to make room");
  }
  return {};
}

// Everything that could make a branch fail half-way, checked before any op
// runs so that a txn applies entirely or not at all. Puts and deletes of one
// branch never overlap (validate_request), so the growth computed against
// the current state is exact for the puts, and deletes only free space.
Status KvStore::check_ops(const std::vector<TxnOp>& ops) const {
  int64_t growth = 0;
  for (const TxnOp& op : ops) {
    if (const auto* range = std::get_if<RangeRequest>(&op)) {
      SHOAL_RETURN_IF_ERROR(check_revision(range->revision));
    } else if (const auto* put = std::get_if<PutRequest>(&op)) {
      SHOAL_RETURN_IF_ERROR(check_put(*put, growth));
    }
  }
  return check_growth(growth);
}

Status KvStore::check_revision(int64_t revision) const {
  if (revision == 0 || revision == state_.revision) return {};
  if (revision > state_.revision) {
    return Status::invalid_argument("range at revision " + std::to_string(revision) +
                                    " is in the future (current revision " +
                                    std::to_string(state_.revision) + ")");
  }
  return Status::invalid_argument("range at revision " + std::to_string(revision) +
                                  " is compacted: only the current revision " +
                                  std::to_string(state_.revision) + " can be read");
}

Response KvStore::txn(const TxnRequest& r, Write& write) {
  bool succeeded = std::all_of(r.compares.begin(), r.compares.end(),
                               [&](const Compare& c) { return compare_holds(c); });
  const std::vector<TxnOp>& ops = succeeded ? r.success : r.failure;
  Status ready = check_ops(ops);
  if (!ready.ok()) return error(Status(ready.code(), "txn: " + ready.message()));
  TxnResponse out;
  out.succeeded = succeeded;
  Budget budget;
  for (const TxnOp& op : ops) {
    if (const auto* put = std::get_if<PutRequest>(&op)) {
      out.responses.emplace_back(do_put(*put, write, budget));
    } else if (const auto* del = std::get_if<DeleteRangeRequest>(&op)) {
      out.responses.emplace_back(do_delete(*del, write, budget));
    } else {
      out.responses.emplace_back(do_range(std::get<RangeRequest>(op), budget));
    }
  }
  Response response = ok_response();
  response.body = std::move(out);
  return response;
}

// ---- Leases --------------------------------------------------------------------

Response KvStore::lease_grant(uint64_t raft_index, const LeaseGrantRequest& r, Write& write) {
  if (state_.leases.size() >= options_.leases_max) {
    return error(Status::resource_exhausted("lease grant: " + std::to_string(state_.leases.size()) +
                                            " leases exist (limit " +
                                            std::to_string(options_.leases_max) + ")"));
  }
  int64_t id = r.id;
  if (id == 0) {
    // Deterministic: the entry's Raft index, or the next id not in use.
    id = static_cast<int64_t>(raft_index & static_cast<uint64_t>(INT64_MAX));
    if (id == 0) id = 1;
    while (state_.leases.count(id) != 0) id = id == INT64_MAX ? 1 : id + 1;
  } else if (state_.leases.count(id) != 0) {
    return error(Status::already_exists("lease grant: " + lease_name(id) + " already exists"));
  }
  state_.leases[id].ttl_seconds = r.ttl_seconds;
  write.result.leases_granted.push_back(LeaseInfo{id, r.ttl_seconds, 0});
  Response out = ok_response();
  out.body = LeaseGrantResponse{id, r.ttl_seconds};
  return out;
}

int64_t KvStore::revoke(int64_t id, Write& write) {
  auto lease = state_.leases.find(id);
  SHOAL_ASSERT(lease != state_.leases.end(), id);
  std::set<std::string, std::less<>> keys = std::move(lease->second.keys);
  lease->second.keys.clear();
  for (const std::string& key : keys) {
    auto it = state_.keys.find(key);
    SHOAL_ASSERT(it != state_.keys.end() && it->second.lease == id, id);
    erase_key(it, write);
  }
  state_.leases.erase(id);
  write.result.leases_revoked.push_back(id);
  return static_cast<int64_t>(keys.size());
}

Response KvStore::lease_revoke(const LeaseRevokeRequest& r, Write& write) {
  if (state_.leases.count(r.id) == 0) {
    return error(Status::not_found("lease revoke: " + lease_name(r.id) + " not found"));
  }
  Response out = ok_response();
  out.body = LeaseRevokeResponse{revoke(r.id, write)};
  return out;
}

Response KvStore::lease_expire(const LeaseExpireRequest& r, Write& write) {
  LeaseExpireResponse body;
  for (int64_t id : r.ids) {
    if (state_.leases.count(id) == 0) continue;  // revoked meanwhile, or a repeated id
    body.deleted += revoke(id, write);
    ++body.revoked;
  }
  Response out = ok_response();
  out.body = body;
  return out;
}

std::vector<LeaseInfo> KvStore::leases() const {
  std::vector<LeaseInfo> out;
  out.reserve(state_.leases.size());
  for (const auto& [id, lease] : state_.leases) {
    out.push_back(LeaseInfo{id, lease.ttl_seconds, lease.keys.size()});
  }
  return out;
}

std::optional<LeaseInfo> KvStore::lease(int64_t id) const {
  auto it = state_.leases.find(id);
  if (it == state_.leases.end()) return std::nullopt;
  return LeaseInfo{id, it->second.ttl_seconds, it->second.keys.size()};
}

// ---- Reading -------------------------------------------------------------------

Response KvStore::read(const Request& request) const {
  Status valid = validate_request(request);
  if (!valid.ok()) {
    return error(
        Status(valid.code(), std::string(request_name(request.body)) + ": " + valid.message()));
  }
  return read_body(request.body);
}

Response KvStore::range(const RangeRequest& request) const {
  return read(Request{RequestId{}, request});
}

Response KvStore::read_body(const Request::Body& body) const {
  Response out = ok_response();
  if (const auto* r = std::get_if<RangeRequest>(&body)) {
    Status s = check_revision(r->revision);
    if (!s.ok()) return error(std::move(s));
    Budget budget;
    out.body = do_range(*r, budget);
  } else if (const auto* r = std::get_if<LeaseTimeToLiveRequest>(&body)) {
    auto it = state_.leases.find(r->id);
    if (it == state_.leases.end()) {
      return error(Status::not_found("lease time-to-live: " + lease_name(r->id) + " not found"));
    }
    LeaseTimeToLiveResponse ttl;
    ttl.id = r->id;
    ttl.granted_ttl_seconds = it->second.ttl_seconds;
    Budget budget;
    for (const std::string& key : it->second.keys) {
      if (!r->keys) break;
      if (!take(budget, key.size())) {
        ttl.keys_truncated = true;
        break;
      }
      ttl.keys.push_back(key);
    }
    out.body = std::move(ttl);
  } else if (std::holds_alternative<LeaseLeasesRequest>(body)) {
    LeaseLeasesResponse list;
    list.ids.reserve(state_.leases.size());
    for (const auto& entry : state_.leases) list.ids.push_back(entry.first);
    out.body = std::move(list);
  } else {
    return error(Status::invalid_argument(std::string(request_name(body)) +
                                          " is not a read; propose it through Raft"));
  }
  return out;
}

Result<EventBatch> KvStore::events_since(int64_t start_revision, std::string_view key,
                                         std::string_view range_end, size_t max_events) const {
  RangeRequest check{std::string(key), std::string(range_end), 0, 0, false, false};
  Status valid = validate_request(Request{RequestId{}, check});
  if (!valid.ok()) return Status(valid.code(), "watch: " + valid.message());
  return history_.since(start_revision, key, range_end, max_events, state_.revision);
}

// ---- Snapshots -----------------------------------------------------------------

namespace {
constexpr std::string_view kSnapshotMagic = "SHKV";
constexpr uint8_t kSnapshotVersion = 1;
constexpr size_t kSnapshotTrailerBytes = 4;  // CRC32C
}  // namespace

std::string KvStore::snapshot() const {
  ByteWriter out;
  out.put_raw(kSnapshotMagic);
  out.put_u8(kSnapshotVersion);
  write_state(out);
  uint32_t crc = crc32c(out.data());
  out.put_fixed32(crc);
  return out.release();
}

void KvStore::write_state(ByteWriter& out) const {
  out.put_varint(state_.applied_index);
  out.put_signed(state_.revision);
  out.put_varint(state_.leases.size());
  for (const auto& [id, lease] : state_.leases) {
    out.put_signed(id);
    out.put_signed(lease.ttl_seconds);
  }
  out.put_varint(state_.keys.size());
  for (const auto& [key, e] : state_.keys) {
    out.put_bytes(key);
    out.put_bytes(e.value);
    out.put_signed(e.create_revision);
    out.put_signed(e.mod_revision);
    out.put_signed(e.version);
    out.put_signed(e.lease);
  }
  state_.dedup.write(out);
}

Status KvStore::restore(std::string_view bytes) {
  if (bytes.size() < kSnapshotMagic.size() + 1 + kSnapshotTrailerBytes ||
      bytes.substr(0, kSnapshotMagic.size()) != kSnapshotMagic) {
    return Status::invalid_argument("not a meta snapshot (bad magic or too short)");
  }
  auto version = static_cast<uint8_t>(bytes[kSnapshotMagic.size()]);
  if (version != kSnapshotVersion) {
    return Status::invalid_argument("meta snapshot version " + std::to_string(version) +
                                    " is not supported (this build reads version " +
                                    std::to_string(kSnapshotVersion) + ")");
  }
  std::string_view covered = bytes.substr(0, bytes.size() - kSnapshotTrailerBytes);
  ByteReader trailer(bytes.substr(covered.size()));
  uint32_t expected = 0;
  SHOAL_RETURN_IF_ERROR(trailer.get_fixed32(expected, "snapshot checksum"));
  if (crc32c(covered) != expected) {
    return Status::invalid_argument("meta snapshot checksum mismatch: the snapshot is corrupt");
  }
  State fresh(options_.dedup);
  Status read = read_state(covered.substr(kSnapshotMagic.size() + 1), fresh);
  if (!read.ok()) return Status(read.code(), "corrupt meta snapshot: " + read.message());
  state_ = std::move(fresh);
  history_.reset(state_.revision);
  return {};
}

Status KvStore::read_state(std::string_view body, State& out) const {
  ByteReader in(body);
  int64_t index = 0;
  SHOAL_RETURN_IF_ERROR(in.get_non_negative(index, "applied index"));
  out.applied_index = static_cast<uint64_t>(index);
  SHOAL_RETURN_IF_ERROR(in.get_non_negative(out.revision, "revision"));
  size_t count = 0;
  SHOAL_RETURN_IF_ERROR(in.get_count(count, 2, "leases"));
  if (count > options_.leases_max) return Status::invalid_argument("more leases than the limit");
  for (size_t i = 0; i < count; ++i) {
    int64_t id = 0;
    int64_t ttl = 0;
    SHOAL_RETURN_IF_ERROR(in.get_non_negative(id, "lease id"));
    SHOAL_RETURN_IF_ERROR(in.get_non_negative(ttl, "lease ttl"));
    bool ascending = out.leases.empty() || out.leases.rbegin()->first < id;
    if (id == 0 || !ascending || ttl < kLeaseTtlSecondsMin || ttl > kLeaseTtlSecondsMax) {
      return Status::invalid_argument("bad lease entry " + std::to_string(id));
    }
    out.leases.emplace_hint(out.leases.end(), id, Lease{ttl, {}});
  }
  SHOAL_RETURN_IF_ERROR(in.get_count(count, 7, "keys"));
  for (size_t i = 0; i < count; ++i) {
    KeyValue kv;
    SHOAL_RETURN_IF_ERROR(in.get_bytes(kv.key, kKeyBytesMax, "key"));
    SHOAL_RETURN_IF_ERROR(in.get_bytes(kv.value, kValueBytesMax, "value"));
    SHOAL_RETURN_IF_ERROR(in.get_non_negative(kv.create_revision, "create revision"));
    SHOAL_RETURN_IF_ERROR(in.get_non_negative(kv.mod_revision, "mod revision"));
    SHOAL_RETURN_IF_ERROR(in.get_non_negative(kv.version, "version"));
    SHOAL_RETURN_IF_ERROR(in.get_non_negative(kv.lease, "key lease"));
    SHOAL_RETURN_IF_ERROR(validate_key_value(kv, "snapshot key"));
    bool ascending = out.keys.empty() || out.keys.rbegin()->first < kv.key;
    bool revisions_ok = kv.create_revision >= 1 && kv.create_revision <= kv.mod_revision &&
                        kv.mod_revision <= out.revision && kv.version >= 1;
    auto lease = out.leases.find(kv.lease);
    if (!ascending || !revisions_ok || (kv.lease != 0 && lease == out.leases.end())) {
      return Status::invalid_argument("bad key entry " + std::to_string(i) +
                                      " (order, revisions or lease)");
    }
    if (kv.lease != 0) lease->second.keys.insert(kv.key);
    out.data_bytes += kv.key.size() + kv.value.size();
    out.keys.emplace_hint(
        out.keys.end(), std::move(kv.key),
        Entry{std::move(kv.value), kv.create_revision, kv.mod_revision, kv.version, kv.lease});
  }
  SHOAL_RETURN_IF_ERROR(out.dedup.read(in));
  if (in.remaining() != 0) {
    return Status::invalid_argument(std::to_string(in.remaining()) + " trailing bytes");
  }
  return {};
}

}  // namespace shoal::meta
