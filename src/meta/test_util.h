// Helpers shared by the meta unit tests.
#pragma once

#include <doctest/doctest.h>

#include <string>
#include <utility>
#include <vector>

#include "meta/codec.h"
#include "meta/kv.h"

namespace shoal::meta::testing {

inline Request put(std::string key, std::string value, int64_t lease = 0) {
  PutRequest p;
  p.key = std::move(key);
  p.value = std::move(value);
  p.lease = lease;
  return Request{{}, std::move(p)};
}

inline Request cas(std::string key, std::string value, int64_t expected_mod_revision) {
  PutRequest p;
  p.key = std::move(key);
  p.value = std::move(value);
  p.expected_mod_revision = expected_mod_revision;
  return Request{{}, std::move(p)};
}

inline Request del(std::string key, std::string range_end = {}, bool prev_kv = false) {
  return Request{{}, DeleteRangeRequest{std::move(key), std::move(range_end), prev_kv}};
}

inline Request grant(int64_t ttl_seconds, int64_t id = 0) {
  return Request{{}, LeaseGrantRequest{id, ttl_seconds}};
}

inline Request revoke(int64_t id) { return Request{{}, LeaseRevokeRequest{id}}; }

inline Request with_id(Request r, uint64_t client, uint64_t seq) {
  r.id = RequestId{client, seq};
  return r;
}

// A store fed through the codec, with increasing Raft indexes.
struct Harness {
  explicit Harness(KvOptions options = {}) : store(options) {}

  ApplyResult apply(const Request& request) {
    auto bytes = encode_request(request);
    REQUIRE_MESSAGE(bytes.ok(), bytes.status().to_string());
    return store.apply(++index, *bytes);
  }
  // Applies and requires success; returns the response.
  Response ok(const Request& request) {
    ApplyResult r = apply(request);
    REQUIRE_MESSAGE(r.response.status.ok(), r.response.status.to_string());
    return r.response;
  }
  RangeResponse get(const RangeRequest& request) const {
    Response r = store.range(request);
    REQUIRE_MESSAGE(r.status.ok(), r.status.to_string());
    return std::get<RangeResponse>(r.body);
  }
  std::optional<KeyValue> get(const std::string& key) const {
    RangeResponse r = get(RangeRequest::single(key));
    if (r.kvs.empty()) return std::nullopt;
    return r.kvs.front();
  }
  int64_t grant_lease(int64_t ttl_seconds, int64_t id = 0) {
    return std::get<LeaseGrantResponse>(ok(grant(ttl_seconds, id)).body).id;
  }

  KvStore store;
  uint64_t index = 0;
};

inline std::vector<std::string> keys_of(const std::vector<KeyValue>& kvs) {
  std::vector<std::string> out;
  for (const KeyValue& kv : kvs) out.push_back(kv.key);
  return out;
}

}  // namespace shoal::meta::testing
