// Pure SWIM membership core (suspicion + incarnation numbers, Lifeguard-style).
//
// No I/O, no clock reads, no threads: the owner feeds it time (`now_ms`, a
// monotonic clock), received messages and ticks, then drains what to send
// (`take_outgoing`) and what changed (`take_events`), in the spirit of etcd
// raft's Ready/Advance. One thread owns a Core; it is not thread-safe.
//
// Messages handed to `receive` must have passed `validate_message` (the codec
// does this for everything that arrives from the network).
#pragma once

#include <cstddef>
#include <cstdint>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <variant>
#include <vector>

#include "base/clock.h"
#include "shoal/status.h"

namespace shoal::gossip {

// ---- Limits (every one named) ----------------------------------------------
inline constexpr size_t kPacketBytesMax = 1400;            // encoded datagram incl. MAC
inline constexpr size_t kPacketOverheadBytes = 160;        // header + MAC upper bound
inline constexpr size_t kMessagesPerPacketMax = 64;
inline constexpr size_t kStatesPerMessageMax = 32;
inline constexpr size_t kMemberIdChars = 32;               // lowercase hex
inline constexpr size_t kAddressCharsMax = 255;
inline constexpr size_t kLabelsMax = 16;
inline constexpr size_t kLabelKeyCharsMax = 63;
inline constexpr size_t kLabelValueCharsMax = 255;
inline constexpr size_t kCustomResourcesMax = 16;
inline constexpr size_t kResourceNameCharsMax = 63;
// An Alive (the largest single update) must fit in one packet with room to spare.
inline constexpr size_t kMemberInfoBytesMax = 900;
inline constexpr double kResourceAmountMax = 1e15;
inline constexpr size_t kRelaysMax = 256;                  // pending indirect probes we forward
inline constexpr size_t kSuspectNotifiesPerTickMax = 16;   // direct "you are suspect" packets
// A joiner whose join sync was answered sends its own Alive directly to up to
// this many of the members it learned from the answer (and from its follow-up
// resync), so its arrival does not hinge on the epidemic tail alone.
inline constexpr size_t kJoinAnnounceDirectMax = 32;
// A seed answering a join pushes the joiner's Alive directly to this many
// random members too (covers a joiner whose own announcements are lost).
inline constexpr size_t kJoinForwardDirectMax = 8;
// A leaver re-sends its Left directly to the members it told, this many more
// times, one gossip interval apart (datagrams get lost; Left has no ack).
inline constexpr uint32_t kLeaveNotifyResends = 2;

// ---- Data ------------------------------------------------------------------
struct Resources {
  double cpus = 0;
  uint64_t memory_bytes = 0;
  double gpus = 0;
  std::map<std::string, double> custom;
  bool operator==(const Resources&) const = default;
};

// A member's available resources and load, set by the owner with
// Core::set_local_load. In Member views of other nodes, `updated_ms` is the
// local (receiver's) monotonic time at which the newest value arrived, so
// `now_ms - updated_ms` is its age.
struct Load {
  Resources available;
  uint32_t running_tasks = 0;
  uint64_t updated_ms = 0;
};

struct MemberInfo {
  std::string id;       // 32 lowercase hex chars
  std::string address;  // "host:port"; UDP gossip and TCP RPC
  Resources total;
  std::map<std::string, std::string> labels;
  bool operator==(const MemberInfo&) const = default;
};

enum class MemberState : uint8_t { kAlive, kSuspect, kDead, kLeft };
const char* member_state_name(MemberState state);

struct Member {
  MemberInfo info;
  MemberState state = MemberState::kAlive;
  uint64_t incarnation = 0;
  uint64_t last_contact_ms = 0;  // last time a packet came from it directly
  uint64_t state_change_ms = 0;  // when `state` last changed (local time)
  Load load;
};

struct MemberEvent {
  // kDeclaredDead is about this node itself: the cluster declared it dead
  // (it was frozen or cut off); it comes back as a new incarnation, and what
  // it ran for others was given to other nodes meanwhile.
  enum class Kind : uint8_t { kJoined, kSuspect, kDead, kLeft, kAliveAgain, kUpdated, kReaped, kDeclaredDead };
  Kind kind;
  Member member;  // the member's view after the change
  // kDeclaredDead: the incarnation the others declared dead (this node has
  // refuted it since, so member.incarnation is higher).
  uint64_t dead_incarnation = 0;
};
const char* event_kind_name(MemberEvent::Kind kind);

// ---- Messages --------------------------------------------------------------
struct Ping {
  uint32_t seq = 0;
  std::string target_id;  // empty: whoever receives it (diagnostic probe)
};
struct Ack {
  uint32_t seq = 0;
};
// From a member relaying our ping-req: the target did not answer it in time.
// Lifeguard: a prober that misses the nacks of working relays is itself slow.
struct Nack {
  uint32_t seq = 0;
};
struct PingReq {
  uint32_t seq = 0;
  std::string target_id;
  std::string target_address;
};
struct Alive {
  MemberInfo info;
  uint64_t incarnation = 0;
};
struct Suspect {
  std::string id;
  uint64_t incarnation = 0;
  std::string from_id;
};
struct Dead {
  std::string id;
  uint64_t incarnation = 0;
  std::string from_id;
};
struct Left {
  std::string id;
  uint64_t incarnation = 0;
};
struct LoadUpdate {
  std::string id;
  uint64_t incarnation = 0;  // (incarnation, version) orders updates
  uint64_t version = 0;
  Resources available;
  uint32_t running_tasks = 0;
};
struct StateEntry {
  MemberInfo info;
  MemberState state = MemberState::kAlive;
  uint64_t incarnation = 0;
};
struct PushPull {
  bool join = false;
  bool want_reply = false;
  std::vector<StateEntry> states;
};

using Message = std::variant<Ping, Ack, PingReq, Alive, Suspect, Dead, Left, LoadUpdate, PushPull, Nack>;
const char* message_name(const Message& message);

struct Outgoing {
  std::string to_address;
  std::vector<Message> messages;  // encodes to at most kPacketBytesMax
};

// Upper bound of a message's size inside an encoded packet (capnp layout);
// codec_test checks the bound against real encodings.
size_t message_size_bound(const Message& message);
size_t member_info_size_bound(const MemberInfo& info);

// ---- Validation (pure; used by the codec on every received field) ----------
bool is_valid_member_id(const std::string& id);
Status validate_address(const std::string& address);
Status validate_resources(const Resources& resources, const char* what);
Status validate_member_info(const MemberInfo& info);
Status validate_message(const Message& message);

// ---- Config ----------------------------------------------------------------
struct Config {
  uint64_t probe_interval_ms = 250;     // one probe per interval, randomized round robin
  uint64_t probe_timeout_ms = 120;      // direct ack wait before indirect probes
  uint32_t indirect_checks = 3;         // members asked to ping-req
  uint64_t gossip_interval_ms = 50;     // dedicated dissemination rounds
  uint32_t gossip_fanout = 3;
  uint32_t gossip_packets_per_round_max = 6;  // extra packets only while a backlog remains
  uint64_t gossip_to_dead_ms = 10'000;  // keep gossiping to recently dead members
  uint32_t retransmit_mult = 4;         // retransmits = mult * ceil(log10(n + 1))
  uint32_t load_retransmit_mult = 2;    // same for load updates (refreshed anyway)
  // Lifeguard suspicion: timeout starts at max and shrinks toward min with
  // independent confirmations. min scales with log10(n) above 10 members.
  uint64_t suspicion_min_ms = 750;
  uint32_t suspicion_max_mult = 3;
  // Lifeguard local health: a score in [0, health_max] that rises when this
  // node's own probes fail without the relays' nacks (or with none to ask),
  // and when it must refute a suspicion of itself; a probe acked directly
  // lowers it. Probe interval and timeout scale by (score + 1): a node
  // starved of CPU or network waits longer before it suspects others.
  uint32_t health_max = 8;
  uint64_t push_pull_interval_ms = 15'000;  // anti-entropy, scaled up for n > 32
  uint64_t reconnect_interval_ms = 2'000;   // sync with a random dead member
  uint64_t join_retry_ms = 1'000;           // resend join until a seed answers
  uint64_t join_resync_ms = 500;            // one more full sync after joining, to catch
                                            // members that joined concurrently
  uint32_t leave_notify_direct = 128;       // members told of a leave directly
  uint64_t load_refresh_ms = 1'000;         // re-gossip own load at least this often
  uint64_t load_broadcast_min_ms = 250;     // and at most this often
  uint64_t dead_reap_ms = 24ull * 3600 * 1000;
  uint64_t left_reap_ms = 3600ull * 1000;
  size_t members_max = 10'000;
  size_t broadcasts_max = 4'096;       // membership updates queued for piggyback
  size_t load_broadcasts_max = 4'096;  // load updates queued (lower priority)
};

// ---- Core ------------------------------------------------------------------
class Core {
 public:
  // `self` must pass validate_member_info (asserted). `incarnation` must beat
  // any incarnation this id used before (e.g. wall-clock ms at start).
  Core(Config config, MemberInfo self, uint64_t incarnation, Rng& rng);

  // Push/pull state sync with each seed (own address skipped), resent every
  // join_retry_ms until one answers. Empty seeds: first node, nothing to do.
  void join(std::vector<std::string> seed_addresses, uint64_t now_ms);
  // Broadcasts LEFT; probing stops, dissemination continues.
  void leave(uint64_t now_ms);
  void tick(uint64_t now_ms);
  // `from_address` is where the packet came from (replies go there);
  // `from_id` the authenticated sender id of the packet.
  void receive(const std::string& from_address, const std::string& from_id,
               const Message& message, uint64_t now_ms);
  void set_local_load(const Load& load, uint64_t now_ms);

  std::vector<Outgoing> take_outgoing();
  std::vector<MemberEvent> take_events();

  const Member* find(const std::string& id) const;
  std::vector<Member> members() const;  // includes self
  size_t count(MemberState state) const;
  const Member& self() const;
  uint64_t incarnation() const { return self().incarnation; }
  // Lifeguard local health score, 0 (healthy) .. Config::health_max.
  uint32_t health_score() const { return health_; }
  bool joined() const { return joined_; }
  bool leaving() const { return leaving_; }
  const Config& config() const { return config_; }
  size_t queued_broadcasts() const { return broadcasts_.size(); }
  size_t queued_load_broadcasts() const { return load_broadcasts_.size(); }

 private:
  struct Suspicion {
    uint64_t start_ms = 0;
    std::set<std::string> confirmations;  // distinct accusers after the first
    std::string first_accuser;
    uint64_t next_notify_ms = 0;  // when to tell the suspect directly again
  };
  struct Entry {
    Member member;
    std::optional<Suspicion> suspicion;
    uint64_t load_incarnation = 0;  // newest LoadUpdate applied
    uint64_t load_version = 0;
  };
  struct Probe {
    std::string target_id;
    uint32_t seq = 0;
    uint64_t start_ms = 0;
    bool acked = false;
    bool indirect_sent = false;
    uint32_t nacks_expected = 0;  // relays asked
    uint32_t nacks = 0;
  };
  struct Relay {
    std::string requester_address;
    uint32_t requester_seq = 0;
    uint64_t nack_at_ms = 0;  // no ack from the target by then: nack the requester
    bool nacked = false;
    uint64_t deadline_ms = 0;
  };
  struct Broadcast {
    Message message;
    uint32_t transmits = 0;
    uint64_t order = 0;  // insertion order, to break ties oldest first
  };

  // Handlers; each returns nothing, updates state and queues broadcasts/events.
  void on_ping(const std::string& from_address, const Ping& ping, uint64_t now_ms);
  void on_ack(const Ack& ack, uint64_t now_ms);
  void on_nack(const Nack& nack);
  void on_ping_req(const std::string& from_address, const PingReq& req, uint64_t now_ms);
  void on_alive(const Alive& alive, uint64_t now_ms);
  void on_suspect(const Suspect& suspect, uint64_t now_ms);
  void on_dead(const Dead& dead, uint64_t now_ms);
  void on_left(const Left& left, uint64_t now_ms);
  void on_load(const LoadUpdate& update, uint64_t now_ms);
  void on_push_pull(const std::string& from_address, const PushPull& push_pull, uint64_t now_ms);
  void announce_join(const PushPull& reply);
  void forward_join(const std::string& from_address, const PushPull& request, uint64_t now_ms);
  void tick_leave(uint64_t now_ms);

  void refute(uint64_t accused_incarnation);
  // Another member says this node is dead at `incarnation`: it tells the
  // node (kDeclaredDead) and refutes as a new incarnation.
  void declared_dead(uint64_t incarnation);
  uint64_t dead_handled_upto_ = 0;  // deaths of incarnations below this were handled
  void set_state(Entry& entry, MemberState state, uint64_t now_ms);
  void emit(MemberEvent::Kind kind, const Member& member);
  uint64_t suspicion_timeout_ms(const Suspicion& suspicion) const;

  void tick_probe(uint64_t now_ms);
  void end_probe();  // updates the local health from the probe's outcome
  void tick_relays(uint64_t now_ms);
  void adjust_health(int delta);
  uint64_t health_scaled(uint64_t ms) const { return ms * (health_ + 1); }
  void start_probe(uint64_t now_ms);
  void tick_suspicions(uint64_t now_ms);
  void notify_suspect(Entry& entry, const std::string& address, uint64_t now_ms);
  void tick_gossip(uint64_t now_ms);
  void tick_reap(uint64_t now_ms);

  void broadcast(const std::string& key, Message message);
  void broadcast_load(Message message);
  void broadcast_own_load(uint64_t now_ms);
  std::vector<Message> take_broadcasts(size_t bytes_budget, size_t count_budget);
  void send(const std::string& address, Message message, bool piggyback);
  void send_state(const std::string& address, bool join, bool want_reply);
  Alive self_alive() const;
  LoadUpdate self_load_update() const;
  uint32_t retransmit_limit(uint32_t mult) const;
  size_t live_count() const;
  std::vector<const Entry*> random_members(size_t k, const std::string& exclude_id,
                                           bool include_recent_dead, uint64_t now_ms);
  Entry& self_entry();
  void ensure_started(uint64_t now_ms);
  void recount();

  Config config_;
  std::string self_id_;
  Rng& rng_;
  std::map<std::string, Entry> members_;  // includes self

  bool joined_ = false;
  bool leaving_ = false;
  std::vector<std::string> seeds_;
  uint64_t next_join_ms_ = 0;
  // Direct join announcements: until join_announce_until_ms_, each member
  // learned from a sync reply is sent our Alive once (kJoinAnnounceDirectMax in all).
  uint64_t join_announce_until_ms_ = 0;
  std::set<std::string> join_announced_;
  // Direct Left re-sends: addresses told at leave(), resends still due.
  std::vector<std::string> leave_targets_;
  uint32_t leave_resends_left_ = 0;
  uint64_t next_leave_resend_ms_ = 0;

  std::vector<std::string> probe_order_;
  size_t probe_index_ = 0;
  std::optional<Probe> probe_;
  uint64_t next_probe_ms_ = 0;
  uint32_t next_seq_ = 1;
  std::map<uint32_t, Relay> relays_;
  uint32_t health_ = 0;  // Lifeguard local health score

  uint64_t next_gossip_ms_ = 0;
  uint64_t next_push_pull_ms_ = 0;
  uint64_t next_reconnect_ms_ = 0;
  uint64_t next_load_ms_ = 0;
  uint64_t next_reap_ms_ = 0;
  uint64_t load_version_ = 0;
  bool load_set_ = false;
  bool load_pending_ = false;  // set_local_load came faster than load_broadcast_min_ms
  uint64_t last_load_broadcast_ms_ = 0;
  bool started_ = false;
  size_t live_count_ = 0;            // alive + suspect, self included
  std::set<std::string> suspects_;  // ids in kSuspect

  std::map<std::string, Broadcast> broadcasts_;       // key: member id
  std::map<std::string, Broadcast> load_broadcasts_;  // key: member id
  uint64_t broadcast_order_ = 0;

  std::vector<Outgoing> outgoing_;
  std::vector<MemberEvent> events_;
};

}  // namespace shoal::gossip
