// LogStore against a real RocksDB in a temp dir, including a child process
// killed with SIGKILL in the middle of appending.
#include <doctest/doctest.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>

#include "base/temp_dir.h"
#include "control/log_store.h"

namespace shoal::control {
namespace {

// A fresh directory per test, removed with it.
struct TestDir : shoal::TempDir {
  TestDir() : shoal::TempDir("shoal-logstore") {}
};

raft::Entry entry(raft::Index index, raft::Term term, std::string data = {}) {
  raft::Entry e;
  e.index = index;
  e.term = term;
  e.data = data.empty() ? "entry-" + std::to_string(index) : std::move(data);
  return e;
}

raft::Ready ready_with(std::vector<raft::Entry> entries, std::optional<raft::HardState> hs = std::nullopt) {
  raft::Ready rd;
  rd.entries = std::move(entries);
  rd.hard_state = hs;
  return rd;
}

}  // namespace

TEST_CASE("a fresh store is fresh; entries and hard state survive a reopen") {
  TestDir dir;
  std::string path = dir.path + "/meta";
  {
    auto store = LogStore::open(path, 7);
    REQUIRE(store.ok());
    CHECK((*store)->fresh());
    CHECK((*store)->identity().cluster_id == 0);
    REQUIRE((*store)->set_cluster_id(0xabcdef).ok());
    std::vector<raft::Entry> entries;
    for (raft::Index i = 1; i <= 100; ++i) entries.push_back(entry(i, 1 + i / 50));
    REQUIRE((*store)->persist(ready_with(entries, raft::HardState{3, 7, 80})).ok());
    CHECK(!(*store)->fresh());
    CHECK((*store)->memory().last_index() == 100);
  }
  auto store = LogStore::open(path, 7);
  REQUIRE(store.ok());
  CHECK(!(*store)->fresh());
  CHECK((*store)->identity().cluster_id == 0xabcdef);
  auto& mem = (*store)->memory();
  CHECK(mem.first_index() == 1);
  CHECK(mem.last_index() == 100);
  CHECK(mem.initial_state().first == raft::HardState{3, 7, 80});
  auto got = mem.entries(40, 61, UINT64_MAX);
  REQUIRE(got.ok());
  REQUIRE(got->size() == 21);
  CHECK((*got)[0].data == "entry-40");
  CHECK((*got)[20].term == 2);
}

TEST_CASE("entries, terms and votes are synced; a commit index alone is not") {
  TestDir dir;
  auto store = LogStore::open(dir.path + "/meta", 7);
  REQUIRE(store.ok());
  auto synced = [&] { return (*store)->stats().synced_writes; };
  REQUIRE((*store)->persist(ready_with({entry(1, 1)}, raft::HardState{1, 7, 0})).ok());
  CHECK(synced() == 1);
  REQUIRE((*store)->persist(ready_with({}, raft::HardState{1, 7, 1})).ok());  // commit moved
  CHECK(synced() == 1);
  REQUIRE((*store)->persist(ready_with({}, raft::HardState{2, 0, 1})).ok());  // new term
  CHECK(synced() == 2);
  REQUIRE((*store)->persist(ready_with({}, raft::HardState{2, 9, 1})).ok());  // vote
  CHECK(synced() == 3);
  CHECK((*store)->memory().hard_state() == raft::HardState{2, 9, 1});
}

TEST_CASE("a replaced suffix is gone after a reopen (Raft §5.3: conflicting entries are deleted)") {
  TestDir dir;
  std::string path = dir.path + "/meta";
  {
    auto store = LogStore::open(path, 7);
    REQUIRE(store.ok());
    std::vector<raft::Entry> entries;
    for (raft::Index i = 1; i <= 10; ++i) entries.push_back(entry(i, 1));
    REQUIRE((*store)->persist(ready_with(entries)).ok());
    // A new leader's log replaces 6..10 with 6..7 of term 2.
    REQUIRE((*store)->persist(ready_with({entry(6, 2, "new-6"), entry(7, 2, "new-7")})).ok());
    CHECK((*store)->memory().last_index() == 7);
  }
  auto store = LogStore::open(path, 7);
  REQUIRE(store.ok());
  CHECK((*store)->memory().last_index() == 7);
  auto t6 = (*store)->memory().term(6);
  REQUIRE(t6.ok());
  CHECK(*t6 == 2);
  auto e7 = (*store)->memory().entries(7, 8, UINT64_MAX);
  REQUIRE(e7.ok());
  CHECK((*e7)[0].data == "new-7");
}

TEST_CASE("a local snapshot compacts the log and is restored on reopen") {
  TestDir dir;
  std::string path = dir.path + "/meta";
  raft::ConfState conf{{7, 8, 9}, {10}};
  std::string image(3 * kSnapshotPieceBytes + 123, 'x');
  image[kSnapshotPieceBytes] = 'y';
  {
    auto store = LogStore::open(path, 7);
    REQUIRE(store.ok());
    std::vector<raft::Entry> entries;
    for (raft::Index i = 1; i <= 500; ++i) entries.push_back(entry(i, 1));
    REQUIRE((*store)->persist(ready_with(entries, raft::HardState{1, 7, 500})).ok());
    REQUIRE((*store)->save_local_snapshot(400, conf, image, 300).ok());
    CHECK((*store)->memory().first_index() == 301);
  }
  auto store = LogStore::open(path, 7);
  REQUIRE(store.ok());
  REQUIRE((*store)->snapshot().has_value());
  CHECK((*store)->snapshot()->meta.index == 400);
  CHECK((*store)->snapshot()->meta.conf == conf);
  CHECK((*store)->snapshot()->data == image);
  CHECK((*store)->memory().first_index() == 401);
  CHECK((*store)->memory().last_index() == 500);
  auto snap = (*store)->memory().snapshot();
  REQUIRE(snap.ok());
  CHECK(snap->meta.index == 400);
}

TEST_CASE("a snapshot from the leader replaces the whole log") {
  TestDir dir;
  std::string path = dir.path + "/meta";
  {
    auto store = LogStore::open(path, 7);
    REQUIRE(store.ok());
    REQUIRE((*store)->persist(ready_with({entry(1, 1), entry(2, 1)}, raft::HardState{1, 0, 2})).ok());
    raft::Ready rd;
    raft::Snapshot snap;
    snap.meta.index = 1000;
    snap.meta.term = 4;
    snap.meta.conf = {{1, 7}, {}};
    snap.data = "image";
    rd.snapshot = snap;
    rd.hard_state = raft::HardState{4, 0, 1000};
    REQUIRE((*store)->persist(rd).ok());
  }
  auto store = LogStore::open(path, 7);
  REQUIRE(store.ok());
  CHECK((*store)->memory().first_index() == 1001);
  CHECK((*store)->memory().last_index() == 1000);
  CHECK((*store)->snapshot()->data == "image");
}

TEST_CASE("a store of another node, of another format, or not a store at all is refused") {
  TestDir dir;
  std::string path = dir.path + "/meta";
  { REQUIRE(LogStore::open(path, 7).ok()); }
  auto other = LogStore::open(path, 8);
  REQUIRE(!other.ok());
  CHECK(other.status().message().find("belongs to another node") != std::string::npos);

  std::string junk = dir.path + "/junk";
  std::filesystem::create_directories(junk);
  std::ofstream(junk + "/CURRENT") << "not a manifest\n";
  auto bad = LogStore::open(junk, 7);
  REQUIRE(!bad.ok());
  CHECK(bad.status().message().find(junk) != std::string::npos);
}

TEST_CASE("damaged records are reported, never served") {
  CHECK(!decode_entry_value(1, "short").ok());
  CHECK(!decode_entry_value(1, std::string(8, '\0') + "\x01").ok());  // term 0
  std::string bad_type = encode_entry_value(entry(1, 1));
  bad_type[8] = 9;
  CHECK(!decode_entry_value(1, bad_type).ok());
  CHECK(!decode_hard_state("123").ok());
  std::string cs = encode_conf_state({{1, 2}, {3}});
  std::string_view view = cs;
  auto ok = decode_conf_state(view);
  REQUIRE(ok.ok());
  CHECK(ok->voters == std::vector<raft::NodeId>{1, 2});
  std::string truncated = cs.substr(0, cs.size() - 3);
  std::string_view tv = truncated;
  CHECK(!decode_conf_state(tv).ok());
}

TEST_CASE("kill -9 while appending: every acknowledged append is on disk, the log has no gaps") {
  TestDir dir;
  std::string path = dir.path + "/meta";
  int fds[2];
  REQUIRE(::pipe(fds) == 0);
  pid_t child = ::fork();
  REQUIRE(child >= 0);
  if (child == 0) {
    ::close(fds[0]);
    auto store = LogStore::open(path, 7);
    if (!store.ok()) ::_exit(3);
    for (raft::Index i = 1;; ++i) {
      // Every 50th write also rewrites the tail, as a new leader would.
      std::vector<raft::Entry> entries{entry(i, 1 + i / 50)};
      if (!(*store)->persist(ready_with(entries, raft::HardState{1 + i / 50, 7, i})).ok()) ::_exit(4);
      uint64_t acked = i;
      if (::write(fds[1], &acked, sizeof(acked)) != sizeof(acked)) ::_exit(5);
    }
  }
  ::close(fds[1]);
  uint64_t acked = 0, v = 0;
  while (acked < 300 && ::read(fds[0], &v, sizeof(v)) == sizeof(v)) acked = v;
  ::kill(child, SIGKILL);
  while (::read(fds[0], &v, sizeof(v)) == sizeof(v)) acked = v;  // acks written before the kill
  ::close(fds[0]);
  int status = 0;
  ::waitpid(child, &status, 0);
  REQUIRE(WIFSIGNALED(status));
  REQUIRE(acked >= 300);

  auto store = LogStore::open(path, 7);
  REQUIRE(store.ok());
  auto& mem = (*store)->memory();
  CHECK(mem.last_index() >= acked);
  CHECK(mem.initial_state().first.commit >= acked);
  auto all = mem.entries(1, mem.last_index() + 1, UINT64_MAX);
  REQUIRE(all.ok());
  for (size_t i = 0; i < all->size(); ++i) {
    CHECK((*all)[i].index == i + 1);
    CHECK((*all)[i].data == "entry-" + std::to_string(i + 1));
  }
}

}  // namespace shoal::control
