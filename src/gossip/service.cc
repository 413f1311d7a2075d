#include "gossip/service.h"

#include <netdb.h>

#include <algorithm>
#include <array>
#include <cstring>

#include "base/assert.h"
#include "base/crypto.h"
#include "base/log.h"

namespace shoal::gossip {

namespace {

constexpr size_t kReceiveBufferBytes = 64 * 1024;  // any datagram; > kPacketBytesMax is dropped

std::string format_address(const struct sockaddr* addr) {
  char host[INET6_ADDRSTRLEN] = {0};
  if (addr->sa_family == AF_INET) {
    const auto* in = reinterpret_cast<const struct sockaddr_in*>(addr);
    uv_ip4_name(in, host, sizeof host);
    return std::string(host) + ":" + std::to_string(ntohs(in->sin_port));
  }
  if (addr->sa_family == AF_INET6) {
    const auto* in6 = reinterpret_cast<const struct sockaddr_in6*>(addr);
    uv_ip6_name(in6, host, sizeof host);
    return "[" + std::string(host) + "]:" + std::to_string(ntohs(in6->sin6_port));
  }
  return "unknown";
}

struct HostPort {
  std::string host;
  uint16_t port = 0;
};

Result<HostPort> split_address(const std::string& address) {
  SHOAL_RETURN_IF_ERROR(validate_address(address));
  size_t colon = address.rfind(':');
  HostPort hp{address.substr(0, colon), static_cast<uint16_t>(std::stoul(address.substr(colon + 1)))};
  if (!hp.host.empty() && hp.host.front() == '[') hp.host = hp.host.substr(1, hp.host.size() - 2);
  return hp;
}

// Numeric IPv4/IPv6 and "localhost" only: never blocks.
bool resolve_numeric(const std::string& host, uint16_t port, struct sockaddr_storage& out) {
  std::memset(&out, 0, sizeof out);
  std::string h = host == "localhost" ? "127.0.0.1" : host;
  if (uv_ip4_addr(h.c_str(), port, reinterpret_cast<struct sockaddr_in*>(&out)) == 0) return true;
  if (uv_ip6_addr(h.c_str(), port, reinterpret_cast<struct sockaddr_in6*>(&out)) == 0) return true;
  return false;
}

// Numeric first, then a blocking getaddrinfo (start/join paths only).
Result<struct sockaddr_storage> resolve_blocking(const std::string& host, uint16_t port) {
  struct sockaddr_storage out;
  if (resolve_numeric(host, port, out)) return out;
  struct addrinfo hints;
  std::memset(&hints, 0, sizeof hints);
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_DGRAM;
  struct addrinfo* res = nullptr;
  int rc = getaddrinfo(host.c_str(), nullptr, &hints, &res);
  if (rc != 0 || res == nullptr) {
    return Status::unavailable("cannot resolve '" + host + "': " + gai_strerror(rc));
  }
  std::memset(&out, 0, sizeof out);
  std::memcpy(&out, res->ai_addr, res->ai_addrlen);
  freeaddrinfo(res);
  if (out.ss_family == AF_INET) {
    reinterpret_cast<struct sockaddr_in*>(&out)->sin_port = htons(port);
  } else {
    reinterpret_cast<struct sockaddr_in6*>(&out)->sin6_port = htons(port);
  }
  return out;
}

uint64_t random_u64() {
  uint64_t x = 0;
  secure_random(std::span<uint8_t>(reinterpret_cast<uint8_t*>(&x), sizeof x));
  return x;
}

}  // namespace

// libuv handles live in their own allocation so that stop() can hand them to
// uv_close and the service can be destroyed before the close callbacks run.
struct GossipService::Handles {
  uv_udp_t udp;
  uv_timer_t timer;
  int open = 0;
  std::array<char, kReceiveBufferBytes> buffer;
  GossipService* service = nullptr;  // null once stopped

  static void on_close(uv_handle_t* handle) {
    auto* h = static_cast<Handles*>(handle->data);
    if (--h->open == 0) std::unique_ptr<Handles> owned(h);  // last close frees
  }
};

GossipService::GossipService(uv_loop_t* loop, Config config, MemberInfo self, uint64_t incarnation,
                             std::string cluster_key, Clock& clock, Rng& rng)
    : loop_(loop),
      config_(std::move(config)),
      self_(std::move(self)),
      incarnation_(incarnation),
      key_(std::move(cluster_key)),
      clock_(clock),
      rng_(rng) {
  SHOAL_ASSERT(loop_ != nullptr);
}

GossipService::~GossipService() { stop(); }

Status GossipService::start(const std::string& bind_host, uint16_t port) {
  SHOAL_ASSERT(!handles_, "start() called twice");
  Status valid = validate_member_info(self_);
  if (!valid.ok()) return Status::invalid_argument("gossip self info: " + valid.message());
  if (key_.empty()) return Status::invalid_argument("gossip needs a non-empty cluster key");
  auto addr = resolve_blocking(bind_host, port);
  if (!addr.ok()) return addr.status();

  auto handles = std::make_unique<Handles>();
  int rc = uv_udp_init(loop_, &handles->udp);
  if (rc != 0) return Status::io_error(std::string("gossip udp init: ") + uv_strerror(rc));
  handles->udp.data = handles.get();
  handles->open = 1;
  rc = uv_udp_bind(&handles->udp, reinterpret_cast<const struct sockaddr*>(&*addr), 0);
  if (rc == 0) {
    struct sockaddr_storage bound;
    int len = sizeof bound;
    rc = uv_udp_getsockname(&handles->udp, reinterpret_cast<struct sockaddr*>(&bound), &len);
    if (rc == 0) {
      port_ = ntohs(bound.ss_family == AF_INET ? reinterpret_cast<struct sockaddr_in*>(&bound)->sin_port
                                               : reinterpret_cast<struct sockaddr_in6*>(&bound)->sin6_port);
    }
  }
  if (rc == 0) rc = uv_udp_recv_start(&handles->udp, &GossipService::on_alloc, &GossipService::on_recv);
  if (rc != 0) {
    std::string where = bind_host + ":" + std::to_string(port);
    uv_close(reinterpret_cast<uv_handle_t*>(&handles->udp), &Handles::on_close);
    handles.release();  // freed by on_close
    if (rc == UV_EADDRINUSE) return Status::unavailable("gossip port " + where + " is already in use");
    return Status::io_error("gossip bind " + where + ": " + uv_strerror(rc));
  }
  uv_timer_init(loop_, &handles->timer);
  handles->timer.data = handles.get();
  handles->open = 2;
  handles->service = this;
  uv_timer_start(&handles->timer, &GossipService::on_timer, kTickIntervalMs, kTickIntervalMs);
  handles_ = std::move(handles);

  session_id_ = random_u64();
  core_ = std::make_unique<Core>(config_, self_, incarnation_, rng_);
  SHOAL_LOG_INFO("gossip: {} listening on {}:{}", self_.id.substr(0, 8), bind_host, port_);
  return {};
}

void GossipService::join(std::vector<std::string> seeds) {
  SHOAL_ASSERT(core_, "join() before start()");
  std::vector<std::string> usable;
  for (auto& seed : seeds) {
    auto hp = split_address(seed);
    if (!hp.ok()) {
      SHOAL_LOG_WARN("gossip: ignoring seed '{}': {}", seed, hp.status().message());
      continue;
    }
    auto addr = resolve_blocking(hp->host, hp->port);
    if (!addr.ok()) {
      SHOAL_LOG_WARN("gossip: ignoring seed '{}': {}", seed, addr.status().message());
      continue;
    }
    resolved_[seed] = *addr;
    usable.push_back(std::move(seed));
  }
  core_->join(std::move(usable), clock_.now_ms());
  flush();
}

void GossipService::leave(std::function<void()> done) {
  if (!core_ || !handles_) {
    if (done) done();
    return;
  }
  core_->leave(clock_.now_ms());
  leave_done_ = std::move(done);
  leave_done_ms_ = clock_.now_ms() + kLeavePropagateMs;
  flush();
}

void GossipService::stop() {
  if (!handles_) return;
  Handles* h = handles_.release();  // freed by the last close callback
  h->service = nullptr;
  uv_udp_recv_stop(&h->udp);
  uv_timer_stop(&h->timer);
  uv_close(reinterpret_cast<uv_handle_t*>(&h->udp), &Handles::on_close);
  uv_close(reinterpret_cast<uv_handle_t*>(&h->timer), &Handles::on_close);
}

std::vector<Member> GossipService::members() const { return core_ ? core_->members() : std::vector<Member>{}; }

const Member* GossipService::find(const std::string& id) const { return core_ ? core_->find(id) : nullptr; }

void GossipService::set_local_load(const Load& load) {
  if (!core_) return;
  core_->set_local_load(load, clock_.now_ms());
}

void GossipService::on_alloc(uv_handle_t* handle, size_t, uv_buf_t* buf) {
  auto* h = static_cast<Handles*>(handle->data);
  *buf = uv_buf_init(h->buffer.data(), static_cast<unsigned>(h->buffer.size()));
}

void GossipService::on_recv(uv_udp_t* udp, ssize_t nread, const uv_buf_t* buf, const struct sockaddr* addr,
                            unsigned flags) {
  auto* h = static_cast<Handles*>(udp->data);
  if (h->service == nullptr || addr == nullptr || nread == 0) return;
  if (nread < 0) {
    SHOAL_LOG_DEBUG("gossip: receive error: {}", uv_strerror(static_cast<int>(nread)));
    return;
  }
  GossipService& self = *h->service;
  ++self.counters_.packets_received;
  if (flags & UV_UDP_PARTIAL) {
    self.note_drop(self.counters_.dropped_malformed, "truncated", format_address(addr),
                   Status::invalid_argument("datagram larger than the receive buffer"));
    return;
  }
  self.handle_datagram({reinterpret_cast<const uint8_t*>(buf->base), static_cast<size_t>(nread)}, addr);
}

void GossipService::on_timer(uv_timer_t* timer) {
  auto* h = static_cast<Handles*>(timer->data);
  if (h->service != nullptr) h->service->tick();
}

void GossipService::handle_datagram(std::span<const uint8_t> bytes, const struct sockaddr* from) {
  std::string from_address = format_address(from);
  auto packet = decode_packet(bytes, as_bytes(key_));
  if (!packet.ok()) {
    bool bad_mac = packet.status().code() == Status::Code::kUnauthenticated;
    note_drop(bad_mac ? counters_.dropped_bad_mac : counters_.dropped_malformed,
              bad_mac ? "bad MAC" : "malformed", from_address, packet.status());
    return;
  }
  Status fresh = replay_guard_.check(packet->header, clock_.wall_now_ms());
  if (!fresh.ok()) {
    note_drop(counters_.dropped_replay, "replay", from_address, fresh);
    return;
  }
  if (packet->header.sender_id == self_.id) return;  // our own packet came back
  ++counters_.packets_accepted;
  uint64_t now = clock_.now_ms();
  for (const Message& m : packet->messages) core_->receive(from_address, packet->header.sender_id, m, now);
  flush();
}

void GossipService::note_drop(uint64_t& counter, const char* what, const std::string& from, const Status& why) {
  ++counter;
  ++drops_since_warn_;
  SHOAL_LOG_DEBUG("gossip: dropped packet from {} ({}): {}", from, what, why.message());
  uint64_t now = clock_.now_ms();
  if (last_drop_warn_ms_ == 0 || now >= last_drop_warn_ms_ + kDropWarnIntervalMs) {
    SHOAL_LOG_WARN("gossip: dropped {} packet(s) recently; latest from {} ({}): {}", drops_since_warn_, from, what,
                   why.message());
    last_drop_warn_ms_ = now;
    drops_since_warn_ = 0;
  }
}

void GossipService::tick() {
  core_->tick(clock_.now_ms());
  flush();
  if (leave_done_ && clock_.now_ms() >= leave_done_ms_) {
    auto done = std::move(leave_done_);
    leave_done_ = nullptr;
    done();  // may stop() or destroy the service: touch nothing after this
  }
}

bool GossipService::resolve(const std::string& address, struct sockaddr_storage& out) {
  auto it = resolved_.find(address);
  if (it != resolved_.end()) {
    out = it->second;
    return true;
  }
  auto hp = split_address(address);
  if (!hp.ok() || !resolve_numeric(hp->host, hp->port, out)) return false;
  if (resolved_.size() >= kResolvedAddressesMax) resolved_.clear();
  resolved_[address] = out;
  return true;
}

void GossipService::flush() {
  if (!core_) return;
  if (uint32_t health = core_->health_score(); health != logged_health_) {
    // Lifeguard: this node's probes went unanswered beyond what the relays
    // explain, or it had to refute a suspicion: it probes more slowly.
    const uint32_t high = std::max<uint32_t>(core_->config().health_max / 2, 1);
    if (health >= high && logged_health_ < high) {
      SHOAL_LOG_WARN("gossip: this node looks slow to its peers or itself (local health score {}); probing every {} ms",
                     health, core_->config().probe_interval_ms * (health + 1));
    } else {
      SHOAL_LOG_DEBUG("gossip: local health score {} (0 is healthy)", health);
    }
    logged_health_ = health;
  }
  for (const MemberEvent& e : core_->take_events()) {
    SHOAL_LOG_DEBUG("gossip: member {} at {} is {} (incarnation {})", e.member.info.id.substr(0, 8),
                   e.member.info.address, event_kind_name(e.kind), e.member.incarnation);
    if (on_event_) on_event_(e);
  }
  for (Outgoing& out : core_->take_outgoing()) {
    if (!handles_) break;
    struct sockaddr_storage addr;
    if (!resolve(out.to_address, addr)) {
      ++counters_.send_errors;
      SHOAL_LOG_DEBUG("gossip: cannot send to '{}': not a numeric address or a seed", out.to_address);
      continue;
    }
    Packet packet{{self_.id, session_id_, next_seq_++, clock_.wall_now_ms()}, std::move(out.messages)};
    auto bytes = encode_packet(packet, as_bytes(key_));
    if (!bytes.ok()) {
      ++counters_.send_errors;
      SHOAL_LOG_WARN("gossip: cannot encode packet to {}: {}", out.to_address, bytes.status().message());
      continue;
    }
    uv_buf_t buf = uv_buf_init(bytes->data(), static_cast<unsigned>(bytes->size()));
    int rc = uv_udp_try_send(&handles_->udp, &buf, 1, reinterpret_cast<const struct sockaddr*>(&addr));
    if (rc < 0) {
      ++counters_.send_errors;
      SHOAL_LOG_DEBUG("gossip: send to {} failed: {}", out.to_address, uv_strerror(rc));
    } else {
      ++counters_.packets_sent;
    }
  }
}

// ---- probe_once --------------------------------------------------------------

namespace {

struct ProbeState {
  uv_udp_t udp;
  uv_timer_t timer;
  std::span<const uint8_t> key;
  std::array<char, kReceiveBufferBytes> buffer;
  bool acked = false;
};

}  // namespace

Result<bool> probe_once(const std::string& address, std::span<const uint8_t> key, uint64_t timeout_ms) {
  auto hp = split_address(address);
  if (!hp.ok()) return hp.status();
  auto target = resolve_blocking(hp->host, hp->port);
  if (!target.ok()) return target.status();

  uv_loop_t loop;
  if (int rc = uv_loop_init(&loop); rc != 0) return Status::io_error(std::string("loop init: ") + uv_strerror(rc));
  auto state = std::make_unique<ProbeState>();
  state->key = key;
  uv_udp_init(&loop, &state->udp);
  uv_timer_init(&loop, &state->timer);
  state->udp.data = state.get();
  state->timer.data = state.get();

  struct sockaddr_storage any;
  resolve_numeric(target->ss_family == AF_INET6 ? "::" : "0.0.0.0", 0, any);
  int rc = uv_udp_bind(&state->udp, reinterpret_cast<const struct sockaddr*>(&any), 0);
  Status status;
  if (rc == 0) {
    std::array<uint8_t, 16> id_bytes;
    secure_random(id_bytes);
    Packet ping{{to_hex(id_bytes), random_u64(), 1, SystemClock().wall_now_ms()}, {Ping{1, ""}}};
    auto bytes = encode_packet(ping, key);
    SHOAL_ASSERT(bytes.ok(), bytes.status().to_string());
    uv_buf_t buf = uv_buf_init(bytes->data(), static_cast<unsigned>(bytes->size()));
    rc = uv_udp_try_send(&state->udp, &buf, 1, reinterpret_cast<const struct sockaddr*>(&*target));
    if (rc < 0) status = Status::unavailable("probe send to " + address + ": " + uv_strerror(rc));
  } else {
    status = Status::io_error(std::string("probe bind: ") + uv_strerror(rc));
  }
  if (status.ok()) {
    uv_udp_recv_start(
        &state->udp,
        [](uv_handle_t* h, size_t, uv_buf_t* buf) {
          auto* s = static_cast<ProbeState*>(h->data);
          *buf = uv_buf_init(s->buffer.data(), static_cast<unsigned>(s->buffer.size()));
        },
        [](uv_udp_t* udp, ssize_t nread, const uv_buf_t* buf, const struct sockaddr* addr, unsigned) {
          auto* s = static_cast<ProbeState*>(udp->data);
          if (nread <= 0 || addr == nullptr) return;
          auto packet = decode_packet({reinterpret_cast<const uint8_t*>(buf->base), static_cast<size_t>(nread)}, s->key);
          if (!packet.ok()) return;
          for (const Message& m : packet->messages) {
            if (const Ack* ack = std::get_if<Ack>(&m); ack && ack->seq == 1) {
              s->acked = true;
              uv_stop(udp->loop);
            }
          }
        });
    uv_timer_start(&state->timer, [](uv_timer_t* t) { uv_stop(t->loop); }, timeout_ms, 0);
    uv_run(&loop, UV_RUN_DEFAULT);
  }
  uv_close(reinterpret_cast<uv_handle_t*>(&state->udp), nullptr);
  uv_close(reinterpret_cast<uv_handle_t*>(&state->timer), nullptr);
  uv_run(&loop, UV_RUN_DEFAULT);
  uv_loop_close(&loop);
  if (!status.ok()) return status;
  return state->acked;
}

}  // namespace shoal::gossip
