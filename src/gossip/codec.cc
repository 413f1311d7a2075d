#include "gossip/codec.h"

#include <capnp/message.h>
#include <capnp/serialize.h>
#include <kj/exception.h>

#include <cstring>

#include "base/crypto.h"
#include "gossip.capnp.h"

namespace shoal::gossip {

namespace {

namespace wire = ::shoal::gossip::wire;

constexpr uint64_t kTraversalLimitWords = 1024;  // a 1400-byte packet is 175 words
constexpr int kNestingLimit = 16;
constexpr uint kFirstSegmentWords = 1024;

// ---- Encoding ----------------------------------------------------------------

void fill_resources(wire::Resources::Builder b, const Resources& r) {
  b.setCpus(r.cpus);
  b.setMemoryBytes(r.memory_bytes);
  b.setGpus(r.gpus);
  auto custom = b.initCustom(static_cast<uint>(r.custom.size()));
  uint i = 0;
  for (const auto& [name, amount] : r.custom) {
    custom[i].setName(name);
    custom[i].setAmount(amount);
    ++i;
  }
}

void fill_info(wire::MemberInfo::Builder b, const MemberInfo& info) {
  b.setId(info.id);
  b.setAddress(info.address);
  fill_resources(b.initTotal(), info.total);
  auto labels = b.initLabels(static_cast<uint>(info.labels.size()));
  uint i = 0;
  for (const auto& [key, value] : info.labels) {
    labels[i].setKey(key);
    labels[i].setValue(value);
    ++i;
  }
}

wire::MemberState to_wire(MemberState s) {
  switch (s) {
    case MemberState::kAlive: return wire::MemberState::ALIVE;
    case MemberState::kSuspect: return wire::MemberState::SUSPECT;
    case MemberState::kDead: return wire::MemberState::DEAD;
    case MemberState::kLeft: return wire::MemberState::LEFT;
  }
  return wire::MemberState::ALIVE;
}

void fill_message(wire::Message::Builder b, const Message& message) {
  struct Visitor {
    wire::Message::Builder b;
    void operator()(const Ping& m) {
      auto p = b.initPing();
      p.setSeq(m.seq);
      p.setTargetId(m.target_id);
    }
    void operator()(const Ack& m) { b.initAck().setSeq(m.seq); }
    void operator()(const Nack& m) { b.initNack().setSeq(m.seq); }
    void operator()(const PingReq& m) {
      auto p = b.initPingReq();
      p.setSeq(m.seq);
      p.setTargetId(m.target_id);
      p.setTargetAddress(m.target_address);
    }
    void operator()(const Alive& m) {
      auto p = b.initAlive();
      fill_info(p.initInfo(), m.info);
      p.setIncarnation(m.incarnation);
    }
    void operator()(const Suspect& m) {
      auto p = b.initSuspect();
      p.setId(m.id);
      p.setIncarnation(m.incarnation);
      p.setFromId(m.from_id);
    }
    void operator()(const Dead& m) {
      auto p = b.initDead();
      p.setId(m.id);
      p.setIncarnation(m.incarnation);
      p.setFromId(m.from_id);
    }
    void operator()(const Left& m) {
      auto p = b.initLeft();
      p.setId(m.id);
      p.setIncarnation(m.incarnation);
    }
    void operator()(const LoadUpdate& m) {
      auto p = b.initLoad();
      p.setId(m.id);
      p.setIncarnation(m.incarnation);
      p.setVersion(m.version);
      fill_resources(p.initAvailable(), m.available);
      p.setRunningTasks(m.running_tasks);
    }
    void operator()(const PushPull& m) {
      auto p = b.initPushPull();
      p.setJoin(m.join);
      p.setWantReply(m.want_reply);
      auto states = p.initStates(static_cast<uint>(m.states.size()));
      for (uint i = 0; i < m.states.size(); ++i) {
        fill_info(states[i].initInfo(), m.states[i].info);
        states[i].setState(to_wire(m.states[i].state));
        states[i].setIncarnation(m.states[i].incarnation);
      }
    }
  };
  std::visit(Visitor{b}, message);
}

// ---- Decoding ----------------------------------------------------------------

Result<std::string> read_text(capnp::Text::Reader t, size_t max_chars, const char* what) {
  if (t.size() > max_chars) {
    return Status::invalid_argument(std::string(what) + " longer than " + std::to_string(max_chars));
  }
  return std::string(t.cStr(), t.size());
}

#define SHOAL_ASSIGN_TEXT(dst, reader, max, what)      \
  do {                                                 \
    auto text_result_ = read_text((reader), (max), (what)); \
    if (!text_result_.ok()) return text_result_.status(); \
    (dst) = std::move(*text_result_);                  \
  } while (0)

Status read_resources(wire::Resources::Reader r, Resources& out, const char* what) {
  out.cpus = r.getCpus();
  out.memory_bytes = r.getMemoryBytes();
  out.gpus = r.getGpus();
  auto custom = r.getCustom();
  if (custom.size() > kCustomResourcesMax) {
    return Status::invalid_argument(std::string(what) + ": too many custom resources (" +
                                    std::to_string(custom.size()) + ")");
  }
  for (auto q : custom) {
    std::string name;
    SHOAL_ASSIGN_TEXT(name, q.getName(), kResourceNameCharsMax, "resource name");
    if (!out.custom.emplace(name, q.getAmount()).second) {
      return Status::invalid_argument(std::string(what) + ": duplicate resource '" + name + "'");
    }
  }
  return validate_resources(out, what);
}

Status read_info(wire::MemberInfo::Reader r, MemberInfo& out) {
  SHOAL_ASSIGN_TEXT(out.id, r.getId(), kMemberIdChars, "member id");
  SHOAL_ASSIGN_TEXT(out.address, r.getAddress(), kAddressCharsMax, "member address");
  SHOAL_RETURN_IF_ERROR(read_resources(r.getTotal(), out.total, "total resources"));
  auto labels = r.getLabels();
  if (labels.size() > kLabelsMax) {
    return Status::invalid_argument("too many labels (" + std::to_string(labels.size()) + ")");
  }
  for (auto l : labels) {
    std::string key, value;
    SHOAL_ASSIGN_TEXT(key, l.getKey(), kLabelKeyCharsMax, "label key");
    SHOAL_ASSIGN_TEXT(value, l.getValue(), kLabelValueCharsMax, "label value");
    if (!out.labels.emplace(key, std::move(value)).second) {
      return Status::invalid_argument("duplicate label '" + key + "'");
    }
  }
  return validate_member_info(out);
}

Result<MemberState> from_wire(wire::MemberState s) {
  switch (s) {
    case wire::MemberState::ALIVE: return MemberState::kAlive;
    case wire::MemberState::SUSPECT: return MemberState::kSuspect;
    case wire::MemberState::DEAD: return MemberState::kDead;
    case wire::MemberState::LEFT: return MemberState::kLeft;
  }
  return Status::invalid_argument("unknown member state " + std::to_string(static_cast<int>(s)));
}

Result<Message> read_message(wire::Message::Reader r) {
  switch (r.which()) {
    case wire::Message::PING: {
      Ping m;
      m.seq = r.getPing().getSeq();
      SHOAL_ASSIGN_TEXT(m.target_id, r.getPing().getTargetId(), kMemberIdChars, "ping target");
      return Message(std::move(m));
    }
    case wire::Message::ACK:
      return Message(Ack{r.getAck().getSeq()});
    case wire::Message::NACK:
      return Message(Nack{r.getNack().getSeq()});
    case wire::Message::PING_REQ: {
      PingReq m;
      auto p = r.getPingReq();
      m.seq = p.getSeq();
      SHOAL_ASSIGN_TEXT(m.target_id, p.getTargetId(), kMemberIdChars, "ping-req target");
      SHOAL_ASSIGN_TEXT(m.target_address, p.getTargetAddress(), kAddressCharsMax, "ping-req address");
      return Message(std::move(m));
    }
    case wire::Message::ALIVE: {
      Alive m;
      SHOAL_RETURN_IF_ERROR(read_info(r.getAlive().getInfo(), m.info));
      m.incarnation = r.getAlive().getIncarnation();
      return Message(std::move(m));
    }
    case wire::Message::SUSPECT: {
      Suspect m;
      auto p = r.getSuspect();
      SHOAL_ASSIGN_TEXT(m.id, p.getId(), kMemberIdChars, "suspect id");
      SHOAL_ASSIGN_TEXT(m.from_id, p.getFromId(), kMemberIdChars, "suspect from");
      m.incarnation = p.getIncarnation();
      return Message(std::move(m));
    }
    case wire::Message::DEAD: {
      Dead m;
      auto p = r.getDead();
      SHOAL_ASSIGN_TEXT(m.id, p.getId(), kMemberIdChars, "dead id");
      SHOAL_ASSIGN_TEXT(m.from_id, p.getFromId(), kMemberIdChars, "dead from");
      m.incarnation = p.getIncarnation();
      return Message(std::move(m));
    }
    case wire::Message::LEFT: {
      Left m;
      SHOAL_ASSIGN_TEXT(m.id, r.getLeft().getId(), kMemberIdChars, "left id");
      m.incarnation = r.getLeft().getIncarnation();
      return Message(std::move(m));
    }
    case wire::Message::LOAD: {
      LoadUpdate m;
      auto p = r.getLoad();
      SHOAL_ASSIGN_TEXT(m.id, p.getId(), kMemberIdChars, "load id");
      m.incarnation = p.getIncarnation();
      m.version = p.getVersion();
      SHOAL_RETURN_IF_ERROR(read_resources(p.getAvailable(), m.available, "available resources"));
      m.running_tasks = p.getRunningTasks();
      return Message(std::move(m));
    }
    case wire::Message::PUSH_PULL: {
      PushPull m;
      auto p = r.getPushPull();
      m.join = p.getJoin();
      m.want_reply = p.getWantReply();
      auto states = p.getStates();
      if (states.size() > kStatesPerMessageMax) {
        return Status::invalid_argument("push-pull carries " + std::to_string(states.size()) + " states (max " +
                                        std::to_string(kStatesPerMessageMax) + ")");
      }
      for (auto s : states) {
        StateEntry e;
        SHOAL_RETURN_IF_ERROR(read_info(s.getInfo(), e.info));
        auto state = from_wire(s.getState());
        if (!state.ok()) return state.status();
        e.state = *state;
        e.incarnation = s.getIncarnation();
        m.states.push_back(std::move(e));
      }
      return Message(std::move(m));
    }
  }
  return Status::invalid_argument("unknown message type " + std::to_string(static_cast<int>(r.which())));
}

Result<Packet> parse_body(std::span<const uint8_t> body) {
  if (body.size() % sizeof(capnp::word) != 0) {
    return Status::invalid_argument("packet body of " + std::to_string(body.size()) +
                                    " bytes is not whole capnp words");
  }
  // Copy into word-aligned storage: capnp reads words in place.
  kj::Array<capnp::word> words = kj::heapArray<capnp::word>(body.size() / sizeof(capnp::word));
  std::memcpy(words.begin(), body.data(), body.size());
  capnp::ReaderOptions options;
  options.traversalLimitInWords = kTraversalLimitWords;
  options.nestingLimit = kNestingLimit;
  Packet packet;
  Status status;
  KJ_IF_MAYBE(exception, kj::runCatchingExceptions([&]() {
    capnp::FlatArrayMessageReader reader(words.asPtr(), options);
    if (reader.getEnd() != words.end()) {
      status = Status::invalid_argument("trailing bytes after the capnp message");
      return;
    }
    auto root = reader.getRoot<wire::Packet>();
    auto sender = read_text(root.getSenderId(), kMemberIdChars, "sender id");
    if (!sender.ok()) {
      status = sender.status();
      return;
    }
    packet.header.sender_id = *sender;
    if (!is_valid_member_id(packet.header.sender_id)) {
      status = Status::invalid_argument("sender id is not a 32-char lowercase hex id");
      return;
    }
    packet.header.session_id = root.getSessionId();
    packet.header.seq = root.getSeq();
    packet.header.timestamp_ms = root.getTimestampMs();
    auto messages = root.getMessages();
    if (messages.size() == 0 || messages.size() > kMessagesPerPacketMax) {
      status = Status::invalid_argument("packet carries " + std::to_string(messages.size()) +
                                        " messages (allowed 1.." + std::to_string(kMessagesPerPacketMax) + ")");
      return;
    }
    for (auto m : messages) {
      auto message = read_message(m);
      if (!message.ok()) {
        status = message.status();
        return;
      }
      Status valid = validate_message(*message);
      if (!valid.ok()) {
        status = Status::invalid_argument(std::string(message_name(*message)) + ": " + valid.message());
        return;
      }
      packet.messages.push_back(std::move(*message));
    }
  })) {
    return Status::invalid_argument(std::string("malformed capnp: ") + exception->getDescription().cStr());
  }
  if (!status.ok()) return status;
  return packet;
}

}  // namespace

Result<std::string> encode_packet(const Packet& packet, std::span<const uint8_t> key) {
  if (!is_valid_member_id(packet.header.sender_id)) {
    return Status::invalid_argument("sender id is not a 32-char lowercase hex id");
  }
  if (packet.messages.empty() || packet.messages.size() > kMessagesPerPacketMax) {
    return Status::invalid_argument("packet must carry 1.." + std::to_string(kMessagesPerPacketMax) + " messages");
  }
  for (const Message& m : packet.messages) {
    Status valid = validate_message(m);
    if (!valid.ok()) return Status::invalid_argument(std::string(message_name(m)) + ": " + valid.message());
  }
  capnp::MallocMessageBuilder builder(kFirstSegmentWords);
  auto root = builder.initRoot<wire::Packet>();
  root.setSenderId(packet.header.sender_id);
  root.setSessionId(packet.header.session_id);
  root.setSeq(packet.header.seq);
  root.setTimestampMs(packet.header.timestamp_ms);
  auto messages = root.initMessages(static_cast<uint>(packet.messages.size()));
  for (uint i = 0; i < packet.messages.size(); ++i) fill_message(messages[i], packet.messages[i]);
  kj::Array<capnp::word> words = capnp::messageToFlatArray(builder);
  auto bytes = words.asBytes();
  if (bytes.size() + kMacBytes > kPacketBytesMax) {
    return Status::resource_exhausted("packet encodes to " + std::to_string(bytes.size() + kMacBytes) +
                                      " bytes (max " + std::to_string(kPacketBytesMax) + ")");
  }
  std::span<const uint8_t> body(bytes.begin(), bytes.size());
  Mac mac = hmac_sha256(key, body);
  std::string out(reinterpret_cast<const char*>(bytes.begin()), bytes.size());
  out.append(reinterpret_cast<const char*>(mac.data()), mac.size());
  return out;
}

Result<Packet> decode_packet(std::span<const uint8_t> bytes, std::span<const uint8_t> key,
                             DecodeOptions options) {
  if (bytes.size() > kPacketBytesMax) {
    return Status::invalid_argument("packet of " + std::to_string(bytes.size()) + " bytes exceeds " +
                                    std::to_string(kPacketBytesMax));
  }
  if (bytes.size() <= kMacBytes) {
    return Status::invalid_argument("packet of " + std::to_string(bytes.size()) + " bytes is too short");
  }
  std::span<const uint8_t> body = bytes.first(bytes.size() - kMacBytes);
  if (options.verify_mac) {
    Mac mac = hmac_sha256(key, body);
    if (!constant_time_equal(mac, bytes.last(kMacBytes))) {
      return Status::unauthenticated("packet MAC does not match the cluster key");
    }
  }
  return parse_body(body);
}

// ---- ReplayGuard --------------------------------------------------------------

ReplayGuard::ReplayGuard(uint64_t window_ms, size_t senders_max)
    : window_ms_(window_ms), senders_max_(senders_max) {}

Status ReplayGuard::check(const PacketHeader& header, uint64_t wall_now_ms) {
  if (header.timestamp_ms + window_ms_ < wall_now_ms || header.timestamp_ms > wall_now_ms + window_ms_) {
    int64_t skew = static_cast<int64_t>(header.timestamp_ms - wall_now_ms);
    return Status::invalid_argument("packet timestamp is " + std::to_string(skew) +
                                    " ms from local time (window " + std::to_string(window_ms_) + " ms)");
  }
  auto key = std::make_pair(header.sender_id, header.session_id);
  auto it = senders_.find(key);
  if (it == senders_.end()) {
    if (senders_.size() >= senders_max_) {
      auto oldest = senders_.begin();
      for (auto i = senders_.begin(); i != senders_.end(); ++i) {
        if (i->second.last_seen_ms < oldest->second.last_seen_ms) oldest = i;
      }
      senders_.erase(oldest);
    }
    senders_.emplace(key, Window{header.seq, 1, wall_now_ms});
    return {};
  }
  Window& w = it->second;
  if (header.seq > w.highest_seq) {
    uint64_t shift = header.seq - w.highest_seq;
    w.seen_bits = shift >= kReplaySeqWindow ? 0 : w.seen_bits << shift;
    w.seen_bits |= 1;
    w.highest_seq = header.seq;
  } else {
    uint64_t age = w.highest_seq - header.seq;
    if (age >= kReplaySeqWindow) {
      return Status::invalid_argument("packet seq " + std::to_string(header.seq) + " is too old (highest " +
                                      std::to_string(w.highest_seq) + ")");
    }
    uint64_t bit = uint64_t{1} << age;
    if (w.seen_bits & bit) {
      return Status::invalid_argument("replayed packet seq " + std::to_string(header.seq));
    }
    w.seen_bits |= bit;
  }
  w.last_seen_ms = wall_now_ms;
  return {};
}

}  // namespace shoal::gossip
