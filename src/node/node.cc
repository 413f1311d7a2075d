#include "node/node.h"

#include <unistd.h>
#include <uv.h>

#include <cmath>
#include <cstdio>
#include <cstring>
#include <map>
#include <optional>

#include <fmt/ranges.h>

#include "base/memory_size.h"
#include "base/assert.h"
#include "base/clock.h"
#include "base/log.h"
#include "control/control_plane.h"
#include "gossip/service.h"
#include "jobs/http_api.h"     // jobs (issue 6)
#include "jobs/job_service.h"  // jobs (issue 6)
#include "loop/loop.h"
#include "loop/tcp.h"
#include "node/data_dir.h"
#include "node/machine.h"
#include "node/node_service.h"
#include "node/sd_notify.h"
#include "rpc/errors.h"
#include "rpc/peer_pool.h"
#include "rpc/server.h"
#include "rpc/tls.h"
#include "task/cluster_runtime.h"
#include "task/local_runtime.h"
#include "task/executor.h"  // jobs (issue 6): the node's one resource accounting

namespace shoal::node {
namespace {

inline constexpr uint64_t kJoinTimeoutMs = 30'000;    // give up when no seed answers
inline constexpr uint64_t kJoinRetryMs = 1'000;
inline constexpr uint64_t kLoadRefreshMs = 1'000;     // own load pushed to gossip
inline constexpr uint64_t kLeaveTimeoutMs = 3'000;    // stop even if leave never completes

std::string short_id(const std::string& id) { return id.substr(0, 8); }

detail::ResourceSet to_resource_set(const gossip::Resources& r) {
  std::vector<std::pair<std::string, double>> wholes = {
      {"CPU", r.cpus}, {"GPU", r.gpus}, {"memory", static_cast<double>(r.memory_bytes)}};
  for (const auto& [name, amount] : r.custom) wholes.emplace_back(name, amount);
  auto set = detail::ResourceSet::from_wholes(wholes);
  return set.ok() ? *set : detail::ResourceSet();
}

gossip::Resources to_gossip_resources(const detail::ResourceSet& set, const gossip::Resources& total) {
  gossip::Resources out;
  out.cpus = set.wholes("CPU");
  out.gpus = set.wholes("GPU");
  out.memory_bytes = static_cast<uint64_t>(set.wholes("memory"));
  for (const auto& [name, amount] : total.custom) out.custom[name] = set.wholes(name);
  return out;
}

uint64_t physical_memory() {
  uint64_t bytes = physical_memory_bytes();
  return bytes > 0 ? bytes : uint64_t{4} << 30;
}

// Seeds as numeric "ip:port" (gossip never resolves names per packet); the
// node's own address is skipped.
Result<std::vector<std::string>> resolve_seeds(const std::vector<std::string>& join,
                                               const std::string& self_address) {
  std::vector<std::string> out;
  for (const auto& seed : join) {
    auto hp = parse_host_port(seed, kDefaultPort);
    if (!hp.ok()) return Status::invalid_argument("--join " + seed + ": " + hp.status().message());
    auto numeric = resolve_numeric(hp->first);
    if (!numeric.ok()) return Status::invalid_argument("--join " + seed + ": " + numeric.status().message());
    bool v6 = numeric->find(':') != std::string::npos;
    std::string address = (v6 ? "[" + *numeric + "]" : *numeric) + ":" + std::to_string(hp->second);
    if (address != self_address) out.push_back(address);
  }
  if (out.empty()) return Status::invalid_argument("--join names only this node itself");
  return out;
}

// Checks the TLS files before anything else happens (a bad certificate stops
// the node before it creates its data dir or contacts a peer).
Result<std::unique_ptr<rpc::Tls>> load_tls(const NodeOptions& options, int64_t now_unix_s) {
  rpc::TlsOptions tls_options;
  tls_options.files = {options.tls_cert, options.tls_key, options.tls_ca,
                       options.tls_server_name.empty() ? std::string(rpc::kTlsNodeName) : options.tls_server_name};
  if (!tls_options.files.enabled()) return std::unique_ptr<rpc::Tls>();
  auto tls = rpc::Tls::create(tls_options, now_unix_s);
  if (!tls.ok()) return tls.status();
  for (const auto& warning : (*tls)->warnings()) SHOAL_LOG_WARN("{}", warning);
  SHOAL_LOG_INFO("RPC uses {}", (*tls)->describe());
  return std::move(*tls);
}

void notify_systemd(const std::string& state) {
  Status sent = sd_notify(state);
  if (!sent.ok()) SHOAL_LOG_WARN("{}", sent.message());
}

}  // namespace

struct Node::State {
  SystemClock clock;
  SeededRng rng{random_seed()};
  std::string data_dir;
  std::string token_path;
  std::string secret;
  gossip::MemberInfo self;
  uint16_t port = 0;

  std::unique_ptr<loop::Loop> loop;
  kj::Own<loop::TcpListener> listener;
  std::optional<kj::Promise<void>> listen_task;
  std::unique_ptr<gossip::GossipService> gossip;
  std::unique_ptr<rpc::RpcServer> rpc_server;
  std::unique_ptr<rpc::PeerPool> peers;
  std::unique_ptr<rpc::Tls> tls;  // null: plaintext RPC
  std::unique_ptr<control::ControlPlane> control;
  // Told it was declared dead: whether the majority did so (see
  // check_declared_dead); at most one check at a time.
  std::optional<kj::Promise<void>> fence_check;
  Status fatal;  // set when the metadata store failed
  // Tasks and actors: the engine runs what owners push here; the cluster
  // runtime is this process's task API (user code of an embedding binary).
  std::shared_ptr<detail::LocalRuntime> engine;
  std::shared_ptr<detail::ClusterRuntime> tasks;
  uint64_t tasks_generation = 0;
  // --- jobs (issue 6) ---
  // Jobs take their resources from the engine's executor: one accounting
  // for tasks, actors, placement groups and jobs.
  std::unique_ptr<jobs::JobService> jobs;
  std::unique_ptr<jobs::HttpApi> http;
  // --- end jobs ---

  uv_signal_t sigterm{};
  uv_signal_t sigint{};
  uv_timer_t load_timer{};
  uv_timer_t leave_timer{};
  bool leaving = false;
  bool handles_started = false;
  bool discovery_written = false;
  bool ready = false;  // READY=1 sent to systemd
  int lock_fd = -1;  // holds <data-dir>/LOCK for the node's lifetime
};

namespace {

// A node hears that it was declared dead both when the majority gave up on
// it (it was frozen, or cut off in a minority) and, when a partition heals,
// from the minority that could not reach it. Only the first may cost it its
// work: the metadata leader records the deaths its gossip saw, and a
// minority's leader cannot commit, so the record is the majority's verdict.
// The record can trail the gossip by a moment: ask a few times.
constexpr int kFenceChecks = 10;
constexpr uint64_t kFenceCheckIntervalMs = 1'000;

kj::Promise<void> check_declared_dead(Node::State& s, uint64_t incarnation, int attempt) {
  if (!s.control) {
    if (s.tasks) s.tasks->on_declared_dead();
    return kj::READY_NOW;
  }
  return s.control->death_recorded(incarnation)
      .then([](bool recorded) { return kj::Maybe<bool>(recorded); },
            [](kj::Exception&& e) -> kj::Maybe<bool> {
              SHOAL_LOG_DEBUG("cannot read this node's death record yet: {}", e.getDescription().cStr());
              return nullptr;
            })
      .then([&s, incarnation, attempt](kj::Maybe<bool> recorded) -> kj::Promise<void> {
        KJ_IF_MAYBE (yes, recorded) {
          if (*yes) {
            if (s.tasks) s.tasks->on_declared_dead();
            return kj::READY_NOW;
          }
        }
        if (attempt + 1 >= kFenceChecks) {
          SHOAL_LOG_WARN("a peer said this node was dead (incarnation {}), but the metadata does not record that "
                         "death: a minority's view from a partition; this node keeps its work",
                         incarnation);
          return kj::READY_NOW;
        }
        return s.loop->timer().afterDelay(kFenceCheckIntervalMs * kj::MILLISECONDS).then([&s, incarnation, attempt] {
          return check_declared_dead(s, incarnation, attempt + 1);
        });
      });
}

}  // namespace

Node::Node(NodeOptions options) : options_(std::move(options)) {}

Node::~Node() {
  if (state_ && state_->discovery_written) remove_discovery_file(state_->port);
  if (state_ && state_->lock_fd >= 0) ::close(state_->lock_fd);
}

namespace {

Status prepare_identity(const NodeOptions& options, int& lock_fd, std::string& data_dir,
                        std::string& token_path, std::string& secret, gossip::MemberInfo& self) {
  data_dir = options.data_dir.empty() ? default_data_dir() : options.data_dir;
  SHOAL_RETURN_IF_ERROR(prepare_data_dir(data_dir));
  auto lock = lock_data_dir(data_dir);
  if (!lock.ok()) return lock.status();
  lock_fd = *lock;
  auto id = load_or_create_node_id(data_dir);
  if (!id.ok()) return id.status();
  self.id = *id;

  token_path = options.token_file.empty() ? data_dir + "/token" : options.token_file;
  if (options.join.empty()) {
    auto token = load_or_create_token(token_path);
    if (!token.ok()) return token.status();
    secret = *token;
  } else {
    auto token = read_token_file(token_path);
    if (!token.ok()) {
      if (token.status().code() == Status::Code::kNotFound) {
        return Status::invalid_argument(
            "joining a cluster needs its token: copy <data-dir>/token from a running node and pass "
            "--token-file (looked for " + token_path + ")");
      }
      return token.status();
    }
    secret = *token;
  }
  auto loose = check_token_file_mode(token_path);
  if (!loose.ok()) return loose.status();
  if (!loose->empty()) SHOAL_LOG_WARN("{}", *loose);

  std::string advertise = options.advertise;
  if (advertise.empty()) {
    if (options.bind == "0.0.0.0" || options.bind == "::") {
      return Status::invalid_argument("--bind " + options.bind +
                                      " listens on every interface: pass --advertise HOST:PORT, the "
                                      "address other nodes should use");
    }
    bool v6 = options.bind.find(':') != std::string::npos;
    advertise = (v6 ? "[" + options.bind + "]" : options.bind) + ":" + std::to_string(options.port);
  }
  auto parsed = parse_host_port(advertise, options.port);
  if (!parsed.ok()) return Status::invalid_argument("--advertise: " + parsed.status().message());
  auto numeric = resolve_numeric(parsed->first);
  if (!numeric.ok()) return Status::invalid_argument("--advertise: " + numeric.status().message());
  bool numeric_v6 = numeric->find(':') != std::string::npos;
  self.address = (numeric_v6 ? "[" + *numeric + "]" : *numeric) + ":" + std::to_string(parsed->second);

  self.total.cpus = options.cpus.value_or(detect_cpus());
  self.total.memory_bytes = options.memory_bytes.value_or(detect_memory_bytes());
  self.total.gpus = options.gpus.value_or(detect_gpus());
  self.total.custom = options.resources;
  self.labels = options.labels;
  return gossip::validate_member_info(self);
}

}  // namespace

Status Node::run() {
  SHOAL_ASSERT(!state_, "Node::run called twice");
  state_ = std::make_unique<State>();
  Status result = serve();
  shutdown();
  return result;
}

Status Node::serve() {
  State& s = *state_;
  SHOAL_RETURN_IF_ERROR(set_log_level(options_.log_level));
  auto tls = load_tls(options_, static_cast<int64_t>(s.clock.wall_now_ms() / 1000));
  if (!tls.ok()) return tls.status();
  s.tls = std::move(*tls);
  SHOAL_RETURN_IF_ERROR(prepare_identity(options_, s.lock_fd, s.data_dir, s.token_path, s.secret, s.self));
  set_log_node_name(short_id(s.self.id));
  s.port = options_.port;

  // Before the first loop: the executor's, the store's and the driver loops
  // made later take the same setting.
  if (options_.busy_poll_us) loop::set_default_busy_poll_max_ns(int64_t{*options_.busy_poll_us} * 1000);
  s.loop = std::make_unique<loop::Loop>();
  start_timers_and_signals();
  auto listener = loop::TcpListener::listen(*s.loop, options_.bind, options_.port);
  if (!listener.ok()) {
    return Status(listener.status().code(),
                  "cannot listen for RPC on " + options_.bind + ":" + std::to_string(options_.port) +
                      ": " + listener.status().message());
  }
  s.listener = kj::mv(*listener);

  // A restart must beat every incarnation this id used before: start time in ms.
  uint64_t incarnation = s.clock.wall_now_ms();
  s.gossip = std::make_unique<gossip::GossipService>(s.loop->uv(), gossip::Config{}, s.self, incarnation,
                                                     s.secret, s.clock, s.rng);
  Status gossip_started = s.gossip->start(options_.bind, options_.port);
  if (!gossip_started.ok()) {
    return Status(gossip_started.code(), "cannot listen for gossip on " + options_.bind + ":" +
                                             std::to_string(options_.port) + ": " + gossip_started.message());
  }
  bool joining = !options_.join.empty();
  s.gossip->on_event([&s, joining](const gossip::MemberEvent& event) {
    if (event.kind == gossip::MemberEvent::Kind::kUpdated) return;
    if (event.kind == gossip::MemberEvent::Kind::kDeclaredDead) {
      // Frozen (SIGSTOP, a stalled VM) or cut off: others gave up on this
      // node. Its jobs' records moved on (the job service sees that); tasks
      // and actors it ran for others are dropped once the metadata shows
      // the majority declared it dead.
      if (s.jobs) s.jobs->on_membership_change();
      s.fence_check = check_declared_dead(s, event.dead_incarnation, 0).eagerlyEvaluate(nullptr);
      return;
    }
    if (s.jobs) s.jobs->on_membership_change();  // jobs (issue 6)
    size_t alive = s.gossip->core()->count(gossip::MemberState::kAlive);
    SHOAL_LOG_INFO("member {} at {} is {} ({}); members: {} alive", short_id(event.member.info.id),
                   event.member.info.address, gossip::member_state_name(event.member.state),
                   gossip::event_kind_name(event.kind), alive);
    if (joining && !s.ready && !s.leaving && alive > 1) {
      s.ready = true;
      notify_systemd("READY=1\nSTATUS=joined; " + std::to_string(alive) + " members alive");
    }
  });

  s.rpc_server = std::make_unique<rpc::RpcServer>(s.loop->timer(), s.secret, [&s]() -> rpc::Node::Client {
    auto service = kj::heap<NodeService>(*s.gossip, s.control.get(), s.clock, s.self.id, s.tasks.get());
    service->set_jobs(&s.jobs);  // jobs (issue 6)
    return service;
  });
  if (s.tls) {
    s.rpc_server->set_stream_upgrade([&s](kj::Own<kj::AsyncIoStream> stream, std::string peer) {
      return s.tls->wrap_server(kj::mv(stream), std::move(peer));
    });
  }
  s.listen_task = s.rpc_server->listen(*s.listener).eagerlyEvaluate([](kj::Exception&& e) {
    SHOAL_LOG_ERROR("RPC listener stopped: {}", e.getDescription().cStr());
  });
  s.peers = std::make_unique<rpc::PeerPool>(
      s.loop->timer(),
      [&s](const std::string& address) -> kj::Promise<kj::Own<kj::AsyncIoStream>> {
        auto hp = parse_host_port(address, kDefaultPort);
        if (!hp.ok()) return KJ_EXCEPTION(FAILED, "bad peer address", address, hp.status().message());
        auto connected = loop::connect_tcp(*s.loop, hp->first, hp->second);
        if (!s.tls) return connected;
        return connected.then([&s, address](kj::Own<kj::AsyncIoStream>&& stream) {
          return s.tls->wrap_client(kj::mv(stream), address);
        });
      },
      s.secret, s.rng);

  control::ControlOptions control_options;
  control_options.bootstrap = options_.join.empty();
  control_options.voters = options_.voters;
  control_options.dead_grace_ms = static_cast<uint64_t>(options_.voter_grace_s) * 1000;
  s.control = std::make_unique<control::ControlPlane>(*s.loop, *s.peers, *s.gossip, s.clock, s.rng, s.self.id,
                                                      s.data_dir + "/meta", control_options);
  SHOAL_RETURN_IF_ERROR(s.control->start([&s](const Status& status) {
    s.fatal = status;
    s.loop->stop();
  }));

  SHOAL_RETURN_IF_ERROR(start_tasks());

  // --- jobs (issue 6): the job service (on the engine's executor), REST ---
  {
    jobs::JobServiceOptions job_options;
    job_options.data_dir = s.data_dir;
    job_options.self_id = s.self.id;
    job_options.self_address = s.self.address;
    job_options.finished_jobs_max = options_.max_finished_jobs;
    s.jobs = std::make_unique<jobs::JobService>(*s.loop, *s.control, *s.gossip, *s.peers, s.engine->executor(), s.clock,
                                                job_options);
    s.jobs->start();
    uint16_t http_port = options_.http_port.value_or(8265);
    if (http_port != 0) {
      s.http = std::make_unique<jobs::HttpApi>(*s.loop, *s.jobs, s.secret);
      Status http_started = s.http->listen(options_.http_bind.empty() ? options_.bind : options_.http_bind,
                                           http_port);
      if (!http_started.ok() && options_.http_port) return http_started;
      if (!http_started.ok()) {
        SHOAL_LOG_WARN("{}; the REST API is off", http_started.message());
        s.http.reset();
      }
    }
  }
  // --- end jobs ---

  SHOAL_LOG_INFO("node {} listening on {} (data dir {})", s.self.id, s.self.address, s.data_dir);
  if (options_.join.empty()) {
    if (s.control->resumed()) {
      std::printf("shoal: resumed the cluster kept in %s/meta; node %s listens on %s and rejoins the nodes "
                  "registered there\n",
                  s.data_dir.c_str(), s.self.id.c_str(), s.self.address.c_str());
    } else {
      std::printf("shoal: bootstrapped a new cluster; node %s listens on %s\n", s.self.id.c_str(),
                  s.self.address.c_str());
    }
    std::printf("To add a node, copy the token file %s to it and run there:\n"
                "  shoal start --join %s --token-file %s\n",
                s.token_path.c_str(), s.self.address.c_str(), s.token_path.c_str());
    if (s.tls && !s.tls->options().files.ca_file.empty()) {
      std::printf("  plus --tls-cert and --tls-key of a certificate for that node signed by the CA in %s,\n"
                  "  and --tls-ca %s (shoal certs issue DIR NAME makes one)\n",
                  s.tls->options().files.ca_file.c_str(), s.tls->options().files.ca_file.c_str());
    }
    std::fflush(stdout);
    s.ready = true;
    notify_systemd("READY=1\nSTATUS=bootstrapped a new cluster at " + s.self.address);
  } else {
    auto seeds = resolve_seeds(options_.join, s.self.address);
    if (!seeds.ok()) return seeds.status();
    SHOAL_RETURN_IF_ERROR(check_seeds(*seeds));
    if (s.leaving) return {};
    SHOAL_LOG_INFO("joining via {}", fmt::join(*seeds, ", "));
    s.gossip->join(*seeds);
  }
  SHOAL_LOG_INFO("members: {} alive", s.gossip->core()->count(gossip::MemberState::kAlive));

  LocalNode local{s.self.address, s.token_path, s.data_dir, ::getpid()};
  if (s.tls) {
    const rpc::TlsFiles& files = s.tls->options().files;
    local.tls_cert = files.cert_file;
    local.tls_key = files.key_file;
    local.tls_ca = files.ca_file;
    local.tls_server_name = files.server_name;
  }
  Status written = write_discovery_file(s.port, local);
  if (!written.ok()) {
    SHOAL_LOG_WARN("shoalctl will not find this node by itself: {}", written.to_string());
  } else {
    s.discovery_written = true;
  }

  if (s.leaving) return {};  // SIGTERM arrived while joining
  s.loop->run();
  return s.fatal;
}

}  // namespace shoal::node

namespace shoal::node {

Status Node::check_seeds(const std::vector<std::string>& seeds) {
  State& s = *state_;
  uint64_t deadline_ms = s.clock.now_ms() + kJoinTimeoutMs;
  std::string last_error;
  for (;;) {
    for (const auto& seed : seeds) {
      if (s.leaving) return {};  // a signal arrived while we were waiting
      Status result = s.peers
                          ->call<uint64_t>(seed,
                                           [](rpc::Node::Client& node) {
                                             auto request = node.pingRequest();
                                             request.setValue(0);
                                             return request.send().then(
                                                 [](auto response) { return response.getValue(); });
                                           })
                          .then([](uint64_t) { return Status(); },
                                [](kj::Exception&& e) { return rpc::status_from_exception(e); })
                          .wait(s.loop->wait_scope());
      if (result.ok()) return {};
      if (result.code() == Status::Code::kUnauthenticated) {
        return Status::unauthenticated("seed " + seed + " refused this node: " + result.message());
      }
      last_error = seed + ": " + result.message();
      s.peers->drop(seed);  // try afresh next round instead of failing fast in the backoff window
    }
    if (s.clock.now_ms() >= deadline_ms) {
      return Status::unavailable("no seed answered within " + std::to_string(kJoinTimeoutMs / 1000) +
                                 " s (last error: " + last_error + ")");
    }
    if (s.leaving) return {};
    SHOAL_LOG_WARN("cannot reach a seed yet ({}); retrying", last_error);
    s.loop->timer().afterDelay(kJoinRetryMs * kj::MILLISECONDS).wait(s.loop->wait_scope());
  }
}

void Node::start_timers_and_signals() {
  State& s = *state_;
  uv_loop_t* uv = s.loop->uv();
  for (uv_signal_t* sig : {&s.sigterm, &s.sigint}) {
    uv_signal_init(uv, sig);
    sig->data = this;
  }
  auto on_signal = [](uv_signal_t* handle, int signum) {
    static_cast<Node*>(handle->data)->begin_leave(signum);
  };
  uv_signal_start(&s.sigterm, on_signal, SIGTERM);
  uv_signal_start(&s.sigint, on_signal, SIGINT);

  uv_timer_init(uv, &s.load_timer);
  s.load_timer.data = this;
  uv_timer_start(&s.load_timer, [](uv_timer_t* t) { static_cast<Node*>(t->data)->refresh_load(); }, 0,
                 kLoadRefreshMs);
  uv_timer_init(uv, &s.leave_timer);
  s.leave_timer.data = this;
  s.handles_started = true;
}

Status Node::start_tasks() {
  State& s = *state_;
  detail::LocalRuntime::Config engine;
  engine.node_id = s.self.id;
  engine.id_prefix = s.rng.next_u64() | 1;
  engine.total = to_resource_set(s.self.total);
  engine.labels = s.self.labels;
  int cpu_threads = static_cast<int>(std::ceil(s.self.total.cpus));
  engine.executor_threads_max = std::max(64, 4 * cpu_threads);
  engine.object_store_bytes_max = options_.object_store_bytes.value_or(physical_memory() / 10 * 3);
  engine.spill_dir = s.data_dir + "/spill";
  engine.placed_by_owner = true;
  s.engine = detail::LocalRuntime::create(std::move(engine));

  detail::ClusterRuntimeConfig config;
  config.loop = s.loop.get();
  config.peers = s.peers.get();
  config.node_id = s.self.id;
  config.address = s.self.address;
  config.bulk_transfers = !s.tls;  // its bytes would not be encrypted
  config.bulk_bind = options_.bind;
  config.id_prefix = s.rng.next_u64() | 1;
  config.engine = s.engine;
  config.store = s.engine->object_store();
  config.members = [&s] {
    std::vector<detail::ClusterMember> out;
    for (const gossip::Member& m : s.gossip->members()) {
      if (m.state != gossip::MemberState::kAlive && m.state != gossip::MemberState::kSuspect) continue;
      detail::ClusterMember c;
      c.id = m.info.id;
      c.address = m.info.address;
      c.total = to_resource_set(m.info.total);
      c.available = m.load.updated_ms == 0 ? c.total : to_resource_set(m.load.available);
      c.labels = m.info.labels;
      out.push_back(std::move(c));
    }
    return out;
  };
  config.kv = [&s](std::string request) -> kj::Promise<std::string> {
    if (!s.control) return KJ_EXCEPTION(DISCONNECTED, "this node's metadata store is not running");
    return s.control->kv(std::move(request), 0);
  };
  config.keeps_detached_actors = [&s] { return s.control && s.control->is_leader(); };
  s.tasks = detail::ClusterRuntime::create(std::move(config));
  auto generation = detail::install_runtime(s.tasks);
  if (!generation.ok()) {
    return Status(generation.status().code(),
                  "cannot run the task runtime of this node: " + generation.status().message());
  }
  s.tasks_generation = *generation;
  return {};
}

void Node::refresh_load() {
  State& s = *state_;
  if (!s.gossip) return;
  // What the executor has free: tasks, actors and jobs all take from it.
  gossip::Load load;
  if (s.engine) {
    detail::Executor::Stats stats = s.engine->executor_stats();
    load.available = to_gossip_resources(stats.available, s.self.total);
    load.running_tasks = static_cast<uint32_t>(stats.running);
  } else {
    load.available = s.self.total;
    load.running_tasks = 0;
  }
  load.updated_ms = s.clock.now_ms();
  s.gossip->set_local_load(load);
}

void Node::begin_leave(int signum) {
  State& s = *state_;
  if (s.leaving) {
    SHOAL_LOG_WARN("received {} again: stopping without waiting for the leave to spread", strsignal(signum));
    s.loop->stop();
    return;
  }
  s.leaving = true;
  SHOAL_LOG_INFO("received {}: leaving the cluster", strsignal(signum));
  notify_systemd("STOPPING=1\nSTATUS=leaving the cluster");
  if (s.control) s.control->hand_off_leadership();
  if (!s.gossip) {
    s.loop->stop();
    return;
  }
  s.gossip->leave([this]() { state_->loop->stop(); });
  uv_timer_start(
      &s.leave_timer,
      [](uv_timer_t* t) {
        SHOAL_LOG_WARN("leave did not finish within {} ms; stopping", kLeaveTimeoutMs);
        static_cast<Node*>(t->data)->state_->loop->stop();
      },
      kLeaveTimeoutMs, 0);
}

void Node::shutdown() {
  State& s = *state_;
  if (s.handles_started) {
    for (uv_signal_t* sig : {&s.sigterm, &s.sigint}) {
      uv_signal_stop(sig);
      uv_close(reinterpret_cast<uv_handle_t*>(sig), nullptr);
    }
    for (uv_timer_t* timer : {&s.load_timer, &s.leave_timer}) {
      uv_timer_stop(timer);
      uv_close(reinterpret_cast<uv_handle_t*>(timer), nullptr);
    }
  }
  // --- jobs (issue 6): before the metadata store they write to, and
  // before the engine whose executor holds their resources ---
  s.http.reset();
  if (s.jobs) s.jobs->stop();
  // --- end jobs ---
  // Tasks first: owned work fails, hosted work stops, and every promise of
  // the runtime goes while the pool and the loop still exist.
  if (s.tasks) {
    s.tasks->shutdown();  // still installed: user code finishing now may use it
    detail::uninstall_runtime(s.tasks_generation);
    s.tasks->teardown_on_loop();
  }
  // Pending metadata requests fail first; RPC calls in flight go with the
  // server; the pool outlives every promise that used it.
  s.fence_check.reset();
  if (s.control) s.control->stop();
  s.listen_task.reset();
  s.rpc_server.reset();
  s.jobs.reset();  // jobs (issue 6): after the RPC server that points at it
  s.tasks.reset();
  s.engine.reset();
  s.peers.reset();
  s.control.reset();
  s.listener = nullptr;
  if (s.gossip) s.gossip->stop();
  s.gossip.reset();
  s.loop.reset();  // closes what is left and runs libuv until every handle is closed
  if (s.discovery_written) {
    remove_discovery_file(s.port);
    s.discovery_written = false;
  }
  SHOAL_LOG_INFO("stopped");
}

}  // namespace shoal::node
