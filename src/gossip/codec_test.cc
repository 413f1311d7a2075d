#include "gossip/codec.h"

#include <capnp/message.h>
#include <capnp/serialize.h>
#include <doctest/doctest.h>

#include <cmath>
#include <limits>

#include "base/clock.h"
#include "base/crypto.h"
#include "gossip.capnp.h"

using namespace shoal;
using namespace shoal::gossip;

namespace {

const std::string kKey = "0123456789abcdef0123456789abcdef";
const std::string kId = "0123456789abcdef0123456789abcdef";
const std::string kId2 = "fedcba9876543210fedcba9876543210";

MemberInfo sample_info() {
  MemberInfo info;
  info.id = kId2;
  info.address = "127.0.0.1:7400";
  info.total.cpus = 16;
  info.total.memory_bytes = 64ull << 30;
  info.total.gpus = 2;
  info.total.custom["tpu"] = 4;
  info.labels["zone"] = "eu-1";
  info.labels["rack"] = "r7";
  return info;
}

std::vector<Message> every_message() {
  LoadUpdate load{kId2, 5, 9, {3.5, 1 << 20, 1, {{"tpu", 2}}}, 7};
  PushPull pp{true, true, {{sample_info(), MemberState::kSuspect, 3}, {sample_info(), MemberState::kLeft, 4}}};
  pp.states[1].info.id = kId;
  return {Ping{1, kId2}, Ping{2, ""}, Ack{3}, PingReq{4, kId2, "[::1]:7400"}, Alive{sample_info(), 11},
          Suspect{kId2, 12, kId}, Dead{kId2, 13, kId}, Left{kId2, 14}, load, pp, Nack{5}};
}

Packet packet_of(std::vector<Message> messages, uint64_t seq = 1) {
  return Packet{{kId, 42, seq, 1'700'000'000'000}, std::move(messages)};
}

std::string encode_ok(const Packet& p) {
  auto r = encode_packet(p, as_bytes(kKey));
  REQUIRE_MESSAGE(r.ok(), r.status().to_string());
  return *r;
}

// Re-MACs a capnp body built by hand, so validation (not the MAC) is what rejects it.
std::string with_mac(capnp::MallocMessageBuilder& builder) {
  auto words = capnp::messageToFlatArray(builder);
  auto bytes = words.asBytes();
  std::string out(reinterpret_cast<const char*>(bytes.begin()), bytes.size());
  Mac mac = hmac_sha256(as_bytes(kKey), as_bytes(out));
  out.append(reinterpret_cast<const char*>(mac.data()), mac.size());
  return out;
}

}  // namespace

TEST_CASE("every message type round trips") {
  for (const Message& m : every_message()) {
    CAPTURE(message_name(m));
    std::string bytes = encode_ok(packet_of({m}));
    auto decoded = decode_packet(as_bytes(bytes), as_bytes(kKey));
    REQUIRE_MESSAGE(decoded.ok(), decoded.status().to_string());
    CHECK(decoded->header.sender_id == kId);
    CHECK(decoded->header.session_id == 42);
    CHECK(decoded->header.seq == 1);
    CHECK(decoded->header.timestamp_ms == 1'700'000'000'000);
    REQUIRE(decoded->messages.size() == 1);
    CHECK(decoded->messages[0].index() == m.index());
    // Deterministic encoding: re-encoding the decoded packet gives the same bytes.
    CHECK(encode_ok(*decoded) == bytes);
  }
  // Field-level spot checks.
  std::vector<Message> all = every_message();
  std::vector<Message> first(all.begin(), all.begin() + 8);
  auto decoded = decode_packet(as_bytes(encode_ok(packet_of(first))), as_bytes(kKey));
  REQUIRE(decoded.ok());
  REQUIRE(decoded->messages.size() == 8);
  auto rest = decode_packet(as_bytes(encode_ok(packet_of({all[8], all[9]}))), as_bytes(kKey));
  REQUIRE(rest.ok());
  decoded->messages.push_back(rest->messages[0]);
  decoded->messages.push_back(rest->messages[1]);
  const auto& alive = std::get<Alive>(decoded->messages[4]);
  CHECK(alive.info == sample_info());
  CHECK(alive.incarnation == 11);
  const auto& load = std::get<LoadUpdate>(decoded->messages[8]);
  CHECK(load.available.cpus == 3.5);
  CHECK(load.available.custom.at("tpu") == 2);
  CHECK(load.running_tasks == 7);
  CHECK(load.version == 9);
  auto nack = decode_packet(as_bytes(encode_ok(packet_of({all[10]}))), as_bytes(kKey));
  REQUIRE(nack.ok());
  CHECK(std::get<Nack>(nack->messages[0]).seq == 5);
  const auto& pp = std::get<PushPull>(decoded->messages[9]);
  CHECK(pp.join);
  CHECK(pp.want_reply);
  REQUIRE(pp.states.size() == 2);
  CHECK(pp.states[0].state == MemberState::kSuspect);
  CHECK(pp.states[1].state == MemberState::kLeft);
  CHECK(pp.states[1].incarnation == 4);
  CHECK(std::get<PingReq>(decoded->messages[3]).target_address == "[::1]:7400");
}

TEST_CASE("message_size_bound is an upper bound of the real encoding") {
  for (const Message& m : every_message()) {
    CAPTURE(message_name(m));
    std::string bytes = encode_ok(packet_of({m}));
    CHECK(bytes.size() <= kPacketOverheadBytes + message_size_bound(m));
  }
  // The largest member info the validator allows still fits one packet.
  MemberInfo big = sample_info();
  big.labels.clear();
  for (int i = 0; validate_member_info(big).ok(); ++i) {
    big.labels["label-" + std::to_string(i)] = std::string(40, 'v');
  }
  big.labels.erase(std::prev(big.labels.end()));
  REQUIRE(validate_member_info(big).ok());
  std::string bytes = encode_ok(packet_of({Alive{big, 1}}));
  CHECK(bytes.size() <= kPacketOverheadBytes + message_size_bound(Alive{big, 1}));
  CHECK(bytes.size() <= kPacketBytesMax);
  // A full packet of pushes, packed by the bound, fits.
  std::vector<Message> many;
  size_t total = 0;
  while (true) {
    Message m = Suspect{kId2, many.size(), kId};
    if (total + message_size_bound(m) > kPacketBytesMax - kPacketOverheadBytes) break;
    total += message_size_bound(m);
    many.push_back(m);
  }
  CHECK(encode_ok(packet_of(many)).size() <= kPacketBytesMax);
}

TEST_CASE("a wrong key is rejected as unauthenticated") {
  std::string bytes = encode_ok(packet_of({Ping{1, kId2}}));
  auto r = decode_packet(as_bytes(bytes), as_bytes("another key"));
  REQUIRE(!r.ok());
  CHECK(r.status().code() == Status::Code::kUnauthenticated);
}

TEST_CASE("truncated, garbage, oversized and bit-flipped packets are rejected") {
  std::vector<Message> all = every_message();
  std::string bytes = encode_ok(packet_of({all[0], all[3], all[4], all[8]}));
  for (size_t n = 0; n < bytes.size(); ++n) {
    auto r = decode_packet(as_bytes(std::string_view(bytes).substr(0, n)), as_bytes(kKey));
    CHECK(!r.ok());
  }
  SeededRng rng(5);
  for (int i = 0; i < 200; ++i) {
    std::string garbage(rng.uniform(kPacketBytesMax), '\0');
    for (char& c : garbage) c = static_cast<char>(rng.next_u64());
    CHECK(!decode_packet(as_bytes(garbage), as_bytes(kKey)).ok());
    // Without the MAC check the parser sees garbage: errors, never crashes.
    (void)decode_packet(as_bytes(garbage), as_bytes(kKey), DecodeOptions{false});
  }
  std::string oversized(kPacketBytesMax + 1, 'x');
  auto big = decode_packet(as_bytes(oversized), as_bytes(kKey));
  REQUIRE(!big.ok());
  CHECK(big.status().message().find("exceeds") != std::string::npos);
  for (size_t bit = 0; bit < bytes.size() * 8; bit += 7) {
    std::string flipped = bytes;
    flipped[bit / 8] = static_cast<char>(flipped[bit / 8] ^ (1 << (bit % 8)));
    auto r = decode_packet(as_bytes(flipped), as_bytes(kKey));
    CHECK(!r.ok());
    (void)decode_packet(as_bytes(flipped), as_bytes(kKey), DecodeOptions{false});
  }
}

TEST_CASE("authenticated but invalid fields are rejected with a reason") {
  auto build = [](auto&& fill) {
    capnp::MallocMessageBuilder builder;
    auto root = builder.initRoot<wire::Packet>();
    root.setSenderId(kId);
    fill(root);
    return with_mac(builder);
  };
  auto reason = [](const std::string& bytes) {
    auto r = decode_packet(as_bytes(bytes), as_bytes(kKey));
    return r.ok() ? std::string("accepted") : r.status().message();
  };
  CHECK(reason(build([](wire::Packet::Builder p) { p.initMessages(1).begin()->initAck(); })) == "accepted");
  CHECK(reason(build([](wire::Packet::Builder p) { p.setSenderId("nothex"); p.initMessages(1)[0].initAck(); }))
            .find("sender id") != std::string::npos);
  CHECK(reason(build([](wire::Packet::Builder p) { p.initMessages(0); })).find("messages") != std::string::npos);
  CHECK(reason(build([](wire::Packet::Builder p) { p.initMessages(kMessagesPerPacketMax + 1); }))
            .find("messages") != std::string::npos);
  CHECK(reason(build([](wire::Packet::Builder p) {
          p.initMessages(1)[0].initSuspect().setId("ABCDEF0123456789ABCDEF0123456789");
        })).find("suspect id") != std::string::npos);
  CHECK(reason(build([](wire::Packet::Builder p) {
          auto a = p.initMessages(1)[0].initAlive().initInfo();
          a.setId(kId2);
          a.setAddress("no-port");
        })).find("host:port") != std::string::npos);
  CHECK(reason(build([](wire::Packet::Builder p) {
          auto a = p.initMessages(1)[0].initAlive().initInfo();
          a.setId(kId2);
          a.setAddress("h:1");
          a.initTotal().setCpus(-1);
        })).find("non-negative") != std::string::npos);
  CHECK(reason(build([](wire::Packet::Builder p) {
          auto l = p.initMessages(1)[0].initLoad();
          l.setId(kId2);
          l.initAvailable().setGpus(std::numeric_limits<double>::quiet_NaN());
        })).find("finite") != std::string::npos);
  CHECK(reason(build([](wire::Packet::Builder p) {
          auto a = p.initMessages(1)[0].initAlive().initInfo();
          a.setId(kId2);
          a.setAddress("h:1");
          auto labels = a.initLabels(2);
          labels[0].setKey("k");
          labels[1].setKey("k");
        })).find("duplicate") != std::string::npos);
  CHECK(reason(build([](wire::Packet::Builder p) {
          p.initMessages(1)[0].initPushPull().initStates(kStatesPerMessageMax + 1);
        })).find("states") != std::string::npos);
}

TEST_CASE("replay guard drops repeats, stale timestamps, and tracks a bounded set") {
  ReplayGuard guard(30'000, 4);
  const uint64_t now = 1'700'000'000'000;
  PacketHeader h{kId, 1, 10, now};
  CHECK(guard.check(h, now).ok());
  auto again = guard.check(h, now);
  REQUIRE(!again.ok());
  CHECK(again.message().find("replayed") != std::string::npos);
  h.seq = 12;
  CHECK(guard.check(h, now).ok());
  h.seq = 11;  // out of order, inside the window
  CHECK(guard.check(h, now).ok());
  CHECK(!guard.check(h, now).ok());
  h.seq = 200;
  CHECK(guard.check(h, now).ok());
  h.seq = 100;  // older than the seq window
  CHECK(guard.check(h, now).message().find("too old") != std::string::npos);
  PacketHeader old{kId, 1, 201, now - 30'001};
  CHECK(guard.check(old, now).message().find("timestamp") != std::string::npos);
  PacketHeader future{kId, 1, 202, now + 30'001};
  CHECK(!guard.check(future, now).ok());
  PacketHeader restarted{kId, 2, 1, now};  // new session starts its own window
  CHECK(guard.check(restarted, now).ok());
  for (uint64_t s = 10; s < 20; ++s) CHECK(guard.check(PacketHeader{kId2, s, 1, now}, now + s).ok());
  CHECK(guard.tracked() == 4);
}

TEST_CASE("encode refuses invalid or oversized packets") {
  CHECK(!encode_packet(packet_of({}), as_bytes(kKey)).ok());
  CHECK(!encode_packet(packet_of({Suspect{"bad", 1, kId}}), as_bytes(kKey)).ok());
  PushPull pp;
  for (size_t i = 0; i < kStatesPerMessageMax; ++i) pp.states.push_back({sample_info(), MemberState::kAlive, i});
  auto r = encode_packet(packet_of({pp}), as_bytes(kKey));
  REQUIRE(!r.ok());
  CHECK(r.status().code() == Status::Code::kResourceExhausted);
}
