// Scenario tests of the Raft core. Each names the rule it checks: the Raft
// paper (Ongaro & Ousterhout 2014, §5.x) or Ongaro's thesis (§3.10 leader
// transfer, §4.x membership, §6.4 ReadIndex, §9.6 pre-vote).
#include "raft/raft.h"

#include <doctest/doctest.h>

#include <algorithm>
#include <functional>
#include <map>
#include <set>

#include "base/clock.h"
#include "raft/log.h"
#include "raft/progress.h"

using namespace shoal;
using namespace shoal::raft;
using Role = SoftState::Role;

namespace {

Config base_config(NodeId id, Storage* storage) {
  Config c;
  c.id = id;
  c.election_tick = 10;
  c.heartbeat_tick = 1;
  c.storage = storage;
  c.seed = 42;
  return c;
}

std::string data_of(Term t, Index i) { return "t" + std::to_string(t) + "i" + std::to_string(i); }

// A storage holding a snapshot at (1, 1) with `voters`, then entries of the given terms.
MemoryStorage storage_with(const std::vector<NodeId>& voters, const std::vector<Term>& terms,
                           Term hard_term) {
  MemoryStorage s;
  Snapshot snap;
  snap.meta.index = 1;
  snap.meta.term = 1;
  snap.meta.conf.voters = voters;
  REQUIRE(s.apply_snapshot(snap).ok());
  std::vector<Entry> ents;
  for (size_t k = 0; k < terms.size(); ++k) {
    Entry e;
    e.index = 2 + k;
    e.term = terms[k];
    e.data = data_of(e.term, e.index);
    ents.push_back(e);
  }
  REQUIRE(s.append(ents).ok());
  s.set_hard_state({hard_term, 0, 1});
  return s;
}

// One node of the test network: its storage, its RawNode and a tiny state
// machine (the list of applied normal entries).
struct TestNode {
  std::unique_ptr<MemoryStorage> storage = std::make_unique<MemoryStorage>();
  std::unique_ptr<RawNode> raw;
  std::vector<std::string> applied;  // data of applied normal entries
  std::vector<ReadState> reads;
  ConfState applied_conf;
  Index applied_index = 0;
};

std::string encode_state(const std::vector<std::string>& applied) {
  std::string out;
  for (const auto& a : applied) out += a + "\n";
  return out;
}

std::vector<std::string> decode_state(const std::string& data) {
  std::vector<std::string> out;
  size_t start = 0;
  while (start < data.size()) {
    size_t nl = data.find('\n', start);
    out.push_back(data.substr(start, nl - start));
    start = nl + 1;
  }
  return out;
}

// Delivers Ready messages between RawNodes, in order, with etcd-style
// faults: cut links, isolated nodes, and a filter for specific messages.
class Network {
 public:
  using Filter = std::function<bool(const Message&)>;  // true: drop

  explicit Network(std::vector<NodeId> voters, std::function<void(Config&)> tweak = nullptr)
      : tweak_(std::move(tweak)) {
    for (NodeId id : voters) {
      add(id);
      REQUIRE(node(id).bootstrap(voters).ok());
      process(id);
    }
  }

  // A node with its own storage (empty: a joiner).
  void add(NodeId id, std::unique_ptr<MemoryStorage> storage = nullptr) {
    TestNode& n = nodes_[id];
    if (storage) n.storage = std::move(storage);
    Config c = base_config(id, n.storage.get());
    c.seed = 1000 + id;
    if (tweak_) tweak_(c);
    auto raw = RawNode::create(c);
    REQUIRE(raw.ok());
    n.raw = std::move(raw).value();
    n.applied_index = n.raw->applied_index();
    n.applied_conf = n.raw->applied_conf_state();
  }

  // Restarts a node from its storage (what it persisted).
  void restart(NodeId id) {
    TestNode& n = nodes_[id];
    auto copy = std::make_unique<MemoryStorage>(*n.storage);
    Snapshot snap = *copy->snapshot();
    n.applied = decode_state(snap.data);
    n.reads.clear();
    n.storage = std::move(copy);
    Config c = base_config(id, n.storage.get());
    c.seed = 2000 + id;
    c.applied = snap.meta.index;
    if (tweak_) tweak_(c);
    auto raw = RawNode::create(c);
    REQUIRE(raw.ok());
    n.raw = std::move(raw).value();
    n.applied_index = n.raw->applied_index();
  }

  RawNode& node(NodeId id) { return *nodes_.at(id).raw; }
  TestNode& state(NodeId id) { return nodes_.at(id); }
  MemoryStorage& storage(NodeId id) { return *nodes_.at(id).storage; }

  void process(NodeId id) {
    TestNode& n = nodes_.at(id);
    while (n.raw->has_ready()) {
      Ready rd = n.raw->ready();
      if (rd.snapshot) REQUIRE(n.storage->apply_snapshot(*rd.snapshot).ok());
      REQUIRE(n.storage->append(rd.entries).ok());
      if (rd.hard_state) n.storage->set_hard_state(*rd.hard_state);
      for (Message& m : rd.messages) {
        sent_.push_back(m);
        queue_.push_back(std::move(m));
      }
      if (rd.snapshot) {
        n.applied = decode_state(rd.snapshot->data);
        n.applied_conf = rd.snapshot->meta.conf;
        n.applied_index = rd.snapshot->meta.index;
      }
      for (const Entry& e : rd.committed_entries) {
        REQUIRE(e.index == n.applied_index + 1);
        n.applied_index = e.index;
        if (e.type == EntryType::kConfChange) {
          auto cc = decode_conf_change(e.data);
          REQUIRE(cc.ok());
          n.applied_conf = n.raw->apply_conf_change(*cc);
        } else if (!e.data.empty()) {
          n.applied.push_back(e.data);
        }
      }
      for (ReadState& r : rd.read_states) n.reads.push_back(std::move(r));
      n.raw->advance();
    }
  }

  bool blocked(const Message& m) const {
    if (isolated_.count(m.from) || isolated_.count(m.to)) return true;
    if (cut_.count({std::min(m.from, m.to), std::max(m.from, m.to)})) return true;
    return filter_ && filter_(m);
  }

  // Runs until no node has anything to do. Returns the messages delivered.
  size_t stabilize(size_t rounds_max = 10'000) {
    size_t delivered = 0;
    for (size_t round = 0; round < rounds_max; ++round) {
      for (auto& [id, n] : nodes_) process(id);
      if (queue_.empty()) return delivered;
      std::vector<Message> batch = std::exchange(queue_, {});
      for (Message& m : batch) {
        if (blocked(m) || !nodes_.count(m.to)) {
          if (m.type == MessageType::kSnapshot && nodes_.count(m.from)) {
            node(m.from).report_snapshot(m.to, true);
          }
          continue;
        }
        ++delivered;
        Status s = node(m.to).step(m);
        if (strict_) CHECK_MESSAGE(s.ok(), s.to_string());
        if (m.type == MessageType::kSnapshot) node(m.from).report_snapshot(m.to, false);
      }
    }
    FAIL("network did not settle");
    return delivered;
  }

  void tick(NodeId id, int n = 1) {
    for (int i = 0; i < n; ++i) {
      node(id).tick();
      stabilize();
    }
  }
  void tick_all(int n = 1) {
    for (int i = 0; i < n; ++i) {
      for (auto& [id, node] : nodes_) node.raw->tick();
      stabilize();
    }
  }

  void elect(NodeId id) {
    REQUIRE(node(id).campaign().ok());
    stabilize();
    REQUIRE(node(id).role() == Role::kLeader);
  }

  void propose(NodeId id, const std::string& data) {
    REQUIRE(node(id).propose(data).ok());
    stabilize();
  }

  void isolate(NodeId id) { isolated_.insert(id); }
  void cut(NodeId a, NodeId b) { cut_.insert({std::min(a, b), std::max(a, b)}); }
  void heal() {
    isolated_.clear();
    cut_.clear();
    filter_ = nullptr;
  }
  void set_filter(Filter f) { filter_ = std::move(f); }
  void drop_queue() { queue_.clear(); }
  // Off when the test feeds garbage: honest nodes may then answer nonsense.
  void set_strict(bool strict) { strict_ = strict; }

  // Every message handed out so far (delivered or not).
  std::vector<Message>& sent() { return sent_; }
  size_t count_sent(MessageType type, NodeId from = 0) const {
    return std::count_if(sent_.begin(), sent_.end(), [&](const Message& m) {
      return m.type == type && (from == 0 || m.from == from);
    });
  }

  std::map<NodeId, TestNode>& nodes() { return nodes_; }

 private:
  std::function<void(Config&)> tweak_;
  std::map<NodeId, TestNode> nodes_;
  std::vector<Message> queue_;
  std::vector<Message> sent_;
  std::set<NodeId> isolated_;
  std::set<std::pair<NodeId, NodeId>> cut_;
  Filter filter_;
  bool strict_ = true;
};

std::vector<Entry> log_of(MemoryStorage& s) {
  auto ents = s.entries(s.first_index(), s.last_index() + 1, UINT64_MAX);
  REQUIRE(ents.ok());
  return *ents;
}

Message msg(MessageType type, NodeId from, NodeId to, Term term) {
  Message m;
  m.type = type;
  m.from = from;
  m.to = to;
  m.term = term;
  return m;
}

}  // namespace

// ---- Storage, codec, log ---------------------------------------------------------

TEST_CASE("MemoryStorage: append truncates a conflicting suffix, compact and snapshot errors") {
  MemoryStorage s;
  CHECK(s.first_index() == 1);
  CHECK(s.last_index() == 0);
  std::vector<Entry> ents;
  for (Index i = 1; i <= 5; ++i) ents.push_back({1, i, EntryType::kNormal, data_of(1, i)});
  REQUIRE(s.append(ents).ok());
  CHECK(s.last_index() == 5);
  // Conflicting suffix replaced.
  REQUIRE(s.append({{2, 4, EntryType::kNormal, "x"}}).ok());
  CHECK(s.last_index() == 4);
  CHECK(*s.term(4) == 2);
  // Gaps are refused.
  CHECK(s.append({{2, 7, EntryType::kNormal, "y"}}).code() == Status::Code::kInvalidArgument);
  // Out of range.
  CHECK(is_unavailable(s.term(9).status()));
  CHECK(is_unavailable(s.entries(2, 9, UINT64_MAX).status()));
  CHECK(s.entries(3, 2, 1).status().code() == Status::Code::kInvalidArgument);
  // Size limit keeps at least one entry.
  auto one = s.entries(1, 5, 1);
  REQUIRE(one.ok());
  CHECK(one->size() == 1);
  // Snapshot then compact.
  ConfState cs;
  cs.voters = {1};
  REQUIRE(s.create_snapshot(3, &cs, "state").ok());
  CHECK(s.create_snapshot(2, &cs, "old").code() == Status::Code::kAlreadyExists);
  CHECK(s.compact(4).code() == Status::Code::kInvalidArgument);  // beyond the snapshot
  REQUIRE(s.compact(3).ok());
  CHECK(s.first_index() == 4);
  CHECK(*s.term(3) == 1);
  CHECK(is_compacted(s.term(2).status()));
  CHECK(is_compacted(s.entries(3, 4, UINT64_MAX).status()));
  CHECK(s.initial_state().second == cs);
  // Appending entries below the snapshot skips them.
  REQUIRE(s.append({{1, 3, EntryType::kNormal, data_of(1, 3)},
                    {2, 4, EntryType::kNormal, "x"},
                    {2, 5, EntryType::kNormal, "z"}})
              .ok());
  CHECK(s.last_index() == 5);
}

TEST_CASE("conf change codec round-trips and rejects garbage without crashing") {
  ConfChange cc{ConfChangeType::kAddLearner, 42, "10.0.0.1:7400"};
  auto back = decode_conf_change(encode_conf_change(cc));
  REQUIRE(back.ok());
  CHECK(*back == cc);
  std::string good = encode_conf_change(cc);
  CHECK(!decode_conf_change("").ok());
  CHECK(!decode_conf_change(good.substr(0, good.size() - 1)).ok());
  CHECK(!decode_conf_change(good + "x").ok());
  std::string bad_type = good;
  bad_type[2] = 9;
  CHECK(!decode_conf_change(bad_type).ok());
  std::string zero = encode_conf_change({ConfChangeType::kAddVoter, 0, ""});
  CHECK(!decode_conf_change(zero).ok());
  SeededRng rng(7);
  for (int i = 0; i < 20000; ++i) {
    std::string junk(rng.uniform(40), '\0');
    for (char& c : junk) c = static_cast<char>(rng.uniform(256));
    if (rng.uniform(2) == 0 && junk.size() > 2) {
      junk[0] = 0x63;
      junk[1] = 1;
    }
    (void)decode_conf_change(junk);
  }
}

TEST_CASE("apply_change: single-server changes are deterministic; the last voter stays") {
  ConfState c;
  c.voters = {1};
  c = apply_change(c, {ConfChangeType::kAddLearner, 2, ""});
  CHECK(c.learners == std::vector<NodeId>{2});
  c = apply_change(c, {ConfChangeType::kAddVoter, 2, ""});  // promotion
  CHECK(c.voters == std::vector<NodeId>{1, 2});
  CHECK(c.learners.empty());
  CHECK(apply_change(c, {ConfChangeType::kAddLearner, 2, ""}) == c);  // no demotion
  c = apply_change(c, {ConfChangeType::kRemoveNode, 1, ""});
  CHECK(c.voters == std::vector<NodeId>{2});
  CHECK(apply_change(c, {ConfChangeType::kRemoveNode, 2, ""}) == c);  // last voter
}

TEST_CASE("Inflights: bounded by count and by bytes") {
  Inflights in(3, 1000);
  in.add(1, 10);
  in.add(2, 10);
  CHECK(!in.full());
  in.add(3, 10);
  CHECK(in.full());
  in.free_le(2);
  CHECK(in.count() == 1);
  CHECK(!in.full());
  in.add(4, 995);
  CHECK(in.full());  // bytes
  in.free_first_one();
  CHECK(in.bytes() == 995);
}

// ---- Elections ---------------------------------------------------------------------

TEST_CASE("§5.2 election: one leader per term, the others follow it") {
  Network net({1, 2, 3});
  net.elect(1);
  const Term t = net.node(1).term();
  for (NodeId id : {2, 3}) {
    CHECK(net.node(id).role() == Role::kFollower);
    CHECK(net.node(id).leader() == 1);
    CHECK(net.node(id).term() == t);
  }
  // An election by timeout elsewhere produces a new term, never a second leader in t.
  net.isolate(1);
  net.tick_all(30);
  net.heal();
  net.stabilize();
  int leaders = 0;
  for (auto& [id, n] : net.nodes()) leaders += n.raw->role() == Role::kLeader ? 1 : 0;
  CHECK(leaders == 1);
  CHECK(net.node(2).term() > t);
}

TEST_CASE("§5.2 a node votes at most once per term (the vote is persisted)") {
  MemoryStorage s = storage_with({1, 2, 3}, {}, 1);
  Config c = base_config(1, &s);
  c.pre_vote = false;
  auto raw = std::move(RawNode::create(c)).value();
  Message v = msg(MessageType::kVote, 2, 1, 5);
  v.index = 1;
  v.log_term = 1;
  REQUIRE(raw->step(v).ok());
  Message v3 = v;
  v3.from = 3;
  REQUIRE(raw->step(v3).ok());
  Ready rd = raw->ready();
  REQUIRE(rd.hard_state);
  CHECK(rd.hard_state->vote == 2);
  CHECK(rd.hard_state->term == 5);
  REQUIRE(rd.messages.size() == 2);
  CHECK(rd.messages[0].to == 2);
  CHECK(!rd.messages[0].reject);
  CHECK(rd.messages[1].to == 3);
  CHECK(rd.messages[1].reject);
  s.set_hard_state(*rd.hard_state);
  raw->advance();
  // After a restart the vote still binds.
  auto again = std::move(RawNode::create(c)).value();
  REQUIRE(again->step(v3).ok());
  Ready rd2 = again->ready();
  REQUIRE(rd2.messages.size() == 1);
  CHECK(rd2.messages[0].reject);
  // Granting again to the same candidate is fine (a retransmitted request).
  again->advance();
  REQUIRE(again->step(v).ok());
  Ready rd3 = again->ready();
  CHECK(!rd3.messages[0].reject);
}

TEST_CASE("§5.4.1 a voter rejects a candidate whose log is less up to date") {
  // Voter log: terms [1, 2, 2] after the snapshot: last (4, t2).
  MemoryStorage s = storage_with({1, 2, 3}, {1, 2, 2}, 2);
  auto raw = std::move(RawNode::create(base_config(1, &s))).value();
  struct Case {
    Index index;
    Term log_term;
    bool granted;
  };
  const Case cases[] = {
      {4, 1, false},  // lower last term
      {3, 2, false},  // same term, shorter
      {4, 2, true},   // identical
      {2, 3, true},   // higher last term wins even when shorter
  };
  Term term = 3;
  for (const Case& c : cases) {
    Message v = msg(MessageType::kVote, 2, 1, term++);
    v.index = c.index;
    v.log_term = c.log_term;
    REQUIRE(raw->step(v).ok());
    Ready rd = raw->ready();
    REQUIRE(rd.messages.size() == 1);
    CHECK_MESSAGE(rd.messages[0].reject == !c.granted, "index ", c.index, " term ", c.log_term);
    raw->advance();
  }
}

TEST_CASE("randomized election timeout lies in [election_tick, 2 * election_tick)") {
  std::set<int> seen;
  for (uint64_t seed = 1; seed <= 40; ++seed) {
    MemoryStorage s = storage_with({1, 2, 3}, {}, 1);
    Config c = base_config(1, &s);
    c.seed = seed;
    auto raw = std::move(RawNode::create(c)).value();
    int ticks = 0;
    while (raw->role() == Role::kFollower && ticks < 100) {
      raw->tick();
      ++ticks;
    }
    CHECK(ticks >= c.election_tick);
    CHECK(ticks < 2 * c.election_tick);
    seen.insert(ticks);
  }
  CHECK(seen.size() > 3);  // it is actually random
}

TEST_CASE("§9.6 pre-vote: a partitioned node does not bump its term, and does not disrupt") {
  Network net({1, 2, 3});
  net.elect(1);
  const Term t = net.node(1).term();
  net.isolate(3);
  net.tick(3, 100);
  CHECK(net.node(3).term() == t);  // pre-votes never succeeded
  CHECK(net.node(3).role() == Role::kPreCandidate);
  net.heal();
  net.tick_all(3);
  CHECK(net.node(1).role() == Role::kLeader);
  CHECK(net.node(1).term() == t);
  CHECK(net.node(3).leader() == 1);
}

TEST_CASE("without pre-vote the same partition does bump the term (the test above can fail)") {
  Network net({1, 2, 3}, [](Config& c) {
    c.pre_vote = false;
    c.check_quorum = false;
  });
  net.elect(1);
  const Term t = net.node(1).term();
  net.isolate(3);
  net.tick(3, 100);
  CHECK(net.node(3).term() > t);
}

TEST_CASE("check-quorum: a leader that cannot hear a majority steps down") {
  Network net({1, 2, 3});
  net.elect(1);
  net.isolate(1);
  net.tick(1, 10);  // the first check still sees the activity from before
  CHECK(net.node(1).role() == Role::kLeader);
  net.tick(1, 10);
  CHECK(net.node(1).role() == Role::kFollower);
  CHECK(net.node(1).propose("x").code() == Status::Code::kUnavailable);
  // A leader that can hear a majority stays.
  net.heal();
  net.tick_all(30);
  NodeId leader = 0;
  for (auto& [id, n] : net.nodes()) leader = n.raw->role() == Role::kLeader ? id : leader;
  REQUIRE(leader != 0);
  net.cut(leader, leader == 3 ? 2 : 3);  // one follower unreachable: still a majority
  net.tick(leader, 30);
  CHECK(net.node(leader).role() == Role::kLeader);
}

TEST_CASE("check-quorum: followers in lease ignore a disruptive vote request") {
  Network net({1, 2, 3});
  net.elect(1);
  const Term t = net.node(1).term();
  Message v = msg(MessageType::kVote, 3, 2, t + 5);
  v.index = net.node(3).last_index();
  v.log_term = t;
  REQUIRE(net.node(2).step(v).ok());
  CHECK(net.node(2).term() == t);
  // A vote request from a leader transfer bypasses the lease.
  v.context = std::string(kCampaignTransfer);
  REQUIRE(net.node(2).step(v).ok());
  CHECK(net.node(2).term() == t + 5);
}

// ---- Replication ---------------------------------------------------------------------

TEST_CASE("§5.3 replication: proposals commit and every node applies them in order") {
  Network net({1, 2, 3});
  net.elect(1);
  CHECK(net.node(2).propose("nope").code() == Status::Code::kUnavailable);
  for (int i = 0; i < 20; ++i) net.propose(1, "v" + std::to_string(i));
  for (NodeId id : {1, 2, 3}) {
    CHECK(net.state(id).applied.size() == 20);
    CHECK(net.state(id).applied == net.state(1).applied);
    CHECK(net.node(id).commit_index() == net.node(1).last_index());
  }
  CHECK(net.state(1).applied.front() == "v0");
  CHECK(net.state(1).applied.back() == "v19");
}

TEST_CASE("§5.3 a minority partition cannot commit; its entries are overwritten later") {
  Network net({1, 2, 3, 4, 5});
  net.elect(1);
  net.propose(1, "a");
  net.isolate(1);
  net.isolate(2);
  REQUIRE(net.node(1).propose("lost").ok());
  net.stabilize();
  const Index commit = net.node(1).commit_index();
  CHECK(net.node(1).last_index() == commit + 1);
  // The majority elects a new leader and moves on.
  net.heal();
  net.isolate(1);
  net.tick_all(30);  // leases expire, someone in the majority wins
  NodeId leader = 0;
  for (NodeId id : {2, 3, 4, 5}) leader = net.node(id).role() == Role::kLeader ? id : leader;
  REQUIRE(leader != 0);
  net.propose(leader, "b");
  net.heal();
  net.tick_all(5);
  for (NodeId id : {1, 2, 3, 4, 5}) {
    CHECK(net.state(id).applied == std::vector<std::string>{"a", "b"});
  }
}

TEST_CASE("§5.4.2 a leader commits entries of earlier terms only by committing one of its own") {
  // Node 1 holds an entry of term 2 at index 2 that node 2 also has.
  auto s1 = std::make_unique<MemoryStorage>(storage_with({1, 2, 3}, {2}, 3));
  auto s2 = std::make_unique<MemoryStorage>(storage_with({1, 2, 3}, {2}, 3));
  auto s3 = std::make_unique<MemoryStorage>(storage_with({1, 2, 3}, {}, 3));
  Network net({});
  net.add(1, std::move(s1));
  net.add(2, std::move(s2));
  net.add(3, std::move(s3));
  // Elect node 1 but deliver no appends: it has its no-op at (3, t4).
  net.set_filter([](const Message& m) { return m.type == MessageType::kAppend; });
  net.elect(1);
  const Term t = net.node(1).term();
  CHECK(t == 4);
  CHECK(net.node(1).commit_index() == 1);
  // Node 2 acknowledges index 2 (the term-2 entry): a majority has it, yet
  // it must not commit by counting.
  Message ack = msg(MessageType::kAppendResp, 2, 1, t);
  ack.index = 2;
  REQUIRE(net.node(1).step(ack).ok());
  CHECK(net.node(1).commit_index() == 1);
  // Acknowledging the leader's own entry commits both.
  ack.index = 3;
  REQUIRE(net.node(1).step(ack).ok());
  CHECK(net.node(1).commit_index() == 3);
}

namespace {

// Figure 7 of the paper (index 1 is the snapshot, term 1, in every log).
const std::vector<Term> kFig7Leader = {1, 1, 4, 4, 5, 5, 6, 6, 6};
const std::vector<std::vector<Term>> kFig7Followers = {
    {1, 1, 4, 4, 5, 5, 6, 6},           // (a) missing entries
    {1, 1, 4},                          // (b) missing many
    {1, 1, 4, 4, 5, 5, 6, 6, 6, 6},     // (c) an extra uncommitted entry
    {1, 1, 4, 4, 5, 5, 6, 6, 6, 7, 7},  // (d) extra entries of a later term
    {1, 1, 4, 4, 4, 4},                 // (e) missing and extra
    {1, 1, 2, 2, 2, 3, 3, 3, 3, 3},     // (f) a whole divergent history
};

}  // namespace

TEST_CASE("§5.3 Figure 7: the leader brings every kind of divergent follower log in line") {
  for (size_t k = 0; k < kFig7Followers.size(); ++k) {
    CAPTURE(k);
    Network net({});
    net.add(1, std::make_unique<MemoryStorage>(storage_with({1, 2, 3}, kFig7Leader, 7)));
    net.add(2, std::make_unique<MemoryStorage>(storage_with({1, 2, 3}, kFig7Followers[k], 7)));
    net.add(3, std::make_unique<MemoryStorage>(storage_with({1, 2, 3}, kFig7Leader, 7)));
    net.elect(1);
    CHECK(net.node(1).term() == 8);
    net.propose(1, "after");
    std::vector<Entry> leader_log = log_of(net.storage(1));
    CHECK(log_of(net.storage(2)) == leader_log);
    CHECK(log_of(net.storage(3)) == leader_log);
    CHECK(net.node(2).commit_index() == net.node(1).last_index());
  }
}

TEST_CASE("§5.3 an append beyond the follower's log is rejected with a hint, not an error") {
  MemoryStorage s = storage_with({1, 2, 3}, {1, 1}, 1);
  auto raw = std::move(RawNode::create(base_config(2, &s))).value();
  Message m = msg(MessageType::kAppend, 1, 2, 2);
  m.index = 10;
  m.log_term = 2;
  m.entries.push_back({2, 11, EntryType::kNormal, "x"});
  REQUIRE(raw->step(m).ok());
  Ready rd = raw->ready();
  REQUIRE(rd.messages.size() == 1);
  CHECK(rd.messages[0].type == MessageType::kAppendResp);
  CHECK(rd.messages[0].reject);
  CHECK(rd.messages[0].reject_hint == 3);  // our last index
  CHECK(rd.messages[0].log_term == 1);
  CHECK(raw->last_index() == 3);
}

// ---- Snapshots -------------------------------------------------------------------------

TEST_CASE("snapshot: a far-behind follower is caught up from a snapshot after compaction") {
  Network net({1, 2, 3});
  net.elect(1);
  net.isolate(3);
  for (int i = 0; i < 30; ++i) net.propose(1, "v" + std::to_string(i));
  // The leader snapshots its state machine and compacts its log.
  TestNode& leader = net.state(1);
  const Index applied = leader.applied_index;
  REQUIRE(net.storage(1)
              .create_snapshot(applied, &leader.applied_conf, encode_state(leader.applied))
              .ok());
  REQUIRE(net.storage(1).compact(applied).ok());
  const size_t before = net.count_sent(MessageType::kSnapshot);
  net.heal();
  net.tick_all(3);
  CHECK(net.count_sent(MessageType::kSnapshot) == before + 1);
  CHECK(net.storage(3).snapshot()->meta.index == applied);
  CHECK(net.state(3).applied == net.state(1).applied);
  // And replication continues from the log afterwards.
  net.propose(1, "after");
  CHECK(net.state(3).applied.back() == "after");
  CHECK(net.node(3).commit_index() == net.node(1).commit_index());
}

TEST_CASE("snapshot: a follower restarted from storage keeps its term, vote, log and config") {
  Network net({1, 2, 3});
  net.elect(1);
  net.propose(1, "a");
  TestNode& n2 = net.state(2);
  REQUIRE(net.storage(2)
              .create_snapshot(n2.applied_index, &n2.applied_conf, encode_state(n2.applied))
              .ok());
  net.propose(1, "b");
  const HardState hs = net.storage(2).hard_state();
  net.restart(2);
  CHECK(net.node(2).term() == hs.term);
  CHECK(net.node(2).commit_index() == hs.commit);
  CHECK(net.node(2).conf_state().voters == std::vector<NodeId>{1, 2, 3});
  net.stabilize();
  CHECK(net.state(2).applied == std::vector<std::string>{"a", "b"});
  net.propose(1, "c");
  CHECK(net.state(2).applied.back() == "c");
}

// ---- Membership ------------------------------------------------------------------------

TEST_CASE("§4.1 learner: catches up, never campaigns, its vote never counts; then promoted") {
  Network net({1, 2, 3});
  net.elect(1);
  net.propose(1, "a");
  net.add(4);
  REQUIRE(net.node(1).propose_conf_change({ConfChangeType::kAddLearner, 4, ""}).ok());
  net.stabilize();
  net.tick_all(2);
  CHECK(net.node(4).conf_state().learners == std::vector<NodeId>{4});
  CHECK(net.state(4).applied == std::vector<std::string>{"a"});
  // A learner does not campaign, however long it waits.
  net.isolate(4);
  const size_t votes_before =
      net.count_sent(MessageType::kPreVote, 4) + net.count_sent(MessageType::kVote, 4);
  net.tick(4, 100);
  CHECK(net.node(4).role() == Role::kFollower);
  CHECK(net.count_sent(MessageType::kPreVote, 4) + net.count_sent(MessageType::kVote, 4) ==
        votes_before);
  CHECK(net.node(4).campaign().code() == Status::Code::kUnavailable);
  net.heal();
  // Votes of learners do not count: node 2 with only the learner's grant loses.
  net.isolate(1);
  net.cut(2, 3);
  net.tick(2, 40);
  CHECK(net.node(2).role() != Role::kLeader);
  net.heal();
  net.tick_all(40);
  NodeId leader = 0;
  for (auto& [id, n] : net.nodes()) leader = n.raw->role() == Role::kLeader ? id : leader;
  REQUIRE(leader != 0);
  CHECK(leader != 4);
  // Promotion.
  REQUIRE(net.node(leader).propose_conf_change({ConfChangeType::kAddVoter, 4, ""}).ok());
  net.stabilize();
  net.tick_all(2);
  for (NodeId id : {1, 2, 3, 4}) {
    CHECK(net.node(id).conf_state().voters == std::vector<NodeId>{1, 2, 3, 4});
    CHECK(net.node(id).conf_state().learners.empty());
    CHECK(net.state(id).applied_conf.voters == std::vector<NodeId>{1, 2, 3, 4});
  }
  // Now it may lead.
  net.node(leader).transfer_leader(4);
  net.stabilize();
  CHECK(net.node(4).role() == Role::kLeader);
}

TEST_CASE("§4.1 membership changes one server at a time: a second change waits for the first") {
  Network net({1, 2, 3});
  net.elect(1);
  net.add(4);
  net.add(5);
  // Hold appends so the first change stays uncommitted.
  net.set_filter([](const Message& m) { return m.type == MessageType::kAppend; });
  REQUIRE(net.node(1).propose_conf_change({ConfChangeType::kAddVoter, 4, ""}).ok());
  // It took effect on append: the leader already counts node 4.
  CHECK(net.node(1).conf_state().voters == std::vector<NodeId>{1, 2, 3, 4});
  CHECK(net.node(1).propose_conf_change({ConfChangeType::kAddVoter, 5, ""}).code() ==
        Status::Code::kResourceExhausted);
  net.heal();
  net.tick_all(3);
  CHECK(net.node(4).conf_state().voters == std::vector<NodeId>{1, 2, 3, 4});
  REQUIRE(net.node(1).propose_conf_change({ConfChangeType::kAddVoter, 5, ""}).ok());
  net.tick_all(3);
  // Nonsense changes are refused.
  CHECK(net.node(1).propose_conf_change({ConfChangeType::kAddVoter, 5, ""}).code() ==
        Status::Code::kAlreadyExists);
  CHECK(net.node(1).propose_conf_change({ConfChangeType::kAddLearner, 5, ""}).code() ==
        Status::Code::kInvalidArgument);
  CHECK(net.node(1).propose_conf_change({ConfChangeType::kRemoveNode, 9, ""}).code() ==
        Status::Code::kNotFound);
  // Remove node 3: it is no longer replicated to and never campaigns.
  REQUIRE(net.node(1).propose_conf_change({ConfChangeType::kRemoveNode, 3, ""}).ok());
  net.tick_all(3);
  for (NodeId id : {1, 2, 4, 5}) {
    CHECK(net.node(id).conf_state().voters == std::vector<NodeId>{1, 2, 4, 5});
  }
  net.isolate(1);
  const size_t before = net.count_sent(MessageType::kPreVote, 3);
  net.tick(3, 100);
  CHECK(net.count_sent(MessageType::kPreVote, 3) == before);
  // The rest of the cluster (4 voters, 3 reachable) elects a new leader.
  net.tick_all(40);
  int leaders = 0;
  for (NodeId id : {2, 4, 5}) leaders += net.node(id).role() == Role::kLeader ? 1 : 0;
  CHECK(leaders == 1);
}

TEST_CASE("§4.1 a conf change takes effect on append and is undone when truncated") {
  MemoryStorage s = storage_with({1, 2, 3}, {}, 1);
  auto raw = std::move(RawNode::create(base_config(2, &s))).value();
  Message a = msg(MessageType::kAppend, 1, 2, 2);
  a.index = 1;
  a.log_term = 1;
  a.entries.push_back(
      {2, 2, EntryType::kConfChange, encode_conf_change({ConfChangeType::kAddLearner, 4, ""})});
  REQUIRE(raw->step(a).ok());
  CHECK(raw->conf_state().learners == std::vector<NodeId>{4});
  // A new leader of term 3 overwrites index 2.
  Message b = msg(MessageType::kAppend, 3, 2, 3);
  b.index = 1;
  b.log_term = 1;
  b.entries.push_back({3, 2, EntryType::kNormal, "x"});
  REQUIRE(raw->step(b).ok());
  CHECK(raw->conf_state().learners.empty());
  CHECK(raw->conf_state().voters == std::vector<NodeId>{1, 2, 3});
}

TEST_CASE("§4.2.2 a leader that removes itself steps down once the removal commits") {
  Network net({1, 2, 3});
  net.elect(1);
  net.propose(1, "a");
  REQUIRE(net.node(1).propose_conf_change({ConfChangeType::kRemoveNode, 1, ""}).ok());
  // Leading (not counting itself) until the entry commits, then stepping down.
  net.stabilize();
  CHECK(net.node(1).role() == Role::kFollower);
  // It handed leadership over at once (MsgTimeoutNow) to an up-to-date voter.
  NodeId leader = 0;
  for (NodeId id : {2, 3}) leader = net.node(id).role() == Role::kLeader ? id : leader;
  CHECK(leader != 0);
  net.propose(leader, "b");
  CHECK(net.state(2).applied == std::vector<std::string>{"a", "b"});
  CHECK(net.state(3).applied == std::vector<std::string>{"a", "b"});
  // The removed node never campaigns again.
  net.isolate(1);
  const size_t before =
      net.count_sent(MessageType::kPreVote, 1) + net.count_sent(MessageType::kVote, 1);
  net.tick(1, 100);
  CHECK(net.count_sent(MessageType::kPreVote, 1) + net.count_sent(MessageType::kVote, 1) == before);
}

// ---- Leader transfer -----------------------------------------------------------------------

TEST_CASE("§3.10 leader transfer: the target campaigns at once and wins") {
  Network net({1, 2, 3});
  net.elect(1);
  net.propose(1, "a");
  const Term t = net.node(1).term();
  net.node(1).transfer_leader(3);
  net.stabilize();
  CHECK(net.node(3).role() == Role::kLeader);
  CHECK(net.node(3).term() == t + 1);
  CHECK(net.node(1).leader() == 3);
  // Forwarded by a follower.
  net.node(2).transfer_leader(1);
  net.stabilize();
  CHECK(net.node(1).role() == Role::kLeader);
}

TEST_CASE("§3.10 leader transfer to a lagging node: catch up first, proposals refused meanwhile") {
  Network net({1, 2, 3});
  net.elect(1);
  net.isolate(3);
  for (int i = 0; i < 5; ++i) net.propose(1, "v" + std::to_string(i));
  net.node(1).transfer_leader(3);
  net.stabilize();
  CHECK(net.node(1).lead_transferee() == 3);
  CHECK(net.node(1).propose("x").code() == Status::Code::kUnavailable);
  // Not done within an election timeout: aborted.
  net.tick(1, 10);
  CHECK(net.node(1).lead_transferee() == 0);
  CHECK(net.node(1).role() == Role::kLeader);
  // Reachable again: the transfer catches the target up, then hands over.
  net.heal();
  net.node(1).transfer_leader(3);
  net.stabilize();
  CHECK(net.node(3).role() == Role::kLeader);
  CHECK(net.state(3).applied.size() == 5);
  // Transfers to learners or strangers are ignored.
  net.node(3).transfer_leader(9);
  net.stabilize();
  CHECK(net.node(3).role() == Role::kLeader);
}

// ---- ReadIndex -------------------------------------------------------------------------------

TEST_CASE("§6.4 ReadIndex on the leader: answered after a heartbeat round confirms leadership") {
  Network net({1, 2, 3});
  net.elect(1);
  net.propose(1, "a");
  net.node(1).read_index("r1");
  net.stabilize();
  REQUIRE(net.state(1).reads.size() == 1);
  CHECK(net.state(1).reads[0].context == "r1");
  CHECK(net.state(1).reads[0].index == net.node(1).commit_index());
  // A deposed leader that cannot reach anyone never answers.
  net.isolate(1);
  net.node(1).read_index("r2");
  net.tick(1, 5);
  CHECK(net.state(1).reads.size() == 1);
}

TEST_CASE("§6.4 ReadIndex through a follower is forwarded and answered with the leader's commit") {
  Network net({1, 2, 3});
  net.elect(1);
  net.propose(1, "a");
  net.node(2).read_index("f1");
  net.stabilize();
  REQUIRE(net.state(2).reads.size() == 1);
  CHECK(net.state(2).reads[0].context == "f1");
  CHECK(net.state(2).reads[0].index == net.node(1).commit_index());
  // Empty contexts are dropped.
  net.node(2).read_index("");
  net.stabilize();
  CHECK(net.state(2).reads.size() == 1);
}

TEST_CASE("§6.4 a new leader serves ReadIndex only after committing an entry of its term") {
  Network net({1, 2, 3});
  net.set_filter([](const Message& m) { return m.type == MessageType::kAppend; });
  net.elect(1);
  net.node(1).read_index("early");
  net.stabilize();
  net.tick(1, 3);
  CHECK(net.state(1).reads.empty());
  net.heal();
  net.tick(1, 1);
  REQUIRE(net.state(1).reads.size() == 1);
  CHECK(net.state(1).reads[0].index == net.node(1).commit_index());
  CHECK(net.state(1).reads[0].index >= 2);  // at least the no-op of its term
}

// ---- Flow control ----------------------------------------------------------------------------

TEST_CASE("flow control: in-flight appends per follower and bytes per message are bounded") {
  Network net({1, 2, 3}, [](Config& c) {
    c.max_inflight_msgs = 3;
    c.max_size_per_msg = 100;
  });
  net.elect(1);
  net.propose(1, "warm-up");  // followers in replicate state
  // Followers' acknowledgements are lost from now on.
  net.set_filter([](const Message& m) { return m.type == MessageType::kAppendResp; });
  const size_t first = net.sent().size();
  for (int i = 0; i < 20; ++i) REQUIRE(net.node(1).propose(std::string(60, 'x')).ok());
  net.stabilize();
  size_t to2 = 0;
  for (size_t k = first; k < net.sent().size(); ++k) {
    const Message& m = net.sent()[k];
    if (m.type != MessageType::kAppend || m.from != 1) continue;
    uint64_t bytes = 0;
    for (const Entry& e : m.entries) bytes += entry_size_bytes(e);
    CHECK((m.entries.size() <= 1 || bytes <= 100));
    if (m.to == 2 && !m.entries.empty()) ++to2;
  }
  CHECK(to2 == 3);  // the window, no more
  // Heartbeat responses free one slot at a time; acknowledgements resume the stream.
  net.heal();
  net.tick_all(3);
  CHECK(net.node(2).last_index() == net.node(1).last_index());
  CHECK(net.state(2).applied.size() == 21);
}

TEST_CASE("flow control: proposals beyond the uncommitted byte budget are refused") {
  Network net({1, 2, 3}, [](Config& c) { c.max_uncommitted_bytes = 1000; });
  net.elect(1);
  net.isolate(2);
  net.isolate(3);
  Status s;
  int accepted = 0;
  for (int i = 0; i < 100 && s.ok(); ++i) {
    s = net.node(1).propose(std::string(100, 'x'));
    accepted += s.ok() ? 1 : 0;
  }
  CHECK(s.code() == Status::Code::kResourceExhausted);
  CHECK(accepted == 10);
  net.heal();
  net.tick_all(3);
  CHECK(net.node(1).propose(std::string(100, 'x')).ok());
}

// ---- Bad input -------------------------------------------------------------------------------

TEST_CASE("bad messages are rejected with a Status, never a crash") {
  Network net({1, 2, 3});
  net.elect(1);
  net.propose(1, "a");
  RawNode& leader = net.node(1);
  RawNode& follower = net.node(2);
  const Term t = leader.term();
  const Index last = leader.last_index();

  Message unknown = msg(static_cast<MessageType>(99), 2, 1, t);
  CHECK(leader.step(unknown).code() == Status::Code::kInvalidArgument);
  CHECK(leader.step(msg(MessageType::kAppend, 2, 1, 0)).code() == Status::Code::kInvalidArgument);
  CHECK(leader.step(msg(MessageType::kHeartbeatResp, 0, 1, t)).code() ==
        Status::Code::kInvalidArgument);
  CHECK(leader.step(msg(MessageType::kHeartbeatResp, 1, 1, t)).code() ==
        Status::Code::kInvalidArgument);
  CHECK(leader.step(msg(MessageType::kHeartbeatResp, 2, 7, t)).code() ==
        Status::Code::kInvalidArgument);
  Message termful_read = msg(MessageType::kReadIndex, 2, 1, t);
  termful_read.context = "x";
  CHECK(leader.step(termful_read).code() == Status::Code::kInvalidArgument);
  // Acknowledging entries the leader does not have.
  Message ack = msg(MessageType::kAppendResp, 2, 1, t);
  ack.index = last + 100;
  CHECK(leader.step(ack).code() == Status::Code::kInvalidArgument);
  CHECK(leader.commit_index() <= last);
  // Entries that are not contiguous, or with terms out of order.
  Message gap = msg(MessageType::kAppend, 1, 2, t);
  gap.index = last;
  gap.log_term = t;
  gap.entries = {{t, last + 1, EntryType::kNormal, ""}, {t, last + 3, EntryType::kNormal, ""}};
  CHECK(follower.step(gap).code() == Status::Code::kInvalidArgument);
  Message back = gap;
  back.entries = {{t, last + 1, EntryType::kNormal, ""}, {t - 1, last + 2, EntryType::kNormal, ""}};
  CHECK(follower.step(back).code() == Status::Code::kInvalidArgument);
  Message future = gap;
  future.entries = {{t + 1, last + 1, EntryType::kNormal, ""}};
  CHECK(follower.step(future).code() == Status::Code::kInvalidArgument);
  Message bad_type = gap;
  bad_type.entries = {{t, last + 1, static_cast<EntryType>(7), ""}};
  CHECK(follower.step(bad_type).code() == Status::Code::kInvalidArgument);
  Message overflow = gap;
  overflow.index = UINT64_MAX;
  overflow.entries = {{t, 0, EntryType::kNormal, ""}};
  CHECK(follower.step(overflow).code() == Status::Code::kInvalidArgument);
  // A heartbeat committing beyond the follower's log.
  Message hb = msg(MessageType::kHeartbeat, 1, 2, t);
  hb.commit = last + 50;
  CHECK(follower.step(hb).code() == Status::Code::kInvalidArgument);
  CHECK(follower.commit_index() <= last);
  // An append that would overwrite a committed entry.
  Message rewrite = msg(MessageType::kAppend, 1, 2, t);
  rewrite.index = 1;
  rewrite.log_term = 1;
  rewrite.entries = {{t, 2, EntryType::kNormal, "evil"}};
  CHECK(follower.step(rewrite).ok());  // stale (below commit): answered with our commit
  CHECK(log_of(net.storage(2)).front().data != "evil");
  // Snapshots with nonsense metadata.
  Message snap = msg(MessageType::kSnapshot, 1, 2, t);
  CHECK(follower.step(snap).code() == Status::Code::kInvalidArgument);  // missing
  snap.snapshot = Snapshot{};
  CHECK(follower.step(snap).code() == Status::Code::kInvalidArgument);  // index 0
  snap.snapshot->meta.index = 100;
  snap.snapshot->meta.term = t;
  snap.snapshot->meta.conf.voters = {1, 1};
  CHECK(follower.step(snap).code() == Status::Code::kInvalidArgument);  // duplicate
  snap.snapshot->meta.conf.voters = {1, 0};
  CHECK(follower.step(snap).code() == Status::Code::kInvalidArgument);
  snap.snapshot->meta.term = t + 1;
  snap.snapshot->meta.conf.voters = {1, 2, 3};
  CHECK(follower.step(snap).code() == Status::Code::kInvalidArgument);  // future term
  // Votes with malformed positions.
  Message vote = msg(MessageType::kVote, 3, 2, t + 1);
  vote.index = 5;
  vote.log_term = 0;
  CHECK(follower.step(vote).code() == Status::Code::kInvalidArgument);
  // Entries on a heartbeat.
  Message hb2 = msg(MessageType::kHeartbeat, 1, 2, t);
  hb2.entries = {{t, 1, EntryType::kNormal, ""}};
  CHECK(follower.step(hb2).code() == Status::Code::kInvalidArgument);
  // The cluster is unharmed.
  net.drop_queue();
  net.propose(1, "b");
  for (NodeId id : {1, 2, 3}) CHECK(net.state(id).applied == std::vector<std::string>{"a", "b"});
}

TEST_CASE("random messages never crash a node (a small in-process fuzz)") {
  SeededRng rng(1234);
  for (int round = 0; round < 20; ++round) {
    Network net({1, 2, 3});
    net.elect(1);
    net.propose(1, "a");
    net.set_strict(false);
    for (int i = 0; i < 500; ++i) {
      Message m;
      m.type = static_cast<MessageType>(rng.uniform(kMessageTypeCount + 1));
      m.from = rng.uniform(5);
      m.to = 1 + rng.uniform(3);
      m.term = rng.uniform(2) ? net.node(m.to).term() + rng.uniform(2) : rng.uniform(10);
      m.index = rng.uniform(12);
      m.log_term = rng.uniform(m.term + 1);
      m.commit = rng.uniform(12);
      m.reject = rng.uniform(2);
      m.reject_hint = rng.uniform(m.index + 1);
      if (rng.uniform(3) == 0) m.context = "c" + std::to_string(rng.uniform(3));
      if (m.type == MessageType::kAppend) {
        Term et = m.log_term;
        for (uint64_t k = 0, n = rng.uniform(4); k < n; ++k) {
          et = std::min<Term>(m.term, et + rng.uniform(2));
          if (et == 0) et = 1;
          m.entries.push_back(
              {et, m.index + 1 + k,
               rng.uniform(4) == 0 ? EntryType::kConfChange : EntryType::kNormal,
               rng.uniform(2) ? encode_conf_change({ConfChangeType::kAddLearner, 7, ""}) : "junk"});
        }
      }
      if (m.type == MessageType::kSnapshot) {
        Snapshot s;
        s.meta.index = rng.uniform(15);
        s.meta.term = rng.uniform(m.term + 1);
        s.meta.conf.voters = {1, 2, 3};
        m.snapshot = s;
      }
      (void)net.node(m.to).step(m);
      if (rng.uniform(10) == 0) net.tick_all(1);
      for (auto& [id, n] : net.nodes()) net.process(id);
      net.drop_queue();
    }
  }
}

// ---- Bootstrap -------------------------------------------------------------------------------

TEST_CASE("bootstrap: a single node elects itself; a used storage cannot be bootstrapped") {
  MemoryStorage s;
  auto raw = std::move(RawNode::create(base_config(1, &s))).value();
  CHECK(raw->campaign().code() == Status::Code::kUnavailable);  // no configuration yet
  REQUIRE(raw->bootstrap({1}).ok());
  Ready rd = raw->ready();
  REQUIRE(rd.snapshot);
  CHECK(rd.snapshot->meta.conf.voters == std::vector<NodeId>{1});
  REQUIRE(s.apply_snapshot(*rd.snapshot).ok());
  REQUIRE(rd.hard_state);
  s.set_hard_state(*rd.hard_state);
  raw->advance();
  for (int i = 0; i < 20 && raw->role() != Role::kLeader; ++i) raw->tick();
  CHECK(raw->role() == Role::kLeader);
  CHECK(raw->bootstrap({1}).code() == Status::Code::kAlreadyExists);
  // A single voter commits and answers reads at once.
  REQUIRE(raw->propose("x").ok());
  raw->read_index("r");
  Ready rd2 = raw->ready();
  REQUIRE(s.append(rd2.entries).ok());
  CHECK(rd2.committed_entries.size() == 2);  // the no-op and "x"
  CHECK(rd2.read_states.size() == 1);
  raw->advance();
  CHECK(!raw->has_ready());
  // Config validation.
  Config bad = base_config(0, &s);
  CHECK(RawNode::create(bad).status().code() == Status::Code::kInvalidArgument);
  bad = base_config(1, &s);
  bad.election_tick = 1;
  CHECK(RawNode::create(bad).status().code() == Status::Code::kInvalidArgument);
  bad = base_config(1, nullptr);
  CHECK(RawNode::create(bad).status().code() == Status::Code::kInvalidArgument);
}

TEST_CASE(
    "§4.1 single-server change bug (raft-dev 2015): a new leader changes membership only "
    "after committing an entry of its term") {
  // {1,2,3,4}; leader 1 appends "add 5", which only node 5 receives.
  Network net({1, 2, 3, 4});
  net.elect(1);
  net.add(5);
  net.set_filter([](const Message& m) { return m.from == 1 && m.to != 5; });
  REQUIRE(net.node(1).propose_conf_change({ConfChangeType::kAddVoter, 5, ""}).ok());
  net.stabilize();
  CHECK(net.node(5).conf_state().voters == std::vector<NodeId>{1, 2, 3, 4, 5});
  CHECK(net.node(2).conf_state().voters == std::vector<NodeId>{1, 2, 3, 4});
  // 1 and 5 drop out; 2 wins term 2 in the old configuration, but its
  // empty entry reaches only 3 (not a majority of four).
  net.heal();
  net.isolate(1);
  net.isolate(5);
  net.set_filter(
      [](const Message& m) { return m.from == 2 && m.to == 4 && m.type == MessageType::kAppend; });
  // (Node 1 tells 2 to campaign now: a leader transfer, so no lease waits.)
  REQUIRE(net.node(2).step(msg(MessageType::kTimeoutNow, 1, 2, net.node(1).term())).ok());
  net.stabilize();
  REQUIRE(net.node(2).role() == Role::kLeader);
  CHECK(net.node(2).commit_index() < net.node(2).last_index());
  // Removing 1 now could commit with {2, 3} while {1, 4, 5} elect 1 under
  // the configuration with 5: two majorities that do not intersect.
  CHECK(net.node(2).propose_conf_change({ConfChangeType::kRemoveNode, 1, ""}).code() ==
        Status::Code::kResourceExhausted);
  // Once its entry commits (4 hears it, so 4 will not elect 1), it may.
  net.set_filter(nullptr);
  net.tick(2, 1);
  CHECK(net.node(2).commit_index() == net.node(2).last_index());
  CHECK(net.node(2).propose_conf_change({ConfChangeType::kRemoveNode, 1, ""}).ok());
}

TEST_CASE("terms and indexes near 2^64 are refused (no overflow of term + 1 or index + 1)") {
  Network net({1, 2, 3});
  net.elect(1);
  Message hb = msg(MessageType::kHeartbeat, 1, 2, UINT64_MAX);
  CHECK(net.node(2).step(hb).code() == Status::Code::kInvalidArgument);
  Message pv = msg(MessageType::kPreVote, 3, 2, kTermMax + 1);
  CHECK(net.node(2).step(pv).code() == Status::Code::kInvalidArgument);
  Message snap = msg(MessageType::kSnapshot, 1, 2, net.node(1).term());
  snap.snapshot = Snapshot{};
  snap.snapshot->meta.index = UINT64_MAX;
  snap.snapshot->meta.term = 1;
  snap.snapshot->meta.conf.voters = {1, 2, 3};
  CHECK(net.node(2).step(snap).code() == Status::Code::kInvalidArgument);
  Message app = msg(MessageType::kAppend, 1, 2, net.node(1).term());
  app.index = kIndexMax;
  app.log_term = 1;
  app.entries = {{1, kIndexMax + 1, EntryType::kNormal, ""}};
  CHECK(net.node(2).step(app).code() == Status::Code::kInvalidArgument);
  // Node ids are arbitrary 64-bit values, even in kTransferLeader's index.
  Message tl = msg(MessageType::kTransferLeader, 2, 1, 0);
  tl.index = UINT64_MAX;
  CHECK(net.node(1).step(tl).ok());
  CHECK(net.node(2).term() == net.node(1).term());
}
