// Snapshots: determinism, snapshot -> restore -> continue, and corruption.
#include <doctest/doctest.h>

#include "base/clock.h"
#include "meta/bytes.h"
#include "meta/kv.h"
#include "meta/test_util.h"

using namespace shoal;
using namespace shoal::meta;
using namespace shoal::meta::testing;

namespace {

// A seeded mix of every command, over a small key space so they collide,
// with request ids and retries of earlier requests.
class Workload {
 public:
  explicit Workload(uint64_t seed) : rng_(seed) {}

  std::string next() {
    Request r = make();
    if (rng_.uniform(3) == 0) r.id = RequestId{1 + rng_.uniform(4), ++seq_};
    if (!r.id.empty() && is_write(r.body)) sent_.push_back(r);
    if (!sent_.empty() && rng_.uniform(8) == 0) r = sent_[rng_.uniform(sent_.size())];  // retry
    auto bytes = encode_request(r);
    REQUIRE_MESSAGE(bytes.ok(), bytes.status().to_string());
    return *bytes;
  }

 private:
  std::string key() { return "k" + std::to_string(rng_.uniform(40)); }
  int64_t lease_id() {
    return rng_.uniform(3) == 0 ? 0 : 1 + static_cast<int64_t>(rng_.uniform(60));
  }

  PutRequest put_op() {
    PutRequest p;
    p.key = key();
    p.value = std::string(rng_.uniform(20), static_cast<char>('a' + rng_.uniform(26)));
    p.lease = rng_.uniform(2) == 0 ? 0 : lease_id();
    p.prev_kv = rng_.uniform(2) == 0;
    return p;
  }

  Request make() {
    switch (rng_.uniform(10)) {
      case 0:
      case 1:
      case 2:
        return Request{{}, put_op()};
      case 3: {
        PutRequest p = put_op();
        p.expected_mod_revision = static_cast<int64_t>(rng_.uniform(30));
        return Request{{}, p};
      }
      case 4: {
        std::string a = key();
        std::string b = key();
        if (b <= a) b = a + "~";
        return del(a, rng_.uniform(2) == 0 ? std::string() : b, rng_.uniform(2) == 0);
      }
      case 5: {
        TxnRequest t;
        t.compares.push_back(Compare{key(), static_cast<Compare::Target>(rng_.uniform(6)),
                                     static_cast<Compare::Op>(rng_.uniform(4)), "m",
                                     static_cast<int64_t>(rng_.uniform(3))});
        t.success.push_back(put_op());
        t.success.push_back(RangeRequest::prefix("k1"));
        t.failure.push_back(DeleteRangeRequest{"k3", "k4", true});
        if (rng_.uniform(2) == 0) {
          PutRequest p = put_op();
          p.key = "z" + p.key;  // outside the delete's range
          t.failure.push_back(p);
        }
        return Request{{}, t};
      }
      case 6:
        return grant(1 + static_cast<int64_t>(rng_.uniform(100)),
                     rng_.uniform(2) == 0 ? 0 : lease_id());
      case 7:
        return revoke(1 + static_cast<int64_t>(rng_.uniform(60)));
      case 8:
        return Request{{}, LeaseExpireRequest{{lease_id() + 1, lease_id() + 1}}};
      default:
        return Request{{}, RangeRequest::prefix("k2")};
    }
  }

  SeededRng rng_;
  uint64_t seq_ = 0;
  std::vector<Request> sent_;
};

KvOptions small_options() {
  KvOptions o;
  o.dedup.entries_max = 50;  // so eviction and watermarks happen
  o.dedup.clients_max = 3;
  o.dedup.response_bytes_max = 300;
  o.leases_max = 40;
  return o;
}

std::string flip(std::string s, size_t bit) {
  s[bit / 8] = static_cast<char>(s[bit / 8] ^ (1 << (bit % 8)));
  return s;
}

// Builds a snapshot with a valid checksum around a hand-written body.
std::string framed(const std::string& body) {
  ByteWriter w;
  w.put_raw("SHKV");
  w.put_u8(1);
  w.put_raw(body);
  w.put_fixed32(crc32c(w.data()));
  return w.release();
}

}  // namespace

TEST_CASE("bytes: crc32c matches the standard check value on every path") {
  CHECK(crc32c("123456789") == 0xe3069283u);
  CHECK(crc32c_portable("123456789") == 0xe3069283u);
  CHECK(crc32c("") == 0u);
  SeededRng rng(9);
  for (size_t n : {1, 7, 8, 9, 63, 64, 1000}) {
    std::string data(n, '\0');
    for (char& c : data) c = static_cast<char>(rng.uniform(256));
    CHECK(crc32c(data) == crc32c_portable(data));
    CHECK(crc32c(data.substr(n / 2), crc32c(data.substr(0, n / 2))) == crc32c(data));
  }
  ByteWriter w;
  w.put_varint(0);
  w.put_varint(300);
  w.put_varint(UINT64_MAX);
  ByteReader r(w.data());
  uint64_t v = 1;
  CHECK(r.get_varint(v, "a").ok());
  CHECK(v == 0);
  CHECK(r.get_varint(v, "b").ok());
  CHECK(v == 300);
  CHECK(r.get_varint(v, "c").ok());
  CHECK(v == UINT64_MAX);
  CHECK_FALSE(r.get_varint(v, "d").ok());
  std::string ones(11, '\xff');
  ByteReader overlong(ones);
  CHECK(overlong.get_varint(v, "e").message().find("overlong") != std::string::npos);
}

TEST_CASE("snapshot: the same commands give byte-identical snapshots") {
  for (uint64_t seed : {1, 2, 3}) {
    CAPTURE(seed);
    KvStore a(small_options());
    KvStore b(small_options());
    Workload wa(seed);
    Workload wb(seed);
    for (uint64_t i = 1; i <= 1'500; ++i) {
      ApplyResult ra = a.apply(i, wa.next());
      ApplyResult rb = b.apply(i, wb.next());
      REQUIRE(ra.response == rb.response);
      REQUIRE(ra.events == rb.events);
    }
    CHECK(a.snapshot() == b.snapshot());
    CHECK(a.revision() > 100);
    CHECK(a.dedup().watermarks() > 0);
  }
}

TEST_CASE("snapshot: restore then continue matches never snapshotting") {
  for (uint64_t seed : {11, 12}) {
    CAPTURE(seed);
    KvStore straight(small_options());
    KvStore restarted(small_options());
    Workload w(seed);
    std::vector<std::string> commands;
    for (int i = 0; i < 2'000; ++i) commands.push_back(w.next());
    uint64_t index = 0;
    for (; index < 700; ++index) {
      straight.apply(index + 1, commands[index]);
      restarted.apply(index + 1, commands[index]);
    }
    std::string snap = restarted.snapshot();
    KvStore fresh(small_options());
    REQUIRE(fresh.restore(snap).ok());
    CHECK(fresh.snapshot() == snap);
    CHECK(fresh.applied_index() == 700);
    CHECK(fresh.revision() == straight.revision());
    CHECK(fresh.leases() == straight.leases());
    // History before the snapshot is gone, with an error that says so.
    auto old = fresh.events_since(1, "k", "l", 10);
    REQUIRE_FALSE(old.ok());
    CHECK(old.status().message().find("restored a snapshot") != std::string::npos);
    CHECK(fresh.oldest_event_revision() == fresh.revision() + 1);

    int64_t restored_at = fresh.revision();
    for (; index < commands.size(); ++index) {
      ApplyResult a = straight.apply(index + 1, commands[index]);
      ApplyResult b = fresh.apply(index + 1, commands[index]);
      REQUIRE(a.response == b.response);
      REQUIRE(a.events == b.events);
      REQUIRE(a.leases_granted == b.leases_granted);
      REQUIRE(a.leases_revoked == b.leases_revoked);
    }
    CHECK(fresh.snapshot() == straight.snapshot());
    auto since = fresh.events_since(restored_at + 1, "k", "l", 1'000'000);
    REQUIRE(since.ok());
    auto same = straight.events_since(restored_at + 1, "k", "l", 1'000'000);
    REQUIRE(same.ok());
    CHECK(since->events == same->events);
  }
}

TEST_CASE("snapshot: a retried request is still answered after restore") {
  Harness h;
  Request r = with_id(put("x", "1"), 77, 1);
  Response original = h.ok(r);
  KvStore restored;
  REQUIRE(restored.restore(h.store.snapshot()).ok());
  ApplyResult retry = restored.apply(h.index + 1, *encode_request(r));
  CHECK(retry.response == original);
  CHECK(retry.events.empty());
  CHECK(restored.revision() == 1);
}

TEST_CASE("snapshot: corruption is detected and leaves the store unchanged") {
  Harness h(small_options());
  Workload w(5);
  for (int i = 0; i < 300; ++i) h.store.apply(++h.index, w.next());
  std::string snap = h.store.snapshot();

  KvStore target(small_options());
  target.apply(1, *encode_request(put("mine", "1")));
  std::string before = target.snapshot();

  size_t rejected = 0;
  for (size_t bit = 0; bit < snap.size() * 8; bit += 7) {
    Status s = target.restore(flip(snap, bit));
    CHECK_FALSE(s.ok());
    rejected += s.ok() ? 0 : 1;
  }
  for (size_t cut = 0; cut < snap.size(); cut += 3)
    CHECK_FALSE(target.restore(snap.substr(0, cut)).ok());
  CHECK_FALSE(target.restore(snap + "x").ok());
  CHECK(target.restore("SHKV").message().find("bad magic or too short") != std::string::npos);
  std::string v2 = snap;
  v2[4] = 2;
  CHECK(target.restore(v2).message().find("version 2") != std::string::npos);
  CHECK(target.restore(flip(snap, 100)).message().find("checksum") != std::string::npos);
  CHECK(target.snapshot() == before);
  CHECK(rejected > 100);

  REQUIRE(target.restore(snap).ok());
  CHECK(target.snapshot() == snap);
}

TEST_CASE("snapshot: a well-framed but inconsistent body is refused") {
  KvStore target;
  auto body = [](int64_t revision, std::string k1, std::string k2, int64_t lease) {
    ByteWriter w;
    w.put_varint(9);         // applied index
    w.put_signed(revision);  // revision
    w.put_varint(1);         // one lease
    w.put_signed(4);
    w.put_signed(30);
    w.put_varint(2);  // two keys
    for (const std::string& k : {k1, k2}) {
      w.put_bytes(k);
      w.put_bytes("v");
      w.put_signed(1);
      w.put_signed(2);
      w.put_signed(1);
      w.put_signed(lease);
    }
    w.put_varint(0);  // dedup entries
    w.put_varint(0);  // watermarks
    return w.release();
  };
  REQUIRE(target.restore(framed(body(2, "a", "b", 4))).ok());
  CHECK(target.key_count() == 2);
  CHECK(target.lease(4)->key_count == 2);
  CHECK(target.data_bytes() == 4);
  CHECK(target.applied_index() == 9);
  std::string good = target.snapshot();

  Status unordered = target.restore(framed(body(2, "b", "a", 4)));
  CHECK(unordered.message().find("corrupt meta snapshot: bad key entry 1") != std::string::npos);
  CHECK_FALSE(target.restore(framed(body(2, "a", "a", 4))).ok());
  CHECK_FALSE(target.restore(framed(body(1, "a", "b", 4))).ok());        // mod revision > revision
  CHECK_FALSE(target.restore(framed(body(2, "a", "b", 5))).ok());        // unknown lease
  CHECK_FALSE(target.restore(framed(body(2, "a", "b", 4) + "!")).ok());  // trailing
  CHECK(target.snapshot() == good);
}
