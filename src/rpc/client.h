// The client side of a shoal RPC connection: authenticate on a fresh stream,
// then use the Node capability.
//
// Threading: loop thread only. Errors are kj::Exceptions (catch them at the
// RPC boundary and convert with status_from_exception()):
//   - the server rejects our proof: kAuthTokenMismatchMessage
//   - the server cannot prove it knows the secret: kAuthServerProofMessage
//   - the connection breaks: DISCONNECTED
#pragma once

#include <kj/async-io.h>

#include <memory>
#include <string>

#include "rpc.capnp.h"
#include "rpc/constants.h"

namespace shoal::rpc {

struct ClientOptions {
  uint64_t message_bytes_max = kMessageBytesMax;
  std::string client_name = "shoal";  // shown in the server's log
};

// Runs the handshake over an Authenticator (the bootstrap capability of a
// fresh connection) and returns the Node capability once the server's proof
// verified. `secret` must not be empty.
kj::Promise<Node::Client> authenticate(Authenticator::Client authenticator, std::string secret,
                                       std::string client_name = "shoal");

// One client connection: owns the stream, the vat network and the RPC system.
// Capabilities obtained through it work only while it exists; destroying it
// disconnects them (their calls fail with DISCONNECTED).
class ClientConnection {
 public:
  explicit ClientConnection(kj::Own<kj::AsyncIoStream> stream, ClientOptions options = {});
  ~ClientConnection();
  ClientConnection(const ClientConnection&) = delete;
  ClientConnection& operator=(const ClientConnection&) = delete;

  // The server's bootstrap capability (only an Authenticator).
  Authenticator::Client bootstrap();
  // authenticate(bootstrap(), secret); on success node() returns the Node too.
  kj::Promise<Node::Client> authenticate(std::string secret);
  // Valid after authenticate() resolved; asserts otherwise.
  Node::Client node();
  bool authenticated() const { return node_ != nullptr; }
  // Resolves when the connection is gone (either side closed it, or an error).
  kj::Promise<void> on_disconnect();

 private:
  struct State;
  ClientOptions options_;
  std::unique_ptr<State> state_;
  kj::Maybe<Node::Client> node_;
};

// Convenience: a connection on `stream`, authenticated with `secret`.
kj::Promise<std::unique_ptr<ClientConnection>> connect_authenticated(
    kj::Own<kj::AsyncIoStream> stream, std::string secret, ClientOptions options = {});

}  // namespace shoal::rpc
