#include "control/wire.h"

#include <string>

namespace shoal::control {
namespace {

kj::ArrayPtr<const kj::byte> bytes_of(const std::string& s) {
  return kj::arrayPtr(reinterpret_cast<const kj::byte*>(s.data()), s.size());
}

Result<std::vector<raft::NodeId>> read_ids(capnp::List<uint64_t>::Reader list, const char* what) {
  if (list.size() > kWireConfMembersMax) return Status::invalid_argument(std::string("too many ") + what);
  std::vector<raft::NodeId> out;
  out.reserve(list.size());
  for (uint64_t id : list) {
    if (id == 0) return Status::invalid_argument(std::string(what) + " names node 0");
    out.push_back(id);
  }
  return out;
}

}  // namespace

void write_message(const raft::Message& m, raftwire::Message::Builder out) {
  out.setType(static_cast<uint8_t>(m.type));
  out.setFrom(m.from);
  out.setTo(m.to);
  out.setTerm(m.term);
  out.setLogTerm(m.log_term);
  out.setIndex(m.index);
  out.setCommit(m.commit);
  out.setReject(m.reject);
  out.setRejectHint(m.reject_hint);
  if (!m.context.empty()) out.setContext(bytes_of(m.context));
  if (!m.entries.empty()) {
    auto entries = out.initEntries(static_cast<unsigned>(m.entries.size()));
    for (unsigned i = 0; i < m.entries.size(); ++i) {
      const raft::Entry& e = m.entries[i];
      entries[i].setTerm(e.term);
      entries[i].setIndex(e.index);
      entries[i].setType(static_cast<uint8_t>(e.type));
      if (!e.data.empty()) entries[i].setData(bytes_of(e.data));
    }
  }
  if (m.snapshot) {
    out.setHasSnapshot(true);
    auto meta = out.initSnapshot();
    meta.setIndex(m.snapshot->meta.index);
    meta.setTerm(m.snapshot->meta.term);
    auto conf = meta.initConf();
    const auto& cs = m.snapshot->meta.conf;
    auto voters = conf.initVoters(static_cast<unsigned>(cs.voters.size()));
    for (unsigned i = 0; i < cs.voters.size(); ++i) voters.set(i, cs.voters[i]);
    auto learners = conf.initLearners(static_cast<unsigned>(cs.learners.size()));
    for (unsigned i = 0; i < cs.learners.size(); ++i) learners.set(i, cs.learners[i]);
  }
}

Result<raft::Message> read_message(raftwire::Message::Reader in) {
  raft::Message m;
  uint8_t type = in.getType();
  if (type >= raft::kMessageTypeCount) {
    return Status::invalid_argument("unknown raft message type " + std::to_string(type));
  }
  m.type = static_cast<raft::MessageType>(type);
  m.from = in.getFrom();
  m.to = in.getTo();
  if (m.from == 0 || m.to == 0) return Status::invalid_argument("raft message without sender or receiver");
  m.term = in.getTerm();
  m.log_term = in.getLogTerm();
  m.index = in.getIndex();
  m.commit = in.getCommit();
  m.reject = in.getReject();
  m.reject_hint = in.getRejectHint();
  auto ctx = in.getContext();
  if (ctx.size() > kWireContextMax) return Status::invalid_argument("raft message context too large");
  m.context.assign(reinterpret_cast<const char*>(ctx.begin()), ctx.size());
  auto entries = in.getEntries();
  if (entries.size() > kWireEntriesMax) return Status::invalid_argument("too many entries in one raft message");
  m.entries.reserve(entries.size());
  for (auto e : entries) {
    if (e.getType() > static_cast<uint8_t>(raft::EntryType::kConfChange)) {
      return Status::invalid_argument("unknown raft entry type " + std::to_string(e.getType()));
    }
    raft::Entry entry;
    entry.term = e.getTerm();
    entry.index = e.getIndex();
    entry.type = static_cast<raft::EntryType>(e.getType());
    auto data = e.getData();
    entry.data.assign(reinterpret_cast<const char*>(data.begin()), data.size());
    m.entries.push_back(std::move(entry));
  }
  if (in.getHasSnapshot()) {
    if (m.type != raft::MessageType::kSnapshot) return Status::invalid_argument("snapshot on a non-snapshot message");
    raft::Snapshot snap;
    auto meta = in.getSnapshot();
    snap.meta.index = meta.getIndex();
    snap.meta.term = meta.getTerm();
    auto voters = read_ids(meta.getConf().getVoters(), "snapshot voters");
    if (!voters.ok()) return voters.status();
    auto learners = read_ids(meta.getConf().getLearners(), "snapshot learners");
    if (!learners.ok()) return learners.status();
    snap.meta.conf.voters = std::move(*voters);
    snap.meta.conf.learners = std::move(*learners);
    m.snapshot = std::move(snap);
  } else if (m.type == raft::MessageType::kSnapshot) {
    return Status::invalid_argument("snapshot message without a snapshot");
  }
  return m;
}

}  // namespace shoal::control
