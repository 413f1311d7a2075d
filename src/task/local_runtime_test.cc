// Tasks in local mode, through the public API: fan-out, DAGs, resource
// limits, errors, timeouts, cancel, put/get, wait, retries, placement, and
// the lifecycle of init()/shutdown().
#include "task/local_runtime.h"

#include <doctest/doctest.h>
#include <stdlib.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <numeric>
#include <optional>
#include <stdexcept>
#include <thread>

#include "shoal/api.h"

using namespace shoal;
using namespace std::chrono_literals;

namespace tasks_test {

// Tracks CPU units of running tasks and the most seen at once.
std::atomic<int64_t> g_in_use{0};
std::atomic<int64_t> g_peak{0};
void enter(int64_t units) {
  int64_t now = g_in_use.fetch_add(units) + units;
  int64_t seen = g_peak.load();
  while (now > seen && !g_peak.compare_exchange_weak(seen, now)) {
  }
}
void reset_meter() {
  g_in_use = 0;
  g_peak = 0;
}

std::atomic<bool> g_release{false};
std::atomic<int> g_started{0};
std::atomic<int> g_runs{0};

int square(int x) { return x * x; }
int add(int a, int b) { return a + b; }
long sum(std::vector<int> values) { return std::accumulate(values.begin(), values.end(), 0L); }
std::string concat(const std::string& a, std::string b) { return a + b; }
void noop() {}
int busy(int units_x10000) {
  enter(units_x10000);
  std::this_thread::sleep_for(2ms);
  g_in_use.fetch_sub(units_x10000);
  return 1;
}
int fail_with(int code) {
  if (code == 1) throw std::invalid_argument("code one is not allowed");
  if (code == 2) throw std::out_of_range("two");
  return code;
}
// Runs until cancelled (or released): a task that never finishes on its own.
int spin(int id) {
  g_started.fetch_add(1);
  while (!g_release.load() && !shoal::cancel_requested()) std::this_thread::sleep_for(1ms);
  return id;
}
std::string big_string(int n) { return std::string(static_cast<std::size_t>(n), 'x'); }
int mark_run(int x) {
  g_runs.fetch_add(1);
  return x;
}
// Fails until it has run `succeed_on` times.
int flaky(int succeed_on) {
  int run = g_runs.fetch_add(1) + 1;
  if (run < succeed_on) throw std::runtime_error("flaky run " + std::to_string(run));
  return run;
}
std::vector<ObjectRef<int>> make_refs(int n) {
  std::vector<ObjectRef<int>> out;
  for (int i = 0; i < n; ++i) out.push_back(shoal::put(i * 10));
  return out;
}
int sum_refs(std::vector<ObjectRef<int>> refs) {
  int total = 0;
  for (auto& r : refs) total += r.get();
  return total;
}
// A task that fans out and waits for its children (nested tasks).
int fan_in(int n) {
  std::vector<ObjectRef<int>> children;
  for (int i = 0; i < n; ++i) children.push_back(shoal::task(square).remote(i));
  std::vector<int> values = shoal::get(children);
  return std::accumulate(values.begin(), values.end(), 0);
}

}  // namespace tasks_test

using namespace tasks_test;

SHOAL_REMOTE(tasks_test::square, tasks_test::add, tasks_test::sum, tasks_test::concat,
             tasks_test::noop);
SHOAL_REMOTE(tasks_test::busy, tasks_test::fail_with, tasks_test::spin, tasks_test::mark_run,
             tasks_test::flaky);
SHOAL_REMOTE(tasks_test::make_refs, tasks_test::sum_refs, tasks_test::fan_in,
             tasks_test::big_string);

namespace {

detail::LocalRuntime& local_runtime() {
  auto* runtime = dynamic_cast<detail::LocalRuntime*>(detail::current_runtime().get());
  REQUIRE(runtime != nullptr);
  return *runtime;
}

Cluster start(double cpus) {
  Result<Cluster> cluster = init(local(cpus));
  REQUIRE_MESSAGE(cluster.ok(), cluster.status().to_string());
  return std::move(cluster).value();
}

}  // namespace

TEST_CASE("tasks: init, double init, other modes' errors, shutdown") {
  CHECK_FALSE(is_initialized());
  CHECK_THROWS_AS(task(square).remote(1), Error);  // not initialized
  {
    Cluster cluster = start(2);
    CHECK(is_initialized());
    CHECK(cluster.node_id().size() == 32);
    Result<Cluster> again = init(local(1));
    CHECK(again.status().code() == Status::Code::kAlreadyExists);
  }
  CHECK_FALSE(is_initialized());

  // Connect mode: a missing token file, then a cluster nobody serves.
  Options remote_options = shoal::connect("127.0.0.1:1");
  remote_options.token_file = "/nonexistent/shoal-test-token";
  Result<Cluster> remote = init(remote_options);
  CHECK_FALSE(remote.ok());
  CHECK(remote.status().message().find("token") != std::string::npos);
  char token_path[] = "/tmp/shoal-test-token-XXXXXX";
  int fd = mkstemp(token_path);
  REQUIRE(fd >= 0);
  std::string token(64, 'a');
  REQUIRE(write(fd, token.data(), token.size()) == static_cast<ssize_t>(token.size()));
  close(fd);
  remote_options.token_file = token_path;
  remote = init(remote_options);
  unlink(token_path);
  CHECK(remote.status().code() == Status::Code::kUnavailable);
  CHECK(remote.status().message().find("cannot reach the cluster at 127.0.0.1:1") != std::string::npos);
  CHECK_FALSE(is_initialized());

  // Node mode runs through init(argc, argv) (which runs the node and exits).
  Options node_options;
  node_options.mode = Options::Mode::kNode;
  CHECK(init(node_options).status().code() == Status::Code::kInvalidArgument);
  const char* node_args[] = {"app", "start", "--join", "10.0.0.1:7400", "--token-file", "t"};
  Result<Options> parsed_node = options_from_args(6, const_cast<char**>(node_args));
  REQUIRE(parsed_node.ok());
  CHECK(parsed_node->mode == Options::Mode::kNode);
  CHECK(parsed_node->token_file == "t");

  const char* args[] = {"app", "--cpus=3", "--namespace", "jobs", "--other-flag"};
  Result<Options> options = options_from_args(5, const_cast<char**>(args));
  REQUIRE(options.ok());
  CHECK(options->mode == Options::Mode::kLocal);
  CHECK(options->cpus == 3);
  CHECK(options->name_space == "jobs");
  const char* address_args[] = {"app", "--address", "h:1"};
  CHECK(options_from_args(3, const_cast<char**>(address_args))->mode == Options::Mode::kConnect);
  const char* bad_args[] = {"app", "--cpus", "many"};
  CHECK(options_from_args(3, const_cast<char**>(bad_args)).status().message().find("--cpus") !=
        std::string::npos);
  CHECK(init(local(-1)).status().code() == Status::Code::kInvalidArgument);

  // A Cluster whose shoal was shut down and replaced leaves the new one alone.
  std::optional<Cluster> old = start(1);
  shutdown();
  Cluster current = start(1);
  old.reset();
  CHECK(is_initialized());
  CHECK(task(square).remote(3).get() == 9);
}

TEST_CASE("tasks: 10,000 tasks fan out with correct results") {
  Cluster cluster = start(2);
  std::vector<ObjectRef<int>> refs;
  refs.reserve(10'000);
  for (int i = 0; i < 10'000; ++i) refs.push_back(task(square).remote(i));
  std::vector<int> values = get(refs);
  REQUIRE(values.size() == 10'000);
  for (int i = 0; i < 10'000; ++i) REQUIRE(values[i] == i * i);
  refs.clear();
  CHECK(local_runtime().object_count() == 0);  // every object freed with its last ref
}

TEST_CASE("tasks: ObjectRef arguments chain into a DAG") {
  Cluster cluster = start(2);
  ObjectRef<int> a = task(square).remote(3);  // 9
  ObjectRef<int> b = task(add).remote(a, 1);  // 10
  ObjectRef<int> c = task(add).remote(a, b);  // 19
  ObjectRef<long> d = task(sum).remote(std::vector<int>{1, 2, 3});
  ObjectRef<std::string> e = task(concat).remote("ab", std::string("cd"));
  ObjectRef<std::string> f = task(concat).remote(e, e);
  CHECK(get(c) == 19);
  CHECK(d.get() == 6);
  CHECK(get(f) == "abcdabcd");
  // A long chain: each link waits for the one before.
  ObjectRef<int> link = put(0);
  for (int i = 0; i < 200; ++i) link = task(add).remote(link, 1);
  CHECK(get(link) == 200);
  ObjectRef<void> v = task(noop).remote();
  v.get();
}

TEST_CASE("tasks: concurrently running tasks never exceed the CPUs") {
  Cluster cluster = start(2);
  reset_meter();
  std::vector<ObjectRef<int>> refs;
  for (int i = 0; i < 200; ++i) refs.push_back(task(busy).remote(10'000));
  get(refs);
  CHECK(g_peak.load() <= 2 * 10'000);
  CHECK(g_peak.load() == 2 * 10'000);  // and it did use both

  // Tasks of 2 CPUs take both; half-CPU tasks run four at a time.
  reset_meter();
  refs.clear();
  for (int i = 0; i < 20; ++i) refs.push_back(task(busy).cpus(2).remote(20'000));
  for (int i = 0; i < 80; ++i) refs.push_back(task(busy).cpus(0.5).remote(5'000));
  get(refs);
  CHECK(g_peak.load() <= 2 * 10'000);
}

TEST_CASE("tasks: a task that asks for more than the node has fails clearly") {
  Cluster cluster = start(2);
  ObjectRef<int> r = task(square).cpus(3).remote(2);
  try {
    r.get();
    FAIL("expected an error");
  } catch (const Error& e) {
    CHECK(e.status().code() == Status::Code::kResourceExhausted);
    CHECK(std::string(e.what()).find("can never run") != std::string::npos);
    CHECK(std::string(e.what()).find("CPU 3") != std::string::npos);
  }
  CHECK_THROWS_AS(task(square).gpus(1).remote(1).get(), Error);
  CHECK_THROWS_AS(task(square).resource("ssd", 1).remote(1).get(), Error);
  // Invalid options are refused at once.
  CHECK_THROWS_AS(task(square).cpus(-1).remote(1), Error);
  CHECK_THROWS_AS(task(square).max_retries(-2).remote(1), Error);
}

TEST_CASE("tasks: a user exception becomes TaskError with type, message, function, task and node") {
  Cluster cluster = start(2);
  ObjectRef<int> r = task(fail_with).remote(1);
  try {
    get(r);
    FAIL("expected TaskError");
  } catch (const TaskError& e) {
    CHECK(e.exception_type() == "std::invalid_argument");
    CHECK(e.message() == "code one is not allowed");
    CHECK(e.function() == "tasks_test::fail_with");
    CHECK(e.task_id() == r.id().task_id());
    CHECK(e.node_id() == cluster.node_id());
    CHECK(e.status().code() == Status::Code::kInternal);
    std::string what = e.what();
    CHECK(what.find("threw std::invalid_argument: code one is not allowed") != std::string::npos);
    CHECK(what.find(cluster.node_id()) != std::string::npos);
  }
  // A task that depends on a failed one fails with the original error.
  ObjectRef<int> downstream = task(add).remote(task(fail_with).remote(2), 1);
  try {
    downstream.get();
    FAIL("expected TaskError");
  } catch (const TaskError& e) {
    CHECK(e.exception_type() == "std::out_of_range");
    CHECK(e.function() == "tasks_test::fail_with");
  }
  // Other results are unaffected.
  CHECK(task(fail_with).remote(7).get() == 7);
}

TEST_CASE("tasks: get with a timeout on a task that never finishes") {
  Cluster cluster = start(2);
  g_release = false;
  ObjectRef<int> r = task(spin).remote(5);
  auto begin = std::chrono::steady_clock::now();
  try {
    r.get(50ms);
    FAIL("expected GetTimeout");
  } catch (const GetTimeout& e) {
    CHECK(e.status().code() == Status::Code::kDeadlineExceeded);
    std::string what = e.what();
    CHECK(what.find("timed out after 50 ms") != std::string::npos);
    CHECK(what.find("tasks_test::spin") != std::string::npos);
  }
  CHECK(std::chrono::steady_clock::now() - begin >= 50ms);
  CHECK_THROWS_AS(get(std::vector<ObjectRef<int>>{task(square).remote(2), r}, 20ms), GetTimeout);
  g_release = true;
  CHECK(r.get(10s) == 5);
}

TEST_CASE("tasks: cancel a queued task, a task waiting for arguments and a running one") {
  Cluster cluster = start(1);
  g_release = false;
  g_started = 0;
  g_runs = 0;
  ObjectRef<int> running = task(spin).remote(1);
  while (g_started.load() == 0) std::this_thread::sleep_for(1ms);
  ObjectRef<int> queued = task(mark_run).remote(2);  // the only CPU is taken
  ObjectRef<int> waiting = task(add).remote(running, 1);
  CHECK(cancel(queued));
  CHECK(cancel(waiting));
  CHECK_THROWS_AS(queued.get(), TaskCancelled);
  CHECK_THROWS_AS(waiting.get(), TaskCancelled);
  // The running one sees cancel_requested() and returns; its result is discarded.
  CHECK(cancel(running));
  try {
    running.get(10s);
    FAIL("expected TaskCancelled");
  } catch (const TaskCancelled& e) {
    CHECK(e.status().code() == Status::Code::kCancelled);
    CHECK(e.info().function == "tasks_test::spin");
  }
  CHECK(g_runs.load() == 0);  // the queued task never ran
  ObjectRef<int> finished = task(square).remote(3);
  CHECK(finished.get() == 9);
  CHECK_FALSE(cancel(finished));
  CHECK_FALSE(cancel(put(1)));
  g_release = true;
}

TEST_CASE("tasks: put, get, nested refs and freeing") {
  Cluster cluster = start(2);
  ObjectRef<std::string> s = put("hello");  // a string literal is stored as std::string
  CHECK(s.get() == "hello");
  ObjectRef<std::map<int, std::string>> m = put(std::map<int, std::string>{{1, "a"}});
  CHECK(get(m).at(1) == "a");
  CHECK(task(square).remote(put(12)).get() == 144);

  // A task returns refs it created; another task gets them (nested get).
  ObjectRef<std::vector<ObjectRef<int>>> refs = task(make_refs).remote(5);
  std::vector<ObjectRef<int>> inner = refs.get();
  REQUIRE(inner.size() == 5);
  CHECK(inner[3].get() == 30);
  CHECK(task(sum_refs).remote(refs).get() == 100);
  CHECK(task(sum_refs).remote(inner).get() == 100);  // refs inside a value argument

  // Objects named inside a value live while the value does.
  ObjectRef<int> kept = inner[4];
  inner.clear();
  refs = {};
  CHECK(kept.get() == 40);
  kept = {};
  s = {};
  m = {};
  CHECK(local_runtime().object_count() == 0);

  ObjectRef<int> empty;
  CHECK_THROWS_AS(empty.get(), Error);
  CHECK_THROWS_AS(task(square).remote(empty), Error);
}

TEST_CASE("tasks: wait returns the first ready refs in order, at most num_ready") {
  Cluster cluster = start(2);
  g_release = false;
  ObjectRef<int> slow = task(spin).remote(1);
  ObjectRef<int> fast1 = task(square).remote(2);
  ObjectRef<int> fast2 = task(square).remote(3);
  ObjectRef<int> failed = task(fail_with).remote(1);
  std::vector<ObjectRef<int>> refs{slow, fast1, fast2, failed};

  WaitResult<int> two = wait(refs, 2, 5s);
  REQUIRE(two.ready.size() == 2);
  CHECK(two.not_ready.size() == 2);
  for (const auto& r : two.ready) CHECK(r != slow);

  WaitResult<int> all = wait(refs, 4, 30ms);  // the timeout passes: no exception
  CHECK(all.ready.size() == 3);               // failed counts as ready
  REQUIRE(all.not_ready.size() == 1);
  CHECK(all.not_ready[0] == slow);
  CHECK(all.ready[0] == fast1);  // in the order given
  CHECK(all.ready[2] == failed);

  CHECK_THROWS_AS(wait(refs, 5), Error);
  CHECK_THROWS_AS(wait(refs, 0), Error);
  CHECK_THROWS_AS(wait(std::vector<ObjectRef<int>>{fast1, fast1}, 1), Error);
  CHECK(wait(std::vector<ObjectRef<int>>{}, 1).ready.empty());
  g_release = true;
  CHECK(wait(refs, 4).ready.size() == 4);
}

TEST_CASE("tasks: an unknown function name fails clearly at get()") {
  Cluster cluster = start(2);
  ObjectRef<int> r = task(remote_function<int(int)>("no_such_function")).remote(1);
  try {
    r.get();
    FAIL("expected an error");
  } catch (const Error& e) {
    CHECK(e.status().code() == Status::Code::kNotFound);
    CHECK(std::string(e.what()).find("no_such_function is not registered") != std::string::npos);
  }
  // A caller with the wrong signature: the argument cannot be read.
  ObjectRef<int> wrong = task(remote_function<int(std::string)>("tasks_test::square")).remote("x");
  try {
    wrong.get();
    FAIL("expected an error");
  } catch (const Error& e) {
    CHECK(e.status().code() == Status::Code::kInvalidArgument);
    CHECK(std::string(e.what()).find("argument 1 of tasks_test::square (int) could not be read") !=
          std::string::npos);
  }
  CHECK(task(remote_function<int(int, int)>("tasks_test::add")).remote(2, 3).get() == 5);
}

TEST_CASE("tasks: retries after exceptions only with retry_exceptions") {
  Cluster cluster = start(2);
  g_runs = 0;
  CHECK(task(flaky).retry_exceptions().max_retries(3).remote(3).get() == 3);
  g_runs = 0;
  CHECK_THROWS_AS(task(flaky).remote(3).get(), TaskError);  // default: exceptions are not retried
  CHECK(g_runs.load() == 1);
  g_runs = 0;
  try {
    task(flaky).retry_exceptions().max_retries(1).remote(10).get();
    FAIL("expected TaskError");
  } catch (const TaskError& e) {
    CHECK(e.info().attempts == 2);
    CHECK(e.message() == "flaky run 2");
  }
}

TEST_CASE("tasks: strategies and labels in local mode") {
  Options options = local(2);
  options.labels["zone"] = "a";
  Result<Cluster> cluster = init(options);
  REQUIRE(cluster.ok());
  const std::string& node = cluster->node_id();
  CHECK(task(square).strategy(node_affinity(node)).remote(2).get() == 4);
  CHECK(task(square).strategy(spread()).remote(3).get() == 9);
  CHECK(task(square).label("zone", "a").remote(4).get() == 16);
  CHECK(task(square).strategy(node_affinity("ffff", true)).remote(5).get() == 25);  // soft
  CHECK_THROWS_WITH_AS(task(square).strategy(node_affinity("ffff")).remote(1).get(),
                       doctest::Contains("not in this cluster"), Error);
  CHECK_THROWS_WITH_AS(task(square).label("zone", "b").remote(1).get(), doctest::Contains("zone=b"),
                       Error);
  CHECK_THROWS_WITH_AS(
      task(square).strategy(placement_group_bundle(PlacementGroupId{1, 2}, 0)).remote(1).get(),
      doctest::Contains("placement groups"), Error);
}

TEST_CASE("tasks: nested tasks that wait for children do not deadlock one CPU") {
  Cluster cluster = start(1);
  std::vector<ObjectRef<int>> parents;
  for (int i = 0; i < 4; ++i) parents.push_back(task(fan_in).remote(20));
  for (int v : get(parents)) CHECK(v == 2470);  // sum of squares 0..19
}

TEST_CASE("tasks: after shutdown, refs report it") {
  ObjectRef<int> kept;
  {
    Cluster cluster = start(1);
    kept = task(square).remote(4);
    CHECK(kept.get() == 16);
  }
  CHECK_THROWS_WITH_AS(kept.get(), doctest::Contains("shut down"), Error);
  g_release = false;
  g_started = 0;
  ObjectRef<int> pending;
  {
    Cluster cluster = start(1);
    pending = task(spin).remote(1);
    while (g_started.load() == 0) std::this_thread::sleep_for(1ms);
  }  // shutdown: the spinning task sees cancel_requested() and returns
  g_release = true;
}

TEST_CASE(
    "tasks: small values cannot spill, so the store's capacity bounds them; put() and results "
    "that do not fit fail clearly") {
  Options options = local(2);
  options.object_store_bytes_max = 10'000;
  Result<Cluster> cluster = init(options);
  REQUIRE(cluster.ok());
  ObjectRef<std::string> small = put(std::string(6'000, 'a'));
  CHECK_THROWS_WITH_AS(put(std::string(6'000, 'b')),
                       doctest::Contains("does not fit in the object store: ObjectStoreFull"),
                       Error);
  CHECK_THROWS_WITH_AS(put(std::string(6'000, 'b')), doctest::Contains("small values, which never spill"),
                       Error);
  CHECK_THROWS_WITH_AS(task(big_string).remote(6'000).get(),
                       doctest::Contains("the result of tasks_test::big_string"), Error);
  small = {};  // frees its bytes
  CHECK(task(big_string).remote(6'000).get().size() == 6'000);
  CHECK_THROWS_WITH_AS(put(std::string(10'001, 'c')),
                       doctest::Contains("bigger than the whole object store"), Error);
}

TEST_CASE("tasks: large values beyond the store's capacity spill to disk and come back") {
  Options options = local(2);
  options.object_store_bytes_max = 4 << 20;
  Result<Cluster> cluster = init(options);
  REQUIRE(cluster.ok());
  std::vector<ObjectRef<std::string>> refs;
  for (char c : {'a', 'b', 'c', 'd'}) refs.push_back(put(std::string(2 << 20, c)));
  refs.push_back(task(big_string).remote(2 << 20));
  // 10 MiB were admitted into 4 MiB: most of it went to disk and comes back.
  const std::string expected = "abcdx";
  for (std::size_t i = 0; i < refs.size(); ++i) {
    CHECK(refs[i].get() == std::string(2 << 20, expected[i]));
  }
}

TEST_CASE(
    "tasks: the runtime bounds tasks in flight (used directly through the Runtime interface)") {
  detail::LocalRuntime::Config config;
  config.node_id = std::string(32, 'a');
  config.total = *detail::ResourceSet::from_wholes({{"CPU", 1}});
  config.tasks_in_flight_max = 2;
  std::shared_ptr<detail::LocalRuntime> runtime = detail::LocalRuntime::create(config);
  auto spin_spec = [] {
    detail::TaskSpec spec;
    spec.function = "tasks_test::spin";
    spec.args.push_back(detail::TaskArg{serialize(1), nullptr});
    return spec;
  };
  g_release = false;
  Result<detail::RefPtr> first = runtime->submit_task(spin_spec());
  Result<detail::RefPtr> second = runtime->submit_task(spin_spec());
  REQUIRE(first.ok());
  REQUIRE(second.ok());
  Result<detail::RefPtr> third = runtime->submit_task(spin_spec());
  CHECK(third.status().code() == Status::Code::kResourceExhausted);
  CHECK(third.status().message().find("already submitted and not finished") != std::string::npos);
  g_release = true;
  const detail::RefState* refs[] = {first->get(), second->get()};
  Result<std::vector<detail::ObjectValuePtr>> values = runtime->get(refs, std::nullopt);
  REQUIRE(values.ok());
  CHECK(deserialize<int>((*values)[0]->bytes).value() == 1);
  CHECK(runtime->submit_task(spin_spec()).ok());
  runtime->shutdown();
}
