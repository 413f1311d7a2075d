// Local-mode micro benchmark, named like Ray's microbenchmarks
// (release/microbenchmark) so the figures compare. Everything runs in this
// process: no network, so these are the runtime's own costs (serialization,
// bookkeeping, thread hand-offs), an upper bound for the distributed runtime.
// Prints one JSON object. Baselines measured in the same run: a direct
// function call through the registry's invoker (msgpack in and out), and
// memcpy for the put bandwidth.
//
//   build-task/src/task/task_bench [--cpus N] [--seconds S]
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <string>
#include <thread>
#include <vector>

#include "shoal/api.h"

namespace {

int small_value(int x) { return x + 1; }

struct Actor {
  int call(int x) { return x + 1; }
};

}  // namespace

SHOAL_REMOTE(small_value);
SHOAL_ACTOR(Actor, &Actor::call);

namespace {

using Clock = std::chrono::steady_clock;

// Runs `batch` until `seconds` pass; returns operations per second, where
// each call of `batch` does `ops` operations.
double rate(double seconds, long ops, const std::function<void()>& batch) {
  batch();  // warm up
  long done = 0;
  auto begin = Clock::now();
  auto end = begin + std::chrono::duration<double>(seconds);
  while (Clock::now() < end) {
    batch();
    done += ops;
  }
  double elapsed = std::chrono::duration<double>(Clock::now() - begin).count();
  return static_cast<double>(done) / elapsed;
}

double multi(int clients, double seconds, long ops, const std::function<void()>& batch) {
  std::vector<double> rates(clients);
  std::vector<std::thread> threads;
  for (int c = 0; c < clients; ++c)
    threads.emplace_back([&, c] { rates[c] = rate(seconds, ops, batch); });
  for (auto& t : threads) t.join();
  double total = 0;
  for (double r : rates) total += r;
  return total;
}

}  // namespace

int main(int argc, char** argv) {
  double seconds = 1.0;
  double cpus = 0;
  for (int i = 1; i + 1 < argc; ++i) {
    if (std::strcmp(argv[i], "--seconds") == 0) seconds = std::atof(argv[i + 1]);
    if (std::strcmp(argv[i], "--cpus") == 0) cpus = std::atof(argv[i + 1]);
  }
  auto cluster = shoal::init(shoal::local(cpus));
  if (!cluster.ok()) {
    std::fprintf(stderr, "%s\n", cluster.status().to_string().c_str());
    return 1;
  }
  const long kBatch = 1000;

  double invoke_baseline = rate(seconds, kBatch, [&] {
    const auto* invoker = shoal::detail::Registry::instance().function("small_value");
    std::string arg = shoal::serialize(1);
    std::string_view args[] = {arg};
    for (long i = 0; i < kBatch; ++i) (void)(*invoker)(nullptr, args);
  });
  double tasks_sync = rate(seconds, 100, [&] {
    for (int i = 0; i < 100; ++i) (void)shoal::task(small_value).remote(i).get();
  });
  double tasks_async = rate(seconds, kBatch, [&] {
    std::vector<shoal::ObjectRef<int>> refs;
    refs.reserve(kBatch);
    for (long i = 0; i < kBatch; ++i)
      refs.push_back(shoal::task(small_value).remote(static_cast<int>(i)));
    (void)shoal::get(refs);
  });
  double multi_tasks_async = multi(4, seconds, kBatch, [&] {
    std::vector<shoal::ObjectRef<int>> refs;
    refs.reserve(kBatch);
    for (long i = 0; i < kBatch; ++i)
      refs.push_back(shoal::task(small_value).remote(static_cast<int>(i)));
    (void)shoal::get(refs);
  });
  auto actor = shoal::actor<Actor>().remote();
  double actor_sync = rate(seconds, 100, [&] {
    for (int i = 0; i < 100; ++i) (void)actor.task(&Actor::call).remote(i).get();
  });
  double actor_async = rate(seconds, kBatch, [&] {
    std::vector<shoal::ObjectRef<int>> refs;
    refs.reserve(kBatch);
    for (long i = 0; i < kBatch; ++i)
      refs.push_back(actor.task(&Actor::call).remote(static_cast<int>(i)));
    (void)shoal::get(refs);
  });
  const int kActors = 4;
  std::vector<shoal::ActorHandle<Actor>> actors;
  for (int i = 0; i < kActors; ++i) actors.push_back(shoal::actor<Actor>().remote());
  double n_n_actor_async = multi(kActors, seconds, kBatch, [&] {
    static std::atomic<int> next{0};
    thread_local int mine = next.fetch_add(1) % kActors;
    std::vector<shoal::ObjectRef<int>> refs;
    refs.reserve(kBatch);
    for (long i = 0; i < kBatch; ++i)
      refs.push_back(actors[mine].task(&Actor::call).remote(static_cast<int>(i)));
    (void)shoal::get(refs);
  });
  double put_calls = rate(seconds, kBatch, [&] {
    for (long i = 0; i < kBatch; ++i) (void)shoal::put(static_cast<int>(i));
  });
  shoal::ObjectRef<int> stored = shoal::put(7);
  double get_calls = rate(seconds, kBatch, [&] {
    for (long i = 0; i < kBatch; ++i) (void)stored.get();
  });
  const std::size_t kBlob = 64u << 20;
  std::vector<char> blob(kBlob, 'x');
  double put_gigabytes = rate(seconds, 1, [&] { (void)shoal::put(blob); }) * kBlob / 1e9;
  std::vector<char> copy(kBlob);
  double memcpy_gigabytes =
      rate(seconds, 1, [&] { std::memcpy(copy.data(), blob.data(), kBlob); }) * kBlob / 1e9;

  std::printf(
      "{\"mode\": \"local\", \"cpus\": %g, \"single_client_tasks_sync\": %.0f, "
      "\"single_client_tasks_async\": %.0f, "
      "\"multi_client_tasks_async\": %.0f, \"1_1_actor_calls_sync\": %.0f, "
      "\"1_1_actor_calls_async\": %.0f, "
      "\"n_n_actor_calls_async\": %.0f, \"single_client_put_calls\": %.0f, "
      "\"single_client_get_calls\": %.0f, "
      "\"single_client_put_gigabytes\": %.2f, \"baseline_invoke_calls\": %.0f, "
      "\"baseline_memcpy_gigabytes\": %.2f}\n",
      cpus > 0 ? cpus : std::thread::hardware_concurrency(), tasks_sync, tasks_async,
      multi_tasks_async, actor_sync, actor_async, n_n_actor_async, put_calls, get_calls,
      put_gigabytes, invoke_baseline, memcpy_gigabytes);
  return 0;
}
