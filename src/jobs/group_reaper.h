// GroupReaper: a job's whole process group dies with the node that runs it,
// however the node dies (kill -9 included).
//
// start() forks a small helper process ("shoal-reaper") that holds the read
// end of a pipe; the node keeps the write end (close-on-exec, so no job
// inherits it). The node tells the helper each job's process group when it
// starts and when it is gone. When the node exits or is killed, the kernel
// closes the write end; the helper reads end-of-file, sends SIGKILL to every
// group still registered and exits.
//
// Unlike a parent-death signal on the job's first process, this also reaches
// what the job started in the background, and it costs one 4-byte write per
// job instead of an exec of a wrapper. A job whose node dies between its
// fork and watch() (a few microseconds) is not reached; the node that comes
// back finds it by its environment (JobService::cleanup_stale).
//
// Loop thread; the helper touches no memory allocator (it is forked from a
// process with other threads) and only makes system calls.
#pragma once

#include <sys/types.h>

#include <memory>

#include "shoal/status.h"

namespace shoal::jobs {

class GroupReaper {
 public:
  static Result<std::shared_ptr<GroupReaper>> start();
  // Closes the pipe (the helper kills the groups still registered) and
  // waits for the helper to exit.
  ~GroupReaper();
  GroupReaper(const GroupReaper&) = delete;
  GroupReaper& operator=(const GroupReaper&) = delete;

  // Register / unregister process group `pgid` (> 0). A group must be
  // forgotten before its id can be reused: after its processes were killed
  // and reaped.
  void watch(pid_t pgid);
  void forget(pid_t pgid);

  pid_t helper_pid() const { return pid_; }

 private:
  GroupReaper(int fd, pid_t pid) : fd_(fd), pid_(pid) {}
  void send(int32_t message);

  int fd_;
  pid_t pid_;
};

}  // namespace shoal::jobs
