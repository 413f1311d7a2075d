// Conversion between shoal::raft::Message and its Cap'n Proto form
// (schemas/raft.capnp). read_message validates everything a peer could get
// wrong in the encoding; the Raft core validates the protocol.
#pragma once

#include "raft.capnp.h"
#include "raft/raft.h"
#include "shoal/status.h"

namespace shoal::control {

// Most entries one message may carry (the core's byte bound is far lower in
// practice; this only bounds work on a hostile message).
inline constexpr size_t kWireEntriesMax = 1 << 16;
inline constexpr size_t kWireConfMembersMax = 1024;
inline constexpr size_t kWireContextMax = 1024;

void write_message(const raft::Message& m, raftwire::Message::Builder out);
// Snapshot data is not on the wire (it travels in chunks): a message with
// hasSnapshot gets a Snapshot with meta and empty data.
Result<raft::Message> read_message(raftwire::Message::Reader in);

}  // namespace shoal::control
