@0xe3beeedcddd2509a;
# Gossip (SWIM membership) wire contract. One UDP datagram carries one
# Packet, serialized as a single-segment Cap'n Proto message followed by a
# 32-byte HMAC-SHA256 over those bytes with the cluster key. Receivers check
# the MAC first, then parse with tight limits, then validate every field
# (see src/gossip/codec.cc). Sizes are kept small: a datagram is at most
# 1400 bytes.

$import "/capnp/c++.capnp".namespace("shoal::gossip::wire");

struct Packet {
  senderId @0 :Text;        # 32 lowercase hex chars
  sessionId @1 :UInt64;     # random per process start; replay protection
  seq @2 :UInt64;           # per session, increasing
  timestampMs @3 :UInt64;   # sender's wall clock (Unix ms)
  messages @4 :List(Message);
}

struct Message {
  union {
    ping @0 :Ping;
    ack @1 :Ack;
    pingReq @2 :PingReq;
    alive @3 :Alive;
    suspect @4 :Suspect;
    dead @5 :Dead;
    left @6 :Left;
    load @7 :LoadUpdate;
    pushPull @8 :PushPull;
    nack @9 :Nack;
  }
}

struct Quantity {
  name @0 :Text;
  amount @1 :Float64;
}

struct Resources {
  cpus @0 :Float64;
  memoryBytes @1 :UInt64;
  gpus @2 :Float64;
  custom @3 :List(Quantity);
}

struct Label {
  key @0 :Text;
  value @1 :Text;
}

struct MemberInfo {
  id @0 :Text;
  address @1 :Text;         # "host:port", UDP gossip and TCP RPC
  total @2 :Resources;
  labels @3 :List(Label);
}

# Direct probe. An empty targetId means "whoever you are" (diagnostics).
struct Ping {
  seq @0 :UInt32;
  targetId @1 :Text;
}

struct Ack {
  seq @0 :UInt32;
}

# Ask the receiver to probe target on the sender's behalf.
# A relay of a PingReq got no ack from the target in time (Lifeguard).
struct Nack {
  seq @0 :UInt32;           # the requester's PingReq seq
}

struct PingReq {
  seq @0 :UInt32;
  targetId @1 :Text;
  targetAddress @2 :Text;
}

struct Alive {
  info @0 :MemberInfo;
  incarnation @1 :UInt64;
}

struct Suspect {
  id @0 :Text;
  incarnation @1 :UInt64;
  fromId @2 :Text;
}

struct Dead {
  id @0 :Text;
  incarnation @1 :UInt64;
  fromId @2 :Text;
}

struct Left {
  id @0 :Text;
  incarnation @1 :UInt64;
}

# The owner's available resources; (incarnation, version) orders updates.
struct LoadUpdate {
  id @0 :Text;
  incarnation @1 :UInt64;
  version @2 :UInt64;
  available @3 :Resources;
  runningTasks @4 :UInt32;
}

enum MemberState {
  alive @0;
  suspect @1;
  dead @2;
  left @3;
}

struct StateEntry {
  info @0 :MemberInfo;
  state @1 :MemberState;
  incarnation @2 :UInt64;
}

# One chunk of a full-state exchange. Only the first chunk of a request sets
# wantReply, so a request split over many packets gets one reply.
struct PushPull {
  join @0 :Bool;
  wantReply @1 :Bool;
  states @2 :List(StateEntry);
}
