// Tasks and actors in a few lines: fan work out, chain results, keep state
// in an actor, and see what a failure looks like.
//
//   build/examples/tasks_example                   local mode, every hardware thread
//   build/examples/tasks_example --cpus 2          local mode, 2 CPUs
//   build/examples/tasks_example start --join H:P  a node of a cluster (the same
//                                                  CLI as `shoal start`)
//   build/examples/tasks_example --address H:P     a driver: the work goes to
//                                                  that cluster's nodes
// tools/quickstart starts 3 nodes of this binary and runs it as a driver.
//
// Copy this file to start a program: register functions and classes at
// namespace scope, call shoal::init() in main, then task(...).remote(...).
#include <shoal/api.h>

#include <algorithm>
#include <iostream>
#include <stdexcept>
#include <string>
#include <vector>

// Any free function whose arguments and result can be serialized can run as
// a task. It runs on an executor thread, maybe (later) on another machine.
long fibonacci(int n) {
  if (n < 0) throw std::invalid_argument("fibonacci of a negative number: " + std::to_string(n));
  long a = 0;
  long b = 1;
  for (int i = 0; i < n; ++i) {
    long next = a + b;
    a = b;
    b = next;
  }
  return a;
}

long add(long a, long b) { return a + b; }

// Which node ran it (the node's id, 32 hex digits).
std::string where() { return shoal::current_node_id(); }

// Values of your own types travel with MSGPACK_DEFINE.
struct Summary {
  long count = 0;
  long total = 0;
  long largest = 0;
  MSGPACK_DEFINE(count, total, largest);
};

// An actor: one object that lives in one place; its methods run one at a
// time, in the order they were called.
class Accumulator {
 public:
  explicit Accumulator(std::string name) : name_(std::move(name)) {}
  void add(long value) {
    summary_.count += 1;
    summary_.total += value;
    summary_.largest = std::max(summary_.largest, value);
  }
  Summary summary() const { return summary_; }
  std::string name() const { return name_; }

 private:
  std::string name_;
  Summary summary_;
};

SHOAL_REMOTE(fibonacci, add, where);
SHOAL_ACTOR(Accumulator, &Accumulator::add, &Accumulator::summary, &Accumulator::name);

int main(int argc, char** argv) {
  auto cluster = shoal::init(argc, argv);
  if (!cluster.ok()) {
    std::cerr << "shoal: " << cluster.status().to_string() << "\n";
    return 1;
  }

  // 1. Fan out: 40 tasks run in parallel; remote() returns at once.
  std::vector<shoal::ObjectRef<long>> fibs;
  for (int n = 0; n < 40; ++n) fibs.push_back(shoal::task(fibonacci).remote(n));
  std::vector<long> values = shoal::get(fibs);  // waits for all
  std::cout << "fibonacci(0..39): ..., " << values[37] << ", " << values[38] << ", " << values[39]
            << "\n";

  // Where did they run? SPREAD puts one task on each node in turn.
  std::vector<shoal::ObjectRef<std::string>> places;
  for (int i = 0; i < 6; ++i) places.push_back(shoal::task(where).strategy(shoal::spread()).remote());
  std::vector<std::string> nodes = shoal::get(places);
  std::sort(nodes.begin(), nodes.end());
  nodes.erase(std::unique(nodes.begin(), nodes.end()), nodes.end());
  std::cout << "6 SPREAD tasks ran on " << nodes.size() << " node(s):";
  for (const auto& n : nodes) std::cout << " " << n.substr(0, 8);
  std::cout << "\n";

  // 2. Chain: an ObjectRef passed as an argument is resolved before the call.
  shoal::ObjectRef<long> sum = shoal::task(add).remote(fibs[38], fibs[37]);
  std::cout << "fibonacci(38) + fibonacci(37) = " << sum.get() << " (fibonacci(39) = " << values[39]
            << ")\n";

  // 3. An actor, fed with refs: calls run in the order they were made.
  auto accumulator = shoal::actor<Accumulator>("fibs").remote();
  for (const auto& ref : fibs) accumulator.task(&Accumulator::add).remote(ref);
  Summary summary = accumulator.task(&Accumulator::summary).remote().get();
  std::cout << accumulator.task(&Accumulator::name).remote().get() << ": " << summary.count
            << " values, total " << summary.total << ", largest " << summary.largest << "\n";

  // 4. Failures come back at get(), with what was thrown and where.
  try {
    shoal::task(fibonacci).remote(-1).get();
  } catch (const shoal::TaskError& e) {
    std::cout << "as expected, " << e.function() << " threw " << e.exception_type() << ": "
              << e.message() << "\n";
  }
  return 0;
}  // ~Cluster shuts shoal down
