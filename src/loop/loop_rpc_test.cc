// Cap'n Proto RPC (TwoPartyServer/TwoPartyClient) over shoal::loop streams.
// No schema needed: the test capability dispatches typeless calls whose
// params and results are a Text.
#include <capnp/any.h>
#include <capnp/capability.h>
#include <capnp/rpc-twoparty.h>
#include <doctest/doctest.h>
#include <kj/debug.h>
#include <kj/vector.h>

#include <string>

#include "loop/loop.h"
#include "loop/tcp.h"

namespace shoal::loop {
namespace {

constexpr uint64_t kEchoInterfaceId = 0xa1b2c3d4e5f60718ull;
constexpr uint16_t kEchoMethod = 0;

// echo(text) -> text + "!"
class EchoServer final : public capnp::Capability::Server {
 public:
  DispatchCallResult dispatchCall(uint64_t interface_id, uint16_t method_id,
                                  capnp::CallContext<capnp::AnyPointer, capnp::AnyPointer> context)
      override {
    if (interface_id != kEchoInterfaceId || method_id != kEchoMethod) {
      return {KJ_EXCEPTION(UNIMPLEMENTED, "no such method"), false};
    }
    auto text = kj::str(context.getParams().getAs<capnp::Text>(), "!");
    context.releaseParams();
    context.getResults().setAs<capnp::Text>(text);
    ++calls;
    return {kj::READY_NOW, false};
  }
  int calls = 0;
};

kj::Promise<std::string> call_echo(capnp::Capability::Client& client, const std::string& text) {
  auto request = client.typelessRequest(kEchoInterfaceId, kEchoMethod, nullptr);
  request.setAs<capnp::Text>(text.c_str());
  return request.send().then([](capnp::Response<capnp::AnyPointer>&& response) {
    return std::string(response.getAs<capnp::Text>().cStr());
  });
}

}  // namespace

TEST_CASE("capnp RPC round trips over uv streams (KJ drives)") {
  Loop loop;
  auto listener = TcpListener::listen(loop, "127.0.0.1", 0);
  REQUIRE(listener.ok());
  auto server_impl = kj::heap<EchoServer>();
  EchoServer& server_ref = *server_impl;
  capnp::TwoPartyServer server(kj::mv(server_impl));
  auto listening = server.listen(*listener.value()).eagerlyEvaluate(nullptr);

  auto stream = connect_tcp(loop, "127.0.0.1", static_cast<uint16_t>(listener.value()->getPort()))
                    .wait(loop.wait_scope());
  {
    capnp::TwoPartyClient client(*stream);
    auto cap = client.bootstrap();
    for (int i = 0; i < 200; ++i) {
      std::string text = "ping " + std::to_string(i);
      CHECK(call_echo(cap, text).wait(loop.wait_scope()) == text + "!");
    }
    // 64 calls in flight at once.
    kj::Vector<kj::Promise<std::string>> calls;
    for (int i = 0; i < 64; ++i) calls.add(call_echo(cap, std::to_string(i)));
    auto results = kj::joinPromises(calls.releaseAsArray()).wait(loop.wait_scope());
    for (int i = 0; i < 64; ++i) CHECK(results[i] == std::to_string(i) + "!");
  }
  CHECK(server_ref.calls == 264);
  stream = nullptr;
  listener.value() = kj::Own<TcpListener>();
}

TEST_CASE("capnp RPC over uv streams when libuv drives, then the server goes away") {
  Loop loop;
  auto listener = TcpListener::listen(loop, "127.0.0.1", 0);
  REQUIRE(listener.ok());
  auto server = kj::heap<capnp::TwoPartyServer>(kj::heap<EchoServer>());
  auto listening = server->listen(*listener.value()).eagerlyEvaluate(nullptr);

  kj::Own<kj::AsyncIoStream> stream;
  kj::Own<capnp::TwoPartyClient> client;
  capnp::Capability::Client cap = nullptr;
  int done = 0;
  std::function<kj::Promise<void>()> next = [&]() -> kj::Promise<void> {
    return call_echo(cap, "x").then([&](std::string reply) -> kj::Promise<void> {
      REQUIRE(reply == "x!");
      if (++done == 500) {
        loop.stop();
        return kj::READY_NOW;
      }
      return next();
    });
  };
  loop.detach(connect_tcp(loop, "127.0.0.1", static_cast<uint16_t>(listener.value()->getPort()))
                  .then([&](kj::Own<kj::AsyncIoStream> connected) {
                    stream = kj::mv(connected);
                    client = kj::heap<capnp::TwoPartyClient>(*stream);
                    cap = client->bootstrap();
                    return next();
                  }));
  loop.run();
  CHECK(done == 500);

  // Server side disappears: the next call fails with DISCONNECTED, no hang.
  { auto dropped = kj::mv(listening); }  // stop listening before the server goes
  listener.value() = kj::Own<TcpListener>();
  server = nullptr;
  auto failed = call_echo(cap, "after").then([](std::string) { return false; },
                                             [](kj::Exception&& e) {
                                               return e.getType() ==
                                                      kj::Exception::Type::DISCONNECTED;
                                             });
  CHECK(failed.wait(loop.wait_scope()));
  cap = nullptr;
  client = nullptr;
  stream = nullptr;
}

}  // namespace shoal::loop
