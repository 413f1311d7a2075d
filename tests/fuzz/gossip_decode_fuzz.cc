// libFuzzer target for the gossip packet decoder (and the core behind it).
//
// Two paths per input: (1) the raw bytes with the MAC check disabled, so the
// capnp parser and field validation see arbitrary input; (2) the bytes with
// a valid MAC appended, so the authenticated path runs end to end. Whatever
// decodes is fed to a ReplayGuard and a Core: neither may crash or assert.
#include <cstddef>
#include <cstdint>
#include <span>
#include <string>

#include "base/clock.h"
#include "base/crypto.h"
#include "gossip/codec.h"
#include "gossip/core.h"

namespace {

const std::string kKey = "fuzz cluster key";

shoal::gossip::Core& fuzz_core() {
  static shoal::SeededRng rng(1);
  static shoal::gossip::Core core(shoal::gossip::Config{},
                                  shoal::gossip::MemberInfo{std::string(32, 'f'), "127.0.0.1:7946", {}, {}}, 1,
                                  rng);
  return core;
}

void exercise(const shoal::Result<shoal::gossip::Packet>& packet) {
  static shoal::gossip::ReplayGuard guard;
  static uint64_t now_ms = 0;
  if (!packet.ok()) return;
  (void)guard.check(packet->header, packet->header.timestamp_ms);
  shoal::gossip::Core& core = fuzz_core();
  for (const auto& m : packet->messages) {
    core.receive("127.0.0.1:9999", packet->header.sender_id, m, now_ms);
  }
  now_ms += 37;
  core.tick(now_ms);
  (void)core.take_outgoing();
  (void)core.take_events();
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::span<const uint8_t> input(data, size);
  auto key = shoal::as_bytes(kKey);
  exercise(shoal::gossip::decode_packet(input, key, shoal::gossip::DecodeOptions{false}));

  std::string signed_bytes(reinterpret_cast<const char*>(data), size);
  shoal::Mac mac = shoal::hmac_sha256(key, input);
  signed_bytes.append(reinterpret_cast<const char*>(mac.data()), mac.size());
  exercise(shoal::gossip::decode_packet(shoal::as_bytes(signed_bytes), key));
  return 0;
}
