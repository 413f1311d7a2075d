// Named limits of the RPC layer. Every connection and call is bounded by one
// of these; overload gets a clear error, never an unbounded queue.
#pragma once

#include <capnp/message.h>

#include <cstddef>
#include <cstdint>

namespace shoal::rpc {

// Largest Cap'n Proto message a peer may send us. A bigger one closes the
// connection (capnp's reader refuses it before allocating).
inline constexpr uint64_t kMessageBytesMax = 64ull << 20;  // 64 MiB
// Deepest struct/list nesting accepted in a received message.
inline constexpr int kMessageNestingMax = 64;

// Bytes an unauthenticated peer may send in all (the handshake needs < 1 KiB);
// more closes the connection, so 256 unauthenticated peers cannot make the
// server buffer 256 x kMessageBytesMax.
inline constexpr uint64_t kPreAuthBytesMax = 64 * 1024;

// An unauthenticated connection is closed after this long.
inline constexpr uint64_t kAuthTimeoutMs = 10'000;
// Connections that have not authenticated yet, all peers together; more are
// closed on accept.
inline constexpr size_t kUnauthenticatedConnectionsMax = 256;
// All open connections a server keeps, authenticated or not.
inline constexpr size_t kConnectionsMax = 4096;
// After an error reply to a failed authentication the server shuts down its
// write side and waits at most this long for the client to close before
// dropping the socket (so the reply is not lost to a TCP reset).
inline constexpr uint64_t kCloseLingerMs = 1'000;
// After an accept() error (e.g. out of file descriptors) wait this long.
inline constexpr uint64_t kAcceptRetryMs = 100;

// Authentication wire sizes.
inline constexpr size_t kNonceBytes = 32;
inline constexpr size_t kProofBytes = 32;
inline constexpr size_t kClientNameBytesMax = 256;

// Peer pool defaults.
inline constexpr size_t kInflightCallsMaxPerPeer = 1024;
inline constexpr uint64_t kCallTimeoutMs = 10'000;
inline constexpr uint64_t kConnectTimeoutMs = 10'000;
inline constexpr uint64_t kBackoffMinMs = 50;
inline constexpr uint64_t kBackoffMaxMs = 5'000;
inline constexpr size_t kPeersMax = 4096;

// ReaderOptions for every connection: bounds message size and nesting.
inline capnp::ReaderOptions reader_options(uint64_t message_bytes_max) {
  capnp::ReaderOptions options;
  options.traversalLimitInWords = message_bytes_max / sizeof(capnp::word);
  options.nestingLimit = kMessageNestingMax;
  return options;
}

}  // namespace shoal::rpc
