// Actors in local mode: submission order, max_concurrency, names and
// namespaces, kill and restart, constructor and method errors, handles
// passed to tasks and serialized, lifetime, resources, cancel.
#include <doctest/doctest.h>

#include <atomic>
#include <chrono>
#include <mutex>
#include <stdexcept>
#include <thread>

#include "shoal/api.h"
#include "task/local_runtime.h"

using namespace shoal;
using namespace std::chrono_literals;

namespace actor_test {

std::atomic<int> g_constructed{0};
std::atomic<int> g_destroyed{0};
std::atomic<bool> g_release{false};

struct Counter {
  explicit Counter(int start = 0) : value(start) { g_constructed.fetch_add(1); }
  ~Counter() { g_destroyed.fetch_add(1); }
  Counter(const Counter&) = delete;
  Counter& operator=(const Counter&) = delete;

  int incr(int by) {
    value += by;
    log.push_back(by);
    return value;
  }
  int get() const { return value; }
  std::vector<int> history() const { return log; }
  void reset() { value = 0; }
  int fail(std::string why) { throw std::logic_error(why); }
  int wait_release() {
    while (!g_release.load() && !shoal::cancel_requested()) std::this_thread::sleep_for(1ms);
    return value;
  }
  std::string describe(const std::string& prefix, std::optional<int> extra) const {
    return prefix + std::to_string(value + extra.value_or(0));
  }

  int value;
  std::vector<int> log;
};

// Tracks how many of its calls run at once.
struct Pool {
  int work(int) {
    int now = running.fetch_add(1) + 1;
    int seen = peak.load();
    while (now > seen && !peak.compare_exchange_weak(seen, now)) {
    }
    std::this_thread::sleep_for(5ms);
    running.fetch_sub(1);
    return now;
  }
  int max_seen() const { return peak.load(); }
  std::atomic<int> running{0};
  std::atomic<int> peak{0};
};

struct Fragile {
  explicit Fragile(std::string name) {
    if (name == "bad") throw std::runtime_error("refusing to start: " + name);
  }
  int ping() const { return 1; }
};

struct Other {
  int ping() { return 2; }
};

int slow_value(int v) {
  std::this_thread::sleep_for(20ms);
  return v;
}
int add_via_actor(ActorHandle<Counter> counter, int by) {
  return counter.task(&Counter::incr).remote(by).get();
}
int square(int x) { return x * x; }

}  // namespace actor_test

using namespace actor_test;

SHOAL_ACTOR(actor_test::Counter, &actor_test::Counter::incr, &actor_test::Counter::get,
            &actor_test::Counter::history, &actor_test::Counter::reset, &actor_test::Counter::fail,
            &actor_test::Counter::wait_release, &actor_test::Counter::describe);
SHOAL_ACTOR(actor_test::Pool, &actor_test::Pool::work, &actor_test::Pool::max_seen);
SHOAL_ACTOR(actor_test::Fragile, &actor_test::Fragile::ping);
SHOAL_ACTOR(actor_test::Other, &actor_test::Other::ping);
SHOAL_REMOTE(actor_test::slow_value, actor_test::add_via_actor, actor_test::square);

namespace {

Cluster start(double cpus) {
  Result<Cluster> cluster = init(local(cpus));
  REQUIRE_MESSAGE(cluster.ok(), cluster.status().to_string());
  return std::move(cluster).value();
}

detail::LocalRuntime& local_runtime() {
  auto* runtime = dynamic_cast<detail::LocalRuntime*>(detail::current_runtime().get());
  REQUIRE(runtime != nullptr);
  return *runtime;
}

void wait_until(const std::function<bool()>& condition) {
  auto deadline = std::chrono::steady_clock::now() + 10s;
  while (!condition()) {
    REQUIRE(std::chrono::steady_clock::now() < deadline);
    std::this_thread::sleep_for(1ms);
  }
}

}  // namespace

TEST_CASE("actors: calls from one caller run in submission order") {
  Cluster cluster = start(2);
  ActorHandle<Counter> counter = actor<Counter>(100).remote();
  std::vector<ObjectRef<int>> results;
  for (int i = 1; i <= 1000; ++i) results.push_back(counter.task(&Counter::incr).remote(i));
  std::vector<int> values = get(results);
  int expected = 100;
  for (int i = 1; i <= 1000; ++i) {
    expected += i;
    REQUIRE(values[i - 1] == expected);
  }
  std::vector<int> history = counter.task(&Counter::history).remote().get();
  REQUIRE(history.size() == 1000);
  for (int i = 0; i < 1000; ++i) REQUIRE(history[i] == i + 1);

  // A call whose argument is not ready yet holds back the calls behind it.
  counter.task(&Counter::reset).remote().get();
  ObjectRef<int> late = task(slow_value).remote(5);
  counter.task(&Counter::incr).remote(late);
  ObjectRef<int> after = counter.task(&Counter::incr).remote(1);
  CHECK(after.get() == 6);
  CHECK(counter.task(&Counter::history).remote().get().back() == 1);
  CHECK(counter.task(&Counter::describe).remote("v=", std::optional<int>(4)).get() == "v=10");
}

TEST_CASE("actors: max_concurrency runs calls in parallel up to the limit") {
  Cluster cluster = start(2);
  ActorHandle<Pool> serial = actor<Pool>().remote();
  ActorHandle<Pool> parallel = actor<Pool>().max_concurrency(4).remote();
  std::vector<ObjectRef<int>> calls;
  for (int i = 0; i < 40; ++i) {
    calls.push_back(serial.task(&Pool::work).remote(i));
    calls.push_back(parallel.task(&Pool::work).remote(i));
  }
  get(calls);
  CHECK(serial.task(&Pool::max_seen).remote().get() == 1);
  int peak = parallel.task(&Pool::max_seen).remote().get();
  CHECK(peak > 1);
  CHECK(peak <= 4);
  CHECK_THROWS_AS(actor<Pool>().max_concurrency(0).remote(), Error);
  CHECK_THROWS_AS(actor<Pool>().max_restarts(-2).remote(), Error);
}

TEST_CASE("actors: named actors, namespaces, wrong class and unknown names") {
  Cluster cluster = start(2);
  ActorHandle<Counter> hits = actor<Counter>(7).name("hits").remote();
  ActorHandle<Counter> other_ns = actor<Counter>(1).name("hits", "team").remote();
  CHECK_THROWS_WITH_AS(actor<Counter>().name("hits").remote(), doctest::Contains("already exists"),
                       Error);

  ActorHandle<Counter> found = get_actor<Counter>("hits");
  CHECK(found == hits);
  CHECK(found.task(&Counter::incr).remote(1).get() == 8);
  CHECK(get_actor<Counter>("hits", "team").task(&Counter::get).remote().get() == 1);
  CHECK_THROWS_WITH_AS(get_actor<Counter>("nobody"),
                       doctest::Contains("no live actor named nobody"), Error);
  CHECK_THROWS_WITH_AS(get_actor<Other>("hits"), doctest::Contains("is a actor_test::Counter"),
                       Error);
  kill(other_ns);
  wait_until([] {
    try {
      get_actor<Counter>("hits", "team");
      return false;
    } catch (const Error&) {
      return true;
    }
  });
}

TEST_CASE("actors: kill fails queued and later calls with ActorDied") {
  Cluster cluster = start(2);
  g_release = false;
  ActorHandle<Counter> counter = actor<Counter>().remote();
  ObjectRef<int> running = counter.task(&Counter::wait_release).remote();
  ObjectRef<int> queued = counter.task(&Counter::incr).remote(1);
  std::this_thread::sleep_for(10ms);
  kill(counter);
  CHECK_THROWS_AS(queued.get(), ActorDied);
  g_release = true;
  CHECK(running.get() == 0);  // the running call finished
  try {
    counter.task(&Counter::incr).remote(1).get();
    FAIL("expected ActorDied");
  } catch (const ActorDied& e) {
    CHECK(std::string(e.what()).find("is dead") != std::string::npos);
    CHECK(e.status().code() == Status::Code::kUnavailable);
  }
}

TEST_CASE("actors: kill with restart runs the constructor again while max_restarts allows") {
  Cluster cluster = start(2);
  int constructed = g_constructed.load();
  ActorHandle<Counter> counter = actor<Counter>(10).max_restarts(1).remote();
  CHECK(counter.task(&Counter::incr).remote(5).get() == 15);
  kill(counter, /*no_restart=*/false);
  CHECK(counter.task(&Counter::get).remote().get() == 10);  // a fresh object
  CHECK(g_constructed.load() == constructed + 2);
  kill(counter, false);  // no restarts left
  CHECK_THROWS_AS(counter.task(&Counter::get).remote().get(), ActorDied);
}

TEST_CASE("actors: a constructor that throws kills the actor; a method that throws does not") {
  Cluster cluster = start(2);
  ActorHandle<Fragile> bad = actor<Fragile>("bad").remote();
  try {
    bad.task(&Fragile::ping).remote().get();
    FAIL("expected ActorDied");
  } catch (const ActorDied& e) {
    CHECK(e.info().exception_type == "std::runtime_error");
    CHECK(std::string(e.what()).find("refusing to start: bad") != std::string::npos);
  }
  ActorHandle<Fragile> good = actor<Fragile>("good").remote();
  CHECK(good.task(&Fragile::ping).remote().get() == 1);

  ActorHandle<Counter> counter = actor<Counter>(3).remote();
  try {
    counter.task(&Counter::fail).remote("nope").get();
    FAIL("expected TaskError");
  } catch (const TaskError& e) {
    CHECK(e.exception_type() == "std::logic_error");
    CHECK(e.message() == "nope");
    CHECK(e.function() == "actor_test::Counter::fail");
  }
  CHECK(counter.task(&Counter::get).remote().get() == 3);
}

TEST_CASE("actors: handles pass to tasks and round trip through msgpack") {
  Cluster cluster = start(2);
  ActorHandle<Counter> counter = actor<Counter>().remote();
  std::vector<ObjectRef<int>> results;
  for (int i = 0; i < 10; ++i) results.push_back(task(add_via_actor).remote(counter, 1));
  get(results);
  CHECK(counter.task(&Counter::get).remote().get() == 10);

  std::string bytes = serialize(std::vector<ActorHandle<Counter>>{counter, ActorHandle<Counter>()});
  Result<std::vector<ActorHandle<Counter>>> back =
      deserialize<std::vector<ActorHandle<Counter>>>(bytes);
  REQUIRE(back.ok());
  CHECK((*back)[0] == counter);
  CHECK_FALSE((*back)[1].valid());
  CHECK((*back)[0].task(&Counter::incr).remote(5).get() == 15);
  Result<ActorHandle<Other>> wrong = deserialize<ActorHandle<Other>>(serialize(counter));
  REQUIRE_FALSE(wrong.ok());
  CHECK(wrong.status().message().find("not an ActorHandle<actor_test::Other>") !=
        std::string::npos);
  CHECK_FALSE(deserialize<ActorHandle<Counter>>(serialize(std::string("x"))).ok());
}

TEST_CASE("actors: an actor stops when its last handle is gone, unless detached") {
  Cluster cluster = start(2);
  int destroyed = g_destroyed.load();
  ObjectRef<int> result;
  {
    ActorHandle<Counter> counter = actor<Counter>(1).remote();
    result = counter.task(&Counter::incr).remote(1);
  }
  CHECK(result.get() == 2);  // calls already submitted still run
  wait_until([&] { return g_destroyed.load() == destroyed + 1; });
  wait_until([] { return local_runtime().live_actor_count() == 0; });
  { ActorHandle<Counter> keeper = actor<Counter>(5).name("keeper").detached().remote(); }
  CHECK(get_actor<Counter>("keeper").task(&Counter::get).remote().get() == 5);
  { ActorHandle<Counter> named = actor<Counter>().name("temporary").remote(); }
  wait_until([] {
    try {
      get_actor<Counter>("temporary");
      return false;
    } catch (const Error&) {
      return true;
    }
  });
}

TEST_CASE("actors: resources are held for the actor's life") {
  Cluster cluster = start(2);
  ActorHandle<Counter> big = actor<Counter>(1).cpus(2).remote();
  CHECK(big.task(&Counter::get).remote().get() == 1);
  ObjectRef<int> starved = task(square).remote(3);
  CHECK_THROWS_AS(starved.get(50ms), GetTimeout);  // both CPUs are the actor's
  kill(big);
  CHECK(starved.get(10s) == 9);
  ActorHandle<Counter> too_big = actor<Counter>().cpus(3).remote();
  CHECK_THROWS_WITH_AS(too_big.task(&Counter::get).remote().get(), doctest::Contains("CPU 3"),
                       ActorDied);
}

TEST_CASE("actors: refs as constructor arguments, cancel of a queued call") {
  Cluster cluster = start(2);
  ActorHandle<Counter> counter = actor<Counter>(task(slow_value).remote(40)).remote();
  CHECK(counter.task(&Counter::incr).remote(2).get() == 42);

  g_release = false;
  ObjectRef<int> busy = counter.task(&Counter::wait_release).remote();
  ObjectRef<int> queued = counter.task(&Counter::incr).remote(100);
  CHECK(cancel(queued));
  CHECK_THROWS_AS(queued.get(), TaskCancelled);
  g_release = true;
  CHECK(busy.get() == 42);
  CHECK(counter.task(&Counter::get).remote().get() == 42);  // the cancelled call never ran
}
