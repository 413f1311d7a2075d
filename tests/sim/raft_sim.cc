// Deterministic simulation of the Raft core: 3, 5 or 7 voters (plus two spare
// nodes for membership changes) running a replicated KV store in one process,
// on a seeded network that drops, delays, reorders and duplicates messages,
// with partitions, crashes and restarts, a disk that loses what was not yet
// persisted, snapshots and log compaction, leader transfers and
// single-server membership changes.
//
//   raft_sim --seed 7              one seed (node count cycles 3/5/7 by seed)
//   raft_sim --seeds 1-200 --quick a range, shorter runs (the meson test)
//   raft_sim --seed 7 --nodes 5 --steps 200000
//   raft_sim --seed 7 --verbose    print the trace as it happens
//   raft_sim --self-test           the linearizability checker on known histories
//
// After every simulated millisecond it checks election safety (at most one
// leader per term); as entries are persisted, log matching (an (index, term)
// pair names one entry and one history); as entries are applied, state
// machine safety (one entry per index across all nodes, snapshot states equal);
// at each new leader, leader completeness (it holds every entry committed in
// an earlier term). Clients record a history of put/append/get operations
// (gets through ReadIndex) and a Wing & Gong / Lowe style search with
// memoization checks it is linearizable, key by key. Timed-out writes may or
// may not have happened: their response time is infinite. At the end the
// network heals and every client must complete one more write (liveness).
//
// A failure prints the seed, what broke and the last trace lines, and exits 1.
#include <algorithm>
#include <chrono>
#include <cinttypes>
#include <cstdarg>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <queue>
#include <set>
#include <stdexcept>
#include <string>
#include <unordered_map>
#include <unordered_set>
#include <vector>

#include "base/clock.h"
#include "raft/raft.h"

using namespace shoal;
using namespace shoal::raft;

namespace {

struct Failure : std::runtime_error {
  using std::runtime_error::runtime_error;
};

std::string strf(const char* fmt, ...) __attribute__((format(printf, 1, 2)));
std::string strf(const char* fmt, ...) {
  char buf[1024];
  va_list ap;
  va_start(ap, fmt);
  std::vsnprintf(buf, sizeof buf, fmt, ap);
  va_end(ap);
  return buf;
}

uint64_t fnv1a(std::string_view s, uint64_t h = 0xcbf29ce484222325ull) {
  for (unsigned char c : s) {
    h ^= c;
    h *= 0x100000001b3ull;
  }
  return h;
}

// ============================================================================
// Linearizability checker (Wing & Gong's search with Lowe's memoization, as
// in Porcupine), for a register-like model per key: put, append, get.
// ============================================================================
namespace lin {

enum class Kind : uint8_t { kPut, kAppend, kGet };
constexpr uint64_t kOpen = UINT64_MAX;  // no response: may take effect any time after the call

struct Op {
  uint64_t call = 0;
  uint64_t ret = kOpen;
  Kind kind = Kind::kGet;
  std::string key;
  std::string value;  // put/append: the argument; get: the result
  int client = 0;
};

enum class Verdict : uint8_t { kOk, kIllegal, kUnknown };

struct Event {
  bool call = false;
  size_t op = 0;
  uint64_t time = 0;
  Event* prev = nullptr;
  Event* next = nullptr;
  Event* match = nullptr;  // call -> its return
};

bool step_model(const std::string& state, const Op& op, std::string* out) {
  switch (op.kind) {
    case Kind::kPut:
      *out = op.value;
      return true;
    case Kind::kAppend:
      *out = state + op.value;
      return true;
    case Kind::kGet:
      *out = state;
      return op.value == state;
  }
  return false;
}

// One key's operations. `budget` bounds the search steps.
Verdict check_one(const std::vector<const Op*>& ops, uint64_t budget) {
  const size_t n = ops.size();
  if (n == 0) return Verdict::kOk;
  std::vector<Event> events(2 * n);
  for (size_t i = 0; i < n; ++i) {
    events[2 * i] = {true, i, ops[i]->call, nullptr, nullptr, &events[2 * i + 1]};
    events[2 * i + 1] = {false, i, ops[i]->ret, nullptr, nullptr, nullptr};
  }
  std::vector<Event*> order;
  for (Event& e : events) order.push_back(&e);
  // By time; at equal times calls first (the more permissive reading).
  std::stable_sort(order.begin(), order.end(), [](const Event* a, const Event* b) {
    if (a->time != b->time) return a->time < b->time;
    return a->call && !b->call;
  });
  Event head;
  Event* prev = &head;
  for (Event* e : order) {
    prev->next = e;
    e->prev = prev;
    prev = e;
  }
  auto lift = [](Event* e) {
    e->prev->next = e->next;
    e->next->prev = e->prev;
    Event* m = e->match;
    m->prev->next = m->next;
    if (m->next) m->next->prev = m->prev;
  };
  auto unlift = [](Event* e) {
    Event* m = e->match;
    m->prev->next = m;
    if (m->next) m->next->prev = m;
    e->prev->next = e;
    e->next->prev = e;
  };
  std::vector<uint64_t> linearized((n + 63) / 64, 0);
  std::unordered_set<std::string> cache;
  auto cache_key = [&](const std::string& state) {
    std::string k(reinterpret_cast<const char*>(linearized.data()), linearized.size() * 8);
    k += state;
    return k;
  };
  std::vector<std::pair<Event*, std::string>> stack;
  std::string state;
  Event* entry = head.next;
  uint64_t steps = 0;
  while (head.next != nullptr) {
    if (++steps > budget) return Verdict::kUnknown;
    if (entry->call) {
      std::string next_state;
      const size_t op = entry->op;
      if (step_model(state, *ops[op], &next_state)) {
        linearized[op / 64] |= 1ull << (op % 64);
        if (cache.insert(cache_key(next_state)).second) {
          stack.emplace_back(entry, std::move(state));
          state = std::move(next_state);
          lift(entry);
          entry = head.next;
          continue;
        }
        linearized[op / 64] &= ~(1ull << (op % 64));
      }
      entry = entry->next;
    } else {
      // A return whose call could not be linearized before it: backtrack.
      if (stack.empty()) return Verdict::kIllegal;
      auto [call, saved] = std::move(stack.back());
      stack.pop_back();
      state = std::move(saved);
      const size_t op = call->op;
      linearized[op / 64] &= ~(1ull << (op % 64));
      unlift(call);
      entry = call->next;
    }
  }
  return Verdict::kOk;
}

// Partitions by key. On kIllegal, *bad_key names the key.
Verdict check(const std::vector<Op>& history, std::string* bad_key, uint64_t budget) {
  std::map<std::string, std::vector<const Op*>> by_key;
  for (const Op& op : history) by_key[op.key].push_back(&op);
  Verdict worst = Verdict::kOk;
  for (const auto& [key, ops] : by_key) {
    Verdict v = check_one(ops, budget);
    if (v == Verdict::kIllegal) {
      if (bad_key) *bad_key = key;
      return v;
    }
    if (v == Verdict::kUnknown) worst = v;
  }
  return worst;
}

Op op(Kind kind, const std::string& key, const std::string& value, uint64_t call, uint64_t ret) {
  Op o;
  o.kind = kind;
  o.key = key;
  o.value = value;
  o.call = call;
  o.ret = ret;
  return o;
}

// Known histories: the checker must accept the linearizable ones and reject
// the others (a checker that accepts everything proves nothing).
int self_test() {
  struct Case {
    const char* name;
    std::vector<Op> history;
    Verdict want;
  };
  const std::vector<Case> cases = {
      {"stale read after a completed put",
       {op(Kind::kPut, "x", "1", 0, 10), op(Kind::kGet, "x", "", 20, 30)},
       Verdict::kIllegal},
      {"read concurrent with a put sees the old value",
       {op(Kind::kPut, "x", "1", 0, 10), op(Kind::kGet, "x", "", 5, 15)},
       Verdict::kOk},
      {"read concurrent with a put sees the new value",
       {op(Kind::kPut, "x", "1", 0, 10), op(Kind::kGet, "x", "1", 5, 15)},
       Verdict::kOk},
      {"a value nobody wrote",
       {op(Kind::kPut, "x", "1", 0, 10), op(Kind::kGet, "x", "2", 20, 30)},
       Verdict::kIllegal},
      {"an open put may take effect late",
       {op(Kind::kPut, "x", "1", 0, kOpen), op(Kind::kGet, "x", "", 20, 30),
        op(Kind::kGet, "x", "1", 40, 50)},
       Verdict::kOk},
      {"an open put may never take effect",
       {op(Kind::kPut, "x", "1", 0, kOpen), op(Kind::kGet, "x", "", 20, 30)},
       Verdict::kOk},
      {"an open put cannot be undone once seen",
       {op(Kind::kPut, "x", "1", 0, kOpen), op(Kind::kGet, "x", "1", 20, 30),
        op(Kind::kGet, "x", "", 40, 50)},
       Verdict::kIllegal},
      {"appends in real-time order",
       {op(Kind::kAppend, "x", "a", 0, 10), op(Kind::kAppend, "x", "b", 20, 30),
        op(Kind::kGet, "x", "ab", 40, 50)},
       Verdict::kOk},
      {"appends out of real-time order",
       {op(Kind::kAppend, "x", "a", 0, 10), op(Kind::kAppend, "x", "b", 20, 30),
        op(Kind::kGet, "x", "ba", 40, 50)},
       Verdict::kIllegal},
      {"concurrent appends in either order",
       {op(Kind::kAppend, "x", "a", 0, 30), op(Kind::kAppend, "x", "b", 10, 20),
        op(Kind::kGet, "x", "ba", 40, 50)},
       Verdict::kOk},
      {"two readers disagree on the order",
       {op(Kind::kAppend, "x", "a", 0, 100), op(Kind::kAppend, "x", "b", 0, 100),
        op(Kind::kGet, "x", "ab", 10, 20), op(Kind::kGet, "x", "b", 30, 40)},
       Verdict::kIllegal},
      {"keys are independent",
       {op(Kind::kPut, "x", "1", 0, 10), op(Kind::kPut, "y", "2", 0, 10),
        op(Kind::kGet, "y", "2", 20, 30), op(Kind::kGet, "x", "1", 20, 30)},
       Verdict::kOk},
  };
  int failures = 0;
  for (const Case& c : cases) {
    Verdict got = check(c.history, nullptr, 1'000'000);
    const bool ok = got == c.want;
    std::printf("%s  %s\n", ok ? "ok  " : "FAIL", c.name);
    failures += ok ? 0 : 1;
  }
  // A larger random linearizable history (sequential ops replayed on a
  // model, then stretched into overlapping intervals that still contain
  // their linearization point) must be accepted; corrupting one read's
  // result in it must be rejected.
  SeededRng rng(99);
  std::vector<Op> history;
  std::map<std::string, std::string> model;
  uint64_t t = 100;
  for (int i = 0; i < 300; ++i) {
    t += 10;
    Op o;
    o.key = "k" + std::to_string(rng.uniform(3));
    o.kind = static_cast<Kind>(rng.uniform(3));
    o.value = o.kind == Kind::kGet ? model[o.key] : "v" + std::to_string(i) + ",";
    if (o.kind == Kind::kPut) model[o.key] = o.value;
    if (o.kind == Kind::kAppend) model[o.key] += o.value;
    o.call = t - rng.uniform(25);
    o.ret = rng.uniform(20) == 0 && o.kind != Kind::kGet ? kOpen : t + rng.uniform(25);
    history.push_back(o);
  }
  Verdict big = check(history, nullptr, 50'000'000);
  std::printf("%s  random linearizable history of 300 ops\n",
              big == Verdict::kOk ? "ok  " : "FAIL");
  failures += big == Verdict::kOk ? 0 : 1;
  for (Op& o : history) {
    if (o.kind == Kind::kGet && !o.value.empty()) {
      o.value = "v-corrupt,";
      break;
    }
  }
  Verdict bad = check(history, nullptr, 50'000'000);
  std::printf("%s  the same history with one corrupted read\n",
              bad == Verdict::kIllegal ? "ok  " : "FAIL");
  failures += bad == Verdict::kIllegal ? 0 : 1;
  std::printf("%s\n", failures == 0 ? "self-test passed" : "self-test FAILED");
  return failures == 0 ? 0 : 1;
}

}  // namespace lin

// ============================================================================
// The replicated state machine: a KV store with per-client sessions.
// ============================================================================
struct Command {
  char op = 'P';  // 'P' put, 'A' append
  uint64_t client = 0;
  uint64_t seq = 0;
  std::string key;
  std::string value;
};

std::string encode_command(const Command& c) {
  return strf("%c|%" PRIu64 "|%" PRIu64 "|", c.op, c.client, c.seq) + c.key + "|" + c.value;
}

std::optional<Command> decode_command(const std::string& s) {
  Command c;
  size_t p1 = s.find('|'), p2 = s.find('|', p1 + 1), p3 = s.find('|', p2 + 1),
         p4 = s.find('|', p3 + 1);
  if (p1 != 1 || p2 == std::string::npos || p3 == std::string::npos || p4 == std::string::npos) {
    return std::nullopt;
  }
  c.op = s[0];
  c.client = std::strtoull(s.c_str() + 2, nullptr, 10);
  c.seq = std::strtoull(s.c_str() + p2 + 1, nullptr, 10);
  c.key = s.substr(p3 + 1, p4 - p3 - 1);
  c.value = s.substr(p4 + 1);
  return c;
}

struct KvStore {
  std::map<std::string, std::string> kv;
  std::map<uint64_t, uint64_t> sessions;  // client -> last applied seq

  // Returns false for a duplicate (already applied) command.
  bool apply(const Command& c) {
    uint64_t& last = sessions[c.client];
    if (c.seq <= last) return false;
    last = c.seq;
    if (c.op == 'P') kv[c.key] = c.value;
    if (c.op == 'A') kv[c.key] += c.value;
    return true;
  }

  std::string encode() const {
    std::string out;
    auto put = [&](const std::string& s) { out += std::to_string(s.size()) + ":" + s; };
    put(std::to_string(kv.size()));
    for (const auto& [k, v] : kv) {
      put(k);
      put(v);
    }
    put(std::to_string(sessions.size()));
    for (const auto& [c, s] : sessions) {
      put(std::to_string(c));
      put(std::to_string(s));
    }
    return out;
  }

  static KvStore decode(const std::string& data) {
    KvStore st;
    if (data.empty()) return st;  // bootstrap: the empty state
    size_t pos = 0;
    auto get = [&]() {
      size_t colon = data.find(':', pos);
      if (colon == std::string::npos) throw Failure("snapshot data is corrupt");
      size_t len = std::strtoull(data.c_str() + pos, nullptr, 10);
      std::string s = data.substr(colon + 1, len);
      pos = colon + 1 + len;
      return s;
    };
    size_t n = std::stoull(get());
    for (size_t i = 0; i < n; ++i) {
      std::string k = get();
      st.kv[k] = get();
    }
    n = std::stoull(get());
    for (size_t i = 0; i < n; ++i) {
      uint64_t c = std::stoull(get());
      st.sessions[c] = std::stoull(get());
    }
    return st;
  }
};

// ============================================================================
// The simulation.
// ============================================================================
constexpr uint64_t kTickMs = 10;        // one raft tick
constexpr int kElectionTick = 10;       // 100-200 ms election timeout
constexpr uint64_t kOpTimeoutMs = 700;  // a client gives up
constexpr size_t kKeys = 4;
constexpr int kClients = 5;
constexpr Index kSnapshotEveryEntries = 40;  // applied entries between snapshots
constexpr Index kCompactKeepEntries = 8;     // entries kept below a snapshot
constexpr uint64_t kFinalPhaseMs = 20'000;   // liveness after healing
constexpr uint64_t kCheckerBudget = 20'000'000;
constexpr size_t kTraceLines = 120;
constexpr int kSpareNodes = 2;

struct Options {
  uint64_t seed = 1;
  int nodes = 0;  // 0: cycles 3/5/7 by seed
  uint64_t steps = 0;
  bool quick = false;
  bool verbose = false;
};

struct PendingRead {
  int client = 0;
  uint64_t seq = 0;
  std::string key;
  bool have_index = false;
  Index index = 0;
};

struct SimNode {
  NodeId id = 0;
  bool up = false;
  uint64_t down_until = 0;
  uint64_t tick_phase = 0;
  MemoryStorage storage;  // what is durable
  std::unique_ptr<RawNode> raw;
  KvStore sm;
  Index applied = 0;
  ConfState applied_conf;
  // A Ready taken but not yet persisted (the disk is slow); lost on a crash.
  std::optional<Ready> pending;
  uint64_t persist_at = 0;
  Term pending_term = 0;
  std::map<std::pair<int, uint64_t>, bool> writes;  // (client, seq) proposed here
  std::map<std::string, PendingRead> reads;         // context -> read
  Term leader_term_checked = 0;
};

struct Client {
  int id = 0;
  uint64_t next_seq = 1;
  bool busy = false;
  uint64_t seq = 0;
  size_t history_index = 0;
  bool is_read = false;
  uint64_t invoked_at = 0;
  uint64_t next_op_at = 0;
  NodeId node = 0;
  NodeId leader_hint = 0;
};

struct Flight {
  uint64_t at;
  uint64_t order;
  Message m;
  bool operator>(const Flight& o) const { return at != o.at ? at > o.at : order > o.order; }
};

struct Stats {
  uint64_t delivered = 0, dropped = 0, duplicated = 0, crashes = 0, partitions = 0;
  uint64_t conf_changes = 0, transfers = 0, snapshots_sent = 0, snapshots_made = 0;
  uint64_t writes_ok = 0, writes_open = 0, reads_ok = 0, reads_dropped = 0;
  uint64_t lost_readies = 0;
  std::set<Term> leader_terms;
};

class Sim {
 public:
  explicit Sim(const Options& o) : opt_(o), rng_(o.seed * 0x2545f4914f6cdd1dull + 17) {
    n_voters_ = o.nodes;
    for (int i = 1; i <= n_voters_ + kSpareNodes; ++i) {
      SimNode& n = nodes_[static_cast<NodeId>(i)];
      n.id = static_cast<NodeId>(i);
      n.tick_phase = rng_.uniform(kTickMs);
    }
    std::vector<NodeId> voters;
    for (int i = 1; i <= n_voters_; ++i) voters.push_back(static_cast<NodeId>(i));
    for (auto& [id, n] : nodes_) {
      start(n);
      if (id <= static_cast<NodeId>(n_voters_)) check_ok(n.raw->bootstrap(voters), "bootstrap");
    }
    for (int c = 0; c < kClients; ++c) {
      Client cl;
      cl.id = c + 1;
      clients_.push_back(cl);
    }
    // Fault intensity varies by seed.
    drop_pct_ = rng_.uniform(6);
    dup_pct_ = rng_.uniform(4);
    long_delay_pct_ = 1 + rng_.uniform(5);
    // Some seeds churn the membership hard (changes back to back).
    conf_per_mille_ = rng_.uniform(3) == 0 ? 20 + rng_.uniform(60) : 1 + rng_.uniform(5);
  }

  void run(uint64_t steps) {
    for (now_ = 0; now_ < steps; ++now_) {
      faults();
      step_time(true);
    }
    final_phase();
  }

  std::string summary() const {
    return strf("nodes=%d terms=%zu commit=%" PRIu64 " writes=%" PRIu64 "(+%" PRIu64
                " open) reads=%" PRIu64 " msgs=%" PRIu64 " dropped=%" PRIu64 " dup=%" PRIu64
                " crashes=%" PRIu64 " lost-readies=%" PRIu64 " partitions=%" PRIu64 " conf=%" PRIu64
                " transfers=%" PRIu64 " snaps=%" PRIu64 "/%" PRIu64,
                n_voters_, stats_.leader_terms.size(), max_commit_, stats_.writes_ok,
                stats_.writes_open, stats_.reads_ok, stats_.delivered, stats_.dropped,
                stats_.duplicated, stats_.crashes, stats_.lost_readies, stats_.partitions,
                stats_.conf_changes, stats_.transfers, stats_.snapshots_made,
                stats_.snapshots_sent);
  }

  // Returns the verdict of the linearizability check.
  lin::Verdict check_history() {
    std::string bad_key;
    std::vector<lin::Op> history;
    for (const lin::Op& o : history_) {
      if (o.client >= 0) history.push_back(o);  // drop reads that never returned
    }
    lin::Verdict v = lin::check(history, &bad_key, kCheckerBudget);
    if (v == lin::Verdict::kIllegal) {
      std::string ops;
      for (const lin::Op& o : history) {
        if (o.key != bad_key) continue;
        ops += strf("\n  c%d %s %s [%" PRIu64 ", %s]", o.client,
                    o.kind == lin::Kind::kGet   ? "get"
                    : o.kind == lin::Kind::kPut ? "put"
                                                : "append",
                    o.value.c_str(), o.call,
                    o.ret == lin::kOpen ? "open" : std::to_string(o.ret).c_str());
      }
      fail("history of key " + bad_key + " is not linearizable:" + ops);
    }
    return v;
  }

  const std::deque<std::string>& trace() const { return trace_; }
  size_t history_size() const { return history_.size(); }

  [[noreturn]] void fail(const std::string& what) {
    throw Failure(strf("t=%" PRIu64 "ms: ", now_) + what);
  }

 private:
  // ---- Helpers ----------------------------------------------------------------
  void log(const std::string& line) {
    std::string l = strf("%7" PRIu64 " ", now_) + line;
    if (opt_.verbose) std::printf("%s\n", l.c_str());
    trace_.push_back(std::move(l));
    if (trace_.size() > kTraceLines) trace_.pop_front();
  }

  void check_ok(const Status& s, const char* what) {
    if (!s.ok()) fail(std::string(what) + ": " + s.to_string());
  }

  bool chance(uint64_t per_mille) { return rng_.uniform(1000) < per_mille; }

  SimNode* leader_node() {
    SimNode* best = nullptr;
    for (auto& [id, n] : nodes_) {
      if (n.up && n.raw->role() == SoftState::Role::kLeader &&
          (best == nullptr || n.raw->term() > best->raw->term())) {
        best = &n;
      }
    }
    return best;
  }

  // ---- Node lifecycle -----------------------------------------------------------
  void start(SimNode& n) {
    Config c;
    c.id = n.id;
    c.election_tick = kElectionTick;
    c.heartbeat_tick = 1;
    c.max_size_per_msg = 64 + rng_.uniform(4) * 256;  // small: several messages per catch-up
    c.max_inflight_msgs = 2 + rng_.uniform(8);
    c.max_committed_bytes_per_ready = 512;
    c.storage = &n.storage;
    c.applied = n.storage.snapshot_index();
    c.seed = rng_.next_u64();
    auto raw = RawNode::create(c);
    if (!raw.ok()) fail(strf("node %" PRIu64 " cannot start: ", n.id) + raw.status().to_string());
    n.raw = std::move(raw).value();
    Result<Snapshot> snap = n.storage.snapshot();
    n.sm = KvStore::decode(snap.ok() ? snap->data : std::string());
    n.applied = n.raw->applied_index();
    n.applied_conf = n.raw->applied_conf_state();
    n.up = true;
    n.pending.reset();
    n.writes.clear();
    n.reads.clear();
    n.leader_term_checked = 0;
  }

  void crash(SimNode& n, uint64_t down_ms) {
    if (n.pending) ++stats_.lost_readies;
    log(strf("CRASH node %" PRIu64 "%s for %" PRIu64 "ms", n.id,
             n.pending ? " (losing an unpersisted Ready)" : "", down_ms));
    n.up = false;
    n.raw.reset();
    n.pending.reset();
    n.writes.clear();
    n.reads.clear();
    n.down_until = now_ + down_ms;
    ++stats_.crashes;
  }

  void restart(SimNode& n) {
    start(n);
    log(strf("RESTART node %" PRIu64 ": ", n.id) + n.raw->status_line());
  }

  // ---- Network ------------------------------------------------------------------
  bool partitioned(NodeId a, NodeId b) const {
    auto ga = group_.find(a), gb = group_.find(b);
    int x = ga == group_.end() ? 0 : ga->second, y = gb == group_.end() ? 0 : gb->second;
    return x != y;
  }

  void send(Message m) {
    if (partitioned(m.from, m.to) || (drop_pct_ > 0 && rng_.uniform(100) < drop_pct_)) {
      ++stats_.dropped;
      if (m.type == MessageType::kSnapshot) report_snapshot_later(m.from, m.to, true);
      if (chance(100)) unreachable_.push_back({m.from, m.to});
      return;
    }
    if (m.type == MessageType::kSnapshot) ++stats_.snapshots_sent;
    const int copies = dup_pct_ > 0 && rng_.uniform(100) < dup_pct_ ? 2 : 1;
    if (copies == 2) ++stats_.duplicated;
    for (int i = 0; i < copies; ++i) {
      uint64_t delay = 1 + rng_.uniform(8);
      if (rng_.uniform(100) < long_delay_pct_) delay += rng_.uniform(150);  // reordering
      flights_.push({now_ + delay, order_++, i + 1 == copies ? std::move(m) : m});
    }
  }

  void report_snapshot_later(NodeId leader, NodeId to, bool failed) {
    snapshot_reports_.push_back({leader, to, failed});
  }

  void deliver() {
    while (!flights_.empty() && flights_.top().at <= now_) {
      Message m = flights_.top().m;
      flights_.pop();
      SimNode& to = nodes_.at(m.to);
      const bool lost = !to.up || partitioned(m.from, m.to);
      if (m.type == MessageType::kSnapshot) report_snapshot_later(m.from, m.to, lost);
      if (lost) {
        ++stats_.dropped;
        continue;
      }
      ++stats_.delivered;
      Status s = to.raw->step(m);
      if (!s.ok()) fail("an honest message was refused: " + describe(m) + ": " + s.to_string());
    }
    for (auto [leader, to, failed] : std::exchange(snapshot_reports_, {})) {
      SimNode& n = nodes_.at(leader);
      if (n.up) n.raw->report_snapshot(to, failed);
    }
    for (auto [from, to] : std::exchange(unreachable_, {})) {
      SimNode& n = nodes_.at(from);
      if (n.up) n.raw->report_unreachable(to);
    }
  }

  // ---- Faults -------------------------------------------------------------------
  void faults() {
    // Partitions: isolate one node or split in two; heal later.
    if (now_ >= partition_until_ && !group_.empty()) {
      group_.clear();
      log("HEAL");
    } else if (group_.empty() && chance(2)) {
      std::vector<NodeId> ids;
      for (auto& [id, n] : nodes_) ids.push_back(id);
      if (rng_.uniform(2) == 0) {
        NodeId victim = ids[rng_.uniform(ids.size())];
        group_[victim] = 1;
        log(strf("PARTITION isolate %" PRIu64, victim));
      } else {
        std::string desc;
        for (NodeId id : ids) {
          group_[id] = static_cast<int>(rng_.uniform(2));
          desc += strf(" %" PRIu64 ":%d", id, group_[id]);
        }
        log("PARTITION split" + desc);
      }
      partition_until_ = now_ + 200 + rng_.uniform(3000);
      ++stats_.partitions;
    }
    // Crashes and restarts.
    for (auto& [id, n] : nodes_) {
      if (!n.up && now_ >= n.down_until) restart(n);
    }
    if (chance(1)) {
      auto it = std::next(nodes_.begin(), static_cast<long>(rng_.uniform(nodes_.size())));
      if (it->second.up) crash(it->second, 50 + rng_.uniform(2000));
    }
    // A crash right while a Ready is being persisted (lose unsynced writes).
    if (chance(1)) {
      for (auto& [id, n] : nodes_) {
        if (n.up && n.pending) {
          crash(n, 20 + rng_.uniform(500));
          break;
        }
      }
    }
    // Membership changes and leader transfers, through the leader.
    if (chance(conf_per_mille_)) change_membership();
    if (chance(1)) {
      if (SimNode* l = leader_node()) {
        ConfState conf = l->raw->conf_state();
        NodeId to = conf.voters[rng_.uniform(conf.voters.size())];
        log(strf("TRANSFER %" PRIu64 " -> %" PRIu64, l->id, to));
        l->raw->transfer_leader(to);
        ++stats_.transfers;
      }
    }
  }

  void change_membership() {
    SimNode* l = leader_node();
    if (l == nullptr) return;
    ConfState conf = l->raw->conf_state();
    std::vector<NodeId> outsiders;
    for (auto& [id, n] : nodes_) {
      if (std::find(conf.voters.begin(), conf.voters.end(), id) == conf.voters.end() &&
          std::find(conf.learners.begin(), conf.learners.end(), id) == conf.learners.end()) {
        outsiders.push_back(id);
      }
    }
    ConfChange cc;
    const size_t min_voters = std::max<size_t>(3, static_cast<size_t>(n_voters_) - 1);
    if (!conf.learners.empty() && rng_.uniform(4) != 0) {
      cc.type = ConfChangeType::kAddVoter;
      cc.node = conf.learners[rng_.uniform(conf.learners.size())];
    } else if (!conf.learners.empty()) {
      cc.type = ConfChangeType::kRemoveNode;
      cc.node = conf.learners[rng_.uniform(conf.learners.size())];
    } else if (!outsiders.empty() && (conf.voters.size() <= min_voters || rng_.uniform(2) == 0)) {
      cc.type = ConfChangeType::kAddLearner;
      cc.node = outsiders[rng_.uniform(outsiders.size())];
    } else if (conf.voters.size() > min_voters) {
      cc.type = ConfChangeType::kRemoveNode;
      cc.node = conf.voters[rng_.uniform(conf.voters.size())];  // maybe the leader itself
    } else {
      return;
    }
    Status s = l->raw->propose_conf_change(cc);
    static const char* const kNames[] = {"add-voter", "add-learner", "remove"};
    log(strf("CONF %s %" PRIu64 " via %" PRIu64 ": ", kNames[static_cast<int>(cc.type)], cc.node,
             l->id) +
        s.to_string());
    if (s.ok()) ++stats_.conf_changes;
  }

  // ---- One millisecond ------------------------------------------------------------
  void step_time(bool clients_active) {
    deliver();
    for (auto& [id, n] : nodes_) {
      if (n.up && (now_ + n.tick_phase) % kTickMs == 0) n.raw->tick();
    }
    clients(clients_active);
    for (auto& [id, n] : nodes_) {
      if (n.up) handle_ready(n);
    }
    serve_reads();
    check_leaders();
  }

  void handle_ready(SimNode& n) {
    for (int rounds = 0; rounds < 64; ++rounds) {
      if (n.pending) {
        if (now_ < n.persist_at) return;
        persist_and_apply(n);
        continue;
      }
      if (!n.raw->has_ready()) return;
      n.pending = n.raw->ready();
      n.pending_term = n.raw->term();
      const uint64_t r = rng_.uniform(100);
      n.persist_at = now_ + (r < 60 ? 0 : r < 95 ? 1 + rng_.uniform(3) : 5 + rng_.uniform(25));
    }
  }

  void persist_and_apply(SimNode& n) {
    Ready rd = std::move(*n.pending);
    n.pending.reset();
    // 1. Persist.
    if (rd.snapshot) check_ok(n.storage.apply_snapshot(*rd.snapshot), "apply_snapshot");
    if (!rd.entries.empty()) {
      check_ok(n.storage.append(rd.entries), "append");
      check_log_matching(n, rd.entries);
    }
    if (rd.hard_state) n.storage.set_hard_state(*rd.hard_state);
    // 2. Send.
    for (Message& m : rd.messages) send(std::move(m));
    // 3. Apply.
    if (rd.snapshot) {
      n.sm = KvStore::decode(rd.snapshot->data);
      n.applied = rd.snapshot->meta.index;
      n.applied_conf = rd.snapshot->meta.conf;
      check_state(n.applied, n.sm, n.id, "restored snapshot");
      log(strf("node %" PRIu64 " restored snapshot at %" PRIu64, n.id, n.applied));
    }
    for (const Entry& e : rd.committed_entries) apply(n, e);
    for (ReadState& rs : rd.read_states) {
      auto it = n.reads.find(rs.context);
      if (it != n.reads.end()) {
        it->second.have_index = true;
        it->second.index = rs.index;
      }
    }
    if (rd.soft_state) {
      log(strf("node %" PRIu64 " is %s (leader %" PRIu64 ") term %" PRIu64, n.id,
               role_name(rd.soft_state->role), rd.soft_state->leader, n.pending_term));
    }
    if (rd.soft_state && rd.soft_state->role == SoftState::Role::kLeader) {
      check_leader_completeness(n, n.pending_term);
    }
    n.raw->advance();
    if (!(n.applied_conf == n.raw->applied_conf_state())) {
      fail(strf("node %" PRIu64 ": applied configuration disagrees with the core", n.id));
    }
    maybe_snapshot(n);
  }

  void apply(SimNode& n, const Entry& e) {
    if (e.index != n.applied + 1) {
      fail(strf("node %" PRIu64 " applies index %" PRIu64 " after %" PRIu64, n.id, e.index,
                n.applied));
    }
    n.applied = e.index;
    // State machine safety: one entry per index, everywhere.
    const uint64_t h = fnv1a(e.data, e.term * 31 + static_cast<uint64_t>(e.type));
    auto [it, inserted] = applied_.try_emplace(e.index, AppliedRecord{e.term, h, now_});
    if (!inserted && (it->second.term != e.term || it->second.hash != h)) {
      fail(strf("state machine safety: node %" PRIu64 " applies (%" PRIu64 ", t%" PRIu64
                ") where another node applied term %" PRIu64,
                n.id, e.index, e.term, it->second.term));
    }
    if (e.type == EntryType::kConfChange) {
      Result<ConfChange> cc = decode_conf_change(e.data);
      if (!cc.ok()) fail("undecodable conf change was committed");
      n.applied_conf = n.raw->apply_conf_change(*cc);
      return;
    }
    if (e.data.empty()) return;  // a leader's empty entry
    std::optional<Command> cmd = decode_command(e.data);
    if (!cmd) fail("undecodable command was committed");
    n.sm.apply(*cmd);
    auto w = n.writes.find({static_cast<int>(cmd->client), cmd->seq});
    if (w != n.writes.end()) {
      n.writes.erase(w);
      Client& c = clients_[cmd->client - 1];
      if (c.busy && !c.is_read && c.seq == cmd->seq) {
        history_[c.history_index].ret = now_;
        c.busy = false;
        c.next_op_at = now_ + rng_.uniform(20);
        ++stats_.writes_ok;
      }
    }
  }

  void maybe_snapshot(SimNode& n) {
    const Index snap = n.storage.snapshot_index();
    if (n.applied < snap + kSnapshotEveryEntries) return;
    check_ok(n.storage.create_snapshot(n.applied, &n.applied_conf, n.sm.encode()),
             "create_snapshot");
    check_state(n.applied, n.sm, n.id, "created snapshot");
    ++stats_.snapshots_made;
    const Index compact_to = n.applied - kCompactKeepEntries;
    if (compact_to >= n.storage.first_index()) check_ok(n.storage.compact(compact_to), "compact");
  }

  // ---- Clients ----------------------------------------------------------------------
  void clients(bool active) {
    for (Client& c : clients_) {
      if (c.busy && now_ - c.invoked_at >= kOpTimeoutMs) time_out(c);
      if (!c.busy && active && now_ >= c.next_op_at) invoke(c);
    }
  }

  void time_out(Client& c) {
    SimNode& n = nodes_.at(c.node);
    if (c.is_read) {
      history_[c.history_index].client = -1;  // a read that never returned: no effect
      ++stats_.reads_dropped;
      if (n.up) {
        for (auto it = n.reads.begin(); it != n.reads.end();) {
          it = it->second.client == c.id ? n.reads.erase(it) : std::next(it);
        }
      }
    } else {
      ++stats_.writes_open;  // stays open: it may still take effect
      if (n.up) n.writes.erase({c.id, c.seq});
    }
    c.busy = false;
    c.leader_hint = 0;
    c.next_op_at = now_ + rng_.uniform(50);
  }

  void invoke(Client& c) {
    NodeId target = c.leader_hint;
    if (target == 0 || rng_.uniform(5) == 0) target = 1 + rng_.uniform(nodes_.size());
    SimNode& n = nodes_.at(target);
    c.next_op_at = now_ + 1 + rng_.uniform(10);
    if (!n.up) {
      c.leader_hint = 0;
      return;
    }
    const uint64_t seq = c.next_seq++;
    lin::Op op;
    op.call = now_;
    op.client = c.id;
    op.key = "k" + std::to_string(rng_.uniform(kKeys));
    const uint64_t kind = rng_.uniform(10);
    if (kind < 4) {
      // A read through ReadIndex: at the leader or any follower.
      op.kind = lin::Kind::kGet;
      const std::string ctx = strf("c%d.%" PRIu64, c.id, seq);
      n.reads[ctx] = PendingRead{c.id, seq, op.key, false, 0};
      n.raw->read_index(ctx);
      c.is_read = true;
    } else {
      Command cmd;
      cmd.op = kind < 7 ? 'P' : 'A';
      cmd.client = static_cast<uint64_t>(c.id);
      cmd.seq = seq;
      cmd.key = op.key;
      cmd.value = strf("%d.%" PRIu64 ";", c.id, seq);
      Status s = n.raw->propose(encode_command(cmd));
      if (!s.ok()) {
        c.leader_hint = n.raw->leader();
        return;  // refused: never happened, not part of the history
      }
      op.kind = cmd.op == 'P' ? lin::Kind::kPut : lin::Kind::kAppend;
      op.value = cmd.value;
      n.writes[{c.id, seq}] = true;
      c.is_read = false;
    }
    c.leader_hint = target;
    c.busy = true;
    c.seq = seq;
    c.node = target;
    c.invoked_at = now_;
    c.history_index = history_.size();
    history_.push_back(std::move(op));
  }

  void serve_reads() {
    for (auto& [id, n] : nodes_) {
      if (!n.up) continue;
      for (auto it = n.reads.begin(); it != n.reads.end();) {
        const PendingRead& r = it->second;
        if (!r.have_index || n.applied < r.index) {
          ++it;
          continue;
        }
        Client& c = clients_[r.client - 1];
        if (c.busy && c.is_read && c.seq == r.seq) {
          auto kv = n.sm.kv.find(r.key);
          history_[c.history_index].value = kv == n.sm.kv.end() ? "" : kv->second;
          history_[c.history_index].ret = now_;
          c.busy = false;
          c.next_op_at = now_ + rng_.uniform(20);
          ++stats_.reads_ok;
        }
        it = n.reads.erase(it);
      }
    }
  }

  // ---- Invariants ---------------------------------------------------------------------
  void check_leaders() {
    for (auto& [id, n] : nodes_) {
      if (!n.up) continue;
      const Term t = n.raw->term();
      if (n.raw->role() == SoftState::Role::kLeader) {
        // Election safety: at most one leader per term, ever.
        auto [it, inserted] = leader_of_term_.try_emplace(t, id);
        if (!inserted && it->second != id) {
          fail(strf("election safety: nodes %" PRIu64 " and %" PRIu64 " both lead term %" PRIu64,
                    it->second, id, t));
        }
        stats_.leader_terms.insert(t);
      }
      // Commit observed: an upper bound of the term it was committed in.
      const Index commit = n.raw->commit_index();
      while (max_commit_ < commit) commit_term_[++max_commit_] = t;
    }
  }

  void check_log_matching(SimNode& n, const std::vector<Entry>& ents) {
    for (const Entry& e : ents) {
      Result<Term> prev = n.storage.term(e.index - 1);
      if (!prev.ok()) continue;
      const uint64_t h = fnv1a(e.data, static_cast<uint64_t>(e.type));
      auto [it, inserted] = entries_.try_emplace({e.index, e.term}, EntryRecord{h, *prev});
      if (!inserted && (it->second.hash != h || it->second.prev_term != *prev)) {
        fail(strf("log matching: node %" PRIu64 " holds a different entry or history at (%" PRIu64
                  ", t%" PRIu64 ")",
                  n.id, e.index, e.term));
      }
    }
  }

  void check_leader_completeness(SimNode& n, Term term) {
    if (n.leader_term_checked == term) return;
    n.leader_term_checked = term;
    for (const auto& [index, rec] : applied_) {
      auto ct = commit_term_.find(index);
      if (ct == commit_term_.end() || ct->second >= term) continue;
      if (index < n.storage.first_index()) continue;  // inside its snapshot
      Result<Term> t = n.storage.term(index);
      Result<std::vector<Entry>> e = n.storage.entries(index, index + 1, UINT64_MAX);
      const bool has =
          t.ok() && *t == rec.term && e.ok() &&
          fnv1a((*e)[0].data, rec.term * 31 + static_cast<uint64_t>((*e)[0].type)) == rec.hash;
      if (!has) {
        fail(strf("leader completeness: leader %" PRIu64 " of term %" PRIu64
                  " lacks committed entry %" PRIu64 " (t%" PRIu64 ", committed by t%" PRIu64 ")",
                  n.id, term, index, rec.term, ct->second));
      }
    }
  }

  void check_state(Index index, const KvStore& sm, NodeId id, const char* what) {
    const uint64_t h = fnv1a(sm.encode());
    auto [it, inserted] = state_at_.try_emplace(index, h);
    if (!inserted && it->second != h) {
      fail(strf("state machine safety: node %" PRIu64 " %s at %" PRIu64
                " differs from another node's state there",
                id, what, index));
    }
  }

  // ---- The end: heal, restart, and every client must complete a write -------------------
  void final_phase() {
    group_.clear();
    drop_pct_ = 0;
    dup_pct_ = 0;
    long_delay_pct_ = 0;
    for (auto& [id, n] : nodes_) {
      if (!n.up) restart(n);
    }
    log("FINAL PHASE: healed, everyone up");
    // Let pending operations finish or time out without new ones.
    const uint64_t settle_end = now_ + kOpTimeoutMs + 10;
    for (; now_ < settle_end; ++now_) step_time(false);
    std::vector<uint64_t> final_seq(clients_.size(), 0);
    const uint64_t end = now_ + kFinalPhaseMs;
    for (; now_ < end; ++now_) {
      step_time(false);
      bool all_done = true;
      for (Client& c : clients_) {
        if (final_seq[c.id - 1] != 0 && history_[final_index_[c.id - 1]].ret != lin::kOpen) {
          continue;
        }
        all_done = false;
        if (c.busy) continue;
        if (final_seq[c.id - 1] != 0) final_seq[c.id - 1] = 0;  // timed out: try again
        if (now_ < c.next_op_at) continue;
        SimNode* l = leader_node();
        if (l == nullptr) continue;
        const size_t before = history_.size();
        c.leader_hint = l->id;
        invoke_write(c, *l);
        if (history_.size() > before) {
          final_seq[c.id - 1] = c.seq;
          final_index_[c.id - 1] = c.history_index;
        }
      }
      if (all_done) break;
    }
    for (Client& c : clients_) {
      if (final_seq[c.id - 1] == 0 || history_[final_index_[c.id - 1]].ret == lin::kOpen) {
        fail(strf("liveness: client %d could not complete a write within %" PRIu64
                  "ms after healing",
                  c.id, kFinalPhaseMs));
      }
    }
    // Members converge.
    SimNode* l = leader_node();
    if (l == nullptr) fail("liveness: no leader at the end");
    for (int i = 0; i < 3000; ++i, ++now_) {
      step_time(false);
      l = leader_node();
      if (l == nullptr) continue;
      const Index commit = l->raw->commit_index();
      ConfState conf = l->raw->conf_state();
      bool converged = true;
      for (const auto* ids : {&conf.voters, &conf.learners}) {
        for (NodeId id : *ids) converged = converged && nodes_.at(id).applied >= commit;
      }
      if (converged) return;
    }
    fail("liveness: members did not catch up with the leader's commit index");
  }

  void invoke_write(Client& c, SimNode& n) {
    const uint64_t seq = c.next_seq++;
    Command cmd;
    cmd.op = 'A';
    cmd.client = static_cast<uint64_t>(c.id);
    cmd.seq = seq;
    cmd.key = "k" + std::to_string(c.id % kKeys);
    cmd.value = strf("%d.%" PRIu64 "!;", c.id, seq);
    c.next_op_at = now_ + 20;
    if (!n.raw->propose(encode_command(cmd)).ok()) return;
    lin::Op op;
    op.call = now_;
    op.client = c.id;
    op.key = cmd.key;
    op.kind = lin::Kind::kAppend;
    op.value = cmd.value;
    n.writes[{c.id, seq}] = true;
    c.is_read = false;
    c.busy = true;
    c.seq = seq;
    c.node = n.id;
    c.invoked_at = now_;
    c.history_index = history_.size();
    history_.push_back(std::move(op));
  }

  struct AppliedRecord {
    Term term;
    uint64_t hash;
    uint64_t at;
  };
  struct EntryRecord {
    uint64_t hash;
    Term prev_term;
  };

  Options opt_;
  SeededRng rng_;
  int n_voters_ = 3;
  uint64_t now_ = 0;
  std::map<NodeId, SimNode> nodes_;
  std::vector<Client> clients_;
  std::vector<lin::Op> history_;
  std::map<int, size_t> final_index_;
  std::priority_queue<Flight, std::vector<Flight>, std::greater<>> flights_;
  uint64_t order_ = 0;
  std::vector<std::tuple<NodeId, NodeId, bool>> snapshot_reports_;
  std::vector<std::pair<NodeId, NodeId>> unreachable_;
  std::map<NodeId, int> group_;
  uint64_t partition_until_ = 0;
  uint64_t drop_pct_ = 0, dup_pct_ = 0, long_delay_pct_ = 0;
  uint64_t conf_per_mille_ = 3;

  std::map<Term, NodeId> leader_of_term_;
  std::map<std::pair<Index, Term>, EntryRecord> entries_;
  std::map<Index, AppliedRecord> applied_;
  std::map<Index, Term> commit_term_;
  std::map<Index, uint64_t> state_at_;
  Index max_commit_ = 0;
  Stats stats_;
  std::deque<std::string> trace_;
};

bool parse_seeds(const std::string& s, uint64_t& lo, uint64_t& hi) {
  char* end = nullptr;
  lo = std::strtoull(s.c_str(), &end, 10);
  if (end == s.c_str()) return false;
  if (*end == '\0') {
    hi = lo;
    return true;
  }
  const char* rest = end;
  if (*rest == '-') {
    ++rest;
  } else if (std::strncmp(rest, "..", 2) == 0) {
    rest += 2;
  } else {
    return false;
  }
  hi = std::strtoull(rest, &end, 10);
  return end != rest && *end == '\0' && hi >= lo;
}

int run_seed(Options o) {
  if (o.nodes == 0) o.nodes = 3 + 2 * static_cast<int>(o.seed % 3);
  const uint64_t steps = o.steps != 0 ? o.steps : o.quick ? 30'000 : 300'000;
  const auto start = std::chrono::steady_clock::now();
  Sim sim(o);
  try {
    sim.run(steps);
    lin::Verdict v = sim.check_history();
    const double secs =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    std::printf("seed %" PRIu64 " ok: %s ops=%zu lin=%s %.2fs\n", o.seed, sim.summary().c_str(),
                sim.history_size(), v == lin::Verdict::kOk ? "ok" : "unknown(budget)", secs);
    std::fflush(stdout);
    return 0;
  } catch (const Failure& f) {
    std::printf("seed %" PRIu64 " FAILED (nodes=%d steps=%" PRIu64 "): %s\n", o.seed, o.nodes,
                steps, f.what());
    std::printf("--- last trace lines ---\n");
    for (const std::string& line : sim.trace()) std::printf("%s\n", line.c_str());
    std::printf("--- reproduce: raft_sim --seed %" PRIu64 " --nodes %d%s --verbose\n", o.seed,
                o.nodes, o.quick ? " --quick" : "");
    std::fflush(stdout);
    return 1;
  }
}

}  // namespace

int main(int argc, char** argv) {
  Options o;
  uint64_t lo = 1, hi = 1;
  for (int i = 1; i < argc; ++i) {
    std::string arg = argv[i];
    if ((arg == "--seed" || arg == "--seeds") && i + 1 < argc) {
      if (!parse_seeds(argv[++i], lo, hi)) {
        std::fprintf(stderr, "bad seed range '%s' (use S, A-B or A..B)\n", argv[i]);
        return 2;
      }
    } else if (arg == "--nodes" && i + 1 < argc) {
      o.nodes = std::atoi(argv[++i]);
      if (o.nodes != 3 && o.nodes != 5 && o.nodes != 7) {
        std::fprintf(stderr, "--nodes must be 3, 5 or 7\n");
        return 2;
      }
    } else if (arg == "--steps" && i + 1 < argc) {
      o.steps = std::strtoull(argv[++i], nullptr, 10);
    } else if (arg == "--quick") {
      o.quick = true;
    } else if (arg == "--verbose") {
      o.verbose = true;
    } else if (arg == "--self-test") {
      return lin::self_test();
    } else {
      std::fprintf(stderr,
                   "usage: %s [--seed S | --seeds A-B] [--quick] [--nodes 3|5|7] [--steps N] "
                   "[--verbose] | --self-test\n",
                   argv[0]);
      return 2;
    }
  }
  int failed = 0;
  for (uint64_t seed = lo; seed <= hi; ++seed) {
    o.seed = seed;
    failed += run_seed(o);
  }
  if (hi > lo) std::printf("%" PRIu64 " seeds, %d failed\n", hi - lo + 1, failed);
  return failed == 0 ? 0 : 1;
}
