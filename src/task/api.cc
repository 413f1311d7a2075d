// The entry points of the public templates, the process's runtime, init().
#include "shoal/init.h"

#include <unistd.h>

#include <cmath>
#include <cstdlib>
#include <limits>
#include <mutex>
#include <optional>
#include <random>
#include <string_view>
#include <thread>

#include "base/assert.h"
#include "shoal/detail/core.h"
#include "shoal/registry.h"
#include "shoal/task.h"
#include "base/memory_size.h"
#include "task/local_runtime.h"
#include "task/runtime.h"

namespace shoal {

namespace detail {

namespace {

std::mutex g_runtime_mutex;
std::shared_ptr<Runtime> g_runtime;  // guarded by g_runtime_mutex
uint64_t g_generation = 0;           // guarded: counts init() calls

thread_local Contained* tls_contained = nullptr;                  // NOLINT: serialization context
thread_local const std::atomic<bool>* tls_cancel_flag = nullptr;  // NOLINT: the running task's

std::shared_ptr<Runtime> require_runtime() {
  std::shared_ptr<Runtime> runtime = current_runtime();
  if (!runtime) {
    throw Error(Status::unavailable("shoal is not initialized: call shoal::init() first"));
  }
  return runtime;
}

std::shared_ptr<Runtime> runtime_of(const RefState& ref) {
  std::shared_ptr<Runtime> runtime = ref.runtime.lock();
  if (!runtime) {
    throw Error(
        Status::unavailable("object " + ref.id.hex() +
                            ": the shoal runtime that made this ObjectRef is shut down (or shoal "
                            "was not initialized when it was read)"));
  }
  return runtime;
}

template <typename T>
T unwrap(Result<T> result) {
  if (!result.ok()) throw_status(result.status());
  return std::move(result).value();
}

Deadline deadline_after(Timeout timeout) {
  if (!timeout) return std::nullopt;
  auto now = Clock::now();
  if (*timeout > std::chrono::hours(24 * 365 * 100)) return std::nullopt;  // effectively forever
  return now + std::chrono::duration_cast<Clock::duration>(
                   std::max(*timeout, std::chrono::nanoseconds(0)));
}

}  // namespace

std::shared_ptr<Runtime> current_runtime() {
  std::lock_guard lock(g_runtime_mutex);
  return g_runtime;
}

Result<uint64_t> install_runtime(std::shared_ptr<Runtime> runtime) {
  std::lock_guard lock(g_runtime_mutex);
  if (g_runtime) return Status::already_exists("a shoal runtime is already running in this process");
  g_runtime = std::move(runtime);
  return ++g_generation;
}

void uninstall_runtime(uint64_t generation) {
  std::shared_ptr<Runtime> old;
  std::lock_guard lock(g_runtime_mutex);
  if (g_generation == generation) old.swap(g_runtime);
}

CancelFlagScope::CancelFlagScope(const std::atomic<bool>* flag) : previous_(tls_cancel_flag) {
  tls_cancel_flag = flag;
}
CancelFlagScope::~CancelFlagScope() { tls_cancel_flag = previous_; }

ContainedCollector::ContainedCollector(Contained* out) : previous_(tls_contained) {
  tls_contained = out;
}
ContainedCollector::~ContainedCollector() { tls_contained = previous_; }

namespace {
thread_local Contained tls_discarded;
}
ContainedNotesPaused::ContainedNotesPaused() : saved_(tls_contained) { tls_contained = &tls_discarded; }
ContainedNotesPaused::~ContainedNotesPaused() {
  tls_contained = static_cast<Contained*>(saved_);
  tls_discarded = {};
}

void note_contained(const RefPtr& ref) {
  if (tls_contained != nullptr) tls_contained->refs.push_back(ref);
}
void note_contained(const ActorPtr& actor) {
  if (tls_contained != nullptr) tls_contained->actors.push_back(actor);
}

RefState::~RefState() {
  if (std::shared_ptr<Runtime> owner = runtime.lock()) owner->release_ref(*this);
}

ActorHandleState::~ActorHandleState() {
  if (std::shared_ptr<Runtime> owner = runtime.lock()) owner->release_actor(*this);
}

RefPtr adopt_ref(ObjectId id, std::string owner_address) {
  if (std::shared_ptr<Runtime> runtime = current_runtime())
    return runtime->adopt_ref(id, std::move(owner_address));
  return std::make_shared<const RefState>(id, std::move(owner_address), std::weak_ptr<Runtime>());
}

ActorPtr adopt_actor(ActorId id, std::string class_name, std::string owner_address) {
  if (std::shared_ptr<Runtime> runtime = current_runtime()) {
    return runtime->adopt_actor(id, std::move(class_name), std::move(owner_address));
  }
  return std::make_shared<const ActorHandleState>(
      id, std::move(class_name), std::move(owner_address), std::weak_ptr<Runtime>());
}

RefPtr submit_task(TaskSpec spec) {
  return unwrap(require_runtime()->submit_task(std::move(spec)));
}

RefPtr submit_actor_task(const ActorHandleState& actor, TaskSpec spec) {
  return unwrap(require_runtime()->submit_actor_task(actor, std::move(spec)));
}

ActorPtr create_actor(ActorSpec spec) {
  return unwrap(require_runtime()->create_actor(std::move(spec)));
}

RefPtr put_value(SerializedValue value) { return unwrap(require_runtime()->put(std::move(value))); }

std::vector<ObjectValuePtr> get_values(std::span<const RefState* const> refs, Timeout timeout) {
  if (refs.empty()) return {};
  Deadline deadline = deadline_after(timeout);
  Result<std::vector<ObjectValuePtr>> values = runtime_of(*refs.front())->get(refs, deadline);
  if (!values.ok() && values.status().code() == Status::Code::kDeadlineExceeded && timeout) {
    auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(*timeout).count();
    std::string after =
        ms > 0 || timeout->count() == 0
            ? std::to_string(ms) + " ms"
            : std::to_string(
                  std::chrono::duration_cast<std::chrono::microseconds>(*timeout).count()) +
                  " us";
    throw GetTimeout("get() timed out after " + after + ": " + values.status().message());
  }
  return unwrap(std::move(values));
}

ObjectValuePtr get_value(const RefState& ref, Timeout timeout) {
  const RefState* refs[] = {&ref};
  return std::move(get_values(refs, timeout).front());
}

std::vector<bool> wait_values(std::span<const RefState* const> refs, std::size_t num_ready,
                              Timeout timeout) {
  if (refs.empty()) return {};
  Deadline deadline = deadline_after(timeout);
  return unwrap(runtime_of(*refs.front())->wait(refs, num_ready, deadline));
}

bool cancel_task(const RefState& ref, bool force) {
  return unwrap(runtime_of(ref)->cancel(ref, force));
}

void kill_actor(const ActorHandleState& actor, bool no_restart) {
  std::shared_ptr<Runtime> runtime = actor.runtime.lock();
  if (!runtime)
    throw Error(Status::unavailable("kill(): the shoal runtime of this actor is shut down"));
  Status status = runtime->kill_actor(actor, no_restart);
  if (!status.ok()) throw_status(status);
}

ActorPtr lookup_actor(std::string_view name, std::string_view name_space) {
  return unwrap(require_runtime()->get_actor(name, name_space));
}

}  // namespace detail

const char* placement_strategy_name(PlacementStrategy strategy) {
  switch (strategy) {
    case PlacementStrategy::kPack: return "PACK";
    case PlacementStrategy::kSpread: return "SPREAD";
    case PlacementStrategy::kStrictPack: return "STRICT_PACK";
    case PlacementStrategy::kStrictSpread: return "STRICT_SPREAD";
  }
  return "?";
}

PlacementGroup placement_group(std::vector<ResourceRequest> bundles, PlacementStrategy strategy,
                               std::string name) {
  std::size_t count = bundles.size();
  PlacementGroupId id = detail::unwrap(
      detail::require_runtime()->create_placement_group(std::move(bundles), strategy, std::move(name)));
  return PlacementGroup(id, count);
}

bool PlacementGroup::wait(std::chrono::nanoseconds timeout) const {
  return detail::unwrap(
      detail::require_runtime()->wait_placement_group(id_, detail::deadline_after(timeout)));
}

void remove_placement_group(const PlacementGroup& group) {
  Status status = detail::require_runtime()->remove_placement_group(group.id());
  if (!status.ok()) detail::throw_status(status);
}

bool cancel_requested() {
  const std::atomic<bool>* flag = detail::tls_cancel_flag;
  return flag != nullptr && flag->load(std::memory_order_relaxed);
}

std::vector<int> gpu_ids() {
  std::vector<int> out;
  for (uint32_t id : detail::Executor::current_gpu_ids()) out.push_back(static_cast<int>(id));
  return out;
}

// ---- init ---------------------------------------------------------------------

Options local(double cpus) {
  Options options;
  options.mode = Options::Mode::kLocal;
  options.cpus = cpus;
  return options;
}

Options connect(std::string address) {
  Options options;
  options.mode = Options::Mode::kConnect;
  options.address = std::move(address);
  return options;
}

namespace {

// Shuts down the runtime `generation` started, if it is still the current one.
void shutdown_generation(uint64_t generation) {
  std::shared_ptr<detail::Runtime> runtime;
  {
    std::lock_guard lock(detail::g_runtime_mutex);
    if (detail::g_generation != generation) return;
    runtime = detail::g_runtime;
  }
  if (!runtime) return;
  runtime->shutdown();  // with the runtime still installed: tasks finishing now may use it
  std::lock_guard lock(detail::g_runtime_mutex);
  if (detail::g_runtime == runtime) detail::g_runtime.reset();
}

}  // namespace

Cluster::Cluster(Cluster&& other) noexcept
    : node_id_(std::move(other.node_id_)), generation_(other.generation_), active_(other.active_) {
  other.active_ = false;
}

Cluster& Cluster::operator=(Cluster&& other) noexcept {
  if (this != &other) {
    if (active_) shutdown_generation(generation_);
    node_id_ = std::move(other.node_id_);
    generation_ = other.generation_;
    active_ = other.active_;
    other.active_ = false;
  }
  return *this;
}

Cluster::~Cluster() {
  if (active_) shutdown_generation(generation_);
}

namespace {

std::string hex64(uint64_t v) {
  static constexpr char kDigits[] = "0123456789abcdef";
  std::string out(16, '0');
  for (int i = 15; i >= 0; --i, v >>= 4) out[i] = kDigits[v & 0xf];
  return out;
}

Result<std::shared_ptr<detail::Runtime>> make_local_runtime(const Options& options) {
  double cpus = options.cpus > 0 ? options.cpus : std::max(1u, std::thread::hardware_concurrency());
  if (!(options.cpus >= 0) || !(options.gpus >= 0)) {
    return Status::invalid_argument("shoal::init: cpus and gpus must be 0 or more");
  }
  uint64_t memory = options.memory_bytes > 0 ? options.memory_bytes : physical_memory_bytes();
  if (memory == 0) memory = uint64_t{4} << 30;
  std::vector<std::pair<std::string, double>> wholes = {
      {"CPU", cpus}, {"GPU", options.gpus}, {"memory", static_cast<double>(memory)}};
  for (const auto& [name, quantity] : options.resources) wholes.emplace_back(name, quantity);
  Result<detail::ResourceSet> total = detail::ResourceSet::from_wholes(wholes);
  if (!total.ok()) return Status::invalid_argument("shoal::init: " + total.status().message());
  if (options.executor_threads_max < 0) {
    return Status::invalid_argument("shoal::init: executor_threads_max must be 0 or more");
  }

  uint64_t seed = options.seed;
  if (seed == 0)
    seed = (static_cast<uint64_t>(std::random_device{}()) << 32) ^ std::random_device{}();
  std::mt19937_64 rng(seed);
  uint64_t node_hi = rng();
  uint64_t node_lo = rng();
  uint64_t prefix = rng() | 1;  // never 0
  detail::LocalRuntime::Config config;
  config.node_id = hex64(node_hi) + hex64(node_lo);
  config.id_prefix = prefix;
  config.total = std::move(*total);
  config.labels = options.labels;
  config.name_space = options.name_space.empty() ? "default" : options.name_space;
  int cpu_threads = static_cast<int>(std::ceil(cpus));
  config.executor_threads_max = options.executor_threads_max > 0
                                    ? std::max(options.executor_threads_max, cpu_threads)
                                    : std::max(64, 4 * cpu_threads);
  const uint64_t kFallbackStoreBytes = uint64_t{4} << 30;  // when the OS does not say
  config.object_store_bytes_max = options.object_store_bytes_max > 0
                                      ? options.object_store_bytes_max
                                  : physical_memory_bytes() > 0 ? physical_memory_bytes() / 10 * 3
                                                                : kFallbackStoreBytes;
  return std::shared_ptr<detail::Runtime>(detail::LocalRuntime::create(std::move(config)));
}

}  // namespace

Result<Cluster> init(Options options) {
  SHOAL_RETURN_IF_ERROR(detail::Registry::instance().status());
  switch (options.mode) {
    case Options::Mode::kLocal:
      break;
    case Options::Mode::kConnect:
      break;
    case Options::Mode::kNode:
      return Status::invalid_argument(
          "shoal::init: node mode (start --join ...) runs through shoal::init(argc, argv), which runs "
          "the node and exits");
  }
  Result<std::shared_ptr<detail::Runtime>> runtime = options.mode == Options::Mode::kConnect
                                                          ? detail::start_driver(options)
                                                          : make_local_runtime(options);
  if (!runtime.ok()) return runtime.status();
  std::string node_id = (*runtime)->node_id();
  uint64_t generation = 0;
  {
    std::lock_guard lock(detail::g_runtime_mutex);
    if (!detail::g_runtime) {
      detail::g_runtime = *runtime;
      generation = ++detail::g_generation;
    }
  }
  if (generation == 0) {
    (*runtime)->shutdown();
    return Status::already_exists("shoal::init: shoal is already initialized in this process");
  }
  return Cluster(std::move(node_id), generation);
}

Result<Options> options_from_args(int argc, char** argv) {
  Options options = local();
  bool address_given = false;
  auto value_of = [&](int& i, std::string_view arg,
                      std::string_view flag) -> std::optional<std::string> {
    if (arg == flag) {
      if (i + 1 >= argc) return std::nullopt;
      return std::string(argv[++i]);
    }
    return std::string(arg.substr(flag.size() + 1));  // --flag=value
  };
  auto is_flag = [](std::string_view arg, std::string_view flag) {
    return arg == flag || (arg.size() > flag.size() && arg.substr(0, flag.size()) == flag &&
                           arg[flag.size()] == '=');
  };
  if (argc >= 2 && std::string_view(argv[1]) == "start") options.mode = Options::Mode::kNode;
  for (int i = 1; i < argc; ++i) {
    std::string_view arg = argv[i];
    if (is_flag(arg, "--address")) {
      std::optional<std::string> v = value_of(i, arg, "--address");
      if (!v || v->empty()) return Status::invalid_argument("--address needs HOST:PORT");
      if (options.mode != Options::Mode::kNode) options.mode = Options::Mode::kConnect;
      options.address = *v;
      address_given = true;
    } else if (is_flag(arg, "--token-file")) {
      std::optional<std::string> v = value_of(i, arg, "--token-file");
      if (!v || v->empty()) return Status::invalid_argument("--token-file needs a path");
      options.token_file = *v;
    } else if (is_flag(arg, "--cpus")) {
      std::optional<std::string> v = value_of(i, arg, "--cpus");
      char* end = nullptr;
      double cpus = v ? std::strtod(v->c_str(), &end) : -1;
      if (!v || end == v->c_str() || *end != '\0' || !(cpus >= 0)) {
        return Status::invalid_argument("--cpus needs a number of CPUs (0: all of them)");
      }
      options.cpus = cpus;
    } else if (is_flag(arg, "--namespace")) {
      std::optional<std::string> v = value_of(i, arg, "--namespace");
      if (!v || v->empty()) return Status::invalid_argument("--namespace needs a name");
      options.name_space = *v;
    }
  }
  if (!address_given && options.mode == Options::Mode::kLocal) {
    if (const char* env = std::getenv("SHOAL_ADDRESS"); env != nullptr && *env != '\0') {
      options.mode = Options::Mode::kConnect;
      options.address = env;
    }
  }
  return options;
}

void shutdown() {
  uint64_t generation;
  {
    std::lock_guard lock(detail::g_runtime_mutex);
    generation = detail::g_generation;
  }
  shutdown_generation(generation);
}

bool is_initialized() { return detail::current_runtime() != nullptr; }

std::string current_node_id() {
  std::shared_ptr<detail::Runtime> runtime = detail::current_runtime();
  return runtime ? runtime->node_id() : std::string();
}

}  // namespace shoal
