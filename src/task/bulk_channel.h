// Bulk channel: large values move between processes as raw bytes on a plain
// TCP connection, outside Cap'n Proto, so that each byte is copied only by
// the kernel (out of the holder's value, into the puller's buffer), as in a
// plain TCP copy. Chunked readObject calls cost two more copies (into the
// reply message, out of it); they remain the fallback.
//
// Protocol: the puller asks the holder over its authenticated RPC connection
// (openObjectStream) for bytes [offset, size) of a value. The holder pins the
// value and answers a one-time ticket (kBulkTicketBytes random bytes) and the
// port of its BulkServer. The puller connects there, sends the ticket and
// reads exactly size - offset bytes; the holder writes them straight from the
// value and closes. The ticket is the only credential: it was handed over the
// authenticated connection, expires after kBulkTicketTtlMs and works once. The
// bytes are not encrypted: a process whose RPC runs over TLS does not offer
// the channel (its pulls use readObject).
//
// Bad input: an unknown, expired or reused ticket, or one not sent within
// the ticket lifetime of connecting, closes the connection. At most
// kBulkTicketsMax tickets are outstanding (beyond that openObjectStream
// answers "no channel") and kBulkConnectionsMax connections open (beyond
// that they are closed at once); a puller whose stream fails for any reason
// goes on with readObject from where it stopped.
//
// Threads: loop thread only.
#pragma once

#include <kj/async-io.h>
#include <kj/timer.h>

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>

#include "loop/loop.h"
#include "loop/tcp.h"
#include "shoal/status.h"

namespace shoal::detail {

inline constexpr size_t kBulkTicketBytes = 16;
inline constexpr uint64_t kBulkTicketTtlMs = 10'000;
inline constexpr size_t kBulkTicketsMax = 256;
inline constexpr size_t kBulkConnectionsMax = 64;

class BulkServer {
 public:
  BulkServer(loop::Loop& loop, kj::Timer& timer, uint64_t ticket_ttl_ms = kBulkTicketTtlMs);
  ~BulkServer();
  BulkServer(const BulkServer&) = delete;
  BulkServer& operator=(const BulkServer&) = delete;

  // Listens on `host` (numeric), an ephemeral port.
  Status listen(const std::string& host);
  uint16_t port() const { return port_; }

  // A ticket for `length` bytes at `data`, which `pin` keeps alive until they
  // are written or the ticket expires; nullopt when too many are outstanding.
  std::optional<std::string> issue(std::shared_ptr<const void> pin, const char* data, uint64_t length);

  struct Stats {
    uint64_t tickets_issued = 0;
    uint64_t streams_served = 0;
    uint64_t bytes_served = 0;
    uint64_t refused = 0;  // bad, expired or reused ticket; too many connections
  };
  const Stats& stats() const { return stats_; }

 private:
  struct Ticket {
    std::shared_ptr<const void> pin;
    const char* data = nullptr;
    uint64_t length = 0;
    kj::TimePoint expires;
  };

  kj::Promise<void> accept_loop();
  kj::Promise<void> serve(kj::Own<kj::AsyncIoStream> stream);
  void drop_expired();

  loop::Loop& loop_;
  kj::Timer& timer_;
  const uint64_t ticket_ttl_ms_;
  kj::Own<loop::TcpListener> listener_;
  uint16_t port_ = 0;
  std::map<std::string, Ticket> tickets_;
  size_t connections_ = 0;
  Stats stats_;
  kj::Own<kj::TaskSet> tasks_;
  class ErrorHandler;
  kj::Own<ErrorHandler> error_handler_;
};

// Connects to host:port (the holder's RPC host and BulkServer port), sends
// `ticket` and reads `length` bytes into `into`, adding to `*received` as
// they arrive (so a caller whose stream broke knows where to go on from).
kj::Promise<void> bulk_read(loop::Loop& loop, const std::string& host, uint16_t port, std::string ticket,
                            char* into, uint64_t length, std::shared_ptr<uint64_t> received);

// "host:port" or "[v6]:port" -> host (without brackets); empty if malformed.
std::string host_of(const std::string& address);

}  // namespace shoal::detail
