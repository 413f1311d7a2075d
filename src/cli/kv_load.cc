// `shoal debug kv-load`: many writes to the key-value store from one process,
// spread over several nodes, for cluster tests and the `meta` benchmark.
//
// Each write has its own request id, so a write retried on another node after
// a failure applies once. A write counts as acknowledged only when a node
// answered it with success; acknowledged writes are appended to --acked as
// "KEY VALUE" lines (the test then reads every one of them back).
#include <algorithm>
#include <chrono>
#include <cinttypes>
#include <cstdio>
#include <fstream>
#include <memory>
#include <string>
#include <vector>

#include "base/assert.h"
#include "base/clock.h"
#include "base/crypto.h"
#include "base/log.h"
#include "cli/commands.h"
#include "loop/loop.h"
#include "loop/tcp.h"
#include "meta/codec.h"
#include "meta/types.h"
#include "node/data_dir.h"
#include "node/machine.h"
#include "rpc/errors.h"
#include "rpc/peer_pool.h"

namespace shoal::cli {
namespace {

struct LoadState {
  const KvLoadOptions& options;
  loop::Loop& loop;
  rpc::PeerPool& pool;
  SystemClock clock;
  uint64_t client_id = 0;
  uint64_t next = 0;
  uint64_t acked = 0;
  uint64_t failed = 0;
  uint64_t retries = 0;
  uint64_t last_ack_us = 0;
  uint64_t max_gap_us = 0;
  uint64_t end_us = 0;  // with --duration-s: no new writes after this
  std::vector<uint64_t> latencies_us;
  std::ofstream acked_out;

  LoadState(const KvLoadOptions& o, loop::Loop& l, rpc::PeerPool& p) : options(o), loop(l), pool(p) {}
};

uint64_t now_us() {
  return static_cast<uint64_t>(
      std::chrono::duration_cast<std::chrono::microseconds>(std::chrono::steady_clock::now().time_since_epoch())
          .count());
}

kj::Promise<void> write_one(LoadState& st, uint64_t index, size_t attempt, uint64_t started_us,
                            uint64_t deadline_us, std::shared_ptr<std::string> request, std::string key,
                            std::string value);

kj::Promise<void> retry_later(LoadState& st, uint64_t index, size_t attempt, uint64_t started_us,
                              uint64_t deadline_us, std::shared_ptr<std::string> request, std::string key,
                              std::string value) {
  if (now_us() >= deadline_us) {
    ++st.failed;
    return kj::READY_NOW;
  }
  ++st.retries;
  return st.loop.timer().afterDelay(20 * kj::MILLISECONDS).then([&st, index, attempt, started_us, deadline_us,
                                                                  request, key, value]() mutable {
    return write_one(st, index, attempt + 1, started_us, deadline_us, request, key, value);
  });
}

kj::Promise<void> write_one(LoadState& st, uint64_t index, size_t attempt, uint64_t started_us,
                            uint64_t deadline_us, std::shared_ptr<std::string> request, std::string key,
                            std::string value) {
  const std::string& address = st.options.addresses[(index + attempt) % st.options.addresses.size()];
  return st.pool
      .call<std::string>(address,
                         [request](rpc::Node::Client& node) {
                           auto req = node.kvRequest();
                           req.setRequest(
                               kj::arrayPtr(reinterpret_cast<const kj::byte*>(request->data()), request->size()));
                           return req.send().then([](auto&& r) {
                             auto d = r.getResponse();
                             return std::string(reinterpret_cast<const char*>(d.begin()), d.size());
                           });
                         })
      .then(
          [&st, index, attempt, started_us, deadline_us, request, key, value](
              std::string bytes) mutable -> kj::Promise<void> {
            auto response = meta::decode_response(bytes);
            if (!response.ok() || !response->status.ok()) {
              if (response.ok() && response->status.code() != Status::Code::kUnavailable &&
                  response->status.code() != Status::Code::kDeadlineExceeded) {
                // A definite refusal (bad request, limit): not retried.
                SHOAL_LOG_WARN("write {} refused: {}", key, response->status.message());
                ++st.failed;
                return kj::READY_NOW;
              }
              return retry_later(st, index, attempt, started_us, deadline_us, request, key, value);
            }
            uint64_t now = now_us();
            st.latencies_us.push_back(now - started_us);
            if (st.last_ack_us != 0) st.max_gap_us = std::max(st.max_gap_us, now - st.last_ack_us);
            st.last_ack_us = now;
            ++st.acked;
            if (st.acked_out.is_open()) st.acked_out << key << ' ' << value << '\n' << std::flush;
            return kj::READY_NOW;
          },
          [&st, index, attempt, started_us, deadline_us, request, key, value](
              kj::Exception&&) mutable -> kj::Promise<void> {
            return retry_later(st, index, attempt, started_us, deadline_us, request, key, value);
          });
}

kj::Promise<void> worker(LoadState& st) {
  if (st.next >= st.options.count) return kj::READY_NOW;
  if (st.end_us != 0 && now_us() >= st.end_us) return kj::READY_NOW;
  uint64_t index = st.next++;
  char keybuf[64];
  std::snprintf(keybuf, sizeof(keybuf), "%08" PRIu64, index);
  std::string key = st.options.prefix + keybuf;
  std::string value = "v" + std::to_string(index) + "-";
  if (value.size() < st.options.value_bytes) value.resize(st.options.value_bytes, 'x');
  meta::Request request;
  request.id = {st.client_id, index + 1};
  meta::PutRequest put;
  put.key = key;
  put.value = value;
  request.body = std::move(put);
  auto encoded = meta::encode_request(request);
  SHOAL_ASSERT(encoded.ok());
  auto bytes = std::make_shared<std::string>(std::move(*encoded));
  uint64_t started = now_us();
  return write_one(st, index, 0, started, started + st.options.write_timeout_ms * 1000, bytes, key, value)
      .then([&st]() { return worker(st); });
}

}  // namespace

int run_kv_load(const KvLoadOptions& options) {
  if (options.addresses.empty()) {
    std::fprintf(stderr, "shoal: kv-load needs at least one --address\n");
    return kExitUsage;
  }
  auto secret = node::read_token_file(options.token_file);
  if (!secret.ok()) {
    std::fprintf(stderr, "shoal: %s\n", secret.status().message().c_str());
    return kExitRuntimeError;
  }
  log_to_stderr();
  (void)set_log_level("warn");
  loop::Loop loop;
  SeededRng rng(random_seed());
  rpc::PeerPoolOptions pool_options;
  pool_options.backoff_min_ms = 20;
  pool_options.backoff_max_ms = 200;
  pool_options.call_timeout_ms = 3'000;
  pool_options.client_name = "shoal-kv-load";
  rpc::PeerPool pool(
      loop.timer(),
      [&loop](const std::string& address) -> kj::Promise<kj::Own<kj::AsyncIoStream>> {
        auto hp = node::parse_host_port(address, node::kDefaultPort);
        if (!hp.ok()) return KJ_EXCEPTION(FAILED, "bad address", address);
        return loop::connect_tcp(loop, hp->first, hp->second);
      },
      *secret, rng, pool_options);
  LoadState st(options, loop, pool);
  while (st.client_id == 0) st.client_id = rng.next_u64();
  if (!options.acked_file.empty()) {
    st.acked_out.open(options.acked_file, std::ios::out | std::ios::trunc);
    if (!st.acked_out) {
      std::fprintf(stderr, "shoal: cannot write %s\n", options.acked_file.c_str());
      return kExitRuntimeError;
    }
  }
  uint64_t start = now_us();
  if (options.duration_s > 0) st.end_us = start + options.duration_s * 1'000'000;
  kj::Vector<kj::Promise<void>> workers;
  for (int i = 0; i < options.concurrency; ++i) workers.add(worker(st));
  kj::joinPromises(workers.releaseAsArray()).wait(loop.wait_scope());
  double elapsed_s = static_cast<double>(now_us() - start) / 1e6;
  if (st.acked_out.is_open()) st.acked_out.flush();

  std::sort(st.latencies_us.begin(), st.latencies_us.end());
  auto pct = [&](double p) -> double {
    if (st.latencies_us.empty()) return 0;
    size_t i = std::min(st.latencies_us.size() - 1, static_cast<size_t>(p * static_cast<double>(st.latencies_us.size())));
    return static_cast<double>(st.latencies_us[i]) / 1000.0;
  };
  std::printf(
      "{\"acked\":%" PRIu64 ",\"failed\":%" PRIu64 ",\"retries\":%" PRIu64
      ",\"elapsed_s\":%.3f,\"writes_per_s\":%.1f,\"p50_ms\":%.3f,\"p99_ms\":%.3f,\"max_ms\":%.3f,"
      "\"max_ack_gap_ms\":%.1f}\n",
      st.acked, st.failed, st.retries, elapsed_s, elapsed_s > 0 ? static_cast<double>(st.acked) / elapsed_s : 0.0,
      pct(0.50), pct(0.99), pct(1.0), static_cast<double>(st.max_gap_us) / 1000.0);
  std::fflush(stdout);
  return st.failed == 0 ? kExitOk : kExitRuntimeError;
}

}  // namespace shoal::cli
