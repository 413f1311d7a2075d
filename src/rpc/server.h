// RpcServer: accepts connections, runs the Authenticator handshake on each,
// and hands the Node capability to peers that prove they know the cluster
// secret.
//
// Threading: everything runs on the thread that owns the KJ event loop the
// server was created on (the loop thread). The server depends only on the
// abstract KJ interfaces (kj::AsyncIoStream, kj::ConnectionReceiver,
// kj::Timer), so it runs over kj::setupAsyncIo() and over the libuv loop alike.
//
// Ownership: the server owns every accepted connection; destroying the server
// closes them all. `make_node` is called once per successful authentication;
// the Node::Client it returns is what that peer can use from then on.
//
// Failure isolation: a connection that sends garbage, an oversized message, a
// wrong proof or nothing at all is closed with a log line; nothing that happens
// on one connection affects another or escapes to the caller.
#pragma once

#include <kj/async-io.h>
#include <kj/function.h>
#include <kj/timer.h>

#include <cstdint>
#include <map>
#include <memory>
#include <string>

#include "rpc.capnp.h"
#include "rpc/constants.h"

namespace shoal::rpc {

struct RpcServerOptions {
  uint64_t auth_timeout_ms = kAuthTimeoutMs;
  size_t unauthenticated_connections_max = kUnauthenticatedConnectionsMax;
  size_t connections_max = kConnectionsMax;
  uint64_t message_bytes_max = kMessageBytesMax;
  uint64_t pre_auth_bytes_max = kPreAuthBytesMax;
  uint64_t close_linger_ms = kCloseLingerMs;
};

struct RpcServerStats {
  uint64_t connections_accepted = 0;  // handed to accept(), including refused ones
  uint64_t connections_refused = 0;   // closed at once: over a connection limit
  uint64_t connections_open = 0;
  uint64_t connections_unauthenticated = 0;  // open and not yet authenticated
  uint64_t auth_successes = 0;
  uint64_t auth_failures = 0;    // wrong proof or protocol misuse
  uint64_t auth_timeouts = 0;    // closed for not authenticating in time
  uint64_t protocol_errors = 0;  // unreadable or oversized messages
  uint64_t upgrade_failures = 0;  // refused by the stream upgrade (e.g. TLS handshake)
};

class RpcServer {
 public:
  using NodeFactory = kj::Function<Node::Client()>;
  // Turns a freshly accepted stream into the one RPC runs on (e.g. a TLS
  // handshake, rpc/tls.h); `peer` is its address for messages. A failure
  // refuses the connection and is logged with the exception's description.
  using StreamUpgrade =
      kj::Function<kj::Promise<kj::Own<kj::AsyncIoStream>>(kj::Own<kj::AsyncIoStream>, std::string peer)>;

  // `timer` must outlive the server. `secret` is the cluster secret (the
  // token file's contents); it must not be empty.
  RpcServer(kj::Timer& timer, std::string secret, NodeFactory make_node,
            RpcServerOptions options = {});
  ~RpcServer();
  RpcServer(const RpcServer&) = delete;
  RpcServer& operator=(const RpcServer&) = delete;

  // Serves one already-connected stream (e.g. from a listener, or one end of
  // an in-memory pipe in tests).
  void accept(kj::Own<kj::AsyncIoStream> stream);

  // Accepts connections from `receiver` until the returned promise is
  // dropped. `receiver` must outlive the promise. accept() errors are logged
  // and retried after kAcceptRetryMs; the promise never resolves.
  kj::Promise<void> listen(kj::ConnectionReceiver& receiver);

  // Runs `upgrade` on every stream accepted from now on, before the
  // Authenticator is offered. An upgrading connection counts as open and
  // unauthenticated, and must finish upgrading within auth_timeout_ms.
  void set_stream_upgrade(StreamUpgrade upgrade) { upgrade_ = kj::mv(upgrade); }

  const RpcServerStats& stats() const { return stats_; }

 private:
  class Connection;
  class AuthenticatorImpl;
  class UpgradeSlot;
  friend class Connection;
  friend class AuthenticatorImpl;

  void serve(kj::Own<kj::AsyncIoStream> stream);
  void upgrade_then_serve(kj::Own<kj::AsyncIoStream> stream);

  // Removes the connection on a later turn (never from inside its own
  // callbacks).
  void close_connection(uint64_t id);

  kj::Timer& timer_;
  std::string secret_;
  NodeFactory make_node_;
  kj::Maybe<StreamUpgrade> upgrade_;
  RpcServerOptions options_;
  RpcServerStats stats_;
  uint64_t next_connection_id_ = 1;
  std::map<uint64_t, std::unique_ptr<Connection>> connections_;
  kj::Own<kj::TaskSet::ErrorHandler> task_error_handler_;
  kj::Own<kj::TaskSet> tasks_;
};

}  // namespace shoal::rpc
