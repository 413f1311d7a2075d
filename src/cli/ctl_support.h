// Shared plumbing of the shoalctl commands (commands.cc, kv_commands.cc).
#pragma once

#include <kj/async.h>
#include <kj/timer.h>

#include <functional>
#include <string>
#include <string_view>

#include "cli/commands.h"
#include "rpc.capnp.h"
#include "shoal/status.h"

namespace shoal::cli {

// `s` as a JSON string literal (quotes included); control bytes escaped,
// UTF-8 passed through.
std::string json_escape(std::string_view s);
// 1536 -> "1.5 KiB".
std::string human_bytes(uint64_t bytes);

// Connects to the node `options` names (or the local one), authenticates,
// runs `fn` with its Node capability and waits for the result. Without
// `no_timeout`, gives up after options.timeout_ms.
// The timer of with_node's loop; only inside with_node's callback (to bound
// an optional sub-request so one slow answer does not fail the command).
kj::Timer& ctl_timer();

Status with_node(const CtlOptions& options, const std::function<kj::Promise<Status>(rpc::Node::Client&)>& fn,
                 bool no_timeout);

// A command's exit status for `result`: kExitOk, or kExitRuntimeError after
// printing its message.
int exit_status(const Status& result);

}  // namespace shoal::cli
