// Helpers shared by the rpc tests: Node implementations, a loopback server,
// and waiting for promises with a deadline so a broken test fails, not hangs.
#pragma once

#include <doctest/doctest.h>
#include <kj/async-io.h>
#include <kj/debug.h>

#include <memory>
#include <string>

#include "rpc.capnp.h"
#include "rpc/server.h"

namespace shoal::rpc::testing {

inline constexpr uint64_t kTestWaitMs = 5'000;

// ping(value) -> value + 1.
class TestNode final : public Node::Server {
 public:
  kj::Promise<void> ping(PingContext context) override {
    context.getResults().setValue(context.getParams().getValue() + 1);
    return kj::READY_NOW;
  }
};

// ping never answers.
class HangingNode final : public Node::Server {
 public:
  kj::Promise<void> ping(PingContext) override { return kj::NEVER_DONE; }
};

inline RpcServer::NodeFactory test_node_factory() {
  return []() -> Node::Client { return kj::heap<TestNode>(); };
}
inline RpcServer::NodeFactory hanging_node_factory() {
  return []() -> Node::Client { return kj::heap<HangingNode>(); };
}

// Waits for `promise`, failing the test after `timeout_ms`.
template <typename T>
T wait_for(kj::AsyncIoContext& io, kj::Promise<T> promise, uint64_t timeout_ms = kTestWaitMs) {
  return promise
      .exclusiveJoin(
          io.provider->getTimer()
              .afterDelay(timeout_ms * kj::MILLISECONDS)
              .then([]() -> kj::Promise<T> { return KJ_EXCEPTION(FAILED, "test wait timed out"); }))
      .wait(io.waitScope);
}

// Waits for `promise` to fail and returns the exception; fails the test if it
// succeeds or does not finish within `timeout_ms`.
template <typename T>
kj::Exception wait_for_failure(kj::AsyncIoContext& io, kj::Promise<T> promise,
                               uint64_t timeout_ms = kTestWaitMs) {
  kj::Maybe<kj::Exception> failure =
      kj::runCatchingExceptions([&]() { wait_for(io, kj::mv(promise), timeout_ms); });
  KJ_IF_MAYBE (exception, failure) {
    CHECK(std::string(exception->getDescription().cStr()) != "test wait timed out");
    return kj::mv(*exception);
  }
  FAIL("expected the promise to fail, it succeeded");
  return KJ_EXCEPTION(FAILED, "unreachable");
}

inline void sleep_ms(kj::AsyncIoContext& io, uint64_t ms) {
  io.provider->getTimer().afterDelay(ms * kj::MILLISECONDS).wait(io.waitScope);
}

inline std::string description(const kj::Exception& exception) {
  return exception.getDescription().cStr();
}

inline bool contains(const std::string& text, std::string_view part) {
  return text.find(part) != std::string::npos;
}

inline kj::Promise<kj::Own<kj::AsyncIoStream>> connect_tcp(kj::AsyncIoContext& io,
                                                           const std::string& address) {
  return io.provider->getNetwork().parseAddress(address).then(
      [](kj::Own<kj::NetworkAddress>&& parsed) {
        auto connecting = parsed->connect();
        return connecting.attach(kj::mv(parsed));
      });
}

// An RpcServer listening on 127.0.0.1 (port 0 = any free port).
class LoopbackServer {
 public:
  LoopbackServer(kj::AsyncIoContext& io, std::string secret,
                 RpcServer::NodeFactory make_node = test_node_factory(),
                 RpcServerOptions options = {}, uint port = 0)
      : server_(io.provider->getTimer(), std::move(secret), kj::mv(make_node), options) {
    auto address = io.provider->getNetwork().parseAddress("127.0.0.1", port).wait(io.waitScope);
    listener_ = address->listen();
    port_ = listener_->getPort();
    listening_ = server_.listen(*listener_).eagerlyEvaluate([](kj::Exception&& exception) {
      KJ_LOG(ERROR, "listen failed", exception);
    });
  }

  RpcServer& server() { return server_; }
  uint port() const { return port_; }
  std::string address() const { return "127.0.0.1:" + std::to_string(port_); }

 private:
  RpcServer server_;
  kj::Own<kj::ConnectionReceiver> listener_;
  uint port_ = 0;
  kj::Promise<void> listening_ = nullptr;
};

}  // namespace shoal::rpc::testing
