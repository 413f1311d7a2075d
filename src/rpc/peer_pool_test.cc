// PeerPool over real loopback TCP (kj::setupAsyncIo).
#include "rpc/peer_pool.h"

#include <doctest/doctest.h>

#include <optional>
#include <vector>

#include "base/clock.h"
#include "rpc/auth.h"
#include "rpc/errors.h"
#include "rpc/test_support.h"

namespace shoal::rpc {
namespace {

using testing::contains;
using testing::description;
using testing::LoopbackServer;
using testing::wait_for;
using testing::wait_for_failure;

constexpr std::string_view kSecret = "pool secret";

PeerPool::Connector tcp_connector(kj::AsyncIoContext& io, int* connects = nullptr) {
  return [&io, connects](const std::string& address) {
    if (connects != nullptr) ++*connects;
    return testing::connect_tcp(io, address);
  };
}

kj::Promise<uint64_t> pool_ping(PeerPool& pool, const std::string& address, uint64_t value) {
  return pool.call<uint64_t>(address, [value](Node::Client& node) {
    auto request = node.pingRequest();
    request.setValue(value);
    return request.send().then([](auto&& response) { return response.getValue(); });
  });
}

// A port on 127.0.0.1 where nothing listens (bound, then closed).
uint unused_port(kj::AsyncIoContext& io) {
  auto address = io.provider->getNetwork().parseAddress("127.0.0.1", 0).wait(io.waitScope);
  auto listener = address->listen();
  return listener->getPort();
}

struct PoolFixture {
  kj::AsyncIoContext io = kj::setupAsyncIo();
  SeededRng rng{42};
};

TEST_CASE_FIXTURE(PoolFixture, "the pool reuses one connection per peer") {
  LoopbackServer server(io, std::string(kSecret));
  int connects = 0;
  PeerPool pool(io.provider->getTimer(), tcp_connector(io, &connects), std::string(kSecret), rng);
  CHECK_FALSE(pool.connected(server.address()));
  for (uint64_t i = 0; i < 10; ++i)
    CHECK(wait_for(io, pool_ping(pool, server.address(), i)) == i + 1);
  // Concurrent calls issued before the connection exists share one connect.
  pool.drop(server.address());
  std::vector<kj::Promise<uint64_t>> calls;
  for (uint64_t i = 0; i < 20; ++i) calls.push_back(pool_ping(pool, server.address(), 100 + i));
  CHECK(pool.inflight_calls(server.address()) == 20);
  for (uint64_t i = 0; i < 20; ++i) CHECK(wait_for(io, kj::mv(calls[i])) == 101 + i);
  CHECK(pool.inflight_calls(server.address()) == 0);
  CHECK(pool.connected(server.address()));
  CHECK(connects == 2);
  CHECK(server.server().stats().connections_accepted == 2);
  CHECK(server.server().stats().auth_successes == 2);
  CHECK(pool.stats().connects_succeeded == 2);
}

TEST_CASE_FIXTURE(PoolFixture, "the pool reconnects after the server restarts") {
  PeerPoolOptions options;
  options.backoff_min_ms = 10;
  options.backoff_max_ms = 40;
  PeerPool pool(io.provider->getTimer(), tcp_connector(io), std::string(kSecret), rng, options);
  auto server = std::make_unique<LoopbackServer>(io, std::string(kSecret));
  uint port = server->port();
  std::string address = server->address();
  CHECK(wait_for(io, pool_ping(pool, address, 1)) == 2);

  server.reset();  // closes the listener and every connection
  for (int i = 0; i < 200 && pool.connected(address); ++i) testing::sleep_ms(io, 10);
  CHECK_FALSE(pool.connected(address));
  CHECK(pool.stats().disconnects == 1);
  auto down = wait_for_failure(io, pool_ping(pool, address, 2));
  CHECK(status_from_exception(down).code() == Status::Code::kUnavailable);

  server = std::make_unique<LoopbackServer>(io, std::string(kSecret), testing::test_node_factory(),
                                            RpcServerOptions{}, port);
  std::optional<uint64_t> answer;
  for (int attempt = 0; attempt < 50 && !answer; ++attempt) {
    kj::runCatchingExceptions([&]() { answer = wait_for(io, pool_ping(pool, address, 3)); });
    if (!answer) testing::sleep_ms(io, 20);
  }
  REQUIRE(answer.has_value());
  CHECK(*answer == 4);
  CHECK(pool.stats().connects_succeeded == 2);
  CHECK(server->server().stats().auth_successes == 1);
}

TEST_CASE_FIXTURE(PoolFixture, "a call in the backoff window fails fast without connecting") {
  PeerPoolOptions options;
  options.backoff_min_ms = 2'000;
  options.backoff_max_ms = 4'000;
  int connects = 0;
  PeerPool pool(io.provider->getTimer(), tcp_connector(io, &connects), std::string(kSecret), rng,
                options);
  std::string address = "127.0.0.1:" + std::to_string(unused_port(io));
  auto refused = wait_for_failure(io, pool_ping(pool, address, 1));
  CHECK(status_from_exception(refused).code() == Status::Code::kUnavailable);
  CHECK(contains(description(refused), "peer " + address + " unavailable"));
  CHECK(connects == 1);

  auto fast = wait_for_failure(io, pool_ping(pool, address, 1), 50);
  CHECK(fast.getType() == kj::Exception::Type::DISCONNECTED);
  CHECK(contains(description(fast), "peer " + address + " unavailable, retrying in "));
  CHECK(status_from_exception(fast).code() == Status::Code::kUnavailable);
  CHECK(connects == 1);
  CHECK(pool.stats().calls_backed_off == 1);

  // drop() forgets the backoff: the next call tries again.
  pool.drop(address);
  wait_for_failure(io, pool_ping(pool, address, 1));
  CHECK(connects == 2);
}

TEST_CASE_FIXTURE(PoolFixture, "backoff grows exponentially with jitter, capped") {
  PeerPoolOptions options;
  options.backoff_min_ms = 1'000;
  options.backoff_max_ms = 4'000;
  PeerPool pool(io.provider->getTimer(), tcp_connector(io), std::string(kSecret), rng, options);
  std::string address = "127.0.0.1:" + std::to_string(unused_port(io));
  auto retry_ms = [&]() -> uint64_t {
    auto fast = wait_for_failure(io, pool_ping(pool, address, 1), 50);
    std::string text = description(fast);
    auto at = text.find("retrying in ");
    REQUIRE(at != std::string::npos);
    return std::stoull(text.substr(at + 12));
  };
  wait_for_failure(io, pool_ping(pool, address, 1));
  uint64_t first = retry_ms();
  CHECK(first >= 250);  // jittered to [500, 1000], minus the time since the failure
  CHECK(first <= 1'000);
}

TEST_CASE_FIXTURE(PoolFixture, "over the in-flight bound a call fails at once with OVERLOADED") {
  LoopbackServer server(io, std::string(kSecret), testing::hanging_node_factory());
  PeerPoolOptions options;
  options.inflight_calls_max = 3;
  PeerPool pool(io.provider->getTimer(), tcp_connector(io), std::string(kSecret), rng, options);
  std::vector<kj::Promise<uint64_t>> hanging;
  for (int i = 0; i < 3; ++i) {
    hanging.push_back(pool_ping(pool, server.address(), 1).eagerlyEvaluate(nullptr));
  }
  testing::sleep_ms(io, 50);
  CHECK(pool.inflight_calls(server.address()) == 3);
  auto overloaded = wait_for_failure(io, pool_ping(pool, server.address(), 1), 50);
  CHECK(overloaded.getType() == kj::Exception::Type::OVERLOADED);
  CHECK(contains(description(overloaded), "3 calls in flight (limit 3)"));
  CHECK(status_from_exception(overloaded).code() == Status::Code::kResourceExhausted);
  CHECK(pool.stats().calls_overloaded == 1);
  hanging.clear();  // cancels them
  CHECK(pool.inflight_calls(server.address()) == 0);
  LoopbackServer live(io, std::string(kSecret));
  CHECK(wait_for(io, pool_ping(pool, live.address(), 1)) == 2);
}

TEST_CASE_FIXTURE(PoolFixture, "a call that gets no answer times out; the connection stays") {
  LoopbackServer server(io, std::string(kSecret), testing::hanging_node_factory());
  PeerPoolOptions options;
  options.call_timeout_ms = 100;
  PeerPool pool(io.provider->getTimer(), tcp_connector(io), std::string(kSecret), rng, options);
  auto timed_out = wait_for_failure(io, pool_ping(pool, server.address(), 1), 2'000);
  CHECK(description(timed_out) == "call to peer " + server.address() + " timed out after 100 ms");
  CHECK(timed_out.getType() == kj::Exception::Type::DISCONNECTED);
  CHECK(status_from_exception(timed_out).code() == Status::Code::kDeadlineExceeded);
  CHECK(pool.stats().calls_timed_out == 1);
  CHECK(pool.inflight_calls(server.address()) == 0);
  CHECK(pool.connected(server.address()));
}

TEST_CASE_FIXTURE(PoolFixture, "a wrong secret surfaces as unauthenticated, then backs off") {
  LoopbackServer server(io, std::string(kSecret));
  PeerPool pool(io.provider->getTimer(), tcp_connector(io), "wrong secret", rng);
  auto failure = wait_for_failure(io, pool_ping(pool, server.address(), 1));
  CHECK(description(failure) == kAuthTokenMismatchMessage);
  CHECK(status_from_exception(failure).code() == Status::Code::kUnauthenticated);
  auto fast = wait_for_failure(io, pool_ping(pool, server.address(), 1), 50);
  CHECK(contains(description(fast), "retrying in"));
  CHECK(contains(description(fast), "cluster token does not match"));
  CHECK(server.server().stats().auth_failures == 1);
}

TEST_CASE_FIXTURE(PoolFixture, "a connector that never finishes is cut by the connect timeout") {
  PeerPoolOptions options;
  options.connect_timeout_ms = 50;
  options.call_timeout_ms = 5'000;
  PeerPool pool(
      io.provider->getTimer(),
      [](const std::string&) -> kj::Promise<kj::Own<kj::AsyncIoStream>> { return kj::NEVER_DONE; },
      std::string(kSecret), rng, options);
  auto failure = wait_for_failure(io, pool_ping(pool, "10.255.255.1:9", 1), 2'000);
  CHECK(description(failure) == "connect to peer 10.255.255.1:9 timed out after 50 ms");
  CHECK(status_from_exception(failure).code() == Status::Code::kDeadlineExceeded);
  CHECK(pool.stats().connects_failed == 1);
}

}  // namespace
}  // namespace shoal::rpc
