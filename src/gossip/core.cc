#include "gossip/core.h"

#include <algorithm>
#include <cmath>
#include <utility>

#include "base/assert.h"

namespace shoal::gossip {

namespace {

constexpr size_t kPayloadBytesMax = kPacketBytesMax - kPacketOverheadBytes;
constexpr size_t kMessageMarginBytes = 16;  // list element + slack per message
constexpr uint64_t kReapCheckIntervalMs = 1000;
constexpr size_t kPortCharsMax = 5;

// Text content rounded up to words; its pointer is counted in the parent struct.
size_t text_bound(const std::string& s) { return (s.size() + 1 + 7) / 8 * 8; }

size_t resources_bound(const Resources& r) {
  size_t n = 32 + 8;
  for (const auto& [name, amount] : r.custom) n += 16 + text_bound(name);
  return n;
}

bool is_finite_non_negative(double x) { return std::isfinite(x) && x >= 0 && x <= kResourceAmountMax; }

}  // namespace

const char* member_state_name(MemberState state) {
  switch (state) {
    case MemberState::kAlive: return "alive";
    case MemberState::kSuspect: return "suspect";
    case MemberState::kDead: return "dead";
    case MemberState::kLeft: return "left";
  }
  return "?";
}

const char* event_kind_name(MemberEvent::Kind kind) {
  switch (kind) {
    case MemberEvent::Kind::kJoined: return "joined";
    case MemberEvent::Kind::kSuspect: return "suspect";
    case MemberEvent::Kind::kDead: return "dead";
    case MemberEvent::Kind::kLeft: return "left";
    case MemberEvent::Kind::kAliveAgain: return "alive-again";
    case MemberEvent::Kind::kUpdated: return "updated";
    case MemberEvent::Kind::kReaped: return "reaped";
    case MemberEvent::Kind::kDeclaredDead: return "declared-dead";
  }
  return "?";
}

const char* message_name(const Message& message) {
  static const char* const kNames[] = {"ping", "ack", "ping-req", "alive", "suspect",
                                       "dead", "left", "load", "push-pull", "nack"};
  return kNames[message.index()];
}

size_t member_info_size_bound(const MemberInfo& info) {
  size_t n = 32 + text_bound(info.id) + text_bound(info.address) + resources_bound(info.total) + 8;
  for (const auto& [key, value] : info.labels) n += 16 + text_bound(key) + text_bound(value);
  return n;
}

size_t message_size_bound(const Message& message) {
  struct Visitor {
    size_t operator()(const Ping& m) const { return 16 + text_bound(m.target_id); }
    size_t operator()(const Ack&) const { return 8; }
    size_t operator()(const Nack&) const { return 8; }
    size_t operator()(const PingReq& m) const {
      return 24 + text_bound(m.target_id) + text_bound(m.target_address);
    }
    size_t operator()(const Alive& m) const { return 16 + member_info_size_bound(m.info); }
    size_t operator()(const Suspect& m) const { return 24 + text_bound(m.id) + text_bound(m.from_id); }
    size_t operator()(const Dead& m) const { return 24 + text_bound(m.id) + text_bound(m.from_id); }
    size_t operator()(const Left& m) const { return 16 + text_bound(m.id); }
    size_t operator()(const LoadUpdate& m) const {
      return 40 + text_bound(m.id) + resources_bound(m.available);
    }
    size_t operator()(const PushPull& m) const {
      size_t n = 16 + 8;
      for (const auto& s : m.states) n += 24 + member_info_size_bound(s.info);
      return n;
    }
  };
  return std::visit(Visitor{}, message) + kMessageMarginBytes;
}

// ---- Validation -------------------------------------------------------------

bool is_valid_member_id(const std::string& id) {
  if (id.size() != kMemberIdChars) return false;
  return std::all_of(id.begin(), id.end(),
                     [](char c) { return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'); });
}

Status validate_address(const std::string& address) {
  if (address.empty() || address.size() > kAddressCharsMax) {
    return Status::invalid_argument("address length " + std::to_string(address.size()) +
                                    " not in 1.." + std::to_string(kAddressCharsMax));
  }
  size_t colon = address.rfind(':');
  if (colon == std::string::npos || colon == 0) {
    return Status::invalid_argument("address '" + address + "' is not host:port");
  }
  std::string host = address.substr(0, colon);
  std::string port = address.substr(colon + 1);
  if (port.empty() || port.size() > kPortCharsMax ||
      !std::all_of(port.begin(), port.end(), [](char c) { return c >= '0' && c <= '9'; }) ||
      std::stoul(port) == 0 || std::stoul(port) > 65535) {
    return Status::invalid_argument("address '" + address + "' has a bad port");
  }
  if (host.front() == '[') {
    if (host.size() < 3 || host.back() != ']') {
      return Status::invalid_argument("address '" + address + "' has a bad IPv6 host");
    }
    host = host.substr(1, host.size() - 2);
  }
  for (char c : host) {
    bool ok = (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
              c == '.' || c == '-' || c == ':' || c == '_' || c == '%';
    if (!ok) return Status::invalid_argument("address '" + address + "' has a bad host character");
  }
  if (host.empty()) return Status::invalid_argument("address '" + address + "' has an empty host");
  return {};
}

Status validate_resources(const Resources& r, const char* what) {
  if (!is_finite_non_negative(r.cpus) || !is_finite_non_negative(r.gpus)) {
    return Status::invalid_argument(std::string(what) + ": cpus/gpus must be finite and non-negative");
  }
  if (r.custom.size() > kCustomResourcesMax) {
    return Status::invalid_argument(std::string(what) + ": more than " +
                                    std::to_string(kCustomResourcesMax) + " custom resources");
  }
  for (const auto& [name, amount] : r.custom) {
    if (name.empty() || name.size() > kResourceNameCharsMax) {
      return Status::invalid_argument(std::string(what) + ": bad custom resource name length");
    }
    if (!is_finite_non_negative(amount)) {
      return Status::invalid_argument(std::string(what) + ": custom resource '" + name +
                                      "' must be finite and non-negative");
    }
  }
  return {};
}

Status validate_member_info(const MemberInfo& info) {
  if (!is_valid_member_id(info.id)) {
    return Status::invalid_argument("member id must be 32 lowercase hex chars");
  }
  SHOAL_RETURN_IF_ERROR(validate_address(info.address));
  SHOAL_RETURN_IF_ERROR(validate_resources(info.total, "total resources"));
  if (info.labels.size() > kLabelsMax) {
    return Status::invalid_argument("more than " + std::to_string(kLabelsMax) + " labels");
  }
  for (const auto& [key, value] : info.labels) {
    if (key.empty() || key.size() > kLabelKeyCharsMax || value.size() > kLabelValueCharsMax) {
      return Status::invalid_argument("label '" + key.substr(0, kLabelKeyCharsMax) +
                                      "' has a bad key or value length");
    }
  }
  if (member_info_size_bound(info) > kMemberInfoBytesMax) {
    return Status::invalid_argument("member info too large (" +
                                    std::to_string(member_info_size_bound(info)) + " > " +
                                    std::to_string(kMemberInfoBytesMax) + " bytes)");
  }
  return {};
}

namespace {
Status check_id(const std::string& id, const char* what, bool allow_empty = false) {
  if (allow_empty && id.empty()) return {};
  if (!is_valid_member_id(id)) {
    return Status::invalid_argument(std::string(what) + " is not a 32-char lowercase hex id");
  }
  return {};
}
}  // namespace

Status validate_message(const Message& message) {
  struct Visitor {
    Status operator()(const Ping& m) const { return check_id(m.target_id, "ping target", true); }
    Status operator()(const Ack&) const { return {}; }
    Status operator()(const Nack&) const { return {}; }
    Status operator()(const PingReq& m) const {
      SHOAL_RETURN_IF_ERROR(check_id(m.target_id, "ping-req target"));
      return validate_address(m.target_address);
    }
    Status operator()(const Alive& m) const { return validate_member_info(m.info); }
    Status operator()(const Suspect& m) const {
      SHOAL_RETURN_IF_ERROR(check_id(m.id, "suspect id"));
      return check_id(m.from_id, "suspect from");
    }
    Status operator()(const Dead& m) const {
      SHOAL_RETURN_IF_ERROR(check_id(m.id, "dead id"));
      return check_id(m.from_id, "dead from");
    }
    Status operator()(const Left& m) const { return check_id(m.id, "left id"); }
    Status operator()(const LoadUpdate& m) const {
      SHOAL_RETURN_IF_ERROR(check_id(m.id, "load id"));
      return validate_resources(m.available, "available resources");
    }
    Status operator()(const PushPull& m) const {
      if (m.states.size() > kStatesPerMessageMax) {
        return Status::invalid_argument("push-pull carries more than " +
                                        std::to_string(kStatesPerMessageMax) + " states");
      }
      for (const auto& s : m.states) SHOAL_RETURN_IF_ERROR(validate_member_info(s.info));
      return {};
    }
  };
  return std::visit(Visitor{}, message);
}

// ---- Core -------------------------------------------------------------------

Core::Core(Config config, MemberInfo self, uint64_t incarnation, Rng& rng)
    : config_(std::move(config)), self_id_(self.id), rng_(rng) {
  Status valid = validate_member_info(self);
  SHOAL_ASSERT(valid.ok(), valid.to_string());
  SHOAL_ASSERT(config_.probe_timeout_ms < config_.probe_interval_ms, config_.probe_timeout_ms);
  SHOAL_ASSERT(config_.gossip_interval_ms > 0 && config_.suspicion_max_mult >= 1);
  Entry entry;
  entry.member.info = std::move(self);
  entry.member.incarnation = incarnation;
  entry.member.state = MemberState::kAlive;
  members_.emplace(self_id_, std::move(entry));
  load_version_ = 0;
  dead_handled_upto_ = incarnation;  // deaths of earlier runs are not ours
}

Core::Entry& Core::self_entry() {
  auto it = members_.find(self_id_);
  SHOAL_ASSERT(it != members_.end());
  return it->second;
}

const Member& Core::self() const {
  auto it = members_.find(self_id_);
  SHOAL_ASSERT(it != members_.end());
  return it->second.member;
}

const Member* Core::find(const std::string& id) const {
  auto it = members_.find(id);
  return it == members_.end() ? nullptr : &it->second.member;
}

std::vector<Member> Core::members() const {
  std::vector<Member> out;
  out.reserve(members_.size());
  for (const auto& [id, entry] : members_) out.push_back(entry.member);
  return out;
}

size_t Core::count(MemberState state) const {
  size_t n = 0;
  for (const auto& [id, entry] : members_) n += entry.member.state == state ? 1 : 0;
  return n;
}

size_t Core::live_count() const { return live_count_; }

void Core::recount() {
  live_count_ = 0;
  for (const auto& [id, entry] : members_) {
    if (entry.member.state == MemberState::kAlive || entry.member.state == MemberState::kSuspect) {
      ++live_count_;
    }
  }
}

Alive Core::self_alive() const { return Alive{self().info, self().incarnation}; }

LoadUpdate Core::self_load_update() const {
  const Member& me = self();
  return LoadUpdate{self_id_, me.incarnation, load_version_, me.load.available, me.load.running_tasks};
}

uint32_t Core::retransmit_limit(uint32_t mult) const {
  double n = static_cast<double>(live_count_);
  return std::max<uint32_t>(1, mult * static_cast<uint32_t>(std::ceil(std::log10(n + 1))));
}

void Core::emit(MemberEvent::Kind kind, const Member& member) { events_.push_back({kind, member}); }

void Core::set_state(Entry& entry, MemberState state, uint64_t now_ms) {
  if (entry.member.state != state) entry.member.state_change_ms = now_ms;
  entry.member.state = state;
  if (state != MemberState::kSuspect) {
    entry.suspicion.reset();
    suspects_.erase(entry.member.info.id);
  } else {
    suspects_.insert(entry.member.info.id);
  }
  recount();
}

void Core::ensure_started(uint64_t now_ms) {
  if (started_) return;
  started_ = true;
  next_probe_ms_ = now_ms + rng_.uniform(config_.probe_interval_ms);
  next_gossip_ms_ = now_ms + config_.gossip_interval_ms;
  next_push_pull_ms_ = now_ms + config_.push_pull_interval_ms / 2 +
                       rng_.uniform(config_.push_pull_interval_ms / 2 + 1);
  next_reconnect_ms_ = now_ms + config_.reconnect_interval_ms;
  next_reap_ms_ = now_ms + kReapCheckIntervalMs;
  recount();
}

// ---- Entry points -----------------------------------------------------------

void Core::join(std::vector<std::string> seed_addresses, uint64_t now_ms) {
  ensure_started(now_ms);
  seeds_.clear();
  for (auto& seed : seed_addresses) {
    if (seed != self().info.address) seeds_.push_back(std::move(seed));
  }
  if (seeds_.empty()) {
    joined_ = true;
    return;
  }
  broadcast(self_id_, self_alive());
  next_join_ms_ = now_ms;
  tick(now_ms);
}

void Core::leave(uint64_t now_ms) {
  ensure_started(now_ms);
  if (leaving_) return;
  leaving_ = true;
  probe_.reset();
  Entry& me = self_entry();
  set_state(me, MemberState::kLeft, now_ms);
  Left left{self_id_, me.member.incarnation};
  broadcast(self_id_, left);
  // Tell the members directly too (all of them up to leave_notify_direct), so
  // the news does not hinge on the epidemic reaching everyone; re-sent a few
  // times by tick_leave in case a datagram is lost.
  leave_targets_.clear();
  for (const Entry* e : random_members(config_.leave_notify_direct, "", false, now_ms)) {
    leave_targets_.push_back(e->member.info.address);
    send(e->member.info.address, left, true);
  }
  leave_resends_left_ = kLeaveNotifyResends;
  next_leave_resend_ms_ = now_ms + config_.gossip_interval_ms;
}

void Core::tick_leave(uint64_t now_ms) {
  if (!leaving_ || leave_resends_left_ == 0 || now_ms < next_leave_resend_ms_) return;
  --leave_resends_left_;
  next_leave_resend_ms_ = now_ms + config_.gossip_interval_ms;
  Left left{self_id_, self().incarnation};
  for (const std::string& address : leave_targets_) send(address, left, false);
  if (leave_resends_left_ == 0) leave_targets_.clear();
}

void Core::set_local_load(const Load& load, uint64_t now_ms) {
  ensure_started(now_ms);
  Entry& me = self_entry();
  me.member.load = load;
  me.member.load.updated_ms = now_ms;
  bool first = !load_set_;
  load_set_ = true;
  if (first || now_ms >= last_load_broadcast_ms_ + config_.load_broadcast_min_ms) {
    broadcast_own_load(now_ms);
  } else {
    load_pending_ = true;
  }
}

void Core::broadcast_own_load(uint64_t now_ms) {
  ++load_version_;
  broadcast_load(self_load_update());
  load_pending_ = false;
  last_load_broadcast_ms_ = now_ms;
  next_load_ms_ = now_ms + config_.load_refresh_ms;
}

void Core::tick(uint64_t now_ms) {
  ensure_started(now_ms);
  if (!joined_ && !seeds_.empty() && now_ms >= next_join_ms_) {
    for (const auto& seed : seeds_) send_state(seed, true, true);
    next_join_ms_ = now_ms + config_.join_retry_ms;
  }
  tick_probe(now_ms);
  tick_suspicions(now_ms);
  tick_relays(now_ms);
  if (load_set_ && (now_ms >= next_load_ms_ ||
                    (load_pending_ && now_ms >= last_load_broadcast_ms_ + config_.load_broadcast_min_ms))) {
    broadcast_own_load(now_ms);
  }
  tick_gossip(now_ms);
  tick_leave(now_ms);
  if (now_ms >= next_push_pull_ms_) {
    double n = static_cast<double>(live_count_);
    double scale = n > 32 ? std::ceil(std::log2(n) - std::log2(32.0)) + 1 : 1;
    next_push_pull_ms_ = now_ms + static_cast<uint64_t>(config_.push_pull_interval_ms * scale);
    auto targets = random_members(1, "", false, now_ms);
    if (!targets.empty() && !leaving_) send_state(targets[0]->member.info.address, false, true);
  }
  if (now_ms >= next_reconnect_ms_) {
    next_reconnect_ms_ = now_ms + config_.reconnect_interval_ms;
    std::vector<const Entry*> dead;
    for (const auto& [id, e] : members_) {
      if (e.member.state == MemberState::kDead) dead.push_back(&e);
    }
    if (!dead.empty() && !leaving_) {
      send_state(dead[rng_.uniform(dead.size())]->member.info.address, false, true);
    }
  }
  tick_reap(now_ms);
}

void Core::receive(const std::string& from_address, const std::string& from_id,
                   const Message& message, uint64_t now_ms) {
  ensure_started(now_ms);
  if (auto it = members_.find(from_id); it != members_.end() && from_id != self_id_) {
    Entry& sender = it->second;
    sender.member.last_contact_ms = now_ms;
    // Direct evidence that a member we suspect is up: tell it, so its
    // refutation comes straight back instead of relying on gossip alone.
    if (sender.suspicion) notify_suspect(sender, from_address, now_ms);
  }
  uint64_t incarnation_before = self().incarnation;
  struct Visitor {
    Core& core;
    const std::string& from;
    uint64_t now;
    void operator()(const Ping& m) { core.on_ping(from, m, now); }
    void operator()(const Ack& m) { core.on_ack(m, now); }
    void operator()(const Nack& m) { core.on_nack(m); }
    void operator()(const PingReq& m) { core.on_ping_req(from, m, now); }
    void operator()(const Alive& m) { core.on_alive(m, now); }
    void operator()(const Suspect& m) { core.on_suspect(m, now); }
    void operator()(const Dead& m) { core.on_dead(m, now); }
    void operator()(const Left& m) { core.on_left(m, now); }
    void operator()(const LoadUpdate& m) { core.on_load(m, now); }
    void operator()(const PushPull& m) { core.on_push_pull(from, m, now); }
  };
  std::visit(Visitor{*this, from_address, now_ms}, message);
  // Whoever tells us we are suspect or dead is behind (or we just refuted):
  // answer it directly, on top of gossiping the refutation.
  bool accused = false;
  if (const auto* s = std::get_if<Suspect>(&message)) accused = s->id == self_id_;
  if (const auto* d = std::get_if<Dead>(&message)) accused = d->id == self_id_;
  if ((accused || self().incarnation != incarnation_before) && from_id != self_id_ && !leaving_) {
    send(from_address, self_alive(), true);
  }
}

std::vector<Outgoing> Core::take_outgoing() { return std::exchange(outgoing_, {}); }
std::vector<MemberEvent> Core::take_events() { return std::exchange(events_, {}); }

// ---- Handlers ---------------------------------------------------------------

void Core::on_ping(const std::string& from_address, const Ping& ping, uint64_t now_ms) {
  // A ping meant for an earlier occupant of our address gets no ack.
  if (!ping.target_id.empty() && ping.target_id != self_id_) return;
  send(from_address, Ack{ping.seq}, true);
}

void Core::on_ack(const Ack& ack, uint64_t now_ms) {
  if (probe_ && probe_->seq == ack.seq) {
    probe_->acked = true;
    return;
  }
  auto it = relays_.find(ack.seq);
  if (it == relays_.end()) return;
  Relay relay = it->second;
  relays_.erase(it);
  send(relay.requester_address, Ack{relay.requester_seq}, true);
}

void Core::on_nack(const Nack& nack) {
  if (probe_ && probe_->seq == nack.seq && probe_->indirect_sent) ++probe_->nacks;
}

void Core::on_ping_req(const std::string& from_address, const PingReq& req, uint64_t now_ms) {
  if (relays_.size() >= kRelaysMax || req.target_id == self_id_) return;
  uint32_t seq = next_seq_++;
  // The nack leaves at 80% of the (unscaled) probe timeout, so that it
  // reaches the requester before its probe ends.
  relays_[seq] = Relay{from_address, req.seq, now_ms + config_.probe_timeout_ms * 4 / 5, false,
                       now_ms + config_.probe_interval_ms};
  send(req.target_address, Ping{seq, req.target_id}, true);
}

void Core::tick_relays(uint64_t now_ms) {
  for (auto it = relays_.begin(); it != relays_.end();) {
    Relay& relay = it->second;
    if (!relay.nacked && now_ms >= relay.nack_at_ms) {
      relay.nacked = true;
      send(relay.requester_address, Nack{relay.requester_seq}, false);
    }
    it = relay.deadline_ms <= now_ms ? relays_.erase(it) : std::next(it);
  }
}

void Core::adjust_health(int delta) {
  const int64_t next = std::clamp<int64_t>(int64_t{health_} + delta, 0, config_.health_max);
  health_ = static_cast<uint32_t>(next);
}

void Core::refute(uint64_t accused_incarnation) {
  adjust_health(1);  // others could not reach us in time: we may be the slow one
  Entry& me = self_entry();
  me.member.incarnation = std::max(me.member.incarnation, accused_incarnation) + 1;
  broadcast(self_id_, self_alive());
  if (load_set_) broadcast_load(self_load_update());
}

void Core::declared_dead(uint64_t incarnation) {
  // Once per death: a member that revives us tells us of the death we
  // refuted as a mere suspicion (we may be past that incarnation by then).
  if (leaving_ || incarnation < dead_handled_upto_) return;
  dead_handled_upto_ = incarnation + 1;
  events_.push_back({MemberEvent::Kind::kDeclaredDead, self(), incarnation});
  if (incarnation >= self().incarnation) refute(incarnation);
}

void Core::on_alive(const Alive& alive, uint64_t now_ms) {
  const std::string& id = alive.info.id;
  if (id == self_id_) {
    if (leaving_) return;
    const Member& me = self();
    if (alive.incarnation > me.incarnation ||
        (alive.incarnation == me.incarnation && alive.info != me.info)) {
      refute(alive.incarnation);
    }
    return;
  }
  auto it = members_.find(id);
  if (it == members_.end()) {
    if (members_.size() >= config_.members_max) return;
    Entry entry;
    entry.member.info = alive.info;
    entry.member.incarnation = alive.incarnation;
    entry.member.state = MemberState::kAlive;
    entry.member.state_change_ms = now_ms;
    auto [pos, inserted] = members_.emplace(id, std::move(entry));
    recount();
    emit(MemberEvent::Kind::kJoined, pos->second.member);
    broadcast(id, alive);
    return;
  }
  Entry& entry = it->second;
  if (alive.incarnation <= entry.member.incarnation) return;
  bool info_changed = entry.member.info != alive.info;
  MemberState old_state = entry.member.state;
  entry.member.info = alive.info;
  const uint64_t dead_incarnation = entry.member.incarnation;
  entry.member.incarnation = alive.incarnation;
  set_state(entry, MemberState::kAlive, now_ms);
  if (old_state == MemberState::kDead) {
    // It may not know it was declared dead (a thawed node refutes the
    // suspicion it hears first): say so, so that it drops the work others
    // have given to other members meanwhile.
    send(alive.info.address, Dead{id, dead_incarnation, self_id_}, false);
  }
  if (old_state != MemberState::kAlive) {
    emit(MemberEvent::Kind::kAliveAgain, entry.member);
  } else if (info_changed) {
    emit(MemberEvent::Kind::kUpdated, entry.member);
  }
  broadcast(id, alive);
}

void Core::on_suspect(const Suspect& suspect, uint64_t now_ms) {
  if (suspect.id == self_id_) {
    if (!leaving_ && suspect.incarnation >= self().incarnation) refute(suspect.incarnation);
    return;
  }
  auto it = members_.find(suspect.id);
  if (it == members_.end()) return;
  Entry& entry = it->second;
  Member& m = entry.member;
  if (suspect.incarnation < m.incarnation) return;
  if (m.state == MemberState::kDead || m.state == MemberState::kLeft) return;
  if (m.state == MemberState::kSuspect && entry.suspicion) {
    m.incarnation = suspect.incarnation;
    Suspicion& s = *entry.suspicion;
    if (suspect.from_id != s.first_accuser && s.confirmations.insert(suspect.from_id).second) {
      broadcast(suspect.id, suspect);  // pass the confirmation on
    }
    return;
  }
  m.incarnation = suspect.incarnation;
  set_state(entry, MemberState::kSuspect, now_ms);
  entry.suspicion = Suspicion{now_ms, {}, suspect.from_id};
  emit(MemberEvent::Kind::kSuspect, m);
  broadcast(suspect.id, suspect);
}

void Core::on_dead(const Dead& dead, uint64_t now_ms) {
  if (dead.id == self_id_) {
    declared_dead(dead.incarnation);
    return;
  }
  auto it = members_.find(dead.id);
  if (it == members_.end()) return;
  Entry& entry = it->second;
  if (dead.incarnation < entry.member.incarnation) return;
  if (entry.member.state == MemberState::kDead || entry.member.state == MemberState::kLeft) return;
  entry.member.incarnation = dead.incarnation;
  set_state(entry, MemberState::kDead, now_ms);
  emit(MemberEvent::Kind::kDead, entry.member);
  broadcast(dead.id, dead);
}

void Core::on_left(const Left& left, uint64_t now_ms) {
  if (left.id == self_id_) {
    if (!leaving_ && left.incarnation >= self().incarnation) refute(left.incarnation);
    return;
  }
  auto it = members_.find(left.id);
  if (it == members_.end()) return;
  Entry& entry = it->second;
  if (left.incarnation < entry.member.incarnation) return;
  if (entry.member.state == MemberState::kLeft) return;
  entry.member.incarnation = left.incarnation;
  set_state(entry, MemberState::kLeft, now_ms);
  emit(MemberEvent::Kind::kLeft, entry.member);
  broadcast(left.id, left);
}

void Core::on_load(const LoadUpdate& update, uint64_t now_ms) {
  if (update.id == self_id_) return;
  auto it = members_.find(update.id);
  if (it == members_.end()) return;
  Entry& entry = it->second;
  auto key = std::make_pair(update.incarnation, update.version);
  if (key <= std::make_pair(entry.load_incarnation, entry.load_version)) return;
  entry.load_incarnation = update.incarnation;
  entry.load_version = update.version;
  entry.member.load.available = update.available;
  entry.member.load.running_tasks = update.running_tasks;
  entry.member.load.updated_ms = now_ms;
  broadcast_load(update);
}

void Core::on_push_pull(const std::string& from_address, const PushPull& push_pull,
                        uint64_t now_ms) {
  // Only a reply to a sync we sent completes our join. Another node's join
  // request arriving first (it chose us as its seed while we were still
  // joining) must not stop our own join, or the cluster splits in two.
  if (!joined_ && !push_pull.want_reply) {
    joined_ = true;
    next_push_pull_ms_ = std::min(next_push_pull_ms_, now_ms + config_.join_resync_ms);
    // The reply may come in several chunks, and the resync catches members
    // that joined concurrently: keep announcing to new members a while.
    join_announce_until_ms_ = now_ms + config_.join_resync_ms + config_.join_retry_ms;
  }
  for (const StateEntry& s : push_pull.states) {
    const std::string& id = s.info.id;
    bool known = members_.count(id) > 0 || id == self_id_;
    switch (s.state) {
      case MemberState::kAlive:
        on_alive(Alive{s.info, s.incarnation}, now_ms);
        break;
      case MemberState::kSuspect:
      case MemberState::kDead:
        if (id == self_id_ && s.state == MemberState::kDead) {
          declared_dead(s.incarnation);  // frozen or cut off: we were given up on
          break;
        }
        // Like memberlist, a remote "dead" only makes us suspect: the member
        // gets a chance to refute, which is how partitions heal.
        if (!known && s.state == MemberState::kSuspect) on_alive(Alive{s.info, s.incarnation}, now_ms);
        if (!known && s.state == MemberState::kDead && members_.size() < config_.members_max) {
          Entry entry;
          entry.member.info = s.info;
          entry.member.incarnation = s.incarnation;
          entry.member.state = MemberState::kDead;
          entry.member.state_change_ms = now_ms;
          members_.emplace(id, std::move(entry));
          break;
        }
        on_suspect(Suspect{id, s.incarnation, self_id_}, now_ms);
        break;
      case MemberState::kLeft:
        if (!known) break;
        on_left(Left{id, s.incarnation}, now_ms);
        break;
    }
  }
  if (push_pull.want_reply) send_state(from_address, false, false);
  if (!push_pull.want_reply && now_ms < join_announce_until_ms_ && !leaving_) {
    announce_join(push_pull);
  }
  if (push_pull.join && !leaving_) forward_join(from_address, push_pull, now_ms);
}

void Core::announce_join(const PushPull& reply) {
  for (const StateEntry& s : reply.states) {
    if (join_announced_.size() >= kJoinAnnounceDirectMax) return;
    if (s.info.id == self_id_) continue;
    auto it = members_.find(s.info.id);
    if (it == members_.end()) continue;
    MemberState state = it->second.member.state;
    if (state != MemberState::kAlive && state != MemberState::kSuspect) continue;
    if (!join_announced_.insert(s.info.id).second) continue;
    send(it->second.member.info.address, self_alive(), true);
  }
}

void Core::forward_join(const std::string& from_address, const PushPull& request, uint64_t now_ms) {
  // The joiner's own entry is the one at the address the request came from.
  // Only the chunk carrying it forwards, and only a live, current view of it.
  for (const StateEntry& s : request.states) {
    if (s.info.address != from_address || s.state != MemberState::kAlive) continue;
    auto it = members_.find(s.info.id);
    if (it == members_.end() || s.info.id == self_id_) return;
    const Member& joiner = it->second.member;
    if (joiner.state != MemberState::kAlive || joiner.incarnation != s.incarnation) return;
    Alive alive{joiner.info, joiner.incarnation};
    for (const Entry* e : random_members(kJoinForwardDirectMax, joiner.info.id, false, now_ms)) {
      send(e->member.info.address, alive, false);
    }
    return;
  }
}

// ---- Periodic work ----------------------------------------------------------

void Core::tick_probe(uint64_t now_ms) {
  if (probe_ && !probe_->acked && !probe_->indirect_sent &&
      now_ms >= probe_->start_ms + health_scaled(config_.probe_timeout_ms)) {
    probe_->indirect_sent = true;
    auto it = members_.find(probe_->target_id);
    if (it != members_.end()) {
      PingReq req{probe_->seq, probe_->target_id, it->second.member.info.address};
      for (const Entry* e : random_members(config_.indirect_checks, probe_->target_id, false, now_ms)) {
        send(e->member.info.address, req, true);
        ++probe_->nacks_expected;
      }
    }
  }
  if (now_ms < next_probe_ms_) return;
  if (probe_) end_probe();
  next_probe_ms_ = now_ms + health_scaled(config_.probe_interval_ms);
  if (probe_ && !probe_->acked) {
    auto it = members_.find(probe_->target_id);
    if (it != members_.end() && (it->second.member.state == MemberState::kAlive ||
                                 it->second.member.state == MemberState::kSuspect)) {
      on_suspect(Suspect{probe_->target_id, it->second.member.incarnation, self_id_}, now_ms);
    }
  }
  probe_.reset();
  if (!leaving_) start_probe(now_ms);
}

void Core::end_probe() {
  // As Lifeguard (and memberlist): a direct ack is good news about this
  // node too; an indirect one says nothing of it. A failed probe counts
  // each relay that did not nack (they are taken to work, so this node lost
  // their answers), or 1 when there was no relay to ask.
  if (probe_->acked) {
    if (!probe_->indirect_sent) adjust_health(-1);
  } else if (probe_->nacks_expected > 0) {
    adjust_health(static_cast<int>(probe_->nacks_expected - std::min(probe_->nacks, probe_->nacks_expected)));
  } else {
    adjust_health(1);
  }
}

void Core::start_probe(uint64_t now_ms) {
  for (size_t attempts = 0; attempts < 2; ++attempts) {
    while (probe_index_ < probe_order_.size()) {
      const std::string& id = probe_order_[probe_index_++];
      auto it = members_.find(id);
      if (it == members_.end()) continue;
      const Member& m = it->second.member;
      if (m.state != MemberState::kAlive && m.state != MemberState::kSuspect) continue;
      probe_ = Probe{id, next_seq_++, now_ms, false, false};
      send(m.info.address, Ping{probe_->seq, id}, true);
      return;
    }
    // New round: a fresh random order over everyone probe-able.
    probe_order_.clear();
    probe_index_ = 0;
    for (const auto& [id, e] : members_) {
      if (id == self_id_) continue;
      if (e.member.state == MemberState::kAlive || e.member.state == MemberState::kSuspect) {
        probe_order_.push_back(id);
      }
    }
    for (size_t i = probe_order_.size(); i > 1; --i) {
      std::swap(probe_order_[i - 1], probe_order_[rng_.uniform(i)]);
    }
  }
}

uint64_t Core::suspicion_timeout_ms(const Suspicion& suspicion) const {
  double n = static_cast<double>(live_count_);
  double min = static_cast<double>(config_.suspicion_min_ms) * std::max(1.0, std::log10(std::max(n, 1.0)));
  double max = min * config_.suspicion_max_mult;
  double k = std::min<double>(config_.indirect_checks, std::max(0.0, n - 2));
  if (k < 1) return static_cast<uint64_t>(min);
  double c = static_cast<double>(suspicion.confirmations.size());
  double timeout = max - (max - min) * std::log(c + 1) / std::log(k + 1);
  return static_cast<uint64_t>(std::max(min, std::floor(timeout)));
}

void Core::notify_suspect(Entry& entry, const std::string& address, uint64_t now_ms) {
  if (!entry.suspicion || now_ms < entry.suspicion->next_notify_ms) return;
  entry.suspicion->next_notify_ms = now_ms + 2 * config_.probe_interval_ms;
  send(address, Suspect{entry.member.info.id, entry.member.incarnation, self_id_}, false);
}

void Core::tick_suspicions(uint64_t now_ms) {
  std::vector<std::string> expired;
  size_t notified = 0;
  for (const std::string& id : suspects_) {
    Entry& e = members_.at(id);
    // A refutation is one direct round trip away: ask the suspect itself
    // (it answers with its Alive), on top of the gossiped suspicion.
    if (notified < kSuspectNotifiesPerTickMax && e.suspicion && now_ms >= e.suspicion->next_notify_ms) {
      notify_suspect(e, e.member.info.address, now_ms);
      ++notified;
    }
    if (e.suspicion && now_ms >= e.suspicion->start_ms + suspicion_timeout_ms(*e.suspicion)) {
      expired.push_back(id);
    }
  }
  for (const std::string& id : expired) {
    Entry& e = members_.at(id);
    on_dead(Dead{id, e.member.incarnation, self_id_}, now_ms);
  }
}

void Core::tick_gossip(uint64_t now_ms) {
  if (now_ms < next_gossip_ms_) return;
  next_gossip_ms_ = now_ms + config_.gossip_interval_ms;
  if (broadcasts_.empty() && load_broadcasts_.empty()) return;
  size_t max = std::max(config_.gossip_fanout, config_.gossip_packets_per_round_max);
  size_t sent = 0;
  for (const Entry* e : random_members(max, "", true, now_ms)) {
    // Beyond the fanout, keep sending only while updates are still queued.
    if (sent >= config_.gossip_fanout && broadcasts_.empty() && load_broadcasts_.empty()) break;
    std::vector<Message> messages = take_broadcasts(kPayloadBytesMax, kMessagesPerPacketMax);
    if (messages.empty()) break;
    outgoing_.push_back(Outgoing{e->member.info.address, std::move(messages)});
    ++sent;
  }
}

void Core::tick_reap(uint64_t now_ms) {
  if (now_ms < next_reap_ms_) return;
  next_reap_ms_ = now_ms + kReapCheckIntervalMs;
  for (auto it = members_.begin(); it != members_.end();) {
    const Member& m = it->second.member;
    bool reap = it->first != self_id_ &&
                ((m.state == MemberState::kDead && now_ms >= m.state_change_ms + config_.dead_reap_ms) ||
                 (m.state == MemberState::kLeft && now_ms >= m.state_change_ms + config_.left_reap_ms));
    if (reap) {
      emit(MemberEvent::Kind::kReaped, m);
      broadcasts_.erase(it->first);
      load_broadcasts_.erase(it->first);
      it = members_.erase(it);
    } else {
      ++it;
    }
  }
  recount();
}

// ---- Sending and dissemination ---------------------------------------------

void Core::broadcast(const std::string& key, Message message) {
  if (broadcasts_.size() >= config_.broadcasts_max && broadcasts_.count(key) == 0) {
    // Drop the most-transmitted update: it has had the most chances to spread.
    auto worst = std::max_element(broadcasts_.begin(), broadcasts_.end(), [](const auto& a, const auto& b) {
      return a.second.transmits < b.second.transmits;
    });
    broadcasts_.erase(worst);
  }
  broadcasts_[key] = Broadcast{std::move(message), 0, broadcast_order_++};
}

void Core::broadcast_load(Message message) {
  std::string key = std::get<LoadUpdate>(message).id;  // a copy: `message` is moved below
  if (load_broadcasts_.size() >= config_.load_broadcasts_max && load_broadcasts_.count(key) == 0) {
    auto worst = std::max_element(load_broadcasts_.begin(), load_broadcasts_.end(),
                                  [](const auto& a, const auto& b) {
                                    return a.second.transmits < b.second.transmits;
                                  });
    load_broadcasts_.erase(worst);
  }
  load_broadcasts_[key] = Broadcast{std::move(message), 0, broadcast_order_++};
}

std::vector<Message> Core::take_broadcasts(size_t bytes_budget, size_t count_budget) {
  std::vector<Message> out;
  for (auto* queue : {&broadcasts_, &load_broadcasts_}) {
    uint32_t limit = retransmit_limit(queue == &broadcasts_ ? config_.retransmit_mult
                                                             : config_.load_retransmit_mult);
    if (queue->empty() || count_budget == 0) continue;
    std::vector<std::map<std::string, Broadcast>::iterator> order;
    order.reserve(queue->size());
    for (auto it = queue->begin(); it != queue->end(); ++it) order.push_back(it);
    std::sort(order.begin(), order.end(), [](const auto& a, const auto& b) {
      if (a->second.transmits != b->second.transmits) return a->second.transmits < b->second.transmits;
      return a->second.order < b->second.order;
    });
    for (auto it : order) {
      if (count_budget == 0) break;
      size_t size = message_size_bound(it->second.message);
      if (size > bytes_budget) continue;
      bytes_budget -= size;
      --count_budget;
      out.push_back(it->second.message);
      if (++it->second.transmits >= limit) queue->erase(it);
    }
  }
  return out;
}

void Core::send(const std::string& address, Message message, bool piggyback) {
  size_t budget = kPayloadBytesMax;
  size_t size = message_size_bound(message);
  SHOAL_ASSERT(size <= budget, size, message_name(message));
  budget -= size;
  Outgoing out{address, {}};
  out.messages.push_back(std::move(message));
  if (piggyback) {
    if (load_set_) {
      LoadUpdate load = self_load_update();
      size_t load_size = message_size_bound(load);
      if (load_size <= budget) {
        budget -= load_size;
        out.messages.push_back(std::move(load));
      }
    }
    auto extra = take_broadcasts(budget, kMessagesPerPacketMax - out.messages.size());
    for (auto& m : extra) out.messages.push_back(std::move(m));
  }
  outgoing_.push_back(std::move(out));
}

void Core::send_state(const std::string& address, bool join, bool want_reply) {
  PushPull chunk{join, want_reply, {}};
  size_t size = message_size_bound(chunk);
  auto flush = [&]() {
    outgoing_.push_back(Outgoing{address, {std::move(chunk)}});
    chunk = PushPull{join, false, {}};
    size = message_size_bound(chunk);
  };
  for (const auto& [id, e] : members_) {
    StateEntry s{e.member.info, e.member.state, e.member.incarnation};
    if (id == self_id_ && !leaving_) s.state = MemberState::kAlive;
    size_t entry_size = 24 + member_info_size_bound(s.info);
    if (!chunk.states.empty() &&
        (size + entry_size > kPayloadBytesMax || chunk.states.size() >= kStatesPerMessageMax)) {
      flush();
    }
    chunk.states.push_back(std::move(s));
    size += entry_size;
  }
  if (!chunk.states.empty()) flush();
}

std::vector<const Core::Entry*> Core::random_members(size_t k, const std::string& exclude_id,
                                                     bool include_recent_dead, uint64_t now_ms) {
  std::vector<const Entry*> candidates;
  for (const auto& [id, e] : members_) {
    if (id == self_id_ || id == exclude_id) continue;
    MemberState s = e.member.state;
    bool live = s == MemberState::kAlive || s == MemberState::kSuspect;
    bool recent_dead = include_recent_dead && s == MemberState::kDead &&
                       now_ms < e.member.state_change_ms + config_.gossip_to_dead_ms;
    if (live || recent_dead) candidates.push_back(&e);
  }
  size_t n = std::min(k, candidates.size());
  for (size_t i = 0; i < n; ++i) {
    std::swap(candidates[i], candidates[i + rng_.uniform(candidates.size() - i)]);
  }
  candidates.resize(n);
  return candidates;
}

}  // namespace shoal::gossip
