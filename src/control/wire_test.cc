// Raft messages through their Cap'n Proto form: round trips, and hostile
// encodings refused with an error.
#include <capnp/message.h>
#include <doctest/doctest.h>

#include "control/wire.h"

namespace shoal::control {

TEST_CASE("a raft message survives the wire unchanged") {
  raft::Message m;
  m.type = raft::MessageType::kAppend;
  m.from = 3;
  m.to = 9;
  m.term = 12;
  m.log_term = 11;
  m.index = 100;
  m.commit = 99;
  m.context = "ctx";
  for (int i = 0; i < 3; ++i) {
    raft::Entry e;
    e.term = 12;
    e.index = 101 + i;
    e.type = i == 1 ? raft::EntryType::kConfChange : raft::EntryType::kNormal;
    e.data = std::string(static_cast<size_t>(i) * 10, 'a' + i);
    m.entries.push_back(e);
  }
  capnp::MallocMessageBuilder builder;
  auto root = builder.initRoot<raftwire::Message>();
  write_message(m, root);
  auto back = read_message(root.asReader());
  REQUIRE(back.ok());
  CHECK(back->type == m.type);
  CHECK(back->from == 3);
  CHECK(back->to == 9);
  CHECK(back->term == 12);
  CHECK(back->log_term == 11);
  CHECK(back->index == 100);
  CHECK(back->commit == 99);
  CHECK(back->context == "ctx");
  REQUIRE(back->entries.size() == 3);
  CHECK(back->entries[1].type == raft::EntryType::kConfChange);
  CHECK(back->entries[2].data == std::string(20, 'c'));
  CHECK(!back->snapshot.has_value());
}

TEST_CASE("snapshot metadata travels; the image does not") {
  raft::Message m;
  m.type = raft::MessageType::kSnapshot;
  m.from = 1;
  m.to = 2;
  m.term = 5;
  raft::Snapshot snap;
  snap.meta.index = 77;
  snap.meta.term = 4;
  snap.meta.conf = {{1, 2, 3}, {4}};
  snap.data = "image bytes";
  m.snapshot = snap;
  capnp::MallocMessageBuilder builder;
  auto root = builder.initRoot<raftwire::Message>();
  write_message(m, root);
  auto back = read_message(root.asReader());
  REQUIRE(back.ok());
  REQUIRE(back->snapshot.has_value());
  CHECK(back->snapshot->meta.index == 77);
  CHECK(back->snapshot->meta.conf == snap.meta.conf);
  CHECK(back->snapshot->data.empty());
}

TEST_CASE("hostile encodings are refused") {
  auto make = [](auto&& edit) {
    auto builder = std::make_unique<capnp::MallocMessageBuilder>();
    auto root = builder->initRoot<raftwire::Message>();
    root.setType(static_cast<uint8_t>(raft::MessageType::kHeartbeat));
    root.setFrom(1);
    root.setTo(2);
    root.setTerm(1);
    edit(root);
    return read_message(root.asReader());
  };
  CHECK(make([](auto) {}).ok());
  CHECK(!make([](auto r) { r.setType(200); }).ok());
  CHECK(!make([](auto r) { r.setFrom(0); }).ok());
  CHECK(!make([](auto r) { r.setHasSnapshot(true); }).ok());  // snapshot on a heartbeat
  CHECK(!make([](auto r) { r.setType(static_cast<uint8_t>(raft::MessageType::kSnapshot)); }).ok());
  CHECK(!make([](auto r) { r.initEntries(1)[0].setType(7); }).ok());
  CHECK(!make([](auto r) { r.setContext(kj::heapArray<kj::byte>(kWireContextMax + 1)); }).ok());
  CHECK(!make([](auto r) {
          r.setType(static_cast<uint8_t>(raft::MessageType::kSnapshot));
          r.setHasSnapshot(true);
          r.initSnapshot().initConf().initVoters(1).set(0, 0);
        }).ok());
}

}  // namespace shoal::control
