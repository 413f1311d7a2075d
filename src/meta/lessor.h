// Lessor: the leader's lease timers.
//
// Leases are granted and revoked through Raft (KvStore), but their countdown
// is leader-local, as in etcd: keep-alives refresh a timer here and never go
// through Raft. When a lease's timer runs out, the leader proposes a
// LeaseExpire with the ids from expired(); applying it revokes the leases
// (deleting their keys) on every member.
//
// Pure: the caller passes monotonic time in milliseconds. Driving it on the
// leader:
//   - on becoming leader: on_become_leader(store, now): every lease in the
//     store gets a fresh full TTL (so a lease never expires early because its
//     old leader died; it may live up to one extra TTL);
//   - after applying each entry: observe(result, now) (grants arm, revokes
//     disarm);
//   - on a client keep-alive: keep_alive(id, now);
//   - on every tick: expired(now, kLeaseExpireIdsMax), propose LeaseExpire if
//     not empty. An id handed out is not handed out again for
//     kExpireRetryMs, and keep-alives of it fail: it is being revoked;
//   - on losing leadership: clear().
// One thread (the loop thread) owns it.
#pragma once

#include <cstddef>
#include <cstdint>
#include <map>
#include <set>
#include <utility>
#include <vector>

#include "meta/kv.h"
#include "shoal/status.h"

namespace shoal::meta {

class Lessor {
 public:
  // A lease that expired() handed out is handed out again after this long if
  // it is still armed (its LeaseExpire got lost, e.g. with a leader change).
  static constexpr int64_t kExpireRetryMs = 3'000;

  void on_become_leader(const KvStore& store, int64_t now_ms);
  void on_granted(int64_t id, int64_t ttl_seconds, int64_t now_ms);
  void on_revoked(int64_t id);
  // Calls on_granted/on_revoked for what one applied entry did.
  void observe(const ApplyResult& result, int64_t now_ms);

  // Restarts the lease's full TTL; returns the TTL in seconds. kNotFound for
  // an unknown lease or one that already expired (it is being revoked).
  Result<int64_t> keep_alive(int64_t id, int64_t now_ms);

  // Up to `max` leases whose deadline is <= now, earliest deadline first (ties
  // by id). Each is marked expiring (see kExpireRetryMs).
  std::vector<int64_t> expired(int64_t now_ms, size_t max);

  // Milliseconds until the lease expires (0 once due); -1 when unknown.
  int64_t remaining_ms(int64_t id, int64_t now_ms) const;
  // The earliest deadline of all armed leases, to sleep until; -1 when none.
  int64_t next_deadline_ms() const;

  void clear();
  size_t size() const { return leases_.size(); }

 private:
  struct Timer {
    int64_t ttl_ms = 0;
    int64_t deadline_ms = 0;
    bool expiring = false;
  };
  void arm(int64_t id, int64_t deadline_ms);

  std::map<int64_t, Timer> leases_;
  std::set<std::pair<int64_t, int64_t>> deadlines_;  // (deadline_ms, id)
};

}  // namespace shoal::meta
