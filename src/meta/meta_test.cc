// KvStore: keys, ranges, deletes, compare-and-swap, txns, leases, request
// ids and the event history.
#include <doctest/doctest.h>

#include "meta/kv.h"
#include "meta/test_util.h"

using namespace shoal;
using namespace shoal::meta;
using namespace shoal::meta::testing;

namespace {

Request txn(std::vector<Compare> compares, std::vector<TxnOp> success,
            std::vector<TxnOp> failure = {}) {
  return Request{{}, TxnRequest{std::move(compares), std::move(success), std::move(failure)}};
}

Compare cmp(std::string key, Compare::Target target, Compare::Op op, int64_t number,
            std::string value = {}) {
  return Compare{std::move(key), target, op, std::move(value), number};
}

PutRequest put_op(std::string key, std::string value, int64_t lease = 0) {
  return std::get<PutRequest>(put(std::move(key), std::move(value), lease).body);
}

}  // namespace

TEST_CASE("put and get: revisions, versions, prev_kv") {
  Harness h;
  CHECK(h.store.revision() == 0);
  Response r = h.ok(put("a", "1"));
  CHECK(r.revision == 1);
  CHECK(h.store.revision() == 1);
  auto kv = h.get("a");
  REQUIRE(kv);
  CHECK(*kv == KeyValue{"a", "1", 1, 1, 1, 0});

  h.ok(put("b", "x"));
  PutRequest again = put_op("a", "2");
  again.prev_kv = true;
  r = h.ok(Request{{}, again});
  CHECK(r.revision == 3);
  auto& body = std::get<PutResponse>(r.body);
  CHECK(body.succeeded);
  REQUIRE(body.prev_kv);
  CHECK(body.prev_kv->value == "1");
  CHECK(*h.get("a") == KeyValue{"a", "2", 1, 3, 2, 0});
  CHECK_FALSE(h.get("missing"));
  CHECK(h.store.key_count() == 2);
  CHECK(h.store.data_bytes() == 2 + 2);
  CHECK(h.store.applied_index() == 3);
}

TEST_CASE("put events carry the new and previous key-value") {
  Harness h;
  ApplyResult r = h.apply(put("k", "v1"));
  REQUIRE(r.events.size() == 1);
  CHECK(r.events[0].type == Event::Type::kPut);
  CHECK(r.events[0].kv == KeyValue{"k", "v1", 1, 1, 1, 0});
  CHECK_FALSE(r.events[0].prev);
  r = h.apply(put("k", "v2"));
  REQUIRE(r.events.size() == 1);
  REQUIRE(r.events[0].prev);
  CHECK(r.events[0].prev->value == "v1");
  CHECK(r.events[0].revision() == 2);
}

TEST_CASE("range: single, prefix, all, [key, end), keys_only, count_only") {
  Harness h;
  for (std::string k : {"a", "app/1", "app/2", "app/3", "b", "\xff\xff"}) h.ok(put(k, "v" + k));
  CHECK(keys_of(h.get(RangeRequest::prefix("app/")).kvs) ==
        std::vector<std::string>{"app/1", "app/2", "app/3"});
  CHECK(h.get(RangeRequest::all()).kvs.size() == 6);
  CHECK(keys_of(h.get(RangeRequest{"a", "b", 0, 0, false, false}).kvs).size() == 4);
  CHECK(keys_of(h.get(RangeRequest::prefix("\xff")).kvs) == std::vector<std::string>{"\xff\xff"});
  CHECK(keys_of(h.get(RangeRequest{"app/2", std::string(1, '\0'), 0, 0, false, false}).kvs) ==
        std::vector<std::string>{"app/2", "app/3", "b", "\xff\xff"});

  RangeRequest keys_only = RangeRequest::prefix("app/");
  keys_only.keys_only = true;
  RangeResponse ko = h.get(keys_only);
  REQUIRE(ko.kvs.size() == 3);
  CHECK(ko.kvs[0].value.empty());
  CHECK(ko.kvs[0].mod_revision == 2);

  RangeRequest count_only = RangeRequest::prefix("app/");
  count_only.count_only = true;
  RangeResponse co = h.get(count_only);
  CHECK(co.kvs.empty());
  CHECK(co.count == 3);
  CHECK_FALSE(co.more);

  CHECK(prefix_range_end("a\xff") == "b");
  CHECK(prefix_range_end("ab") == "ac");
  CHECK(prefix_range_end("\xff") == std::string(1, '\0'));
}

TEST_CASE("range: limit, more and continuation") {
  Harness h;
  for (int i = 0; i < 25; ++i) h.ok(put("k" + std::to_string(100 + i), "v"));
  RangeRequest req = RangeRequest::prefix("k");
  req.limit = 10;
  std::vector<std::string> all;
  int pages = 0;
  while (true) {
    RangeResponse page = h.get(req);
    CHECK(page.count == 25 - static_cast<int64_t>(all.size()));
    for (auto& kv : page.kvs) all.push_back(kv.key);
    ++pages;
    if (!page.more) break;
    req.key = page.kvs.back().key + '\0';
  }
  CHECK(pages == 3);
  CHECK(all.size() == 25);
  CHECK(all.front() == "k100");
  CHECK(all.back() == "k124");
}

TEST_CASE("range: the response bound caps kvs and bytes with more = true") {
  Harness h;
  for (size_t i = 0; i < kResponseKvsMax + 5; ++i) {
    char key[16];
    snprintf(key, sizeof(key), "n%06zu", i);
    h.ok(put(key, ""));
  }
  RangeResponse r = h.get(RangeRequest::prefix("n"));
  CHECK(r.kvs.size() == kResponseKvsMax);
  CHECK(r.more);
  CHECK(r.count == static_cast<int64_t>(kResponseKvsMax + 5));
  RangeRequest next = RangeRequest::prefix("n");
  next.key = r.kvs.back().key + '\0';
  RangeResponse rest = h.get(next);
  CHECK(rest.kvs.size() == 5);
  CHECK_FALSE(rest.more);

  std::string big(kValueBytesMax, 'x');
  for (int i = 0; i < 12; ++i) h.ok(put("big" + std::to_string(i), big));
  RangeResponse b = h.get(RangeRequest::prefix("big"));
  CHECK(b.kvs.size() == kResponseKvBytesMax / (kValueBytesMax + 4));
  CHECK(b.more);
  RangeRequest keys_only = RangeRequest::prefix("big");
  keys_only.keys_only = true;
  CHECK(h.get(keys_only).kvs.size() == 12);
}

TEST_CASE("range: bad ranges and revisions are refused") {
  Harness h;
  h.ok(put("a", "1"));
  Response r = h.store.range(RangeRequest{"b", "a", 0, 0, false, false});
  CHECK(r.status.code() == Status::Code::kInvalidArgument);
  CHECK(r.status.message().find("range_end must sort after key") != std::string::npos);
  CHECK(h.store.range(RangeRequest{"", "", 0, 0, false, false}).status.code() ==
        Status::Code::kInvalidArgument);
  CHECK(h.store.range(RangeRequest{"a", "", -1, 0, false, false}).status.code() ==
        Status::Code::kInvalidArgument);
  CHECK(h.store.range(RangeRequest{"a", "", 0, 1, false, false}).status.ok());
  Response future = h.store.range(RangeRequest{"a", "", 0, 5, false, false});
  CHECK(future.status.message().find("future") != std::string::npos);
  h.ok(put("a", "2"));
  Response past = h.store.range(RangeRequest{"a", "", 0, 1, false, false});
  CHECK(past.status.message().find("compacted") != std::string::npos);
}

TEST_CASE("delete: single, range, prev_kvs, events and no-op deletes") {
  Harness h;
  for (std::string k : {"a", "b1", "b2", "b3", "c"}) h.ok(put(k, "v" + k));
  int64_t rev = h.store.revision();
  ApplyResult r = h.apply(del("b", "c", true));
  CHECK(r.response.status.ok());
  CHECK(r.response.revision == rev + 1);
  auto& body = std::get<DeleteRangeResponse>(r.response.body);
  CHECK(body.deleted == 3);
  CHECK(keys_of(body.prev_kvs) == std::vector<std::string>{"b1", "b2", "b3"});
  REQUIRE(r.events.size() == 3);
  for (const Event& e : r.events) {
    CHECK(e.type == Event::Type::kDelete);
    CHECK(e.revision() == rev + 1);
    REQUIRE(e.prev);
    CHECK(e.prev->value == "v" + e.kv.key);
    CHECK(e.kv.value.empty());
  }
  CHECK(h.store.key_count() == 2);

  // Deleting nothing changes nothing, not even the revision.
  r = h.apply(del("zz"));
  CHECK(std::get<DeleteRangeResponse>(r.response.body).deleted == 0);
  CHECK(r.events.empty());
  CHECK(h.store.revision() == rev + 1);

  r = h.apply(del("a"));
  CHECK(std::get<DeleteRangeResponse>(r.response.body).deleted == 1);
  CHECK(h.store.revision() == rev + 2);
  // Recreating starts a new life: version 1, new create revision.
  h.ok(put("a", "again"));
  CHECK(*h.get("a") == KeyValue{"a", "again", rev + 3, rev + 3, 1, 0});
}

TEST_CASE("compare-and-swap on mod_revision") {
  Harness h;
  Response created = h.ok(cas("lock", "me", 0));  // must not exist
  CHECK(created.revision == 1);

  ApplyResult again = h.apply(cas("lock", "you", 0));
  CHECK(again.response.status.code() == Status::Code::kAlreadyExists);
  CHECK(again.response.status.message().find("compare failed") != std::string::npos);
  auto& failed = std::get<PutResponse>(again.response.body);
  CHECK_FALSE(failed.succeeded);
  REQUIRE(failed.current);
  CHECK(failed.current->value == "me");
  CHECK(again.events.empty());
  CHECK(h.store.revision() == 1);

  CHECK(h.apply(cas("lock", "x", 7)).response.status.code() == Status::Code::kAlreadyExists);
  Response swapped = h.ok(cas("lock", "you", 1));
  CHECK(swapped.revision == 2);
  CHECK(h.get("lock")->value == "you");

  ApplyResult absent = h.apply(cas("nothing", "x", 5));
  CHECK(absent.response.status.code() == Status::Code::kAlreadyExists);
  CHECK_FALSE(std::get<PutResponse>(absent.response.body).current);
  CHECK_FALSE(h.get("nothing"));
}

TEST_CASE("txn: compare targets and ops") {
  Harness h;
  int64_t lease = h.grant_lease(60);
  h.ok(put("a", "apple", lease));
  h.ok(put("a", "apricot", lease));  // version 2, mod 2
  using T = Compare::Target;
  using O = Compare::Op;
  struct Case {
    Compare c;
    bool holds;
  };
  std::vector<Case> cases = {
      {cmp("a", T::kValue, O::kEqual, 0, "apricot"), true},
      {cmp("a", T::kValue, O::kLess, 0, "b"), true},
      {cmp("a", T::kValue, O::kGreater, 0, "b"), false},
      {cmp("a", T::kValue, O::kNotEqual, 0, "apple"), true},
      {cmp("a", T::kVersion, O::kEqual, 2), true},
      {cmp("a", T::kVersion, O::kGreater, 1), true},
      {cmp("a", T::kCreateRevision, O::kEqual, 1), true},
      {cmp("a", T::kModRevision, O::kEqual, 2), true},
      {cmp("a", T::kModRevision, O::kLess, 2), false},
      {cmp("a", T::kLease, O::kEqual, lease), true},
      {cmp("a", T::kExists, O::kEqual, 1), true},
      {cmp("zz", T::kExists, O::kEqual, 0), true},
      {cmp("zz", T::kVersion, O::kEqual, 0), true},
      {cmp("zz", T::kCreateRevision, O::kEqual, 0), true},
      // etcd: a value compare on a missing key fails whatever the op.
      {cmp("zz", T::kValue, O::kNotEqual, 0, "x"), false},
      {cmp("zz", T::kValue, O::kEqual, 0, ""), false},
  };
  for (const Case& c : cases) {
    CAPTURE(static_cast<int>(c.c.target));
    CAPTURE(static_cast<int>(c.c.op));
    CAPTURE(c.c.key);
    Response r = h.ok(txn({c.c}, {}, {}));
    CHECK(std::get<TxnResponse>(r.body).succeeded == c.holds);
  }
  CHECK(h.store.revision() == 2);  // compares alone write nothing
}

TEST_CASE("txn: branches, one revision for all writes, ranges see earlier ops") {
  Harness h;
  h.ok(put("x", "1"));
  h.ok(put("old", "o"));
  using T = Compare::Target;
  using O = Compare::Op;
  RangeRequest read_y = RangeRequest::single("y");
  ApplyResult r =
      h.apply(txn({cmp("x", T::kValue, O::kEqual, 0, "1")},
                  {put_op("y", "2"), put_op("z", "3"), DeleteRangeRequest{"old", "", true}, read_y},
                  {put_op("fail", "!")}));
  REQUIRE(r.response.status.ok());
  auto& body = std::get<TxnResponse>(r.response.body);
  CHECK(body.succeeded);
  REQUIRE(body.responses.size() == 4);
  CHECK(std::get<DeleteRangeResponse>(body.responses[2]).deleted == 1);
  auto& seen = std::get<RangeResponse>(body.responses[3]);
  REQUIRE(seen.kvs.size() == 1);
  CHECK(seen.kvs[0].value == "2");
  CHECK(r.response.revision == 3);
  REQUIRE(r.events.size() == 3);
  for (const Event& e : r.events) CHECK(e.revision() == 3);
  CHECK(h.get("y")->mod_revision == 3);
  CHECK(h.get("z")->mod_revision == 3);
  CHECK_FALSE(h.get("fail"));

  r = h.apply(txn({cmp("x", T::kValue, O::kEqual, 0, "nope")}, {put_op("never", "!")},
                  {put_op("fail", "ran")}));
  CHECK_FALSE(std::get<TxnResponse>(r.response.body).succeeded);
  CHECK(h.get("fail")->value == "ran");
  CHECK_FALSE(h.get("never"));
  CHECK(h.store.revision() == 4);

  // A read-only txn does not move the revision.
  r = h.apply(txn({}, {RangeRequest::all()}));
  CHECK(std::get<RangeResponse>(std::get<TxnResponse>(r.response.body).responses[0]).kvs.size() ==
        4);
  CHECK(h.store.revision() == 4);
}

TEST_CASE("txn: overlapping writes are refused, failures apply nothing") {
  Harness h;
  ApplyResult r = h.store.apply(++h.index, txn({}, {put_op("a", "1"), put_op("a", "2")}));
  CHECK(r.response.status.code() == Status::Code::kInvalidArgument);
  CHECK(r.response.status.message() == "txn: success branch puts the same key twice");
  r = h.store.apply(++h.index,
                    txn({}, {put_op("b/1", "1"), DeleteRangeRequest{"b/", "b0", false}}));
  CHECK(r.response.status.message().find("deletes also covers") != std::string::npos);
  // The failure branch is checked on its own.
  r = h.store.apply(++h.index, txn({}, {put_op("a", "1")}, {put_op("a", "1"), put_op("a", "2")}));
  CHECK(r.response.status.code() == Status::Code::kInvalidArgument);
  CHECK(h.store.revision() == 0);

  // An unknown lease on a later op: nothing of the txn is applied.
  r = h.apply(txn({}, {put_op("first", "1"), put_op("second", "2", 999)}));
  CHECK(r.response.status.code() == Status::Code::kNotFound);
  CHECK(r.events.empty());
  CHECK_FALSE(h.get("first"));
  CHECK(h.store.revision() == 0);

  // A put inside a txn cannot carry its own compare-and-swap.
  PutRequest p = put_op("c", "1");
  p.expected_mod_revision = 0;
  Request bad = txn({}, {p});
  CHECK_FALSE(encode_request(bad).ok());
  CHECK(h.store.apply(++h.index, bad).response.status.code() == Status::Code::kInvalidArgument);
}

TEST_CASE("txn: prev_kvs of puts count against the response bound") {
  // 128 puts asking for 1.5 MiB prev values would answer 192 MiB; the bound
  // keeps every response encodable (encode_response asserts its size).
  Harness h;
  std::string big(kValueBytesMax, 'x');
  std::vector<TxnOp> ops;
  for (int i = 0; i < 12; ++i) {
    h.ok(put("p" + std::to_string(i), big));
    PutRequest p = put_op("p" + std::to_string(i), "small");
    p.prev_kv = true;
    ops.push_back(p);
  }
  Response r = h.ok(txn({}, ops));
  auto& responses = std::get<TxnResponse>(r.body).responses;
  size_t kept = 0;
  size_t cut = 0;
  for (const TxnOpResponse& op : responses) {
    const auto& put = std::get<PutResponse>(op);
    kept += put.prev_kv.has_value();
    cut += put.prev_kv_truncated;
  }
  CHECK(kept == kResponseKvBytesMax / (kValueBytesMax + 3));
  CHECK(kept + cut == 12);
  std::string encoded = encode_response(r);
  CHECK(encoded.size() < kResponseBytesMax);
  CHECK(*decode_response(encoded) == r);
  CHECK(h.get("p11")->value == "small");
}

TEST_CASE("limits: key, value, txn size, quota") {
  KvOptions options;
  options.data_bytes_max = 10'000;
  Harness h(options);
  std::string long_key(kKeyBytesMax + 1, 'k');
  Response r = h.store.apply(++h.index, put(long_key, "v")).response;
  CHECK(r.status.code() == Status::Code::kResourceExhausted);
  CHECK(r.status.message().find("1536-byte key limit") != std::string::npos);
  CHECK(h.store.apply(++h.index, put(std::string(kKeyBytesMax, 'k'), "v")).response.status.ok());
  r = h.store.apply(++h.index, put("k", std::string(kValueBytesMax + 1, 'v'))).response;
  CHECK(r.status.code() == Status::Code::kResourceExhausted);
  CHECK(r.status.message().find("value limit") != std::string::npos);
  CHECK(h.store.apply(++h.index, put("", "v")).response.status.code() ==
        Status::Code::kInvalidArgument);

  std::vector<TxnOp> ops;
  for (size_t i = 0; i <= kTxnOpsMax; ++i) ops.push_back(put_op("t" + std::to_string(i), ""));
  r = h.store.apply(++h.index, txn({}, ops)).response;
  CHECK(r.status.code() == Status::Code::kResourceExhausted);
  ops.pop_back();
  CHECK(h.store.apply(++h.index, txn({}, ops)).response.status.ok());

  // Quota: growth beyond data_bytes_max fails; shrinking and deleting still work.
  uint64_t used = h.store.data_bytes();
  r = h.store.apply(++h.index, put("q", std::string(10'000 - used, 'q'))).response;
  CHECK(r.status.code() == Status::Code::kResourceExhausted);
  CHECK(r.status.message().find("quota") != std::string::npos);
  CHECK(h.store.apply(++h.index, put("q", std::string(9'000 - used, 'q'))).response.status.ok());
  CHECK(h.store.apply(++h.index, put("q", "")).response.status.ok());
  CHECK(h.store.data_bytes() == used + 1);
}

TEST_CASE("malformed commands yield an error and change nothing") {
  Harness h;
  h.ok(put("a", "1"));
  std::string before = h.store.snapshot();
  for (std::string_view junk : {std::string_view(""), std::string_view("garbage!"),
                                std::string_view("\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0", 16)}) {
    ApplyResult r = h.store.apply(++h.index, junk);
    CHECK(r.response.status.code() == Status::Code::kInvalidArgument);
    CHECK(r.response.status.message().find("index") != std::string::npos);
    CHECK(r.events.empty());
    CHECK(r.response.revision == 1);
  }
  h.store.apply_noop(++h.index);
  CHECK(h.store.applied_index() == h.index);
  // Only applied_index moved.
  KvStore copy;
  REQUIRE(copy.restore(before).ok());
  CHECK(copy.revision() == h.store.revision());
  CHECK(copy.key_count() == h.store.key_count());

  ApplyResult keep = h.apply(Request{{}, LeaseKeepAliveRequest{5}});
  CHECK(keep.response.status.code() == Status::Code::kInvalidArgument);
  CHECK(keep.response.status.message().find("Lessor") != std::string::npos);
}

TEST_CASE("leases: grant, attach, detach, revoke, expire") {
  Harness h;
  int64_t auto_id = h.grant_lease(10);
  CHECK(auto_id == static_cast<int64_t>(h.index));  // the Raft index of the grant
  CHECK(h.grant_lease(20, 1000) == 1000);
  ApplyResult dup = h.apply(grant(20, 1000));
  CHECK(dup.response.status.code() == Status::Code::kAlreadyExists);
  CHECK(h.store.apply(++h.index, grant(0)).response.status.code() ==
        Status::Code::kInvalidArgument);
  CHECK(h.store.apply(++h.index, grant(kLeaseTtlSecondsMax + 1)).response.status.code() ==
        Status::Code::kInvalidArgument);
  CHECK(h.store.revision() == 0);  // grants do not move the revision

  ApplyResult granted = h.apply(grant(5));
  REQUIRE(granted.leases_granted.size() == 1);
  CHECK(granted.leases_granted[0].ttl_seconds == 5);

  CHECK(h.apply(put("x", "1", 77)).response.status.code() == Status::Code::kNotFound);
  h.ok(put("s/1", "a", auto_id));
  h.ok(put("s/2", "b", auto_id));
  h.ok(put("s/3", "c", 1000));
  h.ok(put("s/3", "c2", auto_id));  // moves to auto_id
  h.ok(put("plain", "p", auto_id));
  h.ok(put("plain", "p2"));  // lease 0 detaches
  CHECK(h.store.lease(auto_id)->key_count == 3);
  CHECK(h.store.lease(1000)->key_count == 0);
  CHECK(h.get("plain")->lease == 0);

  Response ttl = h.store.read(Request{{}, LeaseTimeToLiveRequest{auto_id, true}});
  auto& t = std::get<LeaseTimeToLiveResponse>(ttl.body);
  CHECK(t.granted_ttl_seconds == 10);
  CHECK(t.keys == std::vector<std::string>{"s/1", "s/2", "s/3"});
  CHECK(t.remaining_ms == -1);
  Response list = h.store.read(Request{{}, LeaseLeasesRequest{}});
  CHECK(std::get<LeaseLeasesResponse>(list.body).ids.size() == 3);
  CHECK(h.store.read(Request{{}, LeaseTimeToLiveRequest{4242, false}}).status.code() ==
        Status::Code::kNotFound);

  int64_t rev = h.store.revision();
  ApplyResult revoked = h.apply(revoke(auto_id));
  REQUIRE(revoked.response.status.ok());
  CHECK(std::get<LeaseRevokeResponse>(revoked.response.body).deleted == 3);
  CHECK(revoked.response.revision == rev + 1);
  REQUIRE(revoked.events.size() == 3);
  CHECK(revoked.events[0].kv.key == "s/1");
  CHECK(revoked.events[0].type == Event::Type::kDelete);
  CHECK(revoked.leases_revoked == std::vector<int64_t>{auto_id});
  CHECK_FALSE(h.store.lease(auto_id));
  CHECK(h.store.key_count() == 1);
  CHECK(h.apply(revoke(auto_id)).response.status.code() == Status::Code::kNotFound);

  // Expire: unknown ids ignored, a lease without keys leaves the revision.
  h.ok(put("e/1", "1", 1000));
  rev = h.store.revision();
  int64_t empty = granted.leases_granted[0].id;
  ApplyResult expired = h.apply(Request{{}, LeaseExpireRequest{{1000, 31337, empty, 1000}}});
  auto& e = std::get<LeaseExpireResponse>(expired.response.body);
  CHECK(e.revoked == 2);
  CHECK(e.deleted == 1);
  CHECK(expired.leases_revoked == std::vector<int64_t>{1000, empty});
  CHECK(h.store.revision() == rev + 1);
  CHECK(h.store.leases().empty());
  ApplyResult nothing = h.apply(Request{{}, LeaseExpireRequest{{1000}}});
  CHECK(nothing.response.status.ok());
  CHECK(h.store.revision() == rev + 1);
}

TEST_CASE("leases: auto ids skip ids in use; the lease count is bounded") {
  KvOptions options;
  options.leases_max = 3;
  Harness h(options);
  CHECK(h.grant_lease(10, 2) == 2);  // index 1
  CHECK(h.grant_lease(10) == 3);     // index 2 is taken: next free
  CHECK(h.grant_lease(10) == 4);     // index 3 is taken by now
  ApplyResult full = h.apply(grant(10));
  CHECK(full.response.status.code() == Status::Code::kResourceExhausted);
  h.ok(revoke(3));
  CHECK(h.grant_lease(10) == 6);
}

TEST_CASE("request ids: a retry returns the original response and applies nothing") {
  Harness h;
  Request first = with_id(put("counter", "1"), 42, 1);
  ApplyResult a = h.apply(first);
  REQUIRE(a.response.status.ok());
  h.ok(put("other", "x"));
  ApplyResult retry = h.apply(first);
  CHECK(retry.response == a.response);
  CHECK(retry.events.empty());
  CHECK(h.store.revision() == 2);
  CHECK(h.get("counter")->version == 1);

  // A grant with an assigned id answers with the same id on retry.
  Request g = with_id(grant(30), 42, 2);
  int64_t id = std::get<LeaseGrantResponse>(h.apply(g).response.body).id;
  ApplyResult g2 = h.apply(g);
  CHECK(std::get<LeaseGrantResponse>(g2.response.body).id == id);
  CHECK(g2.leases_granted.empty());
  CHECK(h.store.leases().size() == 1);

  // Failed compare-and-swap outcomes are remembered too.
  Request c = with_id(cas("counter", "2", 99), 42, 3);
  ApplyResult c1 = h.apply(c);
  CHECK(c1.response.status.code() == Status::Code::kAlreadyExists);
  h.ok(put("counter", "3"));  // now mod_revision would differ anyway
  CHECK(h.apply(c).response == c1.response);

  // The same id with other content is a client bug.
  ApplyResult reused = h.apply(with_id(put("counter", "other"), 42, 1));
  CHECK(reused.response.status.code() == Status::Code::kInvalidArgument);
  CHECK(reused.response.status.message().find("different request") != std::string::npos);

  // Reads with an id are not remembered.
  size_t remembered = h.store.dedup().size();
  h.apply(with_id(Request{{}, RangeRequest::all()}, 42, 10));
  CHECK(h.store.dedup().size() == remembered);
  // Invalid requests are not remembered: fixing them under the same id works.
  CHECK(h.store.apply(++h.index, with_id(put("", "x"), 7, 1)).response.status.code() ==
        Status::Code::kInvalidArgument);
  CHECK(h.apply(with_id(put("fixed", "x"), 7, 1)).response.status.ok());
}

TEST_CASE("request ids: eviction is FIFO and leaves a per-client watermark") {
  KvOptions options;
  options.dedup.entries_max = 3;
  options.dedup.clients_max = 2;
  Harness h(options);
  for (uint64_t seq = 1; seq <= 5; ++seq) {
    h.ok(with_id(put("k" + std::to_string(seq), "v"), 9, seq));
  }
  CHECK(h.store.dedup().size() == 3);
  // seq 3..5 are kept: a retry of 4 is answered from the table.
  ApplyResult kept = h.apply(with_id(put("k4", "v"), 9, 4));
  CHECK(kept.response.status.ok());
  CHECK(kept.events.empty());
  // seq 2 was evicted: refused, since it may have been applied.
  ApplyResult stale = h.apply(with_id(put("k2", "v"), 9, 2));
  CHECK(stale.response.status.code() == Status::Code::kInvalidArgument);
  CHECK(stale.response.status.message().find("no longer kept") != std::string::npos);
  CHECK(h.get("k2")->version == 1);

  // Watermarks of at most 2 clients: client 9's goes when two others evict.
  h.ok(with_id(put("a", "v"), 10, 1));
  h.ok(with_id(put("b", "v"), 10, 2));
  h.ok(with_id(put("c", "v"), 11, 1));
  h.ok(with_id(put("d", "v"), 11, 2));
  h.ok(with_id(put("e", "v"), 12, 1));
  h.ok(with_id(put("f", "v"), 12, 2));  // evicts (11, 1): a third watermark pushes out 9's
  CHECK(h.store.dedup().watermarks() == 2);
  CHECK(h.apply(with_id(put("k2", "v"), 9, 2)).response.status.ok());
}

TEST_CASE("request ids: responses over the retention limit are not kept") {
  KvOptions options;
  options.dedup.response_bytes_max = 1'024;
  Harness h(options);
  h.ok(put("big", std::string(4'000, 'b')));
  PutRequest p = put_op("big", "small");
  p.prev_kv = true;
  Request r = with_id(Request{{}, p}, 5, 1);
  CHECK(h.apply(r).response.status.ok());
  ApplyResult retry = h.apply(r);
  CHECK(retry.response.status.code() == Status::Code::kAlreadyExists);
  CHECK(retry.response.status.message().find("already applied at revision 2") != std::string::npos);
  CHECK(h.get("big")->version == 2);
}

TEST_CASE("history: catch-up from a past revision, filtered, in whole revisions") {
  Harness h;
  h.ok(put("w/a", "1"));    // rev 1
  h.ok(put("other", "x"));  // rev 2
  h.ok(put("w/b", "2"));    // rev 3
  h.ok(del("w/", "w0"));    // rev 4: two events
  h.ok(put("w/c", "3"));    // rev 5
  auto all = h.store.events_since(1, "w/", "w0", 100);
  REQUIRE(all.ok());
  REQUIRE(all->events.size() == 5);
  CHECK(all->events[0].kv.key == "w/a");
  CHECK(all->events[2].type == Event::Type::kDelete);
  CHECK(all->events[3].revision() == 4);
  CHECK(all->next_revision == 6);

  auto from3 = h.store.events_since(3, "w/b", "", 100);
  REQUIRE(from3.ok());
  CHECK(from3->events.size() == 2);  // put at 3, delete at 4

  // max 3: stops at a revision boundary, never inside revision 4.
  auto part = h.store.events_since(1, "w/", "w0", 3);
  REQUIRE(part.ok());
  CHECK(part->events.size() == 4);
  CHECK(part->next_revision == 5);
  auto rest = h.store.events_since(part->next_revision, "w/", "w0", 3);
  REQUIRE(rest.ok());
  CHECK(rest->events.size() == 1);
  CHECK(rest->next_revision == 6);

  auto future = h.store.events_since(9, "w/", "w0", 3);
  REQUIRE(future.ok());
  CHECK(future->events.empty());
  CHECK(future->next_revision == 9);
  CHECK_FALSE(h.store.events_since(1, "b", "a", 3).ok());
  CHECK_FALSE(h.store.events_since(0, "a", "", 3).ok());
}

TEST_CASE("history: bounded, with a compacted error naming the oldest revision") {
  KvOptions options;
  options.history_events_max = 4;
  Harness h(options);
  for (int i = 0; i < 3; ++i) h.ok(put("k" + std::to_string(i), "v"));  // revs 1..3
  h.ok(del("k", "l"));  // rev 4: three events; revisions 1..2 are evicted whole
  CHECK(h.store.oldest_event_revision() == 3);
  auto old = h.store.events_since(2, "k", "l", 10);
  REQUIRE_FALSE(old.ok());
  CHECK(old.status().code() == Status::Code::kNotFound);
  CHECK(old.status().message().find("compacted") != std::string::npos);
  CHECK(old.status().message().find("before revision 3") != std::string::npos);
  auto ok = h.store.events_since(3, "k", "l", 10);
  REQUIRE(ok.ok());
  CHECK(ok->events.size() == 4);

  // A revision larger than the whole history leaves nothing partial behind.
  h.ok(Request{{},
               TxnRequest{{},
                          {put_op("t1", ""), put_op("t2", ""), put_op("t3", ""), put_op("t4", ""),
                           put_op("t5", "")},
                          {}}});
  CHECK(h.store.oldest_event_revision() == 6);
  auto none = h.store.events_since(6, "t", "u", 10);
  REQUIRE(none.ok());
  CHECK(none->events.empty());
}
