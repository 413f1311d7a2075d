// Lessor: arming, keep-alive, expiry, retries, leadership changes, and the
// whole loop with a KvStore.
#include "meta/lessor.h"

#include <doctest/doctest.h>

#include "meta/test_util.h"

using namespace shoal;
using namespace shoal::meta;
using namespace shoal::meta::testing;

TEST_CASE("lessor: grant arms, keep-alive refreshes, expiry is ordered and bounded") {
  Lessor l;
  l.on_granted(1, 10, 0);
  l.on_granted(2, 5, 0);
  l.on_granted(3, 5, 1'000);
  CHECK(l.size() == 3);
  CHECK(l.remaining_ms(1, 4'000) == 6'000);
  CHECK(l.remaining_ms(99, 0) == -1);
  CHECK(l.next_deadline_ms() == 5'000);

  auto ttl = l.keep_alive(2, 4'000);
  REQUIRE(ttl.ok());
  CHECK(*ttl == 5);
  CHECK(l.remaining_ms(2, 4'000) == 5'000);
  CHECK(l.keep_alive(99, 0).status().code() == Status::Code::kNotFound);

  CHECK(l.expired(5'999, 10).empty());
  CHECK(l.expired(6'000, 10) == std::vector<int64_t>{3});  // due at 6000
  // Handed out: not again until the retry interval, and keep-alives fail.
  CHECK(l.keep_alive(3, 6'000).status().message().find("expired") != std::string::npos);
  CHECK(l.remaining_ms(3, 6'500) == 0);
  CHECK(l.expired(8'999, 10).empty());
  // 2 is due at 9000 (kept alive at 4000); 3 comes back after kExpireRetryMs.
  CHECK(l.expired(6'000 + Lessor::kExpireRetryMs, 10) == std::vector<int64_t>{2, 3});
  CHECK(l.keep_alive(1, 9'500).ok());
  CHECK(l.remaining_ms(1, 9'500) == 10'000);
  CHECK(l.expired(11'999, 10).empty());
  CHECK(l.keep_alive(2, 9'500).status().code() == Status::Code::kNotFound);

  // The LeaseExpire applied: the leases are gone.
  l.on_revoked(1);
  l.on_revoked(2);
  l.on_revoked(3);
  l.on_revoked(3);
  CHECK(l.size() == 0);
  CHECK(l.next_deadline_ms() == -1);

  for (int64_t id = 1; id <= 10; ++id) l.on_granted(id, 1, 0);
  CHECK(l.expired(1'000, 4) == std::vector<int64_t>{1, 2, 3, 4});
  CHECK(l.expired(1'000, 100).size() == 6);
}

TEST_CASE("lessor: a keep-alive at the deadline is too late") {
  Lessor l;
  l.on_granted(7, 2, 0);
  CHECK(l.keep_alive(7, 1'999).ok());  // due at 3999 now
  CHECK(l.keep_alive(7, 3'998).ok());  // due at 5998 now
  CHECK_FALSE(l.keep_alive(7, 5'998).ok());
}

TEST_CASE("lessor: a new leader re-arms every lease with its full TTL") {
  Harness h;
  int64_t a = h.grant_lease(10);
  int64_t b = h.grant_lease(60);
  h.ok(put("svc/a", "1", a));

  Lessor old_leader;
  old_leader.on_become_leader(h.store, 0);
  CHECK(old_leader.remaining_ms(a, 9'000) == 1'000);

  // Leadership moves at t=9s; the new leader knows nothing of old timers.
  old_leader.clear();
  CHECK(old_leader.size() == 0);
  Lessor new_leader;
  new_leader.on_granted(999, 5, 0);  // stale state is dropped
  new_leader.on_become_leader(h.store, 9'000);
  CHECK(new_leader.size() == 2);
  CHECK(new_leader.remaining_ms(999, 9'000) == -1);
  CHECK(new_leader.remaining_ms(a, 9'000) == 10'000);
  CHECK(new_leader.remaining_ms(b, 9'000) == 60'000);
  CHECK(new_leader.expired(18'999, 10).empty());
  CHECK(new_leader.expired(19'000, 10) == std::vector<int64_t>{a});
}

TEST_CASE("lessor + store: expiry deletes the lease's keys on every member") {
  Harness leader;
  Harness follower;
  Lessor lessor;
  int64_t now = 0;
  auto replicate = [&](const Request& r) {
    ApplyResult result = leader.apply(r);
    ApplyResult copy = follower.apply(r);
    REQUIRE(result.response == copy.response);
    lessor.observe(result, now);
    return result;
  };
  ApplyResult g = replicate(grant(3));
  int64_t session = std::get<LeaseGrantResponse>(g.response.body).id;
  int64_t keeper = std::get<LeaseGrantResponse>(replicate(grant(3)).response.body).id;
  replicate(put("lock/a", "owner", session));
  replicate(put("members/1", "x", session));
  replicate(put("members/2", "y", keeper));
  CHECK(lessor.size() == 2);

  // keeper is kept alive; session is not.
  for (now = 1'000; now <= 4'000; now += 1'000) {
    CHECK(lessor.keep_alive(keeper, now).ok());
    std::vector<int64_t> due = lessor.expired(now, kLeaseExpireIdsMax);
    if (now < 3'000) {
      CHECK(due.empty());
      continue;
    }
    if (due.empty()) continue;
    CHECK(due == std::vector<int64_t>{session});
    ApplyResult r = replicate(Request{{}, LeaseExpireRequest{due}});
    CHECK(std::get<LeaseExpireResponse>(r.response.body).deleted == 2);
    CHECK(r.events.size() == 2);
  }
  CHECK(lessor.size() == 1);
  CHECK_FALSE(leader.get("lock/a"));
  CHECK_FALSE(follower.get("members/1"));
  CHECK(follower.get("members/2"));
  CHECK(leader.store.snapshot() == follower.store.snapshot());

  // An explicit revoke disarms as well.
  replicate(revoke(keeper));
  CHECK(lessor.size() == 0);
  CHECK(leader.store.key_count() == 0);
}
