// Starting and stopping shoal inside a program.
//
//   int main(int argc, char** argv) {
//     auto cluster = shoal::init(argc, argv);   // or shoal::init(shoal::local(4))
//     if (!cluster.ok()) { std::cerr << cluster.status().to_string() << "\n"; return 1; }
//     ... shoal::task(f).remote(...) ...
//   }                                          // ~Cluster: shoal::shutdown()
//
// Modes:
//   local    every task and actor runs in this process, on an executor pool
//            with the given CPUs; for tests, examples and one machine.
//   connect  a driver attached to a running cluster (`--address HOST:PORT`,
//            or SHOAL_ADDRESS): tasks and actors go to its nodes; this
//            process owns their results.
//   node     the program is a node (`myapp start --join HOST:PORT`): the same
//            CLI as `shoal`, plus its registered functions, so one binary
//            serves every machine. init(argc, argv) then runs the node until
//            it stops and exits the process with its status (it never
//            returns), like a Ray worker binary.
// The distributed runtime implements the same interface as the local one
// (src/task/runtime.h) behind this same API: code written against local mode
// runs unchanged.
//
// Threading: call init() and shutdown() from one thread (usually main), not
// from inside tasks. Only one shoal instance exists per process at a time;
// init() again after shutdown() starts a fresh one.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <utility>

#include "shoal/status.h"

namespace shoal {

struct Options {
  enum class Mode { kLocal, kConnect, kNode };

  Mode mode = Mode::kLocal;
  // The node's resources. cpus 0: the machine's hardware threads; memory 0:
  // its physical memory.
  double cpus = 0;
  double gpus = 0;
  uint64_t memory_bytes = 0;
  std::map<std::string, double> resources;    // custom resources
  std::map<std::string, std::string> labels;  // what label selectors match
  std::string address;                        // kConnect: "HOST:PORT" of a node
  // kConnect: the cluster's token file. Empty: $SHOAL_TOKEN_FILE, else that of
  // a node running on this machine, else <default data dir>/token.
  std::string token_file;
  std::string name_space = "default";         // of named actors
  // Threads of the executor (CPU tasks plus those blocked in get()).
  // 0: max(64, 4 x cpus). Never fewer than ceil(cpus).
  int executor_threads_max = 0;
  // Bytes of object values kept in memory at once (put() and results with
  // live refs). Large values (over 100 KiB) beyond it spill to a private
  // temporary directory and are read back on get(); put() throws and tasks
  // fail with ObjectStoreFull (kResourceExhausted) only when no room can be
  // made (a value bigger than this, small values filling it, everything in
  // use, or the disk refusing). 0: 30% of physical memory (Ray's default
  // object store size).
  uint64_t object_store_bytes_max = 0;
  uint64_t seed = 0;  // ids and the node id; 0: from the OS
};

// Local mode with `cpus` CPUs (0: the machine's hardware threads).
Options local(double cpus = 0);
// A driver for the cluster a node at `address` belongs to.
Options connect(std::string address);

// Keeps shoal running; its destructor calls shutdown() (if the shoal it
// started is still the running one). Move-only.
class Cluster {
 public:
  Cluster(Cluster&& other) noexcept;
  Cluster& operator=(Cluster&& other) noexcept;
  Cluster(const Cluster&) = delete;
  Cluster& operator=(const Cluster&) = delete;
  ~Cluster();

  // This process's node id (32 hex digits).
  const std::string& node_id() const { return node_id_; }

 private:
  friend Result<Cluster> init(Options options);
  Cluster(std::string node_id, uint64_t generation)
      : node_id_(std::move(node_id)), generation_(generation), active_(true) {}

  std::string node_id_;
  uint64_t generation_ = 0;  // which init() this is: it shuts down that one only
  bool active_ = false;
};

// Starts shoal. Errors: kInvalidArgument for bad options (negative CPUs,
// duplicate registered names), kAlreadyExists when already initialized,
// kUnavailable when connect mode cannot reach the cluster; node mode needs
// init(argc, argv) (kInvalidArgument here).
Result<Cluster> init(Options options = local());

// Options from the command line, then init(). Recognized (anything else is
// left to the program): `start ...` as the first argument (node mode: runs
// the node and exits, see above), `--address HOST:PORT` /
// `--address=HOST:PORT` (connect; also the SHOAL_ADDRESS environment
// variable), `--token-file PATH`, `--cpus N`, `--namespace NAME`.
// Without them: local mode on every hardware thread.
Result<Cluster> init(int argc, char** argv);
// The Options init(argc, argv) would use; kInvalidArgument names a bad flag.
Result<Options> options_from_args(int argc, char** argv);

// Stops every task and actor and frees every object: waits for running
// tasks and actor methods to return (they see cancel_requested()), fails
// what is queued. Does nothing when not initialized.
void shutdown();
bool is_initialized();
// The id of the node this code runs on (32 hex digits): inside a task, the
// node running it; in a driver, the driver's own id. Empty when shoal is not
// initialized.
std::string current_node_id();

}  // namespace shoal
