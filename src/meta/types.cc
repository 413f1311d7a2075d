#include "meta/types.h"

#include <algorithm>

namespace shoal::meta {

namespace {

std::string str(size_t n) { return std::to_string(n); }

Status check_key(std::string_view key, const char* what) {
  if (key.empty()) return Status::invalid_argument(std::string(what) + " is empty");
  if (key.size() > kKeyBytesMax) {
    return Status::resource_exhausted(std::string(what) + " of " + str(key.size()) +
                                      " bytes exceeds the " + str(kKeyBytesMax) +
                                      "-byte key limit");
  }
  return {};
}

Status check_range(std::string_view key, std::string_view range_end, const char* what) {
  SHOAL_RETURN_IF_ERROR(check_key(key, what));
  if (range_end.size() > kKeyBytesMax) {
    return Status::resource_exhausted(std::string(what) + " range_end of " + str(range_end.size()) +
                                      " bytes exceeds the " + str(kKeyBytesMax) +
                                      "-byte key limit");
  }
  if (!range_end.empty() && range_end != std::string_view("\0", 1) && range_end <= key) {
    return Status::invalid_argument(std::string(what) +
                                    ": range_end must sort after key (or be empty for one key, "
                                    "or \"\\0\" for every key from key on)");
  }
  return {};
}

Status validate_put(const PutRequest& r, bool in_txn) {
  SHOAL_RETURN_IF_ERROR(check_key(r.key, "put key"));
  if (r.value.size() > kValueBytesMax) {
    return Status::resource_exhausted("put value of " + str(r.value.size()) +
                                      " bytes exceeds the " + str(kValueBytesMax) +
                                      "-byte value limit");
  }
  if (r.lease < 0) return Status::invalid_argument("put lease id is negative");
  if (r.expected_mod_revision.has_value()) {
    if (in_txn) {
      return Status::invalid_argument(
          "a put inside a txn cannot carry expected_mod_revision; use a txn compare");
    }
    if (*r.expected_mod_revision < 0) {
      return Status::invalid_argument("put expected_mod_revision is negative");
    }
  }
  return {};
}

Status validate_range(const RangeRequest& r) {
  SHOAL_RETURN_IF_ERROR(check_range(r.key, r.range_end, "range key"));
  if (r.limit < 0) return Status::invalid_argument("range limit is negative");
  if (r.revision < 0) return Status::invalid_argument("range revision is negative");
  return {};
}

Status validate_delete(const DeleteRangeRequest& r) {
  return check_range(r.key, r.range_end, "delete key");
}

Status validate_compare(const Compare& c) {
  SHOAL_RETURN_IF_ERROR(check_key(c.key, "compare key"));
  if (c.target > Compare::Target::kExists)
    return Status::invalid_argument("unknown compare target");
  if (c.op > Compare::Op::kGreater) return Status::invalid_argument("unknown compare op");
  if (c.value.size() > kValueBytesMax) {
    return Status::resource_exhausted("compare value of " + str(c.value.size()) +
                                      " bytes exceeds the " + str(kValueBytesMax) +
                                      "-byte value limit");
  }
  return {};
}

Status validate_txn_op(const TxnOp& op) {
  if (const auto* put = std::get_if<PutRequest>(&op)) return validate_put(*put, true);
  if (const auto* del = std::get_if<DeleteRangeRequest>(&op)) return validate_delete(*del);
  return validate_range(std::get<RangeRequest>(op));
}

// etcd's rule: within one branch, no key is put twice and no put falls in a
// delete's range, so every key changes at most once per revision.
Status check_branch_overlaps(const std::vector<TxnOp>& ops, const char* branch) {
  std::vector<std::string_view> puts;
  for (const TxnOp& op : ops) {
    if (const auto* put = std::get_if<PutRequest>(&op)) puts.push_back(put->key);
  }
  std::sort(puts.begin(), puts.end());
  for (size_t i = 1; i < puts.size(); ++i) {
    if (puts[i] == puts[i - 1]) {
      return Status::invalid_argument(std::string(branch) + " branch puts the same key twice");
    }
  }
  for (const TxnOp& op : ops) {
    const auto* del = std::get_if<DeleteRangeRequest>(&op);
    if (del == nullptr) continue;
    for (std::string_view key : puts) {
      if (in_range(key, del->key, del->range_end)) {
        return Status::invalid_argument(std::string(branch) +
                                        " branch puts a key that one of its deletes also covers");
      }
    }
  }
  return {};
}

Status validate_branch(const std::vector<TxnOp>& ops, const char* branch) {
  if (ops.size() > kTxnOpsMax) {
    return Status::resource_exhausted(std::string(branch) + " branch has " + str(ops.size()) +
                                      " ops (limit " + str(kTxnOpsMax) + ")");
  }
  for (const TxnOp& op : ops) {
    Status s = validate_txn_op(op);
    if (!s.ok()) return Status(s.code(), std::string(branch) + " branch: " + s.message());
  }
  return check_branch_overlaps(ops, branch);
}

Status validate_txn(const TxnRequest& r) {
  if (r.compares.size() > kTxnComparesMax) {
    return Status::resource_exhausted(str(r.compares.size()) + " compares (limit " +
                                      str(kTxnComparesMax) + ")");
  }
  for (const Compare& c : r.compares) SHOAL_RETURN_IF_ERROR(validate_compare(c));
  SHOAL_RETURN_IF_ERROR(validate_branch(r.success, "success"));
  return validate_branch(r.failure, "failure");
}

Status validate_lease_id(int64_t id, const char* what) {
  if (id <= 0) return Status::invalid_argument(std::string(what) + " lease id must be positive");
  return {};
}

Status validate_ttl(int64_t ttl) {
  if (ttl < kLeaseTtlSecondsMin || ttl > kLeaseTtlSecondsMax) {
    return Status::invalid_argument("lease ttl of " + std::to_string(ttl) + " s is outside [" +
                                    std::to_string(kLeaseTtlSecondsMin) + ", " +
                                    std::to_string(kLeaseTtlSecondsMax) + "] s");
  }
  return {};
}

struct BodyValidator {
  Status operator()(const PutRequest& r) const { return validate_put(r, false); }
  Status operator()(const RangeRequest& r) const { return validate_range(r); }
  Status operator()(const DeleteRangeRequest& r) const { return validate_delete(r); }
  Status operator()(const TxnRequest& r) const { return validate_txn(r); }
  Status operator()(const LeaseGrantRequest& r) const {
    if (r.id < 0) return Status::invalid_argument("lease grant id is negative");
    return validate_ttl(r.ttl_seconds);
  }
  Status operator()(const LeaseRevokeRequest& r) const { return validate_lease_id(r.id, "revoke"); }
  Status operator()(const LeaseExpireRequest& r) const {
    if (r.ids.size() > kLeaseExpireIdsMax) {
      return Status::resource_exhausted("lease expire carries " + str(r.ids.size()) +
                                        " ids (limit " + str(kLeaseExpireIdsMax) + ")");
    }
    for (int64_t id : r.ids) SHOAL_RETURN_IF_ERROR(validate_lease_id(id, "expire"));
    return {};
  }
  Status operator()(const LeaseKeepAliveRequest& r) const {
    return validate_lease_id(r.id, "keep-alive");
  }
  Status operator()(const LeaseTimeToLiveRequest& r) const {
    return validate_lease_id(r.id, "time-to-live");
  }
  Status operator()(const LeaseLeasesRequest&) const { return {}; }
};

}  // namespace

RangeRequest RangeRequest::single(std::string key) {
  RangeRequest r;
  r.key = std::move(key);
  return r;
}

RangeRequest RangeRequest::prefix(std::string_view prefix) {
  RangeRequest r;
  r.key = prefix.empty() ? std::string(1, '\0') : std::string(prefix);
  r.range_end = prefix_range_end(prefix);
  return r;
}

RangeRequest RangeRequest::all() { return prefix(""); }

bool Response::operator==(const Response& other) const {
  return status.code() == other.status.code() && status.message() == other.status.message() &&
         revision == other.revision && body == other.body;
}

std::string prefix_range_end(std::string_view prefix) {
  std::string end(prefix);
  while (!end.empty()) {
    auto last = static_cast<unsigned char>(end.back());
    if (last < 0xff) {
      end.back() = static_cast<char>(last + 1);
      return end;
    }
    end.pop_back();
  }
  return std::string(1, '\0');
}

bool in_range(std::string_view key, std::string_view range_key, std::string_view range_end) {
  if (range_end.empty()) return key == range_key;
  if (key < range_key) return false;
  if (range_end == std::string_view("\0", 1)) return true;
  return key < range_end;
}

Status validate_request(const Request& request) {
  if (request.id.client_id == 0 && request.id.seq != 0) {
    return Status::invalid_argument("request id has a seq but no client id");
  }
  return std::visit(BodyValidator{}, request.body);
}

Status validate_key_value(const KeyValue& kv, const char* what) {
  SHOAL_RETURN_IF_ERROR(check_key(kv.key, what));
  if (kv.value.size() > kValueBytesMax) {
    return Status::resource_exhausted(std::string(what) + " value exceeds the value limit");
  }
  if (kv.create_revision < 0 || kv.mod_revision < 0 || kv.version < 0 || kv.lease < 0) {
    return Status::invalid_argument(std::string(what) +
                                    " has a negative revision, version or lease");
  }
  return {};
}

std::string_view request_name(const Request::Body& body) {
  static constexpr std::string_view kNames[] = {"put",
                                                "range",
                                                "delete",
                                                "txn",
                                                "lease grant",
                                                "lease revoke",
                                                "lease expire",
                                                "lease keep-alive",
                                                "lease time-to-live",
                                                "lease list"};
  static_assert(std::size(kNames) == std::variant_size_v<Request::Body>);
  return kNames[body.index()];
}

bool is_write(const Request::Body& body) {
  return std::holds_alternative<PutRequest>(body) ||
         std::holds_alternative<DeleteRangeRequest>(body) ||
         std::holds_alternative<TxnRequest>(body) ||
         std::holds_alternative<LeaseGrantRequest>(body) ||
         std::holds_alternative<LeaseRevokeRequest>(body) ||
         std::holds_alternative<LeaseExpireRequest>(body);
}

}  // namespace shoal::meta
