#include "rpc/peer_pool.h"

#include <algorithm>

#include "base/assert.h"
#include "base/log.h"
#include "rpc/auth.h"
#include "rpc/errors.h"

namespace shoal::rpc {
namespace {

class LoggingErrorHandler final : public kj::TaskSet::ErrorHandler {
 public:
  void taskFailed(kj::Exception&& exception) override {
    SHOAL_LOG_DEBUG("rpc peer pool: background task failed: {}", exception.getDescription().cStr());
  }
};

uint64_t to_ms(kj::Duration duration) { return duration / kj::MILLISECONDS; }

}  // namespace

struct PeerPool::Peer : public kj::Refcounted {
  explicit Peer(std::string address_in) : address(std::move(address_in)) {}

  std::string address;
  bool dropped = false;
  size_t inflight = 0;
  uint32_t failures = 0;  // consecutive failed connects
  kj::Maybe<kj::TimePoint> retry_at;
  std::string last_error;
  std::unique_ptr<ClientConnection> connection;  // set once authenticated
  kj::Promise<void> watch = nullptr;             // fires on_disconnected
  bool connecting = false;
  kj::Maybe<kj::ForkedPromise<void>> connect_attempt;
};

PeerPool::CallSlot::CallSlot(kj::Own<Peer> peer) : peer_(kj::mv(peer)) { ++peer_->inflight; }

PeerPool::CallSlot::~CallSlot() {
  SHOAL_ASSERT(peer_->inflight > 0);
  --peer_->inflight;
}

PeerPool::PeerPool(kj::Timer& timer, Connector connect, std::string secret, Rng& rng,
                   PeerPoolOptions options)
    : timer_(timer),
      connect_(kj::mv(connect)),
      secret_(std::move(secret)),
      rng_(rng),
      options_(std::move(options)),
      task_error_handler_(kj::heap<LoggingErrorHandler>()),
      tasks_(kj::heap<kj::TaskSet>(*task_error_handler_)) {
  SHOAL_ASSERT(!secret_.empty());
  SHOAL_ASSERT(options_.inflight_calls_max > 0);
  SHOAL_ASSERT(options_.backoff_min_ms > 0 && options_.backoff_min_ms <= options_.backoff_max_ms,
               options_.backoff_min_ms, options_.backoff_max_ms);
}

PeerPool::~PeerPool() {
  tasks_ = nullptr;
  for (auto& [address, peer] : peers_) {
    peer->dropped = true;
    peer->watch = nullptr;
    peer->connect_attempt = nullptr;  // breaks the attempt's reference to the peer
    peer->connection.reset();
  }
  peers_.clear();
}

kj::Maybe<kj::Exception> PeerPool::admit(const std::string& address) {
  auto it = peers_.find(address);
  if (it == peers_.end()) {
    if (peers_.size() >= options_.peers_max) {
      ++stats_.calls_overloaded;
      return overloaded_error("peer pool full: " + std::to_string(peers_.size()) +
                              " peers (limit " + std::to_string(options_.peers_max) + ")");
    }
    return nullptr;
  }
  Peer& peer = *it->second;
  if (peer.inflight >= options_.inflight_calls_max) {
    ++stats_.calls_overloaded;
    return overloaded_error("peer " + address + " overloaded: " + std::to_string(peer.inflight) +
                            " calls in flight (limit " +
                            std::to_string(options_.inflight_calls_max) + ")");
  }
  if (peer.connection == nullptr && !peer.connecting) {
    KJ_IF_MAYBE (retry_at, peer.retry_at) {
      kj::TimePoint now = timer_.now();
      if (now < *retry_at) {
        ++stats_.calls_backed_off;
        uint64_t wait_ms = std::max<uint64_t>(1, to_ms(*retry_at - now));
        return unavailable_error("peer " + address + " unavailable, retrying in " +
                                 std::to_string(wait_ms) + " ms (last error: " + peer.last_error +
                                 ")");
      }
    }
  }
  return nullptr;
}

kj::Own<PeerPool::CallSlot> PeerPool::take_slot(const std::string& address) {
  auto it = peers_.find(address);
  if (it == peers_.end()) {
    it = peers_.emplace(address, kj::refcounted<Peer>(address)).first;
  }
  ++stats_.calls_started;
  return kj::heap<CallSlot>(kj::addRef(*it->second));
}

kj::Promise<Node::Client> PeerPool::node_for(const std::string& address) {
  auto it = peers_.find(address);
  SHOAL_ASSERT(it != peers_.end(), address);
  Peer& peer = *it->second;
  if (peer.connection != nullptr) return peer.connection->node();
  if (!peer.connecting) peer.connect_attempt = start_connect(peer).fork();
  KJ_IF_MAYBE (attempt, peer.connect_attempt) {
    return attempt->addBranch().then([peer = kj::addRef(peer)]() -> kj::Promise<Node::Client> {
      if (peer->connection == nullptr) {
        return unavailable_error("peer " + peer->address + " unavailable: connection closed");
      }
      return peer->connection->node();
    });
  }
  SHOAL_ASSERT(false && "connect attempt missing");
  __builtin_unreachable();
}

kj::Promise<void> PeerPool::call_deadline(const std::string& address) {
  uint64_t timeout_ms = options_.call_timeout_ms;
  return timer_.afterDelay(timeout_ms * kj::MILLISECONDS)
      .then([this, address, timeout_ms]() -> kj::Promise<void> {
        ++stats_.calls_timed_out;
        return timeout_error("call to peer " + address, timeout_ms);
      });
}

kj::Promise<void> PeerPool::start_connect(Peer& peer) {
  peer.connecting = true;
  ++stats_.connects_started;
  const std::string& address = peer.address;
  auto options = ClientOptions{options_.message_bytes_max, options_.client_name};
  auto attempt = connect_(address).then(
      [this, options = kj::mv(options)](kj::Own<kj::AsyncIoStream>&& stream) mutable {
        return connect_authenticated(kj::mv(stream), secret_, kj::mv(options));
      });
  uint64_t timeout_ms = options_.connect_timeout_ms;
  auto deadline =
      timer_.afterDelay(timeout_ms * kj::MILLISECONDS)
          .then([address, timeout_ms]() -> kj::Promise<std::unique_ptr<ClientConnection>> {
            return timeout_error("connect to peer " + address, timeout_ms);
          });
  return attempt.exclusiveJoin(kj::mv(deadline))
      .then(
          [this, peer = kj::addRef(peer)](std::unique_ptr<ClientConnection>&& connection) mutable {
            on_connected(*peer, std::move(connection));
          },
          [this, peer = kj::addRef(peer)](kj::Exception&& exception) mutable {
            kj::throwFatalException(on_connect_failed(*peer, kj::mv(exception)));
          });
}

void PeerPool::on_connected(Peer& peer, std::unique_ptr<ClientConnection> connection) {
  peer.connecting = false;
  if (peer.dropped) return;  // destroys the new connection
  ++stats_.connects_succeeded;
  peer.failures = 0;
  peer.retry_at = nullptr;
  peer.last_error.clear();
  peer.connection = std::move(connection);
  peer.watch = peer.connection->on_disconnect()
                   .then([this, &peer]() { on_disconnected(peer); })
                   .eagerlyEvaluate([this, &peer](kj::Exception&&) { on_disconnected(peer); });
  SHOAL_LOG_DEBUG("rpc: connected to peer {}", peer.address);
}

kj::Exception PeerPool::on_connect_failed(Peer& peer, kj::Exception&& exception) {
  peer.connecting = false;
  ++stats_.connects_failed;
  ++peer.failures;
  uint64_t delay_ms = backoff_delay_ms(peer.failures);
  peer.retry_at = timer_.now() + delay_ms * kj::MILLISECONDS;
  Status status = status_from_exception(exception);
  peer.last_error = status.message();
  SHOAL_LOG_WARN("rpc: connecting to peer {} failed ({} in a row), retrying in {} ms: {}",
                 peer.address, peer.failures, delay_ms, peer.last_error);
  if (status.code() == Status::Code::kUnauthenticated ||
      status.code() == Status::Code::kDeadlineExceeded) {
    return kj::mv(exception);
  }
  return unavailable_error("peer " + peer.address + " unavailable: " + peer.last_error);
}

void PeerPool::on_disconnected(Peer& peer) {
  ++stats_.disconnects;
  SHOAL_LOG_INFO("rpc: connection to peer {} closed; the next call reconnects", peer.address);
  retire(peer);
}

uint64_t PeerPool::backoff_delay_ms(uint32_t failures) {
  uint64_t delay_ms = options_.backoff_min_ms;
  for (uint32_t i = 1; i < failures && delay_ms < options_.backoff_max_ms; ++i) delay_ms *= 2;
  delay_ms = std::min(delay_ms, options_.backoff_max_ms);
  // Jitter to [delay/2, delay] so that peers do not reconnect in lockstep.
  uint64_t half = delay_ms / 2;
  return delay_ms - half + rng_.uniform(half + 1);
}

void PeerPool::retire(Peer& peer) {
  // We may be running inside peer.watch's own continuation, so the connection
  // and its watcher die on a later turn.
  auto connection = std::move(peer.connection);
  auto watch = kj::mv(peer.watch);
  peer.watch = nullptr;
  if (tasks_.get() == nullptr) return;
  tasks_->add(kj::evalLater([connection = std::move(connection), watch = kj::mv(watch)]() mutable {
    watch = nullptr;
    connection.reset();
  }));
}

void PeerPool::drop(const std::string& address) {
  auto it = peers_.find(address);
  if (it == peers_.end()) return;
  Peer& peer = *it->second;
  peer.dropped = true;
  retire(peer);
  if (tasks_.get() != nullptr) {
    KJ_IF_MAYBE (attempt, peer.connect_attempt) {
      tasks_->add(kj::evalLater([attempt = kj::mv(*attempt)]() mutable {}));
    }
  }
  peer.connect_attempt = nullptr;
  peers_.erase(it);  // calls in flight keep the Peer itself alive
}

bool PeerPool::connected(const std::string& address) const {
  auto it = peers_.find(address);
  return it != peers_.end() && it->second->connection != nullptr;
}

size_t PeerPool::inflight_calls(const std::string& address) const {
  auto it = peers_.find(address);
  return it == peers_.end() ? 0 : it->second->inflight;
}

}  // namespace shoal::rpc
