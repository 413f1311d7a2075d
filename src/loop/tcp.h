// TCP over libuv (uv_tcp_t) as kj::AsyncIoStream / kj::ConnectionReceiver,
// so Cap'n Proto RPC and kj-http run on a shoal::loop::Loop.
//
// Threads: everything here is loop-thread only. Streams and listeners must be
// destroyed before their Loop.
//
// Streams:
//   - Nagle is off (uv_tcp_nodelay).
//   - Reads: the socket is read continuously into a per-stream buffer of up
//     to kReadBufferedBytesMax bytes (then reading pauses until the consumer
//     catches up); tryRead() copies from it, or lets libuv read straight into
//     the caller's buffer when that is large. No byte is ever lost: a
//     cancelled read leaves undelivered bytes for the next read.
//   - Writes are corked: bytes written during a loop turn are copied into a
//     per-stream buffer and handed to libuv in one uv_write just before libuv
//     polls, or as soon as kCorkFlushBytes are waiting; and once per turn
//     when kCorkEarlyFlushBytes wait while nothing written before is still
//     in flight. A write's promise
//     resolves as soon as its bytes are buffered, while the stream holds at
//     most kWriteBufferedBytesMax bytes not yet acknowledged by libuv; beyond
//     that the writer waits. A later failure of those bytes surfaces in the
//     next write() and in whenWriteDisconnected().
//   - A write of kDirectWriteBytes or more is not copied: what is corked goes
//     first, then libuv writes straight from the caller's pieces, and the
//     promise resolves once all of it is written. Dropping that promise
//     before then closes the connection (libuv may still hold the pieces).
//   - Errors are kj::Exceptions of type DISCONNECTED (connection refused,
//     reset, broken pipe); EOF makes tryRead() return fewer than minBytes.
//   - Destroying a stream is always safe: its pending promises are rejected,
//     buffered writes are still sent (for up to kCloseLingerMs), and the uv
//     handle is closed asynchronously.
#pragma once

#include <kj/async-io.h>

#include <cstddef>
#include <cstdint>
#include <string>

#include "loop/loop.h"
#include "shoal/status.h"

namespace shoal::loop {

inline constexpr size_t kReadChunkBytes = 64 * 1024;
inline constexpr size_t kReadBufferedBytesMax = 1024 * 1024;
inline constexpr size_t kWriteBufferedBytesMax = 4 * 1024 * 1024;
inline constexpr size_t kCorkFlushBytes = 256 * 1024;
// A turn that answers a batch of small messages (64 pipelined RPC calls)
// sends the first answers while it works on the rest, so that both ends
// work at once instead of in turn: with the whole batch in one write, the
// RPC bench's two processes used 0.93 CPUs between them and made 92k
// calls/s; with one early write per turn once 4 KiB wait, 178-184k/s (2 KiB
// and early writes all through the turn: 192-202k/s, but the metadata
// store's 32-client writes fell from ~15.5k/s to 13.6k/s: a Raft batch cut
// in pieces costs the follower more rounds, each ending in an fsync; one
// early write per turn: 13.7-14.9k/s). Only while no earlier write is in
// flight: a peer that is behind has work already.
inline constexpr size_t kCorkEarlyFlushBytes = 4 * 1024;
inline constexpr size_t kDirectWriteBytes = 256 * 1024;
inline constexpr int kListenBacklog = 511;
inline constexpr uint64_t kCloseLingerMs = 10'000;

// `host` is a numeric IPv4 or IPv6 address (optionally in [brackets]) or
// "localhost" (= 127.0.0.1). Rejects with a DISCONNECTED kj::Exception naming
// the address when the connection fails (e.g. refused), FAILED for a bad host.
kj::Promise<kj::Own<kj::AsyncIoStream>> connect_tcp(Loop& loop, const std::string& host,
                                                     uint16_t port);

namespace detail {
class TcpServer;
}

class TcpListener final : public kj::ConnectionReceiver {
  struct Passkey {};

 public:
  // Port 0 picks an ephemeral port (see getPort()). unavailable when the
  // address is in use, invalid_argument for a bad host.
  static Result<kj::Own<TcpListener>> listen(Loop& loop, const std::string& host, uint16_t port);

  TcpListener(Passkey, Loop& loop, detail::TcpServer* server);
  ~TcpListener() noexcept(false);

  // One accept() at a time. Connections wait in the kernel backlog while
  // nobody is accepting.
  kj::Promise<kj::Own<kj::AsyncIoStream>> accept() override;
  uint getPort() override;
  void getsockopt(int level, int option, void* value, uint* length) override;
  void setsockopt(int level, int option, const void* value, uint length) override;
  void getsockname(struct sockaddr* addr, uint* length) override;

  // From the server's libuv callback.
  void on_connection();

 private:
  kj::Own<kj::AsyncIoStream> take_connection();

  Loop& loop_;
  detail::TcpServer* server_;  // owned by libuv until its close callback
  bool connection_waiting_ = false;
  kj::Own<kj::PromiseFulfiller<kj::Own<kj::AsyncIoStream>>> accept_fulfiller_;
};

}  // namespace shoal::loop
