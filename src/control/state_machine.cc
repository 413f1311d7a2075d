#include "control/state_machine.h"

#include "base/assert.h"
#include "meta/codec.h"
#include "meta/kv.h"
#include "meta/lessor.h"

namespace shoal::control {
namespace {

WatchEventData to_watch_event(meta::Event&& e) {
  WatchEventData w;
  w.is_delete = e.type == meta::Event::Type::kDelete;
  w.key = std::move(e.kv.key);
  w.value = std::move(e.kv.value);
  w.create_revision = e.kv.create_revision;
  w.mod_revision = e.kv.mod_revision;
  w.version = e.kv.version;
  w.lease = e.kv.lease;
  if (e.prev) w.prev_value = std::move(e.prev->value);
  return w;
}

}  // namespace

struct StateMachine::Impl {
  meta::KvStore kv;
  meta::Lessor lessor;
  bool leader = false;
};

StateMachine::StateMachine() : impl_(std::make_unique<Impl>()) {}
StateMachine::~StateMachine() = default;

Result<StateMachine::Classified> StateMachine::classify(std::string_view request, uint64_t id_hi,
                                                        uint64_t id_lo) const {
  auto decoded = meta::decode_request(request);
  if (!decoded.ok()) return decoded.status();
  if (std::holds_alternative<meta::LeaseExpireRequest>(decoded->body)) {
    return Status::invalid_argument("lease expiry is decided by the leader, not requested by clients");
  }
  if (std::holds_alternative<meta::LeaseKeepAliveRequest>(decoded->body)) {
    return Status::invalid_argument("lease keep-alive goes through Node.leaseKeepAlive");
  }
  Classified out;
  out.write = meta::is_write(decoded->body);
  if (out.write && decoded->id.empty()) {
    decoded->id = {id_hi == 0 ? 1 : id_hi, id_lo};
    auto encoded = meta::encode_request(*decoded);
    if (!encoded.ok()) return encoded.status();
    out.bytes = std::move(*encoded);
  } else {
    out.bytes.assign(request);
  }
  return out;
}

StateMachine::Applied StateMachine::apply(uint64_t index, std::string_view command, int64_t now_ms) {
  meta::ApplyResult r = impl_->kv.apply(index, command);
  if (impl_->leader) impl_->lessor.observe(r, now_ms);
  Applied out;
  out.response = meta::encode_response(r.response);
  out.events.reserve(r.events.size());
  for (auto& e : r.events) out.events.push_back(to_watch_event(std::move(e)));
  return out;
}

void StateMachine::apply_noop(uint64_t index) {
  if (index > impl_->kv.applied_index()) impl_->kv.apply_noop(index);
}

std::string StateMachine::read(std::string_view request) const {
  auto decoded = meta::decode_request(request);
  if (!decoded.ok()) return error_response(decoded.status());
  meta::Response response = impl_->kv.read(*decoded);
  return meta::encode_response(response);
}

std::string StateMachine::error_response(const Status& status) const {
  meta::Response response;
  response.status = status.ok() ? Status::internal("error_response called with ok") : status;
  response.revision = impl_->kv.revision();
  return meta::encode_response(response);
}

std::string StateMachine::error_response_without_revision(const Status& status) {
  meta::Response response;
  response.status = status.ok() ? Status::internal("error_response called with ok") : status;
  return meta::encode_response(response);
}

std::string StateMachine::snapshot() const { return impl_->kv.snapshot(); }

Status StateMachine::restore(std::string_view image) {
  SHOAL_RETURN_IF_ERROR(impl_->kv.restore(image));
  if (impl_->leader) impl_->lessor.on_become_leader(impl_->kv, 0);
  return {};
}

int64_t StateMachine::revision() const { return impl_->kv.revision(); }
uint64_t StateMachine::key_count() const { return impl_->kv.key_count(); }
uint64_t StateMachine::applied_index() const { return impl_->kv.applied_index(); }

Result<std::vector<WatchEventData>> StateMachine::events_since(int64_t revision, std::string_view key,
                                                               std::string_view range_end, size_t max) const {
  std::vector<WatchEventData> out;
  int64_t next = revision;
  while (next <= impl_->kv.revision() && out.size() < max) {
    auto batch = impl_->kv.events_since(next, key, range_end, max - out.size());
    if (!batch.ok()) return batch.status();
    for (auto& e : batch->events) out.push_back(to_watch_event(std::move(e)));
    if (batch->next_revision <= next) break;
    next = batch->next_revision;
  }
  return out;
}

std::string StateMachine::lease_grant_request(int64_t ttl_s) const {
  meta::Request request;
  request.body = meta::LeaseGrantRequest{0, ttl_s};
  auto encoded = meta::encode_request(request);
  SHOAL_ASSERT(encoded.ok());
  return std::move(*encoded);
}

std::string StateMachine::lease_expire_command(const std::vector<int64_t>& ids) const {
  meta::Request request;
  meta::LeaseExpireRequest expire;
  expire.ids.assign(ids.begin(), ids.begin() + static_cast<long>(std::min(ids.size(), meta::kLeaseExpireIdsMax)));
  request.body = std::move(expire);
  auto encoded = meta::encode_request(request);
  SHOAL_ASSERT(encoded.ok());
  return std::move(*encoded);
}

std::string StateMachine::put_request(std::string_view key, std::string_view value, int64_t lease) const {
  meta::Request request;
  meta::PutRequest put;
  put.key.assign(key);
  put.value.assign(value);
  put.lease = lease;
  request.body = std::move(put);
  auto encoded = meta::encode_request(request);
  SHOAL_ASSERT(encoded.ok());
  return std::move(*encoded);
}

std::string StateMachine::get_request(std::string_view key) const {
  meta::Request request;
  request.body = meta::RangeRequest::single(std::string(key));
  auto encoded = meta::encode_request(request);
  SHOAL_ASSERT(encoded.ok());
  return std::move(*encoded);
}

Status StateMachine::response_status(std::string_view response) const {
  auto decoded = meta::decode_response(response);
  if (!decoded.ok()) return Status::internal("undecodable response: " + decoded.status().message());
  return decoded->status;
}

Result<int64_t> StateMachine::granted_lease(std::string_view response) const {
  auto decoded = meta::decode_response(response);
  if (!decoded.ok()) return decoded.status();
  if (!decoded->status.ok()) return decoded->status;
  const auto* grant = std::get_if<meta::LeaseGrantResponse>(&decoded->body);
  if (grant == nullptr) return Status::internal("the response is not a lease grant");
  return grant->id;
}

std::vector<std::string> StateMachine::registered_addresses(const std::string& self_id) const {
  const std::string prefix = "/shoal/nodes/";
  meta::Response response = impl_->kv.range(meta::RangeRequest::prefix(prefix));
  const auto* range = std::get_if<meta::RangeResponse>(&response.body);
  if (!response.status.ok() || range == nullptr) return {};
  std::vector<std::string> out;
  for (const auto& kv : range->kvs) {
    if (kv.key == prefix + self_id) continue;
    // The record is JSON written by ControlPlane: ..."address":"HOST:PORT"...
    const std::string field = "\"address\":\"";
    size_t at = kv.value.find(field);
    if (at == std::string::npos) continue;
    at += field.size();
    size_t end = kv.value.find('"', at);
    if (end == std::string::npos || end == at || end - at > 256) continue;
    out.push_back(kv.value.substr(at, end - at));
  }
  return out;
}

void StateMachine::become_leader(int64_t now_ms) {
  impl_->leader = true;
  impl_->lessor.on_become_leader(impl_->kv, now_ms);
}

void StateMachine::lose_leadership() {
  impl_->leader = false;
  impl_->lessor.clear();
}

Result<int64_t> StateMachine::keep_alive(int64_t id, int64_t now_ms) {
  if (!impl_->leader) return Status::unavailable("not the leader");
  return impl_->lessor.keep_alive(id, now_ms);
}

std::vector<int64_t> StateMachine::expired_leases(int64_t now_ms, size_t max) {
  if (!impl_->leader) return {};
  return impl_->lessor.expired(now_ms, max);
}

}  // namespace shoal::control
