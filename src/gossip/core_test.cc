#include "gossip/core.h"

#include <doctest/doctest.h>

#include <cstdio>
#include <map>

using namespace shoal;
using namespace shoal::gossip;

namespace {

std::string id_of(int i) {
  char buf[33];
  std::snprintf(buf, sizeof buf, "%032x", i + 1);
  return buf;
}

MemberInfo info_of(int i) {
  MemberInfo info;
  info.id = id_of(i);
  info.address = "10.0.0." + std::to_string(i + 1) + ":7946";
  info.total.cpus = 8;
  return info;
}

size_t payload_bound(const Outgoing& out) {
  size_t n = kPacketOverheadBytes;
  for (const auto& m : out.messages) n += message_size_bound(m);
  return n;
}

template <typename T>
size_t count_of(const std::vector<Outgoing>& outs) {
  size_t n = 0;
  for (const auto& o : outs) {
    for (const auto& m : o.messages) n += std::holds_alternative<T>(m) ? 1 : 0;
  }
  return n;
}

}  // namespace

TEST_CASE("a node told it is suspect or dead refutes with a higher incarnation") {
  SeededRng rng(1);
  Core core(Config{}, info_of(0), 100, rng);
  core.join({}, 0);
  core.receive("10.0.0.2:7946", id_of(1), Alive{info_of(1), 5}, 0);
  core.receive("10.0.0.2:7946", id_of(1), Suspect{id_of(0), 100, id_of(1)}, 1);
  CHECK(core.incarnation() == 101);
  core.receive("10.0.0.2:7946", id_of(1), Dead{id_of(0), 101, id_of(1)}, 2);
  CHECK(core.incarnation() == 102);
  core.receive("10.0.0.2:7946", id_of(1), Suspect{id_of(0), 50, id_of(1)}, 3);  // stale: ignored
  CHECK(core.incarnation() == 102);
  core.tick(100);
  auto out = core.take_outgoing();
  bool alive_sent = false;
  for (const auto& o : out) {
    for (const auto& m : o.messages) {
      if (auto* a = std::get_if<Alive>(&m); a && a->info.id == id_of(0)) alive_sent |= a->incarnation == 102;
    }
  }
  CHECK(alive_sent);
}

TEST_CASE("a node told it was declared dead says so once per incarnation, then refutes") {
  SeededRng rng(11);
  Core core(Config{}, info_of(0), 100, rng);
  core.join({}, 0);
  core.receive("10.0.0.2:7946", id_of(1), Alive{info_of(1), 5}, 0);
  core.take_events();
  // Suspicion alone is refuted without the event.
  core.receive("10.0.0.2:7946", id_of(1), Suspect{id_of(0), 100, id_of(1)}, 1);
  CHECK(core.take_events().empty());
  core.receive("10.0.0.2:7946", id_of(1), Dead{id_of(0), 101, id_of(1)}, 2);
  auto events = core.take_events();
  REQUIRE(events.size() == 1);
  CHECK(events[0].kind == MemberEvent::Kind::kDeclaredDead);
  CHECK(events[0].member.info.id == id_of(0));
  CHECK(events[0].dead_incarnation == 101);
  CHECK(core.incarnation() == 102);
  // The same death again, and an older one: nothing new.
  core.receive("10.0.0.2:7946", id_of(1), Dead{id_of(0), 101, id_of(1)}, 3);
  CHECK(core.take_events().empty());
  // A frozen node hears it through a state sync from a member that marked it
  // dead (what a thawed node gets first).
  PushPull sync;
  sync.want_reply = false;
  StateEntry me;
  me.info = info_of(0);
  me.incarnation = 102;
  me.state = MemberState::kDead;
  sync.states.push_back(me);
  core.receive("10.0.0.2:7946", id_of(1), sync, 4);
  events = core.take_events();
  REQUIRE(events.size() == 1);
  CHECK(events[0].kind == MemberEvent::Kind::kDeclaredDead);
  CHECK(events[0].dead_incarnation == 102);
  CHECK(core.incarnation() == 103);
  CHECK(core.self().state == MemberState::kAlive);
  // A thawed node refutes the suspicion it hears first (no event), then a
  // member that had declared it dead tells it of that death: it learns it,
  // once, and stays at its newer incarnation.
  core.receive("10.0.0.2:7946", id_of(1), Suspect{id_of(0), 103, id_of(1)}, 5);
  CHECK(core.incarnation() == 104);
  CHECK(core.take_events().empty());
  core.receive("10.0.0.2:7946", id_of(1), Dead{id_of(0), 103, id_of(1)}, 6);
  events = core.take_events();
  REQUIRE(events.size() == 1);
  CHECK(events[0].kind == MemberEvent::Kind::kDeclaredDead);
  CHECK(events[0].dead_incarnation == 103);
  CHECK(core.incarnation() == 104);
  core.receive("10.0.0.2:7946", id_of(1), Dead{id_of(0), 103, id_of(1)}, 7);
  CHECK(core.take_events().empty());
}

TEST_CASE("a member reviving one it declared dead tells it of that death") {
  SeededRng rng(12);
  Config config;
  Core core(config, info_of(0), 1, rng);
  core.join({}, 0);
  core.receive("x:1", id_of(1), Alive{info_of(1), 5}, 0);
  core.receive("x:1", id_of(2), Dead{id_of(1), 5, id_of(2)}, 10);
  REQUIRE(core.find(id_of(1))->state == MemberState::kDead);
  core.take_outgoing();
  core.receive("x:1", id_of(1), Alive{info_of(1), 6}, 20);  // it refuted a suspicion
  CHECK(core.find(id_of(1))->state == MemberState::kAlive);
  bool told = false;
  for (const auto& o : core.take_outgoing()) {
    for (const auto& m : o.messages) {
      if (auto* d = std::get_if<Dead>(&m)) told |= o.to_address == info_of(1).address && d->id == id_of(1) && d->incarnation == 5;
    }
  }
  CHECK(told);
}

TEST_CASE("suspect becomes dead after the suspicion timeout; a higher incarnation revives") {
  SeededRng rng(2);
  Config config;
  Core core(config, info_of(0), 1, rng);
  core.join({}, 0);
  core.receive("x:1", id_of(1), Alive{info_of(1), 1}, 0);
  core.take_events();
  core.receive("x:1", id_of(2), Suspect{id_of(1), 1, id_of(2)}, 10);
  REQUIRE(core.find(id_of(1))->state == MemberState::kSuspect);
  // Two live members and no one else to confirm: the timeout is the minimum.
  core.tick(10 + config.suspicion_min_ms - 1);
  CHECK(core.find(id_of(1))->state == MemberState::kSuspect);
  core.tick(10 + config.suspicion_min_ms);
  CHECK(core.find(id_of(1))->state == MemberState::kDead);
  core.receive("x:1", id_of(1), Alive{info_of(1), 1}, 2000);  // same incarnation: still dead
  CHECK(core.find(id_of(1))->state == MemberState::kDead);
  core.receive("x:1", id_of(1), Alive{info_of(1), 2}, 2001);
  CHECK(core.find(id_of(1))->state == MemberState::kAlive);
  auto events = core.take_events();
  REQUIRE(events.size() == 3);
  CHECK(events[0].kind == MemberEvent::Kind::kSuspect);
  CHECK(events[1].kind == MemberEvent::Kind::kDead);
  CHECK(events[2].kind == MemberEvent::Kind::kAliveAgain);
}

TEST_CASE("left is final for its incarnation and is reaped later") {
  SeededRng rng(3);
  Config config;
  config.left_reap_ms = 5'000;
  Core core(config, info_of(0), 1, rng);
  core.join({}, 0);
  core.receive("x:1", id_of(1), Alive{info_of(1), 3}, 0);
  core.receive("x:1", id_of(1), Left{id_of(1), 3}, 1);
  CHECK(core.find(id_of(1))->state == MemberState::kLeft);
  core.receive("x:1", id_of(2), Dead{id_of(1), 3, id_of(2)}, 2);
  core.receive("x:1", id_of(2), Suspect{id_of(1), 3, id_of(2)}, 2);
  CHECK(core.find(id_of(1))->state == MemberState::kLeft);
  core.tick(4'000);
  CHECK(core.find(id_of(1)) != nullptr);
  core.tick(7'000);
  CHECK(core.find(id_of(1)) == nullptr);
}

TEST_CASE("join state is split into packets that fit, and the member limit holds") {
  SeededRng rng(4);
  Config config;
  config.members_max = 300;
  Core seed(config, info_of(0), 1, rng);
  seed.join({}, 0);
  for (int i = 1; i < 400; ++i) {
    MemberInfo info = info_of(i);
    info.address = "host-" + std::to_string(i) + ".example.org:7946";
    info.labels["zone"] = "zone-" + std::to_string(i % 7);
    seed.receive(info.address, info.id, Alive{info, 1}, 1);
  }
  CHECK(seed.members().size() == 300);
  seed.take_outgoing();
  seed.receive("10.9.9.9:7946", id_of(999), PushPull{true, true, {{info_of(999), MemberState::kAlive, 1}}}, 2);
  auto out = seed.take_outgoing();
  size_t states = 0;
  size_t to_joiner = 0;
  for (const auto& o : out) {
    CHECK(payload_bound(o) <= kPacketBytesMax);
    CHECK(o.messages.size() <= kMessagesPerPacketMax);
    if (o.to_address != "10.9.9.9:7946") continue;
    ++to_joiner;
    for (const auto& m : o.messages) {
      if (auto* pp = std::get_if<PushPull>(&m)) {
        states += pp->states.size();
        CHECK(!pp->want_reply);
      }
    }
  }
  CHECK(to_joiner > 5);   // several packets
  CHECK(states == 300);   // the full list (the joiner did not fit: limit reached)
}

TEST_CASE("probe: ack clears it, silence leads to ping-req then suspicion") {
  SeededRng rng(5);
  Config config;
  Core core(config, info_of(0), 1, rng);
  core.join({}, 0);
  for (int i = 1; i <= 4; ++i) core.receive("x:1", id_of(i), Alive{info_of(i), 1}, 0);
  core.take_outgoing();
  uint64_t now = 0;
  std::string target;
  uint32_t seq = 0;
  for (; now < 2 * config.probe_interval_ms && target.empty(); now += 10) {
    core.tick(now);
    for (const auto& o : core.take_outgoing()) {
      if (auto* p = std::get_if<Ping>(&o.messages[0])) {
        target = p->target_id;
        seq = p->seq;
      }
    }
  }
  REQUIRE(!target.empty());
  uint64_t start = now - 10;
  core.tick(start + config.probe_timeout_ms);
  CHECK(count_of<PingReq>(core.take_outgoing()) == config.indirect_checks);
  core.tick(start + config.probe_interval_ms);
  CHECK(core.find(target)->state == MemberState::kSuspect);
  (void)seq;
}

TEST_CASE("load updates are ordered by (incarnation, version) and carry the receive time") {
  SeededRng rng(6);
  Core core(Config{}, info_of(0), 1, rng);
  core.join({}, 0);
  core.receive("x:1", id_of(1), Alive{info_of(1), 7}, 0);
  LoadUpdate u{id_of(1), 7, 5, {}, 2};
  u.available.cpus = 3;
  core.receive("x:1", id_of(1), u, 100);
  CHECK(core.find(id_of(1))->load.available.cpus == 3);
  CHECK(core.find(id_of(1))->load.updated_ms == 100);
  LoadUpdate older = u;
  older.version = 4;
  older.available.cpus = 1;
  core.receive("x:1", id_of(1), older, 200);
  CHECK(core.find(id_of(1))->load.available.cpus == 3);
  LoadUpdate restarted{id_of(1), 8, 1, {}, 0};  // a new incarnation restarts versions
  restarted.available.cpus = 6;
  core.receive("x:1", id_of(1), restarted, 300);
  CHECK(core.find(id_of(1))->load.available.cpus == 6);
}

// Regression: a node that was chosen as a seed by a newcomer while its own
// join was still in flight stopped joining, and the cluster split in two.
TEST_CASE("a join request arriving mid-join does not end our own join") {
  SeededRng rng(7);
  Core core(Config{}, info_of(1), 100, rng);
  core.join({info_of(0).address}, 0);
  PushPull request;
  request.join = true;
  request.want_reply = true;
  request.states.push_back(StateEntry{info_of(2), MemberState::kAlive, 9});
  core.receive(info_of(2).address, id_of(2), request, 0);
  CHECK(!core.joined());
  // The join to the seed is still sent, and resent until a reply arrives.
  core.tick(0);
  core.tick(Config{}.join_retry_ms + 1);
  size_t to_seed = 0;
  for (const auto& o : core.take_outgoing()) {
    if (o.to_address != info_of(0).address) continue;
    for (const auto& m : o.messages) {
      if (auto* p = std::get_if<PushPull>(&m); p && p->join) to_seed++;
    }
  }
  CHECK(to_seed >= 2);
  PushPull reply;
  reply.states.push_back(StateEntry{info_of(0), MemberState::kAlive, 3});
  core.receive(info_of(0).address, id_of(0), reply, Config{}.join_retry_ms + 2);
  CHECK(core.joined());
  CHECK(core.find(id_of(0)) != nullptr);
  CHECK(core.find(id_of(2)) != nullptr);
}

namespace {

// Packets whose leading message is `T` and passes `pred`, by destination.
template <typename T, typename Pred>
std::map<std::string, size_t> leading(const std::vector<Outgoing>& outs, Pred pred) {
  std::map<std::string, size_t> by_address;
  for (const auto& o : outs) {
    if (const T* m = std::get_if<T>(&o.messages.front()); m && pred(*m)) ++by_address[o.to_address];
  }
  return by_address;
}

}  // namespace

// Regression (gossip_sim join10 seeds 25, 29): with only epidemic gossip a
// joiner's Alive could miss a member for longer than the 300 ms target.
TEST_CASE("a joiner announces itself directly to the members it learned, bounded") {
  SeededRng rng(8);
  Config config;
  Core core(config, info_of(0), 100, rng);
  core.join({info_of(1).address}, 0);
  core.take_outgoing();
  const int members = static_cast<int>(kJoinAnnounceDirectMax) + 8;
  // The reply comes in two chunks; both count toward the announcements.
  PushPull first, second;
  for (int i = 1; i <= members; ++i) {
    (i <= members / 2 ? first : second).states.push_back(StateEntry{info_of(i), MemberState::kAlive, 1});
  }
  auto is_self = [](const Alive& a) { return a.info.id == id_of(0) && a.incarnation == 100; };
  core.receive(info_of(1).address, id_of(1), first, 5);
  REQUIRE(core.joined());
  auto after_first = leading<Alive>(core.take_outgoing(), is_self);
  CHECK(after_first.size() == static_cast<size_t>(members / 2));
  core.receive(info_of(1).address, id_of(1), second, 6);
  auto after_second = leading<Alive>(core.take_outgoing(), is_self);
  CHECK(after_first.size() + after_second.size() == kJoinAnnounceDirectMax);
  for (const auto& [address, n] : after_second) {
    CHECK(n == 1);
    CHECK(after_first.count(address) == 0);  // each member told once
  }
  // A later sync (anti-entropy) does not announce again.
  core.receive(info_of(1).address, id_of(1), first, 7);
  CHECK(leading<Alive>(core.take_outgoing(), is_self).empty());
}

TEST_CASE("a seed answering a join pushes the joiner's Alive directly to a few members") {
  SeededRng rng(9);
  Core seed(Config{}, info_of(0), 1, rng);
  seed.join({}, 0);
  for (int i = 1; i <= 20; ++i) seed.receive(info_of(i).address, id_of(i), Alive{info_of(i), 1}, 0);
  seed.take_outgoing();
  PushPull request{true, true, {StateEntry{info_of(50), MemberState::kAlive, 4}}};
  seed.receive(info_of(50).address, id_of(50), request, 1);
  auto forwarded = leading<Alive>(seed.take_outgoing(), [](const Alive& a) { return a.info.id == id_of(50); });
  CHECK(forwarded.size() == kJoinForwardDirectMax);
  CHECK(forwarded.count(info_of(50).address) == 0);  // not back to the joiner
  // An anti-entropy sync (not a join) forwards nothing.
  PushPull sync{false, true, {StateEntry{info_of(51), MemberState::kAlive, 4}}};
  seed.receive(info_of(51).address, id_of(51), sync, 2);
  CHECK(leading<Alive>(seed.take_outgoing(), [](const Alive& a) { return a.info.id == id_of(51); }).empty());
}

// Regression (gossip_sim leave seed 19): a Left reached 99 of 100 nodes by
// gossip and the last one only by anti-entropy, seconds later.
TEST_CASE("a leaver tells every member directly and re-sends a bounded number of times") {
  SeededRng rng(10);
  Config config;
  config.retransmit_mult = 0;  // one transmit per update: isolates the direct re-sends
  Core core(config, info_of(0), 1, rng);
  core.join({}, 0);
  const int members = 40;
  for (int i = 1; i <= members; ++i) core.receive(info_of(i).address, id_of(i), Alive{info_of(i), 1}, 0);
  core.take_outgoing();
  auto is_left = [](const Left& l) { return l.id == id_of(0); };
  core.leave(10);
  auto told = leading<Left>(core.take_outgoing(), is_left);
  CHECK(told.size() == static_cast<size_t>(members));
  std::map<std::string, size_t> resent;
  for (uint64_t now = 20; now < 20 + 20 * config.gossip_interval_ms; now += 10) {
    core.tick(now);
    for (const auto& [address, n] : leading<Left>(core.take_outgoing(), is_left)) resent[address] += n;
  }
  REQUIRE(resent.size() == static_cast<size_t>(members));
  for (const auto& [address, n] : resent) {
    CHECK(told.count(address) == 1);
    CHECK(n == kLeaveNotifyResends);
  }
  // Bounded: the re-sends stop.
  size_t late = 0;
  for (uint64_t now = 10'000; now < 10'500; now += 10) {
    core.tick(now);
    late += leading<Left>(core.take_outgoing(), is_left).size();
  }
  CHECK(late == 0);
}

TEST_CASE("leave_notify_direct bounds the direct Left packets") {
  SeededRng rng(11);
  Config config;
  config.leave_notify_direct = 5;
  config.retransmit_mult = 0;
  Core core(config, info_of(0), 1, rng);
  core.join({}, 0);
  for (int i = 1; i <= 30; ++i) core.receive(info_of(i).address, id_of(i), Alive{info_of(i), 1}, 0);
  core.take_outgoing();
  core.leave(10);
  auto is_left = [](const Left& l) { return l.id == id_of(0); };
  CHECK(leading<Left>(core.take_outgoing(), is_left).size() == 5);
  core.tick(10 + config.gossip_interval_ms);
  size_t direct = 0;
  for (const auto& o : core.take_outgoing()) {
    if (o.messages.size() == 1 && std::holds_alternative<Left>(o.messages[0])) ++direct;
  }
  CHECK(direct == 5);
}

namespace {

// Pings sent by `core` between `from` and `to` (ticks every 10 ms), each
// answered with an ack when `ack` is set.
size_t pings_between(Core& core, uint64_t from, uint64_t to, bool ack) {
  size_t pings = 0;
  for (uint64_t now = from; now < to; now += 10) {
    core.tick(now);
    for (const auto& o : core.take_outgoing()) {
      for (const auto& m : o.messages) {
        const auto* p = std::get_if<Ping>(&m);
        if (p == nullptr) continue;
        ++pings;
        if (ack) core.receive(o.to_address, p->target_id, Ack{p->seq}, now);
      }
    }
  }
  return pings;
}

}  // namespace

TEST_CASE("local health: failed probes with no relay to ask raise it and slow probing; direct acks lower it") {
  SeededRng rng(21);
  Config config;
  config.suspicion_min_ms = 1'000'000;  // the silent member stays suspect (probed) throughout
  Core core(config, info_of(0), 1, rng);
  core.join({}, 0);
  core.receive("10.0.0.2:7946", id_of(1), Alive{info_of(1), 1}, 0);
  CHECK(core.health_score() == 0);
  // Healthy: one probe per 250 ms.
  CHECK(pings_between(core, 0, 2'500, true) >= 9);
  CHECK(core.health_score() == 0);
  // Silence, and no third member to relay a ping-req: +1 per failed probe,
  // up to health_max; the interval stretches to 250 ms * (score + 1).
  pings_between(core, 2'500, 40'000, false);
  CHECK(core.health_score() == config.health_max);
  size_t slow = pings_between(core, 40'000, 40'000 + 10 * 2'250, false);
  CHECK(slow >= 9);
  CHECK(slow <= 11);
  // Answered again: each direct ack takes one off, down to 0.
  pings_between(core, 62'500, 62'500 + 30'000, true);
  CHECK(core.health_score() == 0);
}

TEST_CASE("local health: relays nack a silent target; the prober counts only the nacks it missed") {
  SeededRng rng(22);
  Config config;
  config.suspicion_min_ms = 1'000'000;
  Core core(config, info_of(0), 1, rng);
  core.join({}, 0);
  for (int i = 1; i <= 4; ++i) core.receive("10.0.0." + std::to_string(i + 1) + ":7946", id_of(i), Alive{info_of(i), 1}, 0);
  core.take_outgoing();
  // Probes go unanswered; relays answer each ping-req with a nack, all of
  // them in the first probe, all but one in the second.
  uint64_t now = 0;
  int probes_with_relays = 0;
  std::vector<uint32_t> health_after;
  for (; now < 20'000 && probes_with_relays < 2; now += 10) {
    uint32_t before = core.health_score();
    core.tick(now);
    size_t nacked = 0;
    size_t reqs = 0;
    for (const auto& o : core.take_outgoing()) {
      for (const auto& m : o.messages) {
        const auto* req = std::get_if<PingReq>(&m);
        if (req == nullptr) continue;
        ++reqs;
        if (probes_with_relays == 1 && nacked + 1 == config.indirect_checks) continue;  // one lost nack
        ++nacked;
        core.receive(o.to_address, id_of(1), Nack{req->seq}, now);
      }
    }
    if (reqs > 0) {
      CHECK(reqs == config.indirect_checks);
      ++probes_with_relays;
      CHECK(before == 0);
      // Run to the end of this probe and look at the score.
      for (uint64_t end = now + config.probe_interval_ms; now < end; now += 10) {
        core.tick(now);
        core.take_outgoing();
      }
      health_after.push_back(core.health_score());
    }
  }
  REQUIRE(health_after.size() == 2);
  CHECK(health_after[0] == 0);  // every relay nacked: the target is the problem, not us
  CHECK(health_after[1] == 1);  // one relay's nack never came
}

TEST_CASE("local health: a relay nacks the requester when the target does not ack in time, not when it does") {
  SeededRng rng(23);
  Config config;
  Core relay(config, info_of(0), 1, rng);
  relay.join({}, 0);
  relay.take_outgoing();
  // Request 7: the target stays silent.
  relay.receive("10.0.0.2:7946", id_of(1), PingReq{7, id_of(2), "10.0.0.3:7946"}, 0);
  auto out = relay.take_outgoing();
  REQUIRE(count_of<Ping>(out) == 1);
  relay.tick(config.probe_timeout_ms * 4 / 5 - 1);
  CHECK(count_of<Nack>(relay.take_outgoing()) == 0);
  relay.tick(config.probe_timeout_ms * 4 / 5);
  out = relay.take_outgoing();
  REQUIRE(count_of<Nack>(out) == 1);
  for (const auto& o : out) {
    for (const auto& m : o.messages) {
      if (const auto* n = std::get_if<Nack>(&m)) {
        CHECK(n->seq == 7);
        CHECK(o.to_address == "10.0.0.2:7946");
      }
    }
  }
  relay.tick(config.probe_timeout_ms * 2);
  CHECK(count_of<Nack>(relay.take_outgoing()) == 0);  // once

  // Request 8: the target acks in time; the requester gets the ack, no nack.
  relay.receive("10.0.0.2:7946", id_of(1), PingReq{8, id_of(2), "10.0.0.3:7946"}, 1'000);
  uint32_t seq = 0;
  for (const auto& o : relay.take_outgoing()) {
    for (const auto& m : o.messages) {
      if (const auto* p = std::get_if<Ping>(&m)) seq = p->seq;
    }
  }
  relay.receive("10.0.0.3:7946", id_of(2), Ack{seq}, 1'010);
  out = relay.take_outgoing();
  CHECK(count_of<Ack>(out) == 1);
  relay.tick(1'000 + config.probe_interval_ms);
  CHECK(count_of<Nack>(relay.take_outgoing()) == 0);
}

TEST_CASE("local health: refuting a suspicion of this node raises it") {
  SeededRng rng(24);
  Core core(Config{}, info_of(0), 100, rng);
  core.join({}, 0);
  core.receive("10.0.0.2:7946", id_of(1), Alive{info_of(1), 5}, 0);
  core.receive("10.0.0.2:7946", id_of(1), Suspect{id_of(0), 100, id_of(1)}, 1);
  CHECK(core.incarnation() == 101);
  CHECK(core.health_score() == 1);
}
