#include "jobs/job_process.h"

#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <string>

namespace shoal::jobs {

namespace {

std::string errno_text(const char* what, int e) { return std::string(what) + ": " + std::strerror(e); }

// A pipe whose ends are both above stderr, so that dup2 onto 1 or 2 in the
// child never meets the same descriptor (a node started with stdout closed).
Status make_pipe(int fds[2]) {
  if (::pipe2(fds, O_CLOEXEC) != 0) return Status::io_error(errno_text("pipe", errno));
  for (int i = 0; i < 2; ++i) {
    if (fds[i] > 2) continue;
    int moved = ::fcntl(fds[i], F_DUPFD_CLOEXEC, 3);
    int e = errno;
    ::close(fds[i]);
    fds[i] = moved;
    if (moved < 0) {
      if (fds[1 - i] >= 0) ::close(fds[1 - i]);
      return Status::io_error(errno_text("fcntl", e));
    }
  }
  return {};
}

}  // namespace

Result<ChildProcess> spawn_job_process(const char* program, char* const argv[], char* const envp[], const char* cwd) {
  int out[2] = {-1, -1};
  int err[2] = {-1, -1};
  SHOAL_RETURN_IF_ERROR(make_pipe(out));
  Status second = make_pipe(err);
  if (!second.ok()) {
    ::close(out[0]);
    ::close(out[1]);
    return second;
  }
  auto close_all = [&] {
    for (int fd : {out[0], out[1], err[0], err[1]}) ::close(fd);
  };

  posix_spawn_file_actions_t actions;
  posix_spawnattr_t attr;
  ::posix_spawn_file_actions_init(&actions);
  ::posix_spawnattr_init(&attr);
  int rc = ::posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0);
  if (rc == 0) rc = ::posix_spawn_file_actions_adddup2(&actions, out[1], 1);
  if (rc == 0) rc = ::posix_spawn_file_actions_adddup2(&actions, err[1], 2);
  if (rc == 0) rc = ::posix_spawn_file_actions_addchdir_np(&actions, cwd);
  sigset_t all;
  sigset_t none;
  sigfillset(&all);
  sigemptyset(&none);
  if (rc == 0) rc = ::posix_spawnattr_setsigdefault(&attr, &all);
  if (rc == 0) rc = ::posix_spawnattr_setsigmask(&attr, &none);
  if (rc == 0) {
    rc = ::posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETSID | POSIX_SPAWN_SETSIGDEF | POSIX_SPAWN_SETSIGMASK);
  }
  pid_t pid = 0;
  if (rc == 0) rc = ::posix_spawn(&pid, program, &actions, &attr, argv, envp);
  ::posix_spawn_file_actions_destroy(&actions);
  ::posix_spawnattr_destroy(&attr);
  if (rc != 0) {
    close_all();
    return Status::io_error(std::strerror(rc));
  }
  ::close(out[1]);
  ::close(err[1]);
  ChildProcess child;
  child.pid = pid;
  child.output[0] = out[0];
  child.output[1] = err[0];
  // The child cannot be reaped by anyone but us, so its pid stays its own
  // until try_reap(): no race with pid reuse here. (pidfds are close-on-exec.)
  child.pidfd = static_cast<int>(::syscall(SYS_pidfd_open, pid, 0));
  if (child.pidfd < 0) {
    int e = errno;
    ::kill(-pid, SIGKILL);
    ::waitpid(pid, nullptr, 0);
    ::close(out[0]);
    ::close(err[0]);
    return Status::io_error(errno_text("pidfd_open (Linux 5.3 or later is needed)", e));
  }
  return child;
}

std::optional<ExitStatus> try_reap(pid_t pid) {
  siginfo_t info;
  std::memset(&info, 0, sizeof info);
  for (;;) {
    if (::waitid(P_PID, static_cast<id_t>(pid), &info, WEXITED | WNOHANG) == 0) break;
    if (errno == EINTR) continue;
    return ExitStatus{-1, 0};  // ECHILD: already reaped; nothing more to learn
  }
  if (info.si_pid != pid) return std::nullopt;
  ExitStatus status;
  if (info.si_code == CLD_EXITED) {
    status.exit_code = info.si_status;
  } else {
    status.term_signal = info.si_status;
  }
  return status;
}

}  // namespace shoal::jobs
