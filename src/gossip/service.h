// GossipService: the SWIM core (gossip/core.h) on a libuv loop, over UDP.
//
// Owns one uv_udp_t and one uv_timer_t on the given loop; every method must
// be called on the loop's thread. Packets are authenticated with the cluster
// key (gossip/codec.h) and replay-checked; bad packets are counted, logged at
// debug level with the reason, and warned about at most once per
// kDropWarnIntervalMs.
//
// Lifecycle: construct → start() → join() → ... → leave(done) → stop().
// stop() closes the handles; the object may be destroyed right after stop()
// (the handles free themselves once libuv has closed them).
#pragma once

#include <uv.h>

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "base/clock.h"
#include "gossip/codec.h"
#include "gossip/core.h"
#include "shoal/status.h"

namespace shoal::gossip {

inline constexpr uint64_t kTickIntervalMs = 10;
inline constexpr uint64_t kLeavePropagateMs = 500;     // leave(): time given to spread LEFT
inline constexpr uint64_t kDropWarnIntervalMs = 10'000;
inline constexpr size_t kResolvedAddressesMax = 16'384;

struct ServiceCounters {
  uint64_t packets_received = 0;   // datagrams that arrived, before any check
  uint64_t packets_accepted = 0;
  uint64_t packets_sent = 0;
  uint64_t dropped_bad_mac = 0;
  uint64_t dropped_replay = 0;     // seen before, or timestamp outside the window
  uint64_t dropped_malformed = 0;  // too short/long, bad capnp, invalid fields
  uint64_t send_errors = 0;        // unresolvable address, encode or socket error
};

class GossipService {
 public:
  // `self` is validated by start(). `incarnation` must beat any earlier run
  // with the same id (wall-clock ms at start is a good choice). `clock` and
  // `rng` must outlive the service.
  GossipService(uv_loop_t* loop, Config config, MemberInfo self, uint64_t incarnation,
                std::string cluster_key, Clock& clock, Rng& rng);
  ~GossipService();
  GossipService(const GossipService&) = delete;
  GossipService& operator=(const GossipService&) = delete;

  // Binds UDP on bind_host:port (port 0: ephemeral, see port()). Fails with a
  // clear Status on a bad self MemberInfo, a bad host, or a port in use.
  Status start(const std::string& bind_host, uint16_t port);
  // Seeds are "host:port"; names are resolved here (blocking getaddrinfo, on
  // the start path only). Empty: this node starts a new cluster.
  void join(std::vector<std::string> seeds);
  // Broadcasts LEFT, keeps gossiping for kLeavePropagateMs, then calls done.
  void leave(std::function<void()> done);
  void stop();

  uint16_t port() const { return port_; }
  bool running() const { return handles_ != nullptr; }
  std::vector<Member> members() const;
  const Member* find(const std::string& id) const;
  void set_local_load(const Load& load);
  void on_event(std::function<void(const MemberEvent&)> handler) { on_event_ = std::move(handler); }
  const ServiceCounters& counters() const { return counters_; }
  const Core* core() const { return core_.get(); }

 private:
  struct Handles;
  static void on_alloc(uv_handle_t* handle, size_t suggested, uv_buf_t* buf);
  static void on_recv(uv_udp_t* udp, ssize_t nread, const uv_buf_t* buf, const struct sockaddr* addr,
                      unsigned flags);
  static void on_timer(uv_timer_t* timer);

  void handle_datagram(std::span<const uint8_t> bytes, const struct sockaddr* from);
  void tick();
  void flush();
  bool resolve(const std::string& address, struct sockaddr_storage& out);
  void note_drop(uint64_t& counter, const char* what, const std::string& from, const Status& why);

  uv_loop_t* loop_;
  Config config_;
  MemberInfo self_;
  uint64_t incarnation_;
  std::string key_;
  Clock& clock_;
  Rng& rng_;
  std::unique_ptr<Core> core_;
  std::unique_ptr<Handles> handles_;
  ReplayGuard replay_guard_;
  uint16_t port_ = 0;
  uint64_t session_id_ = 0;
  uint64_t next_seq_ = 1;
  std::map<std::string, struct sockaddr_storage> resolved_;
  std::function<void(const MemberEvent&)> on_event_;
  std::function<void()> leave_done_;
  uint64_t leave_done_ms_ = 0;
  ServiceCounters counters_;
  uint64_t last_drop_warn_ms_ = 0;
  uint64_t drops_since_warn_ = 0;
  uint32_t logged_health_ = 0;  // the local health score last logged
};

// CLI diagnostic: sends one authenticated ping (no target id) from a
// throwaway socket on a private loop, and reports whether an authenticated
// ack came back within timeout_ms. Blocks the calling thread; never call it
// on a loop thread.
Result<bool> probe_once(const std::string& address, std::span<const uint8_t> key, uint64_t timeout_ms);

}  // namespace shoal::gossip
