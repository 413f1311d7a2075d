// Deterministic simulation of the gossip core: many nodes in one process, a
// seeded network with delay, loss and partitions, and simulated time.
//
//   gossip_sim --seed 7             one seed, every scenario
//   gossip_sim --seeds 1-50         a range (CI soak)
//   gossip_sim --scenario kill10    only the named scenario
//   gossip_sim --quick              shorter lossy/load phases (the meson test)
//   GOSSIP_SIM_TRACE=8 gossip_sim ... prints every packet carrying an update
//                                   about node 8 (who sent what to whom, when)
//
// Scenario join10 also encodes and decodes every packet it sends (size and
// codec round trip checked against the real wire format).
//
// Every scenario asserts invariants; a failure prints the seed and exits 1.
#include <algorithm>
#include <cinttypes>
#include <cstdlib>
#include <cstdio>
#include <cstring>
#include <functional>
#include <map>
#include <memory>
#include <queue>
#include <set>
#include <stdexcept>
#include <string>
#include <vector>

#include "base/clock.h"
#include "base/crypto.h"
#include "gossip/codec.h"
#include "gossip/core.h"

using namespace shoal;
using namespace shoal::gossip;

namespace {

// ---- Bounds asserted by the scenarios (simulated time) ----------------------
constexpr uint64_t kJoinConvergence10Ms = 300;     // 10 nodes, low latency: the product target
constexpr uint64_t kJoinConvergence100Ms = 3'000;  // 100 nodes join through 3 seeds
constexpr uint64_t kDeadDetection10Ms = 3'000;     // 10 nodes: kill -9 → dead everywhere
constexpr uint64_t kDeadDetection100Ms = 10'000;   // 100 nodes (suspicion scales with log n)
constexpr uint64_t kLoadAgeMaxMs = 3'000;          // every view of every load (owner sets each 1 s)
constexpr uint64_t kLossyRunMs = 300'000;          // scenario (c); --quick: kLossyQuickRunMs
constexpr uint64_t kLossyQuickRunMs = 60'000;
constexpr int kLoadRounds = 20;                    // seconds of load updates; --quick: 5
constexpr int kLoadQuickRounds = 5;

bool g_quick = false;  // --quick: shorter runs for the meson test (ASan too)
constexpr uint64_t kPartitionMs = 20'000;
constexpr uint64_t kHealConvergenceMs = 30'000;
constexpr uint64_t kLeaveSpreadMs = 2'000;
constexpr uint64_t kTickMs = 10;

struct Failure : std::runtime_error {
  using std::runtime_error::runtime_error;
};

#define SIM_CHECK(cond, ...)                                            \
  do {                                                                  \
    if (!(cond)) {                                                      \
      char sim_buf_[512];                                               \
      std::snprintf(sim_buf_, sizeof sim_buf_, __VA_ARGS__);            \
      throw Failure(std::string(#cond) + ": " + sim_buf_);              \
    }                                                                   \
  } while (0)

std::string node_id(size_t i) {
  char buf[33];
  std::snprintf(buf, sizeof buf, "%016" PRIx64 "%016" PRIx64, uint64_t{0xabc0} + i, uint64_t{i} * 7919);
  return buf;
}

std::string node_address(size_t i) {
  return "10.0." + std::to_string(i / 250) + "." + std::to_string(i % 250 + 1) + ":7946";
}

struct NetOptions {
  double loss = 0;
  uint64_t delay_min_ms = 0;
  uint64_t delay_max_ms = 1;
  bool check_encoding = false;
};

class Sim {
 public:
  Sim(uint64_t seed, size_t n, Config config, NetOptions net)
      : rng_(seed), config_(config), net_(net), nodes_(n) {
    for (size_t i = 0; i < n; ++i) {
      nodes_[i].info.id = node_id(i);
      nodes_[i].info.address = node_address(i);
      nodes_[i].info.total.cpus = 8;
      nodes_[i].info.labels["zone"] = "z" + std::to_string(i % 3);
      by_address_[nodes_[i].info.address] = i;
      by_id_[nodes_[i].info.id] = i;
    }
  }

  size_t size() const { return nodes_.size(); }
  uint64_t now() const { return now_ms_; }
  Core& core(size_t i) { return *nodes_[i].core; }
  bool up(size_t i) const { return nodes_[i].up; }

  void start(size_t i, const std::vector<size_t>& seeds) {
    Node& node = nodes_[i];
    node.rng = std::make_unique<SeededRng>(rng_.next_u64());
    // A restart always comes back with a higher incarnation (the owner uses wall ms).
    node.incarnation_base = now_ms_ + 1'000'000 + node.restarts++;
    node.core = std::make_unique<Core>(config_, node.info, node.incarnation_base, *node.rng);
    node.up = true;
    node.leaving_stop_ms = 0;
    node.tick_phase = rng_.uniform(kTickMs);
    node.started_ms = now_ms_;
    std::vector<std::string> seed_addresses;
    for (size_t s : seeds) seed_addresses.push_back(node_address(s));
    node.core->join(seed_addresses, now_ms_);
    drain(i);
  }

  void kill(size_t i) { nodes_[i].up = false; }

  void leave(size_t i) {
    nodes_[i].core->leave(now_ms_);
    nodes_[i].leaving_stop_ms = now_ms_ + 500;  // like GossipService::leave
    drain(i);
  }

  void set_partition(std::function<int(size_t)> group) { group_ = std::move(group); }
  void heal() { group_ = nullptr; }
  void set_net(NetOptions net) { net_ = net; }
  // Node i handles what it receives `ms` late (a node starved of CPU).
  void set_inbound_delay(size_t i, uint64_t ms) { nodes_[i].inbound_delay_ms = ms; }

  // Called for every event any node emits: (observer, event).
  std::function<void(size_t, const MemberEvent&)> on_event;

  void run_for(uint64_t ms, const std::function<bool()>& stop = {}) {
    uint64_t end = now_ms_ + ms;
    while (now_ms_ < end) {
      step();
      if (stop && stop()) return;
    }
  }

  // How many nodes `observer` sees in `state` among `subjects`.
  bool sees(size_t observer, size_t subject, MemberState state) const {
    const Member* m = nodes_[observer].core->find(nodes_[subject].info.id);
    return m != nullptr && m->state == state;
  }

  bool all_up_see_all_up_alive() const {
    for (size_t a = 0; a < nodes_.size(); ++a) {
      if (!nodes_[a].up) continue;
      for (size_t b = 0; b < nodes_.size(); ++b) {
        if (nodes_[b].up && !sees(a, b, MemberState::kAlive)) return false;
      }
    }
    return true;
  }

  std::string describe_view(size_t observer) const {
    std::string out;
    for (size_t b = 0; b < nodes_.size(); ++b) {
      const Member* m = nodes_[observer].core->find(nodes_[b].info.id);
      out += m ? member_state_name(m->state)[0] : '-';
    }
    return out;
  }

  size_t packets_sent() const { return packets_sent_; }

 private:
  struct Node {
    MemberInfo info;
    std::unique_ptr<SeededRng> rng;
    std::unique_ptr<Core> core;
    bool up = false;
    uint64_t incarnation_base = 0;
    uint64_t restarts = 0;
    uint64_t leaving_stop_ms = 0;
    uint64_t tick_phase = 0;
    uint64_t started_ms = 0;
    uint64_t inbound_delay_ms = 0;
  };
  struct InFlight {
    uint64_t at_ms;
    uint64_t order;
    size_t from;
    size_t to;
    std::vector<Message> messages;
    bool operator>(const InFlight& o) const { return at_ms != o.at_ms ? at_ms > o.at_ms : order > o.order; }
  };

  void step() {
    ++now_ms_;
    while (!queue_.empty() && queue_.top().at_ms <= now_ms_) {
      InFlight packet = queue_.top();
      queue_.pop();
      Node& to = nodes_[packet.to];
      if (!to.up) continue;
      for (const Message& m : packet.messages) {
        to.core->receive(nodes_[packet.from].info.address, nodes_[packet.from].info.id, m, now_ms_);
      }
      drain(packet.to);
    }
    for (size_t i = 0; i < nodes_.size(); ++i) {
      Node& node = nodes_[i];
      if (!node.up) continue;
      if (node.leaving_stop_ms != 0 && now_ms_ >= node.leaving_stop_ms) {
        node.up = false;
        continue;
      }
      if ((now_ms_ + node.tick_phase) % kTickMs == 0) {
        node.core->tick(now_ms_);
        drain(i);
      }
    }
  }

  void drain(size_t i) {
    Node& node = nodes_[i];
    for (const MemberEvent& e : node.core->take_events()) {
      if (on_event) on_event(i, e);
    }
    for (Outgoing& out : node.core->take_outgoing()) {
      ++packets_sent_;
      trace_packet(i, out);
      if (net_.check_encoding) check_encoding(i, out);
      auto it = by_address_.find(out.to_address);
      if (it == by_address_.end()) continue;
      size_t to = it->second;
      if (group_ && group_(i) != group_(to)) continue;
      if (net_.loss > 0 && rng_.uniform_double() < net_.loss) continue;
      uint64_t delay = net_.delay_min_ms + rng_.uniform(net_.delay_max_ms - net_.delay_min_ms + 1);
      delay += nodes_[to].inbound_delay_ms;
      queue_.push(InFlight{now_ms_ + std::max<uint64_t>(delay, 1), order_++, i, to, std::move(out.messages)});
    }
  }

  // GOSSIP_SIM_TRACE=<node index>: print every sent packet that carries an
  // update about that node (debugging dissemination).
  void trace_packet(size_t i, const Outgoing& out) {
    static const char* env = std::getenv("GOSSIP_SIM_TRACE");
    if (env == nullptr) return;
    std::string subject = node_id(std::strtoull(env, nullptr, 10));
    std::string what;
    for (const Message& m : out.messages) {
      if (const auto* a = std::get_if<Alive>(&m); a && a->info.id == subject) what += " alive";
      if (const auto* l = std::get_if<Left>(&m); l && l->id == subject) what += " left";
      if (const auto* p = std::get_if<PushPull>(&m)) {
        for (const auto& s : p->states) {
          if (s.info.id == subject) what += std::string(" pp:") + member_state_name(s.state);
        }
      }
    }
    if (what.empty()) return;
    auto it = by_address_.find(out.to_address);
    std::fprintf(stderr, "  t=%" PRIu64 " %zu -> %zu:%s (%zu msgs)\n", now_ms_, i,
                 it == by_address_.end() ? size_t{999} : it->second, what.c_str(), out.messages.size());
  }

  void check_encoding(size_t i, const Outgoing& out) {
    static const std::string kKey = "simulation cluster key";
    Packet packet{{nodes_[i].info.id, 1, packets_sent_, 1'700'000'000'000}, out.messages};
    auto bytes = encode_packet(packet, as_bytes(kKey));
    SIM_CHECK(bytes.ok(), "encode failed: %s", bytes.status().to_string().c_str());
    SIM_CHECK(bytes->size() <= kPacketBytesMax, "packet of %zu bytes", bytes->size());
    auto decoded = decode_packet(as_bytes(*bytes), as_bytes(kKey));
    SIM_CHECK(decoded.ok(), "decode failed: %s", decoded.status().to_string().c_str());
    SIM_CHECK(decoded->messages.size() == out.messages.size(), "message count changed");
  }

  SeededRng rng_;
  Config config_;
  NetOptions net_;
  std::vector<Node> nodes_;
  std::map<std::string, size_t> by_address_;
  std::map<std::string, size_t> by_id_;
  std::priority_queue<InFlight, std::vector<InFlight>, std::greater<>> queue_;
  std::function<int(size_t)> group_;
  uint64_t now_ms_ = 0;
  uint64_t order_ = 0;
  size_t packets_sent_ = 0;
};

// Starts n nodes: node i at i*stagger_ms, joining through the first 3.
void start_all(Sim& sim, uint64_t stagger_ms) {
  for (size_t i = 0; i < sim.size(); ++i) {
    std::vector<size_t> seeds;
    for (size_t s = 0; s < std::min<size_t>(3, sim.size()); ++s) {
      if (s != i) seeds.push_back(s);
    }
    if (i == 0) seeds.clear();
    sim.start(i, seeds);
    sim.run_for(stagger_ms);
  }
}

void converge_or_fail(Sim& sim, uint64_t bound_ms, const char* what) {
  uint64_t start = sim.now();
  sim.run_for(bound_ms, [&] { return sim.all_up_see_all_up_alive(); });
  if (!sim.all_up_see_all_up_alive()) {
    for (size_t i = 0; i < sim.size(); ++i) {
      if (sim.up(i)) std::fprintf(stderr, "  view %3zu: %s\n", i, sim.describe_view(i).c_str());
    }
  }
  SIM_CHECK(sim.all_up_see_all_up_alive(), "%s: not converged %" PRIu64 " ms after start", what,
            sim.now() - start);
}

// Records the first time each observer declared each subject dead.
struct DeathLog {
  std::map<std::pair<size_t, std::string>, uint64_t> dead_at;
  void attach(Sim& sim) {
    sim.on_event = [this, &sim](size_t observer, const MemberEvent& e) {
      if (e.kind == MemberEvent::Kind::kDead) dead_at.emplace(std::make_pair(observer, e.member.info.id), sim.now());
    };
  }
};

// ---- Scenarios ---------------------------------------------------------------

// (a0) 10 nodes on a fast network: everyone sees a joiner within 300 ms.
void scenario_join10(uint64_t seed) {
  Config config;
  Sim sim(seed, 10, config, NetOptions{0, 0, 1, true});
  std::map<std::string, uint64_t> joined_at;  // subject -> time it started
  for (size_t i = 0; i < sim.size(); ++i) {
    std::vector<size_t> seeds = i == 0 ? std::vector<size_t>{} : std::vector<size_t>{0};
    sim.start(i, seeds);
    uint64_t start = sim.now();
    sim.run_for(kJoinConvergence10Ms, [&] {
      for (size_t a = 0; a <= i; ++a) {
        for (size_t b = 0; b <= i; ++b) {
          if (!sim.sees(a, b, MemberState::kAlive)) return false;
        }
      }
      return true;
    });
    for (size_t a = 0; a <= i; ++a) {
      for (size_t b = 0; b <= i; ++b) {
        SIM_CHECK(sim.sees(a, b, MemberState::kAlive), "node %zu does not see %zu alive %" PRIu64
                  " ms after %zu joined", a, b, sim.now() - start, i);
      }
    }
    sim.run_for(100);
  }
}

// (a) 100 nodes join through 3 seeds; loads are fresh everywhere.
void scenario_join100(uint64_t seed) {
  Sim sim(seed, 100, Config{}, NetOptions{0, 1, 5, false});
  start_all(sim, 5);
  converge_or_fail(sim, kJoinConvergence100Ms, "join100");
  // Loads: each node sets its own every second (as the node does); all views stay young.
  for (int round = 0; round < (g_quick ? kLoadQuickRounds : kLoadRounds); ++round) {
    // Each node on its own phase, as independent processes would be.
    for (size_t step = 0; step < 1'000; step += 10) {
      for (size_t i = step / 10; i < sim.size(); i += 100) {
        Load load;
        load.available.cpus = static_cast<double>((i + round) % 8);
        load.running_tasks = static_cast<uint32_t>(round);
        sim.core(i).set_local_load(load, sim.now());
      }
      sim.run_for(10);
    }
  }
  std::vector<uint64_t> ages;
  for (size_t a = 0; a < sim.size(); ++a) {
    for (const Member& m : sim.core(a).members()) ages.push_back(sim.now() - m.load.updated_ms);
  }
  std::sort(ages.begin(), ages.end());
  if (std::getenv("GOSSIP_SIM_VERBOSE")) {
    std::printf("    load age ms: p50 %" PRIu64 " p99 %" PRIu64 " max %" PRIu64 ", %zu packets\n",
                ages[ages.size() / 2], ages[ages.size() * 99 / 100], ages.back(), sim.packets_sent());
  }
  for (size_t a = 0; a < sim.size(); ++a) {
    for (const Member& m : sim.core(a).members()) {
      SIM_CHECK(sim.now() - m.load.updated_ms <= kLoadAgeMaxMs, "node %zu sees load of %s aged %" PRIu64 " ms",
                a, m.info.id.c_str(), sim.now() - m.load.updated_ms);
    }
  }
}

void check_kill(uint64_t seed, size_t n, size_t killed, uint64_t bound_ms, NetOptions net) {
  Sim sim(seed, n, Config{}, net);
  DeathLog log;
  log.attach(sim);
  start_all(sim, 5);
  converge_or_fail(sim, kJoinConvergence100Ms, "kill/join");
  sim.run_for(2'000);
  std::set<size_t> victims;
  SeededRng pick(seed * 31 + 7);
  while (victims.size() < killed) victims.insert(pick.uniform(n));
  uint64_t kill_ms = sim.now();
  for (size_t v : victims) sim.kill(v);
  auto all_dead = [&] {
    for (size_t a = 0; a < n; ++a) {
      if (!sim.up(a)) continue;
      for (size_t v : victims) {
        if (!sim.sees(a, v, MemberState::kDead)) return false;
      }
    }
    return true;
  };
  sim.run_for(bound_ms, all_dead);
  uint64_t worst = 0;
  for (size_t a = 0; a < n; ++a) {
    if (!sim.up(a)) continue;
    for (size_t v : victims) {
      auto it = log.dead_at.find({a, node_id(v)});
      SIM_CHECK(it != log.dead_at.end(), "node %zu never declared killed node %zu dead within %" PRIu64 " ms",
                a, v, bound_ms);
      worst = std::max(worst, it->second - kill_ms);
    }
  }
  SIM_CHECK(worst <= bound_ms, "detection took %" PRIu64 " ms", worst);
  // No survivor was declared dead by anyone.
  for (const auto& [key, at] : log.dead_at) {
    size_t subject = 0;
    for (size_t i = 0; i < n; ++i) {
      if (node_id(i) == key.second) subject = i;
    }
    SIM_CHECK(victims.count(subject) == 1, "live node %zu declared dead by %zu", subject, key.first);
  }
  if (std::getenv("GOSSIP_SIM_VERBOSE")) {
    std::printf("    n=%zu killed=%zu worst detection %" PRIu64 " ms\n", n, killed, worst);
  }
}

// (b) kill -9: every live node declares each dead within the bound.
void scenario_kill10(uint64_t seed) { check_kill(seed, 10, 1, kDeadDetection10Ms, NetOptions{0, 0, 1, false}); }
void scenario_kill100(uint64_t seed) { check_kill(seed, 100, 5, kDeadDetection100Ms, NetOptions{0, 1, 5, false}); }

// (c) 10% loss and 0-50 ms delays: no live node is ever declared dead.
void scenario_lossy(uint64_t seed) {
  Sim sim(seed, 100, Config{}, NetOptions{0, 1, 5, false});
  DeathLog log;
  log.attach(sim);
  size_t suspects = 0;
  auto inner = sim.on_event;
  sim.on_event = [&](size_t observer, const MemberEvent& e) {
    inner(observer, e);
    if (e.kind == MemberEvent::Kind::kSuspect) ++suspects;
  };
  start_all(sim, 5);
  converge_or_fail(sim, kJoinConvergence100Ms, "lossy/join");
  sim.set_net(NetOptions{0.10, 0, 50, false});
  sim.run_for(g_quick ? kLossyQuickRunMs : kLossyRunMs);
  for (const auto& [key, at] : log.dead_at) {
    SIM_CHECK(false, "node %zu declared live %s dead at %" PRIu64 " ms", key.first, key.second.c_str(), at);
  }
  sim.set_net(NetOptions{0, 1, 5, false});
  converge_or_fail(sim, 10'000, "lossy/settle");
  if (std::getenv("GOSSIP_SIM_VERBOSE")) std::printf("    lossy: %zu suspect events, all refuted\n", suspects);
}

// (d) partition into halves, then heal: everyone alive again everywhere.
void scenario_partition(uint64_t seed) {
  Sim sim(seed, 100, Config{}, NetOptions{0, 1, 5, false});
  start_all(sim, 5);
  converge_or_fail(sim, kJoinConvergence100Ms, "partition/join");
  sim.set_partition([](size_t i) { return i % 2 == 0 ? 0 : 1; });
  sim.run_for(kPartitionMs);
  // Each side declared the other dead (or is on the way there).
  size_t cross_dead = 0;
  for (size_t b = 1; b < sim.size(); b += 2) cross_dead += sim.sees(0, b, MemberState::kDead) ? 1 : 0;
  SIM_CHECK(cross_dead > 0, "partition did not cut anything off");
  sim.heal();
  converge_or_fail(sim, kHealConvergenceMs, "partition/heal");
}

// (e) graceful leave: kLeft everywhere, never kDead.
void scenario_leave(uint64_t seed) {
  Sim sim(seed, 100, Config{}, NetOptions{0, 1, 5, false});
  DeathLog log;
  log.attach(sim);
  start_all(sim, 5);
  converge_or_fail(sim, kJoinConvergence100Ms, "leave/join");
  std::vector<size_t> leavers = {5, 50, 99};
  sim.run_for(5'000);  // let the join backlog drain
  for (size_t l : leavers) sim.leave(l);
  auto all_left = [&] {
    for (size_t a = 0; a < sim.size(); ++a) {
      if (!sim.up(a)) continue;
      for (size_t l : leavers) {
        if (!sim.sees(a, l, MemberState::kLeft)) return false;
      }
    }
    return true;
  };
  sim.run_for(kLeaveSpreadMs, all_left);
  if (!all_left()) {
    for (size_t i = 0; i < sim.size(); ++i) {
      if (sim.up(i)) std::fprintf(stderr, "  view %3zu: %s\n", i, sim.describe_view(i).c_str());
    }
  }
  SIM_CHECK(all_left(), "leave not seen everywhere after %" PRIu64 " ms", kLeaveSpreadMs);
  sim.run_for(10'000);  // and it stays kLeft, not kDead
  SIM_CHECK(all_left(), "left members changed state");
  SIM_CHECK(log.dead_at.empty(), "a node was declared dead during a graceful leave");
}

// (f) kill -9 then restart with the same id: alive again everywhere.
void scenario_restart(uint64_t seed) {
  Sim sim(seed, 30, Config{}, NetOptions{0, 1, 5, false});
  start_all(sim, 5);
  converge_or_fail(sim, kJoinConvergence100Ms, "restart/join");
  sim.kill(7);
  sim.run_for(kDeadDetection100Ms);
  SIM_CHECK(sim.sees(0, 7, MemberState::kDead), "killed node not dead");
  sim.start(7, {0, 1});
  converge_or_fail(sim, 3'000, "restart/rejoin");
}

// (g) one node handles its packets 300 ms late (starved of CPU): its probes
// of healthy members time out, so it suspects them, again and again. With
// Lifeguard's local health it notices (its probes fail though the relays do
// not nack in time, and it must refute suspicions of itself) and probes up
// to 9 times more slowly. Nobody is declared dead either way; the slow
// node's false suspicions must fall to at most half of what the same seed
// gives with local health off (health_max = 0).
struct SlowRun {
  size_t suspicions = 0;  // members the slow node marked suspect
  uint32_t health = 0;    // its local health score at the end
};

SlowRun run_slow(uint64_t seed, uint32_t health_max) {
  constexpr size_t kSlow = 3;
  Config config;
  config.health_max = health_max;
  Sim sim(seed, 30, config, NetOptions{0, 1, 5, false});
  DeathLog log;
  log.attach(sim);
  SlowRun run;
  auto inner = sim.on_event;
  sim.on_event = [&](size_t observer, const MemberEvent& e) {
    inner(observer, e);
    if (observer == kSlow && e.kind == MemberEvent::Kind::kSuspect) ++run.suspicions;
  };
  start_all(sim, 5);
  converge_or_fail(sim, kJoinConvergence100Ms, "slow/join");
  sim.set_inbound_delay(kSlow, 300);
  sim.run_for(g_quick ? 30'000 : 120'000);
  for (const auto& [key, at] : log.dead_at) {
    SIM_CHECK(false, "node %zu declared live %s dead at %" PRIu64 " ms (health_max %u)", key.first,
              key.second.c_str(), at, health_max);
  }
  run.health = sim.core(kSlow).health_score();
  sim.set_inbound_delay(kSlow, 0);
  converge_or_fail(sim, 10'000, "slow/settle");
  return run;
}

void scenario_slow(uint64_t seed) {
  SlowRun off = run_slow(seed, 0);
  SlowRun on = run_slow(seed, Config{}.health_max);
  if (std::getenv("GOSSIP_SIM_VERBOSE")) {
    std::printf("    slow: %zu false suspicions without local health, %zu with (score %u)\n", off.suspicions,
                on.suspicions, on.health);
  }
  SIM_CHECK(off.suspicions > 0, "the slow node never suspected anyone: the scenario tests nothing");
  SIM_CHECK(on.health >= Config{}.health_max / 2, "local health score %u", on.health);
  SIM_CHECK(on.suspicions * 2 <= off.suspicions, "%zu false suspicions with local health, %zu without",
            on.suspicions, off.suspicions);
}

struct Scenario {
  const char* name;
  void (*run)(uint64_t);
};

const Scenario kScenarios[] = {
    {"join10", scenario_join10},     {"join100", scenario_join100}, {"kill10", scenario_kill10},
    {"kill100", scenario_kill100},   {"lossy", scenario_lossy},     {"partition", scenario_partition},
    {"leave", scenario_leave},       {"restart", scenario_restart}, {"slow", scenario_slow},
};

bool parse_seeds(const std::string& s, uint64_t& lo, uint64_t& hi) {
  size_t sep = s.find("..");
  size_t sep_len = 2;
  if (sep == std::string::npos) {
    sep = s.find('-');
    sep_len = 1;
  }
  try {
    if (sep == std::string::npos) {
      lo = hi = std::stoull(s);
    } else {
      lo = std::stoull(s.substr(0, sep));
      hi = std::stoull(s.substr(sep + sep_len));
    }
  } catch (const std::exception&) {
    return false;
  }
  return lo <= hi;
}

}  // namespace

int main(int argc, char** argv) {
  uint64_t lo = 1, hi = 3;
  std::string only;
  for (int i = 1; i < argc; ++i) {
    std::string arg = argv[i];
    if ((arg == "--seed" || arg == "--seeds") && i + 1 < argc) {
      if (!parse_seeds(argv[++i], lo, hi)) {
        std::fprintf(stderr, "bad seed range '%s' (use S, A-B or A..B)\n", argv[i]);
        return 2;
      }
    } else if (arg == "--scenario" && i + 1 < argc) {
      only = argv[++i];
    } else if (arg == "--quick") {
      g_quick = true;
    } else {
      std::fprintf(stderr, "usage: %s [--seed S | --seeds A-B] [--scenario NAME] [--quick]\n", argv[0]);
      return 2;
    }
  }
  int failures = 0;
  for (uint64_t seed = lo; seed <= hi; ++seed) {
    for (const Scenario& s : kScenarios) {
      if (!only.empty() && only != s.name) continue;
      try {
        s.run(seed);
        std::printf("ok   seed=%" PRIu64 " scenario=%s\n", seed, s.name);
      } catch (const Failure& f) {
        std::printf("FAIL seed=%" PRIu64 " scenario=%s: %s\n", seed, s.name, f.what());
        ++failures;
      }
      std::fflush(stdout);
    }
  }
  if (failures > 0) {
    std::printf("%d failure(s); rerun with --seed S --scenario NAME\n", failures);
    return 1;
  }
  return 0;
}
