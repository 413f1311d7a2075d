// Readiness and status for systemd services with Type=notify (sd_notify(3)
// protocol, without linking libsystemd): a datagram to $NOTIFY_SOCKET.
//
// The node sends READY=1 once it serves and has joined (bootstrap: once it
// listens; join: once it sees another member alive), STOPPING=1 when it
// starts to leave, and STATUS=... lines that `systemctl status` shows.
//
// Threading: any thread. Outside systemd ($NOTIFY_SOCKET unset) every call
// does nothing and succeeds.
#pragma once

#include <string_view>

#include "shoal/status.h"

namespace shoal::node {

// Sends `state` (newline-separated VAR=VALUE assignments, e.g.
// "READY=1\nSTATUS=joined") to the service manager. Errors name the socket.
Status sd_notify(std::string_view state);

}  // namespace shoal::node
