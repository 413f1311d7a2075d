// A driver: a program attached to a running cluster (shoal::init with
// --address). It runs its own loop thread with a peer pool to the nodes and
// a small RPC server on an ephemeral port (nodes fetch the objects it owns
// from there); the ClusterRuntime on that thread owns what the program
// submits. It joins no gossip and runs no tasks.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cstdlib>
#include <future>
#include <thread>

#include "base/clock.h"
#include "base/log.h"
#include "base/memory_size.h"
#include "base/thread_name.h"
#include "loop/loop.h"
#include "loop/tcp.h"
#include "node/data_dir.h"
#include "node/machine.h"
#include "node/options.h"
#include "rpc/errors.h"
#include "rpc/peer_pool.h"
#include "rpc/server.h"
#include "shoal/init.h"
#include "task/cluster_runtime.h"
#include "task/object_store.h"

namespace shoal::detail {

namespace {

constexpr uint64_t kMembersPollMs = 500;

ResourceSet resources_from_wire(rpc::ResourceSet::Reader r) {
  std::vector<std::pair<std::string, double>> wholes = {
      {"CPU", r.getCpus()}, {"GPU", r.getGpus()}, {"memory", static_cast<double>(r.getMemoryBytes())}};
  for (auto q : r.getCustom()) wholes.emplace_back(q.getName().cStr(), q.getAmount());
  auto set = ResourceSet::from_wholes(wholes);
  return set.ok() ? *set : ResourceSet();
}

// The local address this machine uses to reach `host` (no packet is sent).
std::string local_address_towards(const std::string& host) {
  if (host.rfind("127.", 0) == 0) return host;
  sockaddr_in to{};
  to.sin_family = AF_INET;
  to.sin_port = htons(9);
  if (inet_pton(AF_INET, host.c_str(), &to.sin_addr) != 1) return "0.0.0.0";
  int fd = ::socket(AF_INET, SOCK_DGRAM, 0);
  if (fd < 0) return "0.0.0.0";
  std::string out = "0.0.0.0";
  if (::connect(fd, reinterpret_cast<sockaddr*>(&to), sizeof to) == 0) {
    sockaddr_in self{};
    socklen_t len = sizeof self;
    char text[INET_ADDRSTRLEN] = {};
    if (::getsockname(fd, reinterpret_cast<sockaddr*>(&self), &len) == 0 &&
        inet_ntop(AF_INET, &self.sin_addr, text, sizeof text) != nullptr)
      out = text;
  }
  ::close(fd);
  return out;
}

// What nodes may ask a driver: the objects it owns.
class DriverService final : public rpc::Node::Server {
 public:
  explicit DriverService(std::weak_ptr<ClusterRuntime> runtime) : runtime_(std::move(runtime)) {}

 protected:
  kj::Promise<void> ping(PingContext context) override {
    context.getResults().setValue(context.getParams().getValue() + 1);
    return kj::READY_NOW;
  }
  kj::Promise<void> getObject(GetObjectContext context) override {
    auto runtime = runtime_.lock();
    if (!runtime) return KJ_EXCEPTION(DISCONNECTED, "this driver has shut down");
    auto p = context.getParams();
    return runtime->serve_get_object(object_id(p.getObjectHi(), p.getObjectLo()),
                                     std::min<uint32_t>(p.getWaitMs(), 8'000),
                                     context.getResults().initResult());
  }
  kj::Promise<void> nodeInfo(NodeInfoContext context) override {
    if (auto runtime = runtime_.lock()) runtime->fill_node_info(context.getResults());
    return kj::READY_NOW;
  }
  kj::Promise<void> objectStats(ObjectStatsContext context) override {
    auto runtime = runtime_.lock();
    if (!runtime) return KJ_EXCEPTION(DISCONNECTED, "this driver has shut down");
    return runtime->serve_object_stats(false, context.getResults());
  }
  kj::Promise<void> readObject(ReadObjectContext context) override {
    auto runtime = runtime_.lock();
    if (!runtime) return KJ_EXCEPTION(DISCONNECTED, "this driver has shut down");
    auto p = context.getParams();
    return runtime->serve_read_object(object_id(p.getObjectHi(), p.getObjectLo()), p.getOffset(), p.getLength(),
                                      context.getResults())
        .attach(kj::mv(runtime));
  }
  kj::Promise<void> openObjectStream(OpenObjectStreamContext context) override {
    auto runtime = runtime_.lock();
    if (!runtime) return KJ_EXCEPTION(DISCONNECTED, "this driver has shut down");
    auto p = context.getParams();
    runtime->serve_open_object_stream(object_id(p.getObjectHi(), p.getObjectLo()), p.getOffset(),
                                      context.getResults());
    return kj::READY_NOW;
  }
  kj::Promise<void> borrow(BorrowContext context) override {
    auto runtime = runtime_.lock();
    if (!runtime) return KJ_EXCEPTION(DISCONNECTED, "this driver has shut down");
    auto p = context.getParams();
    runtime->serve_borrow(p.getBorrower().cStr(), p.getAdd(), p.getRemove(), context.getResults());
    return kj::READY_NOW;
  }

 private:
  std::weak_ptr<ClusterRuntime> runtime_;
};

class Driver {
 public:
  Driver(std::string node_address, std::string secret, std::string name_space, uint64_t store_bytes)
      : node_address_(std::move(node_address)),
        secret_(std::move(secret)),
        name_space_(std::move(name_space)),
        store_bytes_(store_bytes) {}

  // Starts the loop thread and waits until the runtime is up (or failed).
  Result<std::shared_ptr<ClusterRuntime>> start() {
    std::promise<Result<std::shared_ptr<ClusterRuntime>>> started;
    auto future = started.get_future();
    thread_ = std::thread([this, &started] { run(started); });
    auto result = future.get();
    if (!result.ok()) thread_.join();
    return result;
  }

  // User thread: after runtime->shutdown(). Stops the loop and joins.
  void stop() {
    if (!thread_.joinable()) return;
    if (loop_ != nullptr) {
      Status posted = loop_->post([this] { loop_->stop(); });
      (void)posted;
    }
    thread_.join();
  }

 private:
  void run(std::promise<Result<std::shared_ptr<ClusterRuntime>>>& started) {
    name_this_thread("shoal-driver");
    auto loop = std::make_unique<loop::Loop>();
    SeededRng rng(random_seed());
    auto hp = node::parse_host_port(node_address_, node::kDefaultPort);
    if (!hp.ok()) {
      started.set_value(Status::invalid_argument("--address " + node_address_ + ": " + hp.status().message()));
      return;
    }
    auto numeric = node::resolve_numeric(hp->first);
    if (!numeric.ok()) {
      started.set_value(Status::invalid_argument("--address " + node_address_ + ": " + numeric.status().message()));
      return;
    }
    // The node the driver talks to for members and metadata: the one it was
    // given, then (if that one stops answering) any other member it knows.
    auto attached = std::make_shared<std::string>(*numeric + ":" + std::to_string(hp->second));
    std::string node = *attached;
    loop::Loop* raw_loop = loop.get();
    auto pool = std::make_unique<rpc::PeerPool>(
        loop->timer(),
        [raw_loop](const std::string& address) -> kj::Promise<kj::Own<kj::AsyncIoStream>> {
          auto peer = node::parse_host_port(address, node::kDefaultPort);
          if (!peer.ok()) return KJ_EXCEPTION(FAILED, "bad peer address", address);
          return loop::connect_tcp(*raw_loop, peer->first, peer->second);
        },
        secret_, rng, rpc::PeerPoolOptions{.client_name = "shoal driver"});

    // Check the node and learn the members before any task is placed.
    std::vector<ClusterMember> members;
    Status first = poll_members(*pool, node, members).wait(loop->wait_scope());
    if (!first.ok()) {
      started.set_value(Status(first.code(), "cannot reach the cluster at " + node + ": " + first.message()));
      return;
    }

    std::string host = local_address_towards(*numeric);
    auto listener = loop::TcpListener::listen(*loop, host, 0);
    if (!listener.ok()) {
      started.set_value(Status(listener.status().code(),
                               "the driver cannot listen on " + host + ": " + listener.status().message()));
      return;
    }
    std::string address = host + ":" + std::to_string((*listener)->getPort());

    std::weak_ptr<ClusterRuntime> weak;
    auto server = std::make_unique<rpc::RpcServer>(loop->timer(), secret_, [&weak]() -> rpc::Node::Client {
      return kj::heap<DriverService>(weak);
    });
    kj::Promise<void> listen_task = server->listen(**listener).eagerlyEvaluate([](kj::Exception&& e) {
      SHOAL_LOG_ERROR("driver RPC listener stopped: {}", e.getDescription().cStr());
    });

    ClusterRuntimeConfig config;
    config.loop = loop.get();
    config.peers = pool.get();
    uint64_t hi = rng.next_u64();
    uint64_t lo = rng.next_u64();
    config.node_id = TaskId{hi, lo}.hex();
    config.address = address;
    config.bulk_transfers = true;  // drivers speak plain RPC
    config.bulk_bind = host;
    config.id_prefix = rng.next_u64() | 1;
    config.name_space = name_space_;
    config.members = [&members] { return members; };
    // The driver's own large values (put(), results it pulled) spill to a
    // private directory under $TMPDIR, removed when it shuts down.
    ObjectStore::Config store_config;
    store_config.capacity_bytes = store_bytes_;
    Result<std::shared_ptr<ObjectStore>> store = ObjectStore::create(store_config);
    if (!store.ok()) {
      started.set_value(Status(store.status().code(), "object store: " + store.status().message()));
      return;
    }
    config.store = *store;
    rpc::PeerPool* raw_pool = pool.get();
    config.kv = [raw_pool, attached](std::string request) {
      return raw_pool->call<std::string>(*attached, [request = std::move(request)](rpc::Node::Client& n) {
        auto call = n.kvRequest();
        call.setRequest(kj::arrayPtr(reinterpret_cast<const kj::byte*>(request.data()), request.size()));
        call.setHops(0);
        return call.send().then([](auto r) {
          auto bytes = r.getResponse();
          return std::string(reinterpret_cast<const char*>(bytes.begin()), bytes.size());
        });
      });
    };
    auto runtime = ClusterRuntime::create(std::move(config));
    weak = runtime;

    // Members every kMembersPollMs from the node the driver attached to.
    struct Ignore final : kj::TaskSet::ErrorHandler {
      void taskFailed(kj::Exception&&) override {}
    } ignore;
    auto polls = kj::heap<kj::TaskSet>(ignore);
    std::function<void()> schedule_poll;
    schedule_poll = [&] {
      polls->add(loop->timer().afterDelay(kMembersPollMs * kj::MILLISECONDS).then([&] {
        return poll_members(*pool, *attached, members).then([&](Status s) {
          if (!s.ok()) {
            // Ask another member next time (its view drops the dead node
            // once gossip does); with none left the view empties, so work
            // on unreachable nodes is failed over.
            SHOAL_LOG_WARN("driver: asking {} for the members: {}", *attached, s.to_string());
            std::vector<std::string> others;
            for (const ClusterMember& m : members) {
              if (m.address != *attached) others.push_back(m.address);
            }
            if (!others.empty()) {
              *attached = others[rng.uniform(others.size())];
            } else {
              members.clear();
            }
          }
          schedule_poll();
        });
      }));
    };
    schedule_poll();

    loop_ = loop.get();
    started.set_value(std::shared_ptr<ClusterRuntime>(runtime));
    loop->run();

    // Stopped (after the runtime's shutdown): drop everything on this thread.
    runtime->teardown_on_loop();
    polls = nullptr;
    listen_task = kj::READY_NOW;
    server.reset();
    pool.reset();
    *listener = nullptr;
    loop_ = nullptr;
    runtime.reset();
    loop.reset();
  }

  static kj::Promise<Status> poll_members(rpc::PeerPool& pool, const std::string& node,
                                          std::vector<ClusterMember>& out) {
    return pool
        .call<std::vector<ClusterMember>>(node,
                                          [](rpc::Node::Client& n) {
                                            return n.membersRequest().send().then([](auto r) {
                                              std::vector<ClusterMember> members;
                                              for (auto m : r.getMembers()) {
                                                std::string state = m.getState().cStr();
                                                if (state != "alive" && state != "suspect") continue;
                                                ClusterMember c;
                                                c.id = m.getId().cStr();
                                                c.address = m.getAddress().cStr();
                                                c.total = resources_from_wire(m.getTotal());
                                                c.available = resources_from_wire(m.getAvailable());
                                                for (auto l : m.getLabels())
                                                  c.labels[l.getKey().cStr()] = l.getValue().cStr();
                                                members.push_back(std::move(c));
                                              }
                                              return members;
                                            });
                                          })
        .then(
            [&out](std::vector<ClusterMember> members) {
              out = std::move(members);
              return Status();
            },
            [](kj::Exception&& e) { return rpc::status_from_exception(e); });
  }

  const std::string node_address_;
  const std::string secret_;
  const std::string name_space_;
  const uint64_t store_bytes_;
  std::thread thread_;
  loop::Loop* loop_ = nullptr;  // set once running
};

// Where the token is: the option, SHOAL_TOKEN_FILE, a node on this machine
// listening at that address, else the default data dir's.
std::string token_path_for(const Options& options) {
  if (!options.token_file.empty()) return options.token_file;
  if (const char* env = std::getenv("SHOAL_TOKEN_FILE"); env != nullptr && *env != '\0') return env;
  for (const node::LocalNode& local : node::find_local_nodes()) {
    if (local.address == options.address) return local.token_file;
  }
  auto locals = node::find_local_nodes();
  if (locals.size() == 1) return locals.front().token_file;
  return node::default_data_dir() + "/token";
}

}  // namespace

Result<std::shared_ptr<Runtime>> start_driver(const Options& options) {
  // A driver's stdout is its program's: shoal's lines go to stderr. It has
  // no --log-level (its flags are the program's): SHOAL_LOG_LEVEL=debug.
  log_to_stderr();
  if (const char* level = std::getenv("SHOAL_LOG_LEVEL"); level != nullptr && *level != '\0') {
    Status set = set_log_level(level);
    if (!set.ok()) return Status::invalid_argument("SHOAL_LOG_LEVEL: " + set.message());
  }
  std::string address = options.address;
  if (address.empty()) {
    auto locals = node::find_local_nodes();
    if (locals.empty()) {
      return Status::invalid_argument(
          "shoal::init: no --address given and no node runs on this machine (start one with `shoal start`)");
    }
    address = locals.front().address;
  }
  Options resolved = options;
  resolved.address = address;
  std::string token_path = token_path_for(resolved);
  auto secret = node::read_token_file(token_path);
  if (!secret.ok()) {
    return Status(secret.status().code(), "shoal::init: the cluster token: " + secret.status().message() +
                                              " (pass the token file with --token-file or SHOAL_TOKEN_FILE)");
  }
  uint64_t store_bytes = options.object_store_bytes_max > 0 ? options.object_store_bytes_max
                                                            : std::max<uint64_t>(physical_memory_bytes() / 10 * 3, 1u << 30);
  auto driver = std::make_shared<Driver>(address, *secret,
                                         options.name_space.empty() ? "default" : options.name_space,
                                         store_bytes);
  auto runtime = driver->start();
  if (!runtime.ok()) return Status(runtime.status().code(), "shoal::init: " + runtime.status().message());
  (*runtime)->set_on_shutdown([driver] { driver->stop(); });
  return std::shared_ptr<Runtime>(*runtime);
}

}  // namespace shoal::detail
