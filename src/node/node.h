// A shoal node: owns the loop, the RPC server, the peer pool and gossip, and
// runs them on the calling thread until SIGTERM/SIGINT (leaves gracefully) or
// stop(). Construct, then call run() once.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "node/options.h"
#include "shoal/status.h"

namespace shoal::node {

class Node {
 public:
  explicit Node(NodeOptions options);
  ~Node();
  Node(const Node&) = delete;
  Node& operator=(const Node&) = delete;

  // Prepares the data dir, binds the port, joins the cluster (if --join) and
  // serves until told to stop. Errors: an unwritable data dir, a port in
  // use, a token that does not match the seeds', no seed reachable.
  Status run();

  struct State;  // defined in node.cc (public only for its helpers there)

 private:
  Status serve();
  // Authenticates to the seeds over RPC until one answers (so a wrong token is
  // reported at once, by name) or kJoinTimeoutMs passes.
  Status check_seeds(const std::vector<std::string>& seeds);
  void start_timers_and_signals();
  void begin_leave(int signum);
  Status start_tasks();
  void refresh_load();
  void shutdown();

  NodeOptions options_;
  std::unique_ptr<State> state_;
};

}  // namespace shoal::node
