#include "rpc/server.h"

#include <arpa/inet.h>
#include <capnp/rpc-twoparty.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include <array>

#include "base/assert.h"
#include "base/crypto.h"
#include "base/log.h"
#include "rpc/auth.h"
#include "rpc/errors.h"
#include "rpc/message_stream.h"

namespace shoal::rpc {
namespace {

// "10.0.0.1:7400", or "in-process" for streams that are not sockets.
std::string describe_peer(kj::AsyncIoStream& stream) {
  sockaddr_storage address{};
  uint length = sizeof(address);
  bool ok = kj::runCatchingExceptions([&]() {
              stream.getpeername(reinterpret_cast<sockaddr*>(&address), &length);
            }) == nullptr;
  if (!ok) return "in-process";
  char text[INET6_ADDRSTRLEN] = {};
  if (address.ss_family == AF_INET) {
    auto* in = reinterpret_cast<sockaddr_in*>(&address);
    inet_ntop(AF_INET, &in->sin_addr, text, sizeof(text));
    return std::string(text) + ":" + std::to_string(ntohs(in->sin_port));
  }
  if (address.ss_family == AF_INET6) {
    auto* in6 = reinterpret_cast<sockaddr_in6*>(&address);
    inet_ntop(AF_INET6, &in6->sin6_addr, text, sizeof(text));
    return "[" + std::string(text) + "]:" + std::to_string(ntohs(in6->sin6_port));
  }
  return "unknown";
}

bool printable_ascii(kj::StringPtr text) {
  for (char c : text) {
    if (static_cast<unsigned char>(c) < 0x20 || static_cast<unsigned char>(c) >= 0x7f) return false;
  }
  return true;
}

class LoggingErrorHandler final : public kj::TaskSet::ErrorHandler {
 public:
  void taskFailed(kj::Exception&& exception) override {
    SHOAL_LOG_WARN("rpc server: background task failed: {}", exception.getDescription().cStr());
  }
};

std::span<const uint8_t> as_span(capnp::Data::Reader data) { return {data.begin(), data.size()}; }

}  // namespace

// One accepted stream: its message stream, vat network and RPC system, and the
// timers that close it.
class RpcServer::Connection {
 public:
  Connection(RpcServer& server, uint64_t id, kj::Own<kj::AsyncIoStream> stream);
  ~Connection();

  void on_authenticated(kj::StringPtr client_name);
  // Called when the Authenticator rejects a call: the error reply is sent
  // first, then the write side is shut down, then the connection is dropped.
  void close_after_reply(std::string_view reason);

  RpcServer& server() { return server_; }
  const std::string& peer() const { return peer_; }
  void detach_authenticator() { authenticator_ = nullptr; }

 private:
  Authenticator::Client make_bootstrap();
  void on_disconnected();

  RpcServer& server_;
  uint64_t id_;
  std::string peer_;
  bool authenticated_ = false;
  bool closing_ = false;
  AuthenticatorImpl* authenticator_ = nullptr;
  // Destroyed in reverse order: promises, then the RPC system, then the stream.
  kj::Own<kj::AsyncIoStream> stream_;
  TrackedMessageStream message_stream_;
  capnp::TwoPartyVatNetwork network_;
  capnp::RpcSystem<capnp::rpc::twoparty::VatId> rpc_system_;
  kj::Promise<void> watch_disconnect_;
  kj::Promise<void> auth_deadline_;
  kj::Promise<void> close_task_;
};

class RpcServer::AuthenticatorImpl final : public Authenticator::Server {
 public:
  explicit AuthenticatorImpl(Connection& connection) : connection_(&connection) {}
  ~AuthenticatorImpl() {
    if (connection_ != nullptr) connection_->detach_authenticator();
  }
  void detach() { connection_ = nullptr; }

  kj::Promise<void> challenge(ChallengeContext context) override;
  kj::Promise<void> authenticate(AuthenticateContext context) override;

 private:
  enum class Stage { kFresh, kChallenged, kDone, kFailed };

  // Rejects the call with `message` and closes the connection after the reply.
  kj::Promise<void> fail(std::string_view message);

  Connection* connection_;
  Stage stage_ = Stage::kFresh;
  std::array<uint8_t, kNonceBytes> server_nonce_{};
};

// ---- AuthenticatorImpl ------------------------------------------------------

kj::Promise<void> RpcServer::AuthenticatorImpl::fail(std::string_view message) {
  stage_ = Stage::kFailed;
  if (connection_ != nullptr) {
    ++connection_->server().stats_.auth_failures;
    connection_->close_after_reply(message);
  }
  return auth_error(message);
}

kj::Promise<void> RpcServer::AuthenticatorImpl::challenge(ChallengeContext context) {
  if (connection_ == nullptr) return unavailable_error("connection closed");
  if (stage_ == Stage::kDone) {
    return auth_error("authentication failed: this connection is already authenticated");
  }
  if (stage_ != Stage::kFresh) {
    return fail("authentication failed: challenge may be requested only once per connection");
  }
  secure_random(server_nonce_);
  stage_ = Stage::kChallenged;
  context.getResults().setServerNonce(
      capnp::Data::Reader(server_nonce_.data(), server_nonce_.size()));
  return kj::READY_NOW;
}

kj::Promise<void> RpcServer::AuthenticatorImpl::authenticate(AuthenticateContext context) {
  if (connection_ == nullptr) return unavailable_error("connection closed");
  switch (stage_) {
    case Stage::kFresh:
      return fail("authentication failed: authenticate was called without a preceding challenge");
    case Stage::kDone:
      return auth_error("authentication failed: this connection is already authenticated");
    case Stage::kFailed:
      return auth_error("authentication failed: this connection is closing");
    case Stage::kChallenged:
      break;
  }
  auto params = context.getParams();
  if (!params.hasClientNonce() || params.getClientNonce().size() != kNonceBytes) {
    return fail("authentication failed: clientNonce must be " + std::to_string(kNonceBytes) +
                " bytes, got " + std::to_string(params.getClientNonce().size()));
  }
  if (!params.hasProof() || params.getProof().size() != kProofBytes) {
    return fail("authentication failed: proof must be " + std::to_string(kProofBytes) +
                " bytes, got " + std::to_string(params.getProof().size()));
  }
  auto client_name = params.getClientName();
  if (client_name.size() > kClientNameBytesMax || !printable_ascii(client_name)) {
    return fail("authentication failed: clientName must be printable ASCII of at most " +
                std::to_string(kClientNameBytesMax) + " bytes");
  }
  auto client_nonce = as_span(params.getClientNonce());
  RpcServer& server = connection_->server();
  Mac expected = client_proof(server.secret_, server_nonce_, client_nonce);
  if (!constant_time_equal(expected, as_span(params.getProof()))) {
    return fail(kAuthTokenMismatchMessage);
  }
  stage_ = Stage::kDone;
  Mac proof = server_proof(server.secret_, client_nonce, server_nonce_);
  auto results = context.getResults();
  results.setServerProof(capnp::Data::Reader(proof.data(), proof.size()));
  results.setNode(server.make_node_());
  connection_->on_authenticated(client_name);
  return kj::READY_NOW;
}

// ---- Connection --------------------------------------------------------------

RpcServer::Connection::Connection(RpcServer& server, uint64_t id, kj::Own<kj::AsyncIoStream> stream)
    : server_(server),
      id_(id),
      peer_(describe_peer(*stream)),
      stream_(kj::mv(stream)),
      message_stream_(*stream_),
      network_(message_stream_, capnp::rpc::twoparty::Side::SERVER,
               reader_options(server.options_.message_bytes_max)),
      rpc_system_(capnp::makeRpcServer(network_, make_bootstrap())),
      watch_disconnect_(network_.onDisconnect()
                            .then([this]() { on_disconnected(); })
                            .eagerlyEvaluate([this](kj::Exception&& exception) {
                              SHOAL_LOG_WARN("rpc: connection from {} failed: {}", peer_,
                                             exception.getDescription().cStr());
                              server_.close_connection(id_);
                            })),
      auth_deadline_(server.timer_.afterDelay(server.options_.auth_timeout_ms * kj::MILLISECONDS)
                         .then([this]() {
                           ++server_.stats_.auth_timeouts;
                           SHOAL_LOG_WARN(
                               "rpc: closing connection from {}: not authenticated within {} ms",
                               peer_, server_.options_.auth_timeout_ms);
                           server_.close_connection(id_);
                         })
                         .eagerlyEvaluate(nullptr)),
      close_task_(kj::READY_NOW) {
  message_stream_.set_read_budget(server_.options_.pre_auth_bytes_max);
  ++server_.stats_.connections_open;
  ++server_.stats_.connections_unauthenticated;
}

RpcServer::Connection::~Connection() {
  if (authenticator_ != nullptr) authenticator_->detach();
  SHOAL_ASSERT(server_.stats_.connections_open > 0);
  --server_.stats_.connections_open;
  if (!authenticated_) {
    SHOAL_ASSERT(server_.stats_.connections_unauthenticated > 0);
    --server_.stats_.connections_unauthenticated;
  }
}

Authenticator::Client RpcServer::Connection::make_bootstrap() {
  auto impl = kj::heap<AuthenticatorImpl>(*this);
  authenticator_ = impl.get();
  return kj::mv(impl);
}

void RpcServer::Connection::on_authenticated(kj::StringPtr client_name) {
  SHOAL_ASSERT(!authenticated_);
  authenticated_ = true;
  --server_.stats_.connections_unauthenticated;
  ++server_.stats_.auth_successes;
  auth_deadline_ = kj::READY_NOW;  // cancels the timeout
  message_stream_.set_read_budget(nullptr);
  SHOAL_LOG_DEBUG("rpc: connection from {} authenticated as '{}'", peer_, client_name.cStr());
}

void RpcServer::Connection::close_after_reply(std::string_view reason) {
  if (closing_) return;
  closing_ = true;
  SHOAL_LOG_WARN("rpc: closing connection from {}: {}", peer_, reason);
  // evalLast runs after the rejected call's Return has been handed to the
  // stream; wait for that write, shut down our side, then give the client
  // kCloseLingerMs to close its end before dropping the socket.
  close_task_ = kj::evalLast([this]() { return message_stream_.when_writes_done(); })
                    .then([this]() {
                      return kj::evalLast([this]() { return message_stream_.when_writes_done(); });
                    })
                    .then([this]() { return message_stream_.end(); })
                    .then([this]() {
                      return network_.onDisconnect().exclusiveJoin(server_.timer_.afterDelay(
                          server_.options_.close_linger_ms * kj::MILLISECONDS));
                    })
                    .then([this]() { server_.close_connection(id_); },
                          [this](kj::Exception&&) { server_.close_connection(id_); })
                    .eagerlyEvaluate(nullptr);
}

void RpcServer::Connection::on_disconnected() {
  const std::string& error = message_stream_.read_error();
  if (!error.empty()) {
    ++server_.stats_.protocol_errors;
    SHOAL_LOG_WARN("rpc: closing connection from {}: unreadable message ({})", peer_, error);
  } else {
    SHOAL_LOG_DEBUG("rpc: connection from {} closed", peer_);
  }
  server_.close_connection(id_);
}

// ---- RpcServer ---------------------------------------------------------------

RpcServer::RpcServer(kj::Timer& timer, std::string secret, NodeFactory make_node,
                     RpcServerOptions options)
    : timer_(timer),
      secret_(std::move(secret)),
      make_node_(kj::mv(make_node)),
      options_(options),
      task_error_handler_(kj::heap<LoggingErrorHandler>()),
      tasks_(kj::heap<kj::TaskSet>(*task_error_handler_)) {
  SHOAL_ASSERT(!secret_.empty());
  SHOAL_ASSERT(options_.message_bytes_max >= sizeof(capnp::word), options_.message_bytes_max);
}

RpcServer::~RpcServer() {
  tasks_ = nullptr;
  connections_.clear();
}

void RpcServer::accept(kj::Own<kj::AsyncIoStream> stream) {
  ++stats_.connections_accepted;
  if (stats_.connections_unauthenticated >= options_.unauthenticated_connections_max ||
      stats_.connections_open >= options_.connections_max) {
    ++stats_.connections_refused;
    SHOAL_LOG_WARN(
        "rpc: refusing connection from {}: {} open, {} unauthenticated (limits {} and {})",
        describe_peer(*stream), stats_.connections_open, stats_.connections_unauthenticated,
        options_.connections_max, options_.unauthenticated_connections_max);
    return;  // dropping the stream closes it
  }
  if (upgrade_ != nullptr) {
    upgrade_then_serve(kj::mv(stream));
    return;
  }
  serve(kj::mv(stream));
}

void RpcServer::serve(kj::Own<kj::AsyncIoStream> stream) {
  uint64_t id = next_connection_id_++;
  connections_.emplace(id, std::make_unique<Connection>(*this, id, kj::mv(stream)));
}

// Counts an upgrading stream as an open, unauthenticated connection for as
// long as the upgrade runs.
class RpcServer::UpgradeSlot {
 public:
  explicit UpgradeSlot(RpcServerStats& stats) : stats_(stats) {
    ++stats_.connections_open;
    ++stats_.connections_unauthenticated;
  }
  ~UpgradeSlot() {
    --stats_.connections_open;
    --stats_.connections_unauthenticated;
  }
  UpgradeSlot(const UpgradeSlot&) = delete;
  UpgradeSlot& operator=(const UpgradeSlot&) = delete;

 private:
  RpcServerStats& stats_;
};

void RpcServer::upgrade_then_serve(kj::Own<kj::AsyncIoStream> stream) {
  std::string peer = describe_peer(*stream);
  auto slot = kj::heap<UpgradeSlot>(stats_);
  uint64_t timeout_ms = options_.auth_timeout_ms;
  auto deadline = timer_.afterDelay(timeout_ms * kj::MILLISECONDS)
                      .then([timeout_ms]() -> kj::Promise<kj::Own<kj::AsyncIoStream>> {
                        return kj::Exception(kj::Exception::Type::DISCONNECTED, __FILE__, __LINE__,
                                             kj::str("handshake not finished within ", timeout_ms, " ms"));
                      });
  auto& upgrade = KJ_ASSERT_NONNULL(upgrade_);
  tasks_->add(upgrade(kj::mv(stream), peer)
                  .exclusiveJoin(kj::mv(deadline))
                  .then(
                      [this](kj::Own<kj::AsyncIoStream>&& upgraded) {
                        if (tasks_.get() != nullptr) serve(kj::mv(upgraded));
                      },
                      [this, peer](kj::Exception&& exception) {
                        ++stats_.upgrade_failures;
                        SHOAL_LOG_WARN("rpc: refusing connection from {}: {}", peer,
                                       exception.getDescription().cStr());
                      })
                  .attach(kj::mv(slot)));
}

kj::Promise<void> RpcServer::listen(kj::ConnectionReceiver& receiver) {
  return receiver.accept().then(
      [this, &receiver](kj::Own<kj::AsyncIoStream>&& stream) {
        accept(kj::mv(stream));
        return listen(receiver);
      },
      [this, &receiver](kj::Exception&& exception) {
        SHOAL_LOG_WARN("rpc: accept failed, retrying in {} ms: {}", kAcceptRetryMs,
                       exception.getDescription().cStr());
        return timer_.afterDelay(kAcceptRetryMs * kj::MILLISECONDS).then([this, &receiver]() {
          return listen(receiver);
        });
      });
}

void RpcServer::close_connection(uint64_t id) {
  if (tasks_.get() == nullptr) return;  // shutting down
  tasks_->add(kj::evalLater([this, id]() { connections_.erase(id); }));
}

}  // namespace shoal::rpc
