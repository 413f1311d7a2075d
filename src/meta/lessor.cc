#include "meta/lessor.h"

#include <algorithm>

#include "base/assert.h"

namespace shoal::meta {

void Lessor::on_become_leader(const KvStore& store, int64_t now_ms) {
  clear();
  for (const LeaseInfo& lease : store.leases()) on_granted(lease.id, lease.ttl_seconds, now_ms);
}

void Lessor::on_granted(int64_t id, int64_t ttl_seconds, int64_t now_ms) {
  SHOAL_ASSERT(id > 0 && ttl_seconds > 0, id, ttl_seconds);
  Timer& t = leases_[id];
  t.ttl_ms = ttl_seconds * 1'000;
  t.expiring = false;
  arm(id, now_ms + t.ttl_ms);
}

void Lessor::on_revoked(int64_t id) {
  auto it = leases_.find(id);
  if (it == leases_.end()) return;
  deadlines_.erase({it->second.deadline_ms, id});
  leases_.erase(it);
}

void Lessor::observe(const ApplyResult& result, int64_t now_ms) {
  for (const LeaseInfo& lease : result.leases_granted) {
    on_granted(lease.id, lease.ttl_seconds, now_ms);
  }
  for (int64_t id : result.leases_revoked) on_revoked(id);
}

void Lessor::arm(int64_t id, int64_t deadline_ms) {
  Timer& t = leases_.at(id);
  deadlines_.erase({t.deadline_ms, id});
  t.deadline_ms = deadline_ms;
  deadlines_.insert({deadline_ms, id});
}

Result<int64_t> Lessor::keep_alive(int64_t id, int64_t now_ms) {
  auto it = leases_.find(id);
  if (it == leases_.end()) {
    return Status::not_found("lease " + std::to_string(id) + " not found");
  }
  if (it->second.expiring || it->second.deadline_ms <= now_ms) {
    return Status::not_found("lease " + std::to_string(id) + " has expired");
  }
  arm(id, now_ms + it->second.ttl_ms);
  return it->second.ttl_ms / 1'000;
}

std::vector<int64_t> Lessor::expired(int64_t now_ms, size_t max) {
  std::vector<int64_t> out;
  while (out.size() < max && !deadlines_.empty() && deadlines_.begin()->first <= now_ms) {
    int64_t id = deadlines_.begin()->second;
    leases_.at(id).expiring = true;
    arm(id, now_ms + kExpireRetryMs);
    out.push_back(id);
  }
  return out;
}

int64_t Lessor::remaining_ms(int64_t id, int64_t now_ms) const {
  auto it = leases_.find(id);
  if (it == leases_.end()) return -1;
  if (it->second.expiring) return 0;
  return std::max<int64_t>(0, it->second.deadline_ms - now_ms);
}

int64_t Lessor::next_deadline_ms() const {
  return deadlines_.empty() ? -1 : deadlines_.begin()->first;
}

void Lessor::clear() {
  leases_.clear();
  deadlines_.clear();
}

}  // namespace shoal::meta
