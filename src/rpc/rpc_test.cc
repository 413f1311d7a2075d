// Authentication, server hardening and client behaviour, over real loopback
// TCP (kj::setupAsyncIo) and in-memory pipes.
#include <capnp/rpc-twoparty.h>
#include <doctest/doctest.h>

#include <array>
#include <vector>

#include "base/crypto.h"
#include "rpc/auth.h"
#include "rpc/client.h"
#include "rpc/errors.h"
#include "rpc/server.h"
#include "rpc/test_support.h"

namespace shoal::rpc {
namespace {

using testing::contains;
using testing::description;
using testing::LoopbackServer;
using testing::wait_for;
using testing::wait_for_failure;

constexpr std::string_view kSecret = "correct horse battery staple";

uint64_t ping(kj::AsyncIoContext& io, Node::Client& node, uint64_t value) {
  auto request = node.pingRequest();
  request.setValue(value);
  return wait_for(io, request.send().then([](auto&& response) { return response.getValue(); }));
}

std::unique_ptr<ClientConnection> connect_raw(kj::AsyncIoContext& io, LoopbackServer& server) {
  return std::make_unique<ClientConnection>(
      wait_for(io, testing::connect_tcp(io, server.address())));
}

// Runs challenge() on `authenticator` and returns the server nonce.
std::vector<uint8_t> challenge(kj::AsyncIoContext& io, Authenticator::Client& authenticator) {
  auto response = wait_for(io, authenticator.challengeRequest().send());
  auto nonce = response.getServerNonce();
  return std::vector<uint8_t>(nonce.begin(), nonce.end());
}

kj::Promise<capnp::Response<Authenticator::AuthenticateResults>> send_authenticate(
    Authenticator::Client& authenticator, std::span<const uint8_t> client_nonce,
    std::span<const uint8_t> proof) {
  auto request = authenticator.authenticateRequest();
  request.setClientNonce(capnp::Data::Reader(client_nonce.data(), client_nonce.size()));
  request.setProof(capnp::Data::Reader(proof.data(), proof.size()));
  request.setClientName("test");
  return request.send();
}

TEST_CASE("mac inputs: client and server proofs differ and depend on every input") {
  std::array<uint8_t, kNonceBytes> a{}, b{};
  b[0] = 1;
  CHECK(client_proof("s", a, b) != server_proof("s", a, b));
  CHECK(client_proof("s", a, b) != client_proof("t", a, b));
  CHECK(client_proof("s", a, b) != client_proof("s", b, a));
  CHECK(client_proof("s", a, b) == client_proof("s", a, b));
}

TEST_CASE("status_from_exception maps each failure to its code") {
  CHECK(status_from_exception(overloaded_error("x")).code() == Status::Code::kResourceExhausted);
  CHECK(status_from_exception(unavailable_error("x")).code() == Status::Code::kUnavailable);
  CHECK(status_from_exception(timeout_error("call to peer a", 5)).code() ==
        Status::Code::kDeadlineExceeded);
  CHECK(status_from_exception(timeout_error("call to peer a", 5)).message() ==
        "call to peer a timed out after 5 ms");
  CHECK(status_from_exception(auth_error(kAuthTokenMismatchMessage)).code() ==
        Status::Code::kUnauthenticated);
  auto remote = KJ_EXCEPTION(FAILED, "remote exception: boom");
  CHECK(status_from_exception(remote).code() == Status::Code::kInternal);
  CHECK(status_from_exception(remote).message() == "boom");
  CHECK(status_from_exception(KJ_EXCEPTION(UNIMPLEMENTED, "m")).code() == Status::Code::kInternal);
}

TEST_CASE("authenticate then ping over loopback TCP") {
  auto io = kj::setupAsyncIo();
  LoopbackServer server(io, std::string(kSecret));
  auto client = connect_raw(io, server);
  Node::Client node = wait_for(io, client->authenticate(std::string(kSecret)));
  CHECK(client->authenticated());
  CHECK(ping(io, node, 41) == 42);
  CHECK(ping(io, node, 0) == 1);
  CHECK(server.server().stats().auth_successes == 1);
  CHECK(server.server().stats().connections_unauthenticated == 0);
  CHECK(server.server().stats().connections_open == 1);
  // An authenticated connection outlives the auth timeout and cannot re-run
  // the handshake.
  auto bootstrap = client->bootstrap();
  auto again = wait_for_failure(io, bootstrap.challengeRequest().send());
  CHECK(contains(description(again), "already authenticated"));
  CHECK(ping(io, node, 7) == 8);
}

TEST_CASE("connect_authenticated returns a usable connection") {
  auto io = kj::setupAsyncIo();
  LoopbackServer server(io, std::string(kSecret));
  auto stream = wait_for(io, testing::connect_tcp(io, server.address()));
  auto connection = wait_for(io, connect_authenticated(kj::mv(stream), std::string(kSecret)));
  auto node = connection->node();
  CHECK(ping(io, node, 99) == 100);
}

TEST_CASE("wrong secret: clear error, then the server closes the connection") {
  auto io = kj::setupAsyncIo();
  LoopbackServer server(io, std::string(kSecret));
  auto client = connect_raw(io, server);
  auto failure = wait_for_failure(io, client->authenticate("not the secret"));
  CHECK(description(failure) == kAuthTokenMismatchMessage);
  CHECK(status_from_exception(failure).code() == Status::Code::kUnauthenticated);
  CHECK_FALSE(client->authenticated());
  // The server closes its end right after the reply.
  wait_for(io, client->on_disconnect());
  auto bootstrap = client->bootstrap();
  auto after = wait_for_failure(io, bootstrap.challengeRequest().send());
  CHECK(after.getType() == kj::Exception::Type::DISCONNECTED);
  CHECK(server.server().stats().auth_failures == 1);
  CHECK(server.server().stats().auth_successes == 0);
  for (int i = 0; i < 200 && server.server().stats().connections_open != 0; ++i) {
    testing::sleep_ms(io, 10);
  }
  CHECK(server.server().stats().connections_open == 0);
}

TEST_CASE("authenticate without a challenge fails and closes the connection") {
  auto io = kj::setupAsyncIo();
  LoopbackServer server(io, std::string(kSecret));
  auto client = connect_raw(io, server);
  auto authenticator = client->bootstrap();
  std::array<uint8_t, kNonceBytes> nonce{};
  Mac proof = client_proof(kSecret, nonce, nonce);  // as if the server nonce were zero
  auto failure = wait_for_failure(io, send_authenticate(authenticator, nonce, proof));
  CHECK(contains(description(failure), "without a preceding challenge"));
  wait_for(io, client->on_disconnect());
  CHECK(server.server().stats().auth_failures == 1);
}

TEST_CASE("a second challenge on one connection is refused") {
  auto io = kj::setupAsyncIo();
  LoopbackServer server(io, std::string(kSecret));
  auto client = connect_raw(io, server);
  auto authenticator = client->bootstrap();
  auto first = challenge(io, authenticator);
  CHECK(first.size() == kNonceBytes);
  auto failure = wait_for_failure(io, authenticator.challengeRequest().send());
  CHECK(contains(description(failure), "only once per connection"));
  wait_for(io, client->on_disconnect());
}

TEST_CASE("nonces are fresh per connection and a replayed proof fails") {
  auto io = kj::setupAsyncIo();
  LoopbackServer server(io, std::string(kSecret));
  std::array<uint8_t, kNonceBytes> client_nonce{};
  secure_random(client_nonce);

  auto first = connect_raw(io, server);
  auto first_auth = first->bootstrap();
  auto server_nonce = challenge(io, first_auth);
  Mac proof = client_proof(kSecret, server_nonce, client_nonce);
  auto reply = wait_for(io, send_authenticate(first_auth, client_nonce, proof));
  Mac expected_server_proof = server_proof(kSecret, client_nonce, server_nonce);
  CHECK(constant_time_equal(
      expected_server_proof,
      std::span<const uint8_t>(reply.getServerProof().begin(), reply.getServerProof().size())));

  // An eavesdropper replays (clientNonce, proof) on a new connection.
  auto second = connect_raw(io, server);
  auto second_auth = second->bootstrap();
  auto second_nonce = challenge(io, second_auth);
  CHECK(second_nonce != server_nonce);
  auto failure = wait_for_failure(io, send_authenticate(second_auth, client_nonce, proof));
  CHECK(contains(description(failure), "cluster token does not match"));
  CHECK(server.server().stats().auth_successes == 1);
  CHECK(server.server().stats().auth_failures == 1);
}

TEST_CASE("short, missing or long fields are rejected") {
  auto io = kj::setupAsyncIo();
  LoopbackServer server(io, std::string(kSecret));
  std::array<uint8_t, 16> short_nonce{};
  std::array<uint8_t, kProofBytes> proof{};
  std::array<uint8_t, kNonceBytes> nonce{};
  {
    auto client = connect_raw(io, server);
    auto authenticator = client->bootstrap();
    challenge(io, authenticator);
    auto failure = wait_for_failure(io, send_authenticate(authenticator, short_nonce, proof));
    CHECK(contains(description(failure), "clientNonce must be 32 bytes, got 16"));
  }
  {
    auto client = connect_raw(io, server);
    auto authenticator = client->bootstrap();
    challenge(io, authenticator);
    auto failure = wait_for_failure(io, authenticator.authenticateRequest().send());
    CHECK(contains(description(failure), "clientNonce must be 32 bytes, got 0"));
  }
  {
    auto client = connect_raw(io, server);
    auto authenticator = client->bootstrap();
    challenge(io, authenticator);
    auto failure = wait_for_failure(io, send_authenticate(authenticator, nonce, short_nonce));
    CHECK(contains(description(failure), "proof must be 32 bytes, got 16"));
  }
  {
    auto client = connect_raw(io, server);
    auto authenticator = client->bootstrap();
    auto server_nonce = challenge(io, authenticator);
    auto request = authenticator.authenticateRequest();
    Mac good = client_proof(kSecret, server_nonce, nonce);
    request.setClientNonce(capnp::Data::Reader(nonce.data(), nonce.size()));
    request.setProof(capnp::Data::Reader(good.data(), good.size()));
    request.setClientName(std::string(kClientNameBytesMax + 1, 'x'));
    auto failure = wait_for_failure(io, request.send());
    CHECK(contains(description(failure), "clientName"));
  }
  CHECK(server.server().stats().auth_failures == 4);
  CHECK(server.server().stats().auth_successes == 0);
}

// Accepts any proof and answers with a made-up server proof: a server that
// does not know the secret.
class ImpostorAuthenticator final : public Authenticator::Server {
 public:
  kj::Promise<void> challenge(ChallengeContext context) override {
    std::array<uint8_t, kNonceBytes> nonce{};
    context.getResults().setServerNonce(capnp::Data::Reader(nonce.data(), nonce.size()));
    return kj::READY_NOW;
  }
  kj::Promise<void> authenticate(AuthenticateContext context) override {
    Mac proof = server_proof("some other secret", context.getParams().getClientNonce(),
                             std::array<uint8_t, kNonceBytes>{});
    auto results = context.getResults();
    results.setServerProof(capnp::Data::Reader(proof.data(), proof.size()));
    results.setNode(kj::heap<testing::TestNode>());
    return kj::READY_NOW;
  }
};

TEST_CASE("the client detects a server that does not know the secret") {
  auto io = kj::setupAsyncIo();
  auto pipe = kj::newTwoWayPipe();
  capnp::TwoPartyVatNetwork network(*pipe.ends[1], capnp::rpc::twoparty::Side::SERVER);
  auto rpc_server = capnp::makeRpcServer(network, kj::heap<ImpostorAuthenticator>());
  ClientConnection client(kj::mv(pipe.ends[0]));
  auto failure = wait_for_failure(io, client.authenticate(std::string(kSecret)));
  CHECK(description(failure) == kAuthServerProofMessage);
  CHECK(status_from_exception(failure).code() == Status::Code::kUnauthenticated);
  CHECK_FALSE(client.authenticated());
}

TEST_CASE("garbage on the port closes that connection; the server keeps serving") {
  auto io = kj::setupAsyncIo();
  LoopbackServer server(io, std::string(kSecret));
  auto raw = wait_for(io, testing::connect_tcp(io, server.address()));
  std::string garbage = "GET / HTTP/1.1\r\nHost: example\r\n\r\n";
  wait_for(io, raw->write(garbage.data(), garbage.size()));
  // The server drops the connection: reads end (EOF or reset) within the wait.
  std::array<char, 4096> buffer{};
  bool closed = false;
  for (int i = 0; i < 100 && !closed; ++i) {
    kj::Maybe<kj::Exception> error = kj::runCatchingExceptions([&]() {
      size_t n = wait_for(io, raw->tryRead(buffer.data(), 1, buffer.size()));
      if (n == 0) closed = true;
    });
    if (error != nullptr) closed = true;
  }
  CHECK(closed);
  CHECK(server.server().stats().protocol_errors == 1);

  auto client = connect_raw(io, server);
  Node::Client node = wait_for(io, client->authenticate(std::string(kSecret)));
  CHECK(ping(io, node, 1) == 2);
}

TEST_CASE("a message over message_bytes_max closes the connection") {
  auto io = kj::setupAsyncIo();
  RpcServerOptions options;
  options.message_bytes_max = 64 * 1024;
  LoopbackServer server(io, std::string(kSecret), testing::test_node_factory(), options);
  auto client = connect_raw(io, server);
  auto authenticator = client->bootstrap();
  challenge(io, authenticator);
  std::vector<uint8_t> huge(256 * 1024, 0xab);
  std::array<uint8_t, kNonceBytes> nonce{};
  auto failure = wait_for_failure(io, send_authenticate(authenticator, nonce, huge));
  CHECK(failure.getType() == kj::Exception::Type::DISCONNECTED);
  wait_for(io, client->on_disconnect());
  CHECK(server.server().stats().protocol_errors == 1);
  CHECK(server.server().stats().auth_failures == 0);  // never reached the Authenticator

  // Same size limit, normal traffic still works.
  auto other = connect_raw(io, server);
  Node::Client node = wait_for(io, other->authenticate(std::string(kSecret)));
  CHECK(ping(io, node, 5) == 6);
}

TEST_CASE("an unauthenticated peer may send at most pre_auth_bytes_max") {
  auto io = kj::setupAsyncIo();
  LoopbackServer server(io, std::string(kSecret));  // default 64 MiB message limit
  auto client = connect_raw(io, server);
  auto authenticator = client->bootstrap();
  challenge(io, authenticator);
  std::vector<uint8_t> big(kPreAuthBytesMax + 1024, 0xcd);
  std::array<uint8_t, kNonceBytes> nonce{};
  auto failure = wait_for_failure(io, send_authenticate(authenticator, nonce, big));
  CHECK(failure.getType() == kj::Exception::Type::DISCONNECTED);
  wait_for(io, client->on_disconnect());
  CHECK(server.server().stats().protocol_errors == 1);
  CHECK(server.server().stats().auth_failures == 0);
}

TEST_CASE("an unauthenticated connection is closed after the auth timeout") {
  auto io = kj::setupAsyncIo();
  RpcServerOptions options;
  options.auth_timeout_ms = 100;
  LoopbackServer server(io, std::string(kSecret), testing::test_node_factory(), options);
  auto idle = connect_raw(io, server);
  auto authenticated = connect_raw(io, server);
  Node::Client node = wait_for(io, authenticated->authenticate(std::string(kSecret)));

  wait_for(io, idle->on_disconnect(), 2'000);
  CHECK(server.server().stats().auth_timeouts == 1);
  testing::sleep_ms(io, 150);
  // The authenticated one is past the timeout and still works.
  CHECK(ping(io, node, 10) == 11);
  CHECK(server.server().stats().connections_open == 1);
}

TEST_CASE("unauthenticated connections are bounded") {
  auto io = kj::setupAsyncIo();
  RpcServerOptions options;
  options.unauthenticated_connections_max = 2;
  RpcServer server(io.provider->getTimer(), std::string(kSecret), testing::test_node_factory(),
                   options);
  std::vector<kj::Own<kj::AsyncIoStream>> clients;
  for (int i = 0; i < 3; ++i) {
    auto pipe = kj::newTwoWayPipe();
    server.accept(kj::mv(pipe.ends[1]));
    clients.push_back(kj::mv(pipe.ends[0]));
  }
  CHECK(server.stats().connections_refused == 1);
  CHECK(server.stats().connections_open == 2);
  // The refused one reads EOF at once.
  char byte = 0;
  CHECK(wait_for(io, clients[2]->tryRead(&byte, 1, 1)) == 0);

  // Authenticating one frees a slot.
  ClientConnection client(kj::mv(clients[0]));
  Node::Client node = wait_for(io, client.authenticate(std::string(kSecret)));
  CHECK(server.stats().connections_unauthenticated == 1);
  auto pipe = kj::newTwoWayPipe();
  server.accept(kj::mv(pipe.ends[1]));
  CHECK(server.stats().connections_refused == 1);
  CHECK(server.stats().connections_open == 3);
}

TEST_CASE("the Node capability is reachable only through authenticate") {
  // The bootstrap is an Authenticator: calling a Node method on it fails.
  auto io = kj::setupAsyncIo();
  LoopbackServer server(io, std::string(kSecret));
  auto client = connect_raw(io, server);
  Node::Client not_node = client->bootstrap().castAs<Node>();
  auto request = not_node.pingRequest();
  request.setValue(1);
  auto failure = wait_for_failure(io, request.send());
  CHECK(failure.getType() == kj::Exception::Type::UNIMPLEMENTED);
}

}  // namespace
}  // namespace shoal::rpc
