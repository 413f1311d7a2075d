// Shared plumbing of the shoalctl commands (commands.cc, kv_commands.cc).
#pragma once

#include <kj/async.h>

#include <functional>

#include "cli/commands.h"
#include "rpc.capnp.h"
#include "shoal/status.h"

namespace shoal::cli {

// Connects to the node `options` names (or the local one), authenticates,
// runs `fn` with its Node capability and waits for the result. Without
// `no_timeout`, gives up after options.timeout_ms.
Status with_node(const CtlOptions& options, const std::function<kj::Promise<Status>(rpc::Node::Client&)>& fn,
                 bool no_timeout);

}  // namespace shoal::cli
