# Raft messages on the wire between shoal nodes (carried by Node.raftSend and
# Node.raftSnapshot in rpc.capnp). The fields mirror shoal::raft::Message
# (src/raft/raft.h); src/control/transport.cc converts and validates them.
@0xd67f0c37358b5873;

using Cxx = import "/capnp/c++.capnp";
$Cxx.namespace("shoal::raftwire");

struct Entry {
  term @0 :UInt64;
  index @1 :UInt64;
  type @2 :UInt8;        # shoal::raft::EntryType
  data @3 :Data;
}

struct ConfState {
  voters @0 :List(UInt64);
  learners @1 :List(UInt64);
}

struct SnapshotMeta {
  index @0 :UInt64;
  term @1 :UInt64;
  conf @2 :ConfState;
}

struct Message {
  type @0 :UInt8;        # shoal::raft::MessageType
  from @1 :UInt64;
  to @2 :UInt64;
  term @3 :UInt64;
  logTerm @4 :UInt64;
  index @5 :UInt64;
  entries @6 :List(Entry);
  commit @7 :UInt64;
  reject @8 :Bool;
  rejectHint @9 :UInt64;
  context @10 :Data;
  hasSnapshot @11 :Bool;   # kSnapshot: the image arrived in raftSnapshot chunks
  snapshot @12 :SnapshotMeta;
}
