// The `micro` benchmark's program (tools/bench/micro_bench.py runs it): the
// same binary is each node (`micro_bench start --join ...`) and the driver
// (`micro_bench --address HOST:PORT --token-file F FIGURE SECONDS`), which
// prints one JSON object {"FIGURE": per_second}. Figures are named and shaped
// like Ray's microbenchmarks (ray/_private/ray_perf.py) so they compare.
#include <shoal/api.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

int noop() { return 0; }

class Echo {
 public:
  int ping(int x) { return x; }
};

SHOAL_REMOTE(noop);
SHOAL_ACTOR(Echo, &Echo::ping);

namespace {

using Clock = std::chrono::steady_clock;

double seconds_since(Clock::time_point start) {
  return std::chrono::duration<double>(Clock::now() - start).count();
}

// Runs `batch` (which does `per_batch` operations) until `seconds` pass;
// returns operations per second.
template <typename F>
double rate(double seconds, std::size_t per_batch, F&& batch) {
  batch();  // warm-up: connections, first placement
  std::size_t done = 0;
  auto start = Clock::now();
  while (seconds_since(start) < seconds) {
    batch();
    done += per_batch;
  }
  return static_cast<double>(done) / seconds_since(start);
}

double figure(const std::string& name, double seconds) {
  constexpr std::size_t kAsyncBatch = 1000;
  if (name == "single_client_tasks_sync") {
    return rate(seconds, 1, [] { shoal::task(noop).remote().get(); });
  }
  if (name == "single_client_tasks_async" || name == "multi_client_tasks_async") {
    return rate(seconds, kAsyncBatch, [] {
      std::vector<shoal::ObjectRef<int>> refs;
      refs.reserve(kAsyncBatch);
      for (std::size_t i = 0; i < kAsyncBatch; ++i) refs.push_back(shoal::task(noop).remote());
      shoal::get(refs);
    });
  }
  if (name == "1_1_actor_calls_sync") {
    auto echo = shoal::actor<Echo>().remote();
    return rate(seconds, 1, [&] { echo.task(&Echo::ping).remote(1).get(); });
  }
  if (name == "1_1_actor_calls_async") {
    auto echo = shoal::actor<Echo>().remote();
    return rate(seconds, kAsyncBatch, [&] {
      std::vector<shoal::ObjectRef<int>> refs;
      refs.reserve(kAsyncBatch);
      for (std::size_t i = 0; i < kAsyncBatch; ++i) refs.push_back(echo.task(&Echo::ping).remote(1));
      shoal::get(refs);
    });
  }
  if (name == "n_n_actor_calls_async") {
    // n actors spread over the nodes, each called by this client.
    constexpr int kActors = 4;
    std::vector<shoal::ActorHandle<Echo>> actors;
    for (int i = 0; i < kActors; ++i) actors.push_back(shoal::actor<Echo>().strategy(shoal::spread()).remote());
    return rate(seconds, kAsyncBatch, [&] {
      std::vector<shoal::ObjectRef<int>> refs;
      refs.reserve(kAsyncBatch);
      for (std::size_t i = 0; i < kAsyncBatch; ++i) refs.push_back(actors[i % kActors].task(&Echo::ping).remote(1));
      shoal::get(refs);
    });
  }
  if (name == "single_client_put_calls") {
    return rate(seconds, 1, [] { (void)shoal::put(0); });
  }
  if (name == "single_client_get_calls") {
    auto ref = shoal::put(0);
    return rate(seconds, 1, [&] { (void)ref.get(); });
  }
  if (name == "placement_group_create_removal") {
    shoal::ResourceRequest one{.cpus = 1, .gpus = 0, .memory_bytes = 0, .custom = {}};
    return rate(seconds, 1, [&] {
      auto group = shoal::placement_group({one}, shoal::PlacementStrategy::kPack);
      if (!group.wait(std::chrono::seconds(30))) {
        std::fprintf(stderr, "micro_bench: a 1-CPU placement group was not placed in 30 s\n");
        std::exit(1);
      }
      shoal::remove_placement_group(group);
    });
  }
  std::fprintf(stderr, "micro_bench: unknown figure %s\n", name.c_str());
  std::exit(2);
}

}  // namespace

int main(int argc, char** argv) {
  auto cluster = shoal::init(argc, argv);  // `start ...` runs a node and never returns
  if (!cluster.ok()) {
    std::fprintf(stderr, "micro_bench: %s\n", cluster.status().to_string().c_str());
    return 1;
  }
  std::vector<std::string> positional;
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    if (a == "--address" || a == "--token-file" || a == "--cpus") {
      ++i;
    } else if (a.rfind("--", 0) != 0) {
      positional.push_back(a);
    }
  }
  if (positional.size() != 2) {
    std::fprintf(stderr, "usage: micro_bench --address HOST:PORT --token-file F FIGURE SECONDS\n");
    return 2;
  }
  double per_s = figure(positional[0], std::atof(positional[1].c_str()));
  std::printf("{\"%s\":%.0f}\n", positional[0].c_str(), per_s);
  return 0;
}
