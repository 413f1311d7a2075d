// PeerPool: one authenticated connection per peer address, reused by every
// call, with reconnection, backoff, an in-flight bound and call timeouts.
//
// Threading: loop thread only. Ownership: the pool owns its connections; the
// pool must outlive every promise it returned (drop them before the pool).
//
// How calls fail (kj::Exception; convert with status_from_exception()):
//   - OVERLOADED "peer X overloaded: N calls in flight (limit M)": the
//     per-peer in-flight bound is reached. Immediate; nothing is sent.
//     -> kResourceExhausted
//   - DISCONNECTED "peer X unavailable, retrying in N ms (last error: ...)":
//     the last connect attempt failed and the backoff window is still open.
//     Immediate; no connect is attempted. -> kUnavailable
//   - DISCONNECTED "call to peer X timed out after N ms": the call (including
//     connecting and authenticating, when needed) took longer than
//     call_timeout_ms; the call is cancelled, the connection is kept.
//     -> kDeadlineExceeded
//   - "authentication failed: ..." when the peer rejects our secret or cannot
//     prove its own. -> kUnauthenticated
//   - DISCONNECTED from Cap'n Proto when the connection breaks mid-call.
//     -> kUnavailable
//
// Reconnection: a connection that breaks is forgotten; the next call connects
// again at once. A failed connect (refused, timed out, rejected) starts an
// exponential backoff: backoff_min_ms doubling per consecutive failure up to
// backoff_max_ms, each delay jittered to [delay/2, delay]. A success resets it.
#pragma once

#include <kj/async-io.h>
#include <kj/function.h>
#include <kj/timer.h>

#include <cstdint>
#include <map>
#include <memory>
#include <string>

#include "base/clock.h"
#include "rpc.capnp.h"
#include "rpc/client.h"
#include "rpc/constants.h"

namespace shoal::rpc {

struct PeerPoolOptions {
  size_t inflight_calls_max = kInflightCallsMaxPerPeer;  // per peer
  uint64_t call_timeout_ms = kCallTimeoutMs;
  uint64_t connect_timeout_ms = kConnectTimeoutMs;  // connect + authenticate
  uint64_t backoff_min_ms = kBackoffMinMs;
  uint64_t backoff_max_ms = kBackoffMaxMs;
  uint64_t message_bytes_max = kMessageBytesMax;
  size_t peers_max = kPeersMax;
  std::string client_name = "shoal";
};

struct PeerPoolStats {
  uint64_t connects_started = 0;
  uint64_t connects_succeeded = 0;
  uint64_t connects_failed = 0;
  uint64_t disconnects = 0;  // established connections that broke
  uint64_t calls_started = 0;
  uint64_t calls_overloaded = 0;  // refused: in-flight bound
  uint64_t calls_backed_off = 0;  // refused: backoff window open
  uint64_t calls_timed_out = 0;
};

class PeerPool {
 public:
  // Opens a byte stream to "host:port" (e.g. the loop module's connect_tcp, or
  // kj's network in tests).
  using Connector =
      kj::Function<kj::Promise<kj::Own<kj::AsyncIoStream>>(const std::string& address)>;

  // `timer` and `rng` (backoff jitter) must outlive the pool.
  PeerPool(kj::Timer& timer, Connector connect, std::string secret, Rng& rng,
           PeerPoolOptions options = {});
  ~PeerPool();
  PeerPool(const PeerPool&) = delete;
  PeerPool& operator=(const PeerPool&) = delete;

  // Runs `fn` with the peer's Node capability, connecting first if needed.
  // Example:
  //   pool.call<uint64_t>(addr, [](Node::Client& node) {
  //     auto request = node.pingRequest();
  //     request.setValue(41);
  //     return request.send().then([](auto r) { return r.getValue(); });
  //   });
  template <typename T>
  kj::Promise<T> call(const std::string& address, kj::Function<kj::Promise<T>(Node::Client&)> fn);

  // Closes the connection to `address` (calls in flight on it fail with
  // DISCONNECTED) and forgets its backoff state.
  void drop(const std::string& address);

  bool connected(const std::string& address) const;
  size_t inflight_calls(const std::string& address) const;
  const PeerPoolStats& stats() const { return stats_; }

 private:
  struct Peer;
  // Counts one call in flight on a peer for as long as it lives.
  class CallSlot {
   public:
    explicit CallSlot(kj::Own<Peer> peer);
    ~CallSlot();
    CallSlot(const CallSlot&) = delete;
    CallSlot& operator=(const CallSlot&) = delete;

   private:
    kj::Own<Peer> peer_;
  };

  // Why a call cannot start now, if it cannot (overload, backoff, too many peers).
  kj::Maybe<kj::Exception> admit(const std::string& address);
  // Counts one call in flight on `address` until the returned object dies.
  kj::Own<CallSlot> take_slot(const std::string& address);
  // The peer's Node, connecting and authenticating first if needed.
  kj::Promise<Node::Client> node_for(const std::string& address);
  // Rejects with the timeout error after call_timeout_ms.
  kj::Promise<void> call_deadline(const std::string& address);

  kj::Promise<void> start_connect(Peer& peer);
  void on_connected(Peer& peer, std::unique_ptr<ClientConnection> connection);
  kj::Exception on_connect_failed(Peer& peer, kj::Exception&& exception);
  void on_disconnected(Peer& peer);
  uint64_t backoff_delay_ms(uint32_t failures);
  void retire(Peer& peer);  // destroys the peer's connection on a later turn

  kj::Timer& timer_;
  Connector connect_;
  std::string secret_;
  Rng& rng_;
  PeerPoolOptions options_;
  PeerPoolStats stats_;
  std::map<std::string, kj::Own<Peer>> peers_;
  kj::Own<kj::TaskSet::ErrorHandler> task_error_handler_;
  kj::Own<kj::TaskSet> tasks_;
};

template <typename T>
kj::Promise<T> PeerPool::call(const std::string& address,
                              kj::Function<kj::Promise<T>(Node::Client&)> fn) {
  KJ_IF_MAYBE (error, admit(address)) {
    return kj::mv(*error);
  }
  auto slot = take_slot(address);
  auto result = node_for(address).then([fn = kj::mv(fn)](Node::Client&& node) mutable {
    auto promise = fn(node);
    return promise.attach(kj::mv(node));
  });
  return result
      .exclusiveJoin(call_deadline(address).then([]() -> kj::Promise<T> { return kj::NEVER_DONE; }))
      .attach(kj::mv(slot));
}

}  // namespace shoal::rpc
