#include "rpc/client.h"

#include <capnp/rpc-twoparty.h>

#include <array>

#include "base/assert.h"
#include "base/crypto.h"
#include "rpc/auth.h"
#include "rpc/errors.h"
#include "rpc/message_stream.h"

namespace shoal::rpc {
namespace {

std::span<const uint8_t> as_span(capnp::Data::Reader data) { return {data.begin(), data.size()}; }

// The server's refusal arrives as "remote exception: authentication failed: ...";
// give the operator our own wording, whatever the server said.
kj::Exception translate_auth_error(kj::Exception&& exception) {
  kj::StringPtr description = exception.getDescription();
  if (std::string_view(description.cStr()).find(kAuthFailedPrefix) == std::string_view::npos) {
    return kj::mv(exception);
  }
  if (std::string_view(description.cStr()).find("cluster token does not match") !=
      std::string_view::npos) {
    return auth_error(kAuthTokenMismatchMessage);
  }
  std::string message(description.cStr());
  constexpr std::string_view kRemotePrefix = "remote exception: ";
  if (message.starts_with(kRemotePrefix)) message.erase(0, kRemotePrefix.size());
  return auth_error(message);
}

}  // namespace

kj::Promise<Node::Client> authenticate(Authenticator::Client authenticator, std::string secret,
                                       std::string client_name) {
  SHOAL_ASSERT(!secret.empty());
  if (client_name.size() > kClientNameBytesMax) client_name.resize(kClientNameBytesMax);
  auto challenge = authenticator.challengeRequest().send();
  return challenge
      .then([authenticator = kj::mv(authenticator), secret,
             client_name = kj::mv(client_name)](auto&& response) mutable {
        auto server_nonce = response.getServerNonce();
        if (server_nonce.size() != kNonceBytes) {
          return kj::Promise<Node::Client>(auth_error(
              "authentication failed: the server sent a " + std::to_string(server_nonce.size()) +
              "-byte nonce, expected " + std::to_string(kNonceBytes)));
        }
        std::array<uint8_t, kNonceBytes> client_nonce{};
        secure_random(client_nonce);
        std::array<uint8_t, kNonceBytes> server_nonce_copy{};
        std::copy(server_nonce.begin(), server_nonce.end(), server_nonce_copy.begin());
        Mac proof = client_proof(secret, server_nonce_copy, client_nonce);

        auto request = authenticator.authenticateRequest();
        request.setClientNonce(capnp::Data::Reader(client_nonce.data(), client_nonce.size()));
        request.setProof(capnp::Data::Reader(proof.data(), proof.size()));
        request.setClientName(client_name);
        return request.send().then(
            [secret, client_nonce, server_nonce_copy](auto&& reply) -> Node::Client {
              Mac expected = server_proof(secret, client_nonce, server_nonce_copy);
              if (!reply.hasServerProof() ||
                  !constant_time_equal(expected, as_span(reply.getServerProof()))) {
                kj::throwFatalException(auth_error(kAuthServerProofMessage));
              }
              return reply.getNode();
            });
      })
      .catch_([](kj::Exception&& exception) -> Node::Client {
        kj::throwFatalException(translate_auth_error(kj::mv(exception)));
      });
}

namespace {

Authenticator::Client bootstrap_of(capnp::RpcSystem<capnp::rpc::twoparty::VatId>& rpc_system) {
  capnp::word scratch[4];
  memset(scratch, 0, sizeof(scratch));
  capnp::MallocMessageBuilder message(scratch);
  auto vat_id = message.getRoot<capnp::rpc::twoparty::VatId>();
  vat_id.setSide(capnp::rpc::twoparty::Side::SERVER);
  return rpc_system.bootstrap(vat_id).castAs<Authenticator>();
}

}  // namespace

struct ClientConnection::State {
  State(kj::Own<kj::AsyncIoStream> stream_in, uint64_t message_bytes_max)
      : stream(kj::mv(stream_in)),
        message_stream(*stream),
        network(message_stream, capnp::rpc::twoparty::Side::CLIENT,
                reader_options(message_bytes_max)),
        rpc_system(capnp::makeRpcClient(network)),
        // Bootstrapped once: a TwoPartyVatNetwork cannot be bootstrapped again
        // after it disconnected, while this capability just fails.
        bootstrap(bootstrap_of(rpc_system)) {}

  kj::Own<kj::AsyncIoStream> stream;
  TrackedMessageStream message_stream;
  capnp::TwoPartyVatNetwork network;
  capnp::RpcSystem<capnp::rpc::twoparty::VatId> rpc_system;
  Authenticator::Client bootstrap;
};

ClientConnection::ClientConnection(kj::Own<kj::AsyncIoStream> stream, ClientOptions options)
    : options_(std::move(options)),
      state_(std::make_unique<State>(kj::mv(stream), options_.message_bytes_max)) {}

ClientConnection::~ClientConnection() {
  node_ = nullptr;  // drop our capabilities before the RPC system goes
  state_.reset();
}

Authenticator::Client ClientConnection::bootstrap() { return state_->bootstrap; }

kj::Promise<Node::Client> ClientConnection::authenticate(std::string secret) {
  return rpc::authenticate(bootstrap(), std::move(secret), options_.client_name)
      .then([this](Node::Client&& node) {
        node_ = node;
        return kj::mv(node);
      });
}

Node::Client ClientConnection::node() {
  KJ_IF_MAYBE (node, node_) {
    return *node;
  }
  SHOAL_ASSERT(false && "ClientConnection::node() before authenticate() succeeded");
  __builtin_unreachable();
}

kj::Promise<void> ClientConnection::on_disconnect() { return state_->network.onDisconnect(); }

kj::Promise<std::unique_ptr<ClientConnection>> connect_authenticated(
    kj::Own<kj::AsyncIoStream> stream, std::string secret, ClientOptions options) {
  auto connection = std::make_unique<ClientConnection>(kj::mv(stream), std::move(options));
  ClientConnection& ref = *connection;
  return ref.authenticate(std::move(secret))
      .then([connection = std::move(connection)](Node::Client&&) mutable {
        return std::move(connection);
      });
}

}  // namespace shoal::rpc
