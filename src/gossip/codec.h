// Gossip packet codec: Cap'n Proto (schemas/gossip.capnp) + HMAC-SHA256.
//
// Wire format of one UDP datagram: a single-segment capnp message holding a
// Packet, followed by a 32-byte HMAC-SHA256 over those bytes keyed with the
// cluster key. decode_packet checks the MAC first (constant time), then
// parses with tight limits, then validates every field; any failure is a
// Status naming what was wrong. Pure functions; any thread.
#pragma once

#include <cstdint>
#include <map>
#include <span>
#include <string>
#include <vector>

#include "gossip/core.h"
#include "shoal/status.h"

namespace shoal::gossip {

inline constexpr size_t kMacBytes = 32;
inline constexpr uint64_t kReplayWindowMs = 30'000;   // accepted clock skew, each way
inline constexpr size_t kReplaySendersMax = 4'096;     // (sender, session) pairs tracked
inline constexpr uint64_t kReplaySeqWindow = 64;       // out-of-order packets accepted

struct PacketHeader {
  std::string sender_id;
  uint64_t session_id = 0;
  uint64_t seq = 0;
  uint64_t timestamp_ms = 0;  // sender's wall clock
};

struct Packet {
  PacketHeader header;
  std::vector<Message> messages;
};

struct DecodeOptions {
  bool verify_mac = true;  // false only for fuzzing the parser
};

// Fails when the packet is invalid or encodes larger than kPacketBytesMax.
Result<std::string> encode_packet(const Packet& packet, std::span<const uint8_t> key);
Result<Packet> decode_packet(std::span<const uint8_t> bytes, std::span<const uint8_t> key,
                             DecodeOptions options = {});

// Drops packets outside a timestamp window around the receiver's wall clock
// and packets whose (sender, session, seq) was already accepted. Call only
// for packets whose MAC verified. Bounded: the least recently seen
// (sender, session) is evicted beyond `senders_max`.
class ReplayGuard {
 public:
  explicit ReplayGuard(uint64_t window_ms = kReplayWindowMs, size_t senders_max = kReplaySendersMax);
  Status check(const PacketHeader& header, uint64_t wall_now_ms);
  size_t tracked() const { return senders_.size(); }

 private:
  struct Window {
    uint64_t highest_seq = 0;
    uint64_t seen_bits = 0;  // bit i: highest_seq - i accepted
    uint64_t last_seen_ms = 0;
  };
  uint64_t window_ms_;
  size_t senders_max_;
  std::map<std::pair<std::string, uint64_t>, Window> senders_;
};

}  // namespace shoal::gossip
