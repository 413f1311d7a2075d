// codec: round trips, validation, and garbage that must never crash.
#include "meta/codec.h"

#include <capnp/message.h>
#include <capnp/serialize.h>
#include <doctest/doctest.h>

#include <cstring>

#include "base/clock.h"
#include "meta.capnp.h"
#include "meta/test_util.h"

using namespace shoal;
using namespace shoal::meta;
using namespace shoal::meta::testing;

namespace {

KeyValue sample_kv(std::string key) {
  return KeyValue{std::move(key), std::string("v\0\xff", 3), 3, 7, 2, 9};
}

std::vector<Request> every_request() {
  PutRequest p{"k\0ey", "value", 5, 12, true};
  p.key = std::string("k\0ey", 4);
  PutRequest plain{"k2", "", 0, std::nullopt, false};
  RangeRequest range{"a", "b", 10, 0, true, false};
  DeleteRangeRequest del{"d", std::string(1, '\0'), true};
  TxnRequest txn;
  txn.compares = {Compare{"c", Compare::Target::kValue, Compare::Op::kLess, "x", 0},
                  Compare{"c", Compare::Target::kExists, Compare::Op::kNotEqual, "", 1},
                  Compare{"m", Compare::Target::kModRevision, Compare::Op::kGreater, "", 99}};
  txn.success = {plain, DeleteRangeRequest{"d", "e", false}, RangeRequest::prefix("p")};
  txn.failure = {RangeRequest::single("q")};
  return {Request{{1, 2}, p},
          Request{{}, plain},
          Request{{}, range},
          Request{{7, 8}, del},
          Request{{9, 10}, txn},
          Request{{}, TxnRequest{}},
          Request{{3, 4}, LeaseGrantRequest{0, 60}},
          Request{{}, LeaseGrantRequest{77, kLeaseTtlSecondsMax}},
          Request{{}, LeaseRevokeRequest{77}},
          Request{{}, LeaseExpireRequest{{1, 2, 3}}},
          Request{{}, LeaseKeepAliveRequest{5}},
          Request{{}, LeaseTimeToLiveRequest{5, true}},
          Request{{}, LeaseLeasesRequest{}}};
}

std::vector<Response> every_response() {
  std::vector<Response> out;
  auto add = [&](Response::Body body, Status status = {}) {
    Response r;
    r.status = std::move(status);
    r.revision = static_cast<int64_t>(out.size()) * 3;
    r.body = std::move(body);
    out.push_back(std::move(r));
  };
  add(std::monostate{});
  add(std::monostate{}, Status::not_found("lease 5 not found"));
  add(PutResponse{false, std::nullopt, sample_kv("cur")}, Status::already_exists("compare failed"));
  add(PutResponse{true, sample_kv("prev"), std::nullopt});
  add(RangeResponse{{sample_kv("a"), sample_kv("b")}, 10, true});
  add(DeleteRangeResponse{4, {sample_kv("x")}, true});
  add(TxnResponse{true,
                  {PutResponse{}, DeleteRangeResponse{1, {}, false},
                   RangeResponse{{sample_kv("r")}, 1, false}}});
  add(LeaseGrantResponse{12, 30});
  add(LeaseRevokeResponse{3});
  add(LeaseExpireResponse{2, 5});
  add(LeaseKeepAliveResponse{12, 30});
  add(LeaseTimeToLiveResponse{12, 30, 2500, {"k1", std::string("k\0", 2)}, true});
  add(LeaseLeasesResponse{{1, 5, 9}});
  return out;
}

template <typename Builder>
std::string bytes_of(Builder& builder) {
  auto words = capnp::messageToFlatArray(builder);
  auto bytes = words.asBytes();
  return {reinterpret_cast<const char*>(bytes.begin()), bytes.size()};
}

}  // namespace

TEST_CASE("codec: every request and response round-trips, deterministically") {
  for (const Request& r : every_request()) {
    CAPTURE(request_name(r.body));
    auto bytes = encode_request(r);
    REQUIRE_MESSAGE(bytes.ok(), bytes.status().to_string());
    CHECK(*encode_request(r) == *bytes);
    auto back = decode_request(*bytes);
    REQUIRE_MESSAGE(back.ok(), back.status().to_string());
    CHECK(*back == r);
  }
  for (const Response& r : every_response()) {
    std::string bytes = encode_response(r);
    CHECK(encode_response(r) == bytes);
    auto back = decode_response(bytes);
    REQUIRE_MESSAGE(back.ok(), back.status().to_string());
    CHECK(*back == r);
  }
}

TEST_CASE("codec: encode refuses invalid and oversized requests") {
  auto bad = encode_request(put("", "v"));
  CHECK(bad.status().code() == Status::Code::kInvalidArgument);
  CHECK(bad.status().message() == "put: put key is empty");
  CHECK_FALSE(encode_request(Request{{0, 5}, LeaseLeasesRequest{}}).ok());
  CHECK_FALSE(encode_request(Request{{}, LeaseRevokeRequest{0}}).ok());
  CHECK_FALSE(encode_request(Request{{}, LeaseExpireRequest{std::vector<int64_t>(1'001, 1)}}).ok());
  TxnRequest big;
  big.success = {std::get<PutRequest>(put("a", std::string(kValueBytesMax, 'a')).body),
                 std::get<PutRequest>(put("b", std::string(kValueBytesMax, 'b')).body)};
  auto too_big = encode_request(Request{{}, big});
  CHECK(too_big.status().code() == Status::Code::kResourceExhausted);
  CHECK(too_big.status().message().find("2097152") != std::string::npos);
}

TEST_CASE("codec: decode refuses what is not one valid message") {
  std::string good = *encode_request(put("k", "v"));
  CHECK(decode_request("").status().code() == Status::Code::kInvalidArgument);
  CHECK_FALSE(decode_request(good.substr(0, good.size() - 3)).ok());
  CHECK(decode_request(good + std::string(8, '\0')).status().message().find("trailing") !=
        std::string::npos);
  CHECK(decode_request(std::string(kRequestBytesMax + 8, '\0')).status().code() ==
        Status::Code::kResourceExhausted);

  {  // unknown enum value
    capnp::MallocMessageBuilder b;
    auto root = b.initRoot<wire::Request>();
    auto c = root.initTxn().initCompares(1)[0];
    c.setKey(capnp::Data::Reader(reinterpret_cast<const kj::byte*>("k"), 1));
    c.setTarget(static_cast<wire::CompareTarget>(42));
    auto r = decode_request(bytes_of(b));
    CHECK(r.status().message().find("unknown compare target 42") != std::string::npos);
  }
  {  // valid capnp, invalid fields
    capnp::MallocMessageBuilder b;
    b.initRoot<wire::Request>().initLeaseGrant().setTtlSeconds(-1);
    CHECK(decode_request(bytes_of(b)).status().message().find("lease ttl") != std::string::npos);
  }
  {  // too many ops
    capnp::MallocMessageBuilder b;
    b.initRoot<wire::Request>().initTxn().initSuccess(kTxnOpsMax + 1);
    CHECK(decode_request(bytes_of(b)).status().code() == Status::Code::kResourceExhausted);
  }
  {  // an oversized key
    capnp::MallocMessageBuilder b;
    std::string key(kKeyBytesMax + 1, 'k');
    b.initRoot<wire::Request>().initPut().setKey(
        capnp::Data::Reader(reinterpret_cast<const kj::byte*>(key.data()), key.size()));
    CHECK(decode_request(bytes_of(b)).status().code() == Status::Code::kResourceExhausted);
  }
  {  // responses: unknown status code, ok with a message, negative counts
    capnp::MallocMessageBuilder b;
    b.initRoot<wire::Response>().getStatus().setCode(static_cast<wire::StatusCode>(200));
    CHECK_FALSE(decode_response(bytes_of(b)).ok());
    capnp::MallocMessageBuilder b2;
    b2.initRoot<wire::Response>().getStatus().setMessage("hm");
    CHECK_FALSE(decode_response(bytes_of(b2)).ok());
    capnp::MallocMessageBuilder b3;
    b3.initRoot<wire::Response>().initRange().setCount(-4);
    CHECK_FALSE(decode_response(bytes_of(b3)).ok());
  }
}

TEST_CASE("codec: random and bit-flipped input never crashes the decoder or the store") {
  SeededRng rng(20261129);
  std::vector<std::string> seeds;
  for (const Request& r : every_request()) seeds.push_back(*encode_request(r));
  for (const Response& r : every_response()) seeds.push_back(encode_response(r));

  Harness h;
  h.ok(put("keep", "me"));
  int64_t lease = h.grant_lease(60);
  h.ok(put("leased", "x", lease));
  int64_t revision = h.store.revision();
  size_t decoded_requests = 0;
  size_t applied_ok = 0;

  auto exercise = [&](const std::string& input) {
    auto req = decode_request(input);
    if (req.ok()) {
      ++decoded_requests;
      // Whatever decodes is valid, so it encodes again and decodes to the same.
      auto again = encode_request(*req);
      REQUIRE_MESSAGE(again.ok(), again.status().to_string());
      CHECK(*decode_request(*again) == *req);
    }
    auto resp = decode_response(input);
    if (resp.ok()) CHECK(*decode_response(encode_response(*resp)) == *resp);
    // Apply only what cannot write, so the store must stay as it is.
    if (!req.ok() || !is_write(req->body)) {
      ApplyResult r = h.store.apply(++h.index, input);
      CHECK(r.events.empty());
      if (r.response.status.ok()) ++applied_ok;
    }
  };

  for (int i = 0; i < 3'000; ++i) {
    size_t words = rng.uniform(40);
    std::string input(words * 8 + (rng.uniform(8) == 0 ? rng.uniform(8) : 0), '\0');
    for (char& c : input) c = static_cast<char>(rng.uniform(256));
    // Plausible headers get the parser further: one segment of the right size.
    if (words > 1 && rng.uniform(2) == 0) {
      uint32_t seg = static_cast<uint32_t>(words - 1);
      std::memset(input.data(), 0, 4);
      std::memcpy(input.data() + 4, &seg, 4);
    }
    exercise(input);
  }
  for (const std::string& seed : seeds) {
    for (int i = 0; i < 400; ++i) {
      std::string input = seed;
      int flips = 1 + static_cast<int>(rng.uniform(4));
      for (int f = 0; f < flips; ++f) {
        size_t bit = rng.uniform(input.size() * 8);
        input[bit / 8] = static_cast<char>(input[bit / 8] ^ (1 << (bit % 8)));
      }
      exercise(input);
    }
    for (size_t cut = 0; cut < seed.size(); cut += 8) exercise(seed.substr(0, cut));
  }
  MESSAGE("decoded " << decoded_requests << " garbage requests, " << applied_ok
                     << " applied without error");
  CHECK(h.store.revision() == revision);
  CHECK(h.store.key_count() == 2);
  CHECK(h.get("leased")->lease == lease);
}

TEST_CASE("single_value reads the answer to a one-key get") {
  auto encoded = [](Response::Body body, Status status = {}) {
    Response r;
    r.status = std::move(status);
    r.body = std::move(body);
    return encode_response(r);
  };
  auto found = single_value(encoded(RangeResponse{{sample_kv("k")}, 1, false}));
  REQUIRE(found.ok());
  REQUIRE(found->has_value());
  CHECK(**found == sample_kv("k").value);
  auto missing = single_value(encoded(RangeResponse{{}, 0, false}));
  REQUIRE(missing.ok());
  CHECK_FALSE(missing->has_value());
  CHECK(single_value(encoded(std::monostate{}, Status::unavailable("no leader"))).status().code() ==
        Status::Code::kUnavailable);
  CHECK_FALSE(single_value(encoded(PutResponse{true, std::nullopt, std::nullopt})).ok());
  CHECK_FALSE(single_value("not a response").ok());
}
