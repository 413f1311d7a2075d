// Starting a job's process from a node of any size.
//
// libuv's uv_spawn forks: the kernel copies the page tables of the whole node
// (its object store included) for every job, and the node then takes a
// copy-on-write fault on each page it touches until the child has exec'd.
// That cost grows with the node's memory and, measured with 1,000 `true` jobs,
// was the largest single cost of starting a job (clone + teardown at exec +
// the faults: about a fifth of all CPU time). posix_spawn shares the node's
// memory with the child until its exec (vfork semantics), so none of that
// happens. The caller watches the child on its libuv loop through the pidfd
// (uv_poll) and reaps it with try_reap().
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <optional>

#include "shoal/status.h"

namespace shoal::jobs {

struct ChildProcess {
  pid_t pid = 0;
  int pidfd = -1;       // readable once the child exited (Linux 5.3 or later)
  int output[2] = {-1, -1};  // read ends of its stdout and stderr, close-on-exec
};

// Runs `program` (a path) with `argv` and `envp` in `cwd`: a new session and
// process group (its pgid is its pid), stdin from /dev/null, every signal at
// its default disposition and unblocked. An exec failure (no such file, not
// executable) is the returned error.
Result<ChildProcess> spawn_job_process(const char* program, char* const argv[], char* const envp[], const char* cwd);

struct ExitStatus {
  int64_t exit_code = 0;
  int term_signal = 0;  // the signal that ended it, or 0
};

// Reaps `pid` when it has exited; nullopt while it runs.
std::optional<ExitStatus> try_reap(pid_t pid);

}  // namespace shoal::jobs
