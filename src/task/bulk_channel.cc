#include "task/bulk_channel.h"

#include <kj/debug.h>

#include <algorithm>

#include "base/crypto.h"
#include "base/log.h"

namespace shoal::detail {

namespace {
// One tryRead() asks for at most this much, so `received` moves as bytes
// arrive (libuv reads straight into the buffer either way).
constexpr uint64_t kReadStepBytes = 64ull << 20;
}  // namespace

class BulkServer::ErrorHandler final : public kj::TaskSet::ErrorHandler {
 public:
  void taskFailed(kj::Exception&& exception) override {
    SHOAL_LOG_DEBUG("objects: a bulk stream ended early: {}", exception.getDescription().cStr());
  }
};

BulkServer::BulkServer(loop::Loop& loop, kj::Timer& timer, uint64_t ticket_ttl_ms)
    : loop_(loop), timer_(timer), ticket_ttl_ms_(ticket_ttl_ms), error_handler_(kj::heap<ErrorHandler>()) {
  tasks_ = kj::heap<kj::TaskSet>(*error_handler_);
}

BulkServer::~BulkServer() {
  tasks_ = nullptr;  // cancels the accept loop and every stream being served
  listener_ = nullptr;
}

Status BulkServer::listen(const std::string& host) {
  auto listener = loop::TcpListener::listen(loop_, host, 0);
  if (!listener.ok()) return listener.status();
  listener_ = kj::mv(*listener);
  port_ = static_cast<uint16_t>(listener_->getPort());
  tasks_->add(accept_loop());
  return {};
}

std::optional<std::string> BulkServer::issue(std::shared_ptr<const void> pin, const char* data, uint64_t length) {
  if (listener_.get() == nullptr) return std::nullopt;
  drop_expired();
  if (tickets_.size() >= kBulkTicketsMax) return std::nullopt;
  std::string ticket(kBulkTicketBytes, '\0');
  secure_random({reinterpret_cast<uint8_t*>(ticket.data()), ticket.size()});
  tickets_.insert_or_assign(ticket,
                            Ticket{std::move(pin), data, length, timer_.now() + ticket_ttl_ms_ * kj::MILLISECONDS});
  ++stats_.tickets_issued;
  return ticket;
}

void BulkServer::drop_expired() {
  kj::TimePoint now = timer_.now();
  for (auto it = tickets_.begin(); it != tickets_.end();) {
    it = it->second.expires <= now ? tickets_.erase(it) : std::next(it);
  }
}

kj::Promise<void> BulkServer::accept_loop() {
  return listener_->accept().then([this](kj::Own<kj::AsyncIoStream> stream) {
    if (connections_ >= kBulkConnectionsMax) {
      ++stats_.refused;  // dropping the stream closes it
    } else {
      ++connections_;
      tasks_->add(serve(kj::mv(stream)).attach(kj::defer([this] { --connections_; })));
    }
    return accept_loop();
  });
}

kj::Promise<void> BulkServer::serve(kj::Own<kj::AsyncIoStream> stream) {
  auto ticket = kj::heapArray<char>(kBulkTicketBytes);
  auto read = stream->read(ticket.begin(), ticket.size());
  auto deadline = timer_.afterDelay(ticket_ttl_ms_ * kj::MILLISECONDS).then([]() -> kj::Promise<void> {
    return KJ_EXCEPTION(DISCONNECTED, "no ticket within the time limit");
  });
  auto& s = *stream;
  return read.exclusiveJoin(kj::mv(deadline))
      .then([this, &s, ticket = kj::mv(ticket)]() mutable -> kj::Promise<void> {
        drop_expired();
        auto it = tickets_.find(std::string(ticket.begin(), ticket.size()));
        if (it == tickets_.end()) {
          ++stats_.refused;
          return KJ_EXCEPTION(FAILED, "unknown, expired or used ticket");
        }
        Ticket t = std::move(it->second);
        tickets_.erase(it);  // one use
        ++stats_.streams_served;
        stats_.bytes_served += t.length;
        // Large writes go out straight from the value (tcp.h), which the pin
        // keeps alive until libuv is done with it.
        return s.write(t.data, t.length).then([&s]() { s.shutdownWrite(); }).attach(kj::mv(t.pin));
      })
      .attach(kj::mv(stream));
}

namespace {
kj::Promise<void> read_rest(kj::AsyncIoStream& stream, char* into, uint64_t length,
                            std::shared_ptr<uint64_t> received) {
  if (*received >= length) return kj::READY_NOW;
  uint64_t want = std::min(kReadStepBytes, length - *received);
  return stream.tryRead(into + *received, 1, want).then([&stream, into, length, received](size_t got) {
    if (got == 0) {
      return kj::Promise<void>(KJ_EXCEPTION(DISCONNECTED, "the holder closed the bulk stream early",
                                            *received, length));
    }
    *received += got;
    return read_rest(stream, into, length, received);
  });
}
}  // namespace

kj::Promise<void> bulk_read(loop::Loop& loop, const std::string& host, uint16_t port, std::string ticket,
                            char* into, uint64_t length, std::shared_ptr<uint64_t> received) {
  return loop::connect_tcp(loop, host, port)
      .then([ticket = kj::heapArray<char>(ticket.data(), ticket.size()), into, length,
             received](kj::Own<kj::AsyncIoStream> stream) mutable {
        auto& s = *stream;
        auto sent = s.write(ticket.begin(), ticket.size()).attach(kj::mv(ticket));
        return sent.then([&s, into, length, received]() { return read_rest(s, into, length, received); })
            .attach(kj::mv(stream));
      });
}

std::string host_of(const std::string& address) {
  if (!address.empty() && address.front() == '[') {
    size_t close = address.find(']');
    if (close == std::string::npos || close + 1 >= address.size() || address[close + 1] != ':') return {};
    return address.substr(1, close - 1);
  }
  size_t colon = address.rfind(':');
  if (colon == std::string::npos || colon == 0 || address.find(':') != colon) return {};
  return address.substr(0, colon);
}

}  // namespace shoal::detail
