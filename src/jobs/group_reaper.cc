#include "jobs/group_reaper.h"

#include <fcntl.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdint>
#include <cstring>
#include <string>

#include "base/log.h"

namespace shoal::jobs {

namespace {

// Linux never hands out a pid at or above PID_MAX_LIMIT (2^22 on 64-bit).
constexpr int32_t kPidLimit = 1 << 22;
constexpr int kHelperFd = 3;

// One bit per process group; only the helper touches it (copy-on-write
// zero pages in the node).
uint64_t g_groups[kPidLimit / 64];

// The helper. Only async-signal-safe system calls from here on: another
// thread of the node may have held a lock (the allocator's, the logger's)
// at the fork.
[[noreturn]] void helper_main(int read_fd, int fd_limit) {
  for (int sig = 1; sig < NSIG; ++sig) {
    struct sigaction action;
    std::memset(&action, 0, sizeof action);
    // The node's handlers write to the node's own wakeup pipes; a terminal's
    // Ctrl-C or a stray TERM must not end the helper before the node.
    bool ignore = sig == SIGINT || sig == SIGTERM || sig == SIGHUP || sig == SIGQUIT || sig == SIGPIPE ||
                  sig == SIGUSR1 || sig == SIGUSR2;
    action.sa_handler = ignore ? SIG_IGN : SIG_DFL;
    (void)::sigaction(sig, &action, nullptr);  // fails for KILL, STOP and libc's own: fine
  }
  sigset_t none;
  sigemptyset(&none);
  (void)::sigprocmask(SIG_SETMASK, &none, nullptr);
  (void)::prctl(PR_SET_NAME, "shoal-reaper", 0, 0, 0);

  // Keep nothing of the node's but the pipe: no listening socket, no other
  // node's pipe (in-process clusters), no terminal or harness pipe.
  if (read_fd != kHelperFd) {
    if (::dup2(read_fd, kHelperFd) < 0) ::_exit(1);
  }
  int null = ::open("/dev/null", O_RDWR);
  if (null >= 0) {
    for (int i = 0; i < 3; ++i) (void)::dup2(null, i);
  }
#ifdef SYS_close_range
  if (::syscall(SYS_close_range, kHelperFd + 1, ~0u, 0) != 0)
#endif
  {
    for (int fd = kHelperFd + 1; fd < fd_limit; ++fd) (void)::close(fd);
  }

  int32_t messages[1024];
  size_t carried = 0;  // bytes of a message split across reads (never happens with 4-byte writes; cheap to handle)
  for (;;) {
    ssize_t n = ::read(kHelperFd, reinterpret_cast<char*>(messages) + carried, sizeof messages - carried);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;  // the node is gone
    size_t bytes = carried + static_cast<size_t>(n);
    size_t count = bytes / sizeof(int32_t);
    for (size_t i = 0; i < count; ++i) {
      int32_t m = messages[i];
      int32_t pgid = m < 0 ? -m : m;
      if (pgid <= 0 || pgid >= kPidLimit) continue;
      uint64_t bit = uint64_t{1} << (pgid % 64);
      if (m > 0) {
        g_groups[pgid / 64] |= bit;
      } else {
        g_groups[pgid / 64] &= ~bit;
      }
    }
    carried = bytes % sizeof(int32_t);
    if (carried > 0) std::memmove(messages, reinterpret_cast<char*>(messages) + count * sizeof(int32_t), carried);
  }
  for (int32_t word = 0; word < kPidLimit / 64; ++word) {
    uint64_t w = g_groups[word];
    while (w != 0) {
      int b = __builtin_ctzll(w);
      w &= w - 1;
      (void)::kill(-(word * 64 + b), SIGKILL);
    }
  }
  ::_exit(0);
}

}  // namespace

Result<std::shared_ptr<GroupReaper>> GroupReaper::start() {
  int fds[2];
  if (::pipe2(fds, O_CLOEXEC) != 0) {
    return Status::io_error(std::string("job reaper: pipe: ") + std::strerror(errno));
  }
  struct rlimit limit {};
  int fd_limit = ::getrlimit(RLIMIT_NOFILE, &limit) == 0 && limit.rlim_cur != RLIM_INFINITY
                     ? static_cast<int>(std::min<rlim_t>(limit.rlim_cur, 1 << 20))
                     : 1 << 16;
  pid_t pid = ::fork();
  if (pid < 0) {
    int e = errno;
    ::close(fds[0]);
    ::close(fds[1]);
    return Status::io_error(std::string("job reaper: fork: ") + std::strerror(e));
  }
  if (pid == 0) helper_main(fds[0], fd_limit);
  ::close(fds[0]);
  // Never block the loop: a full pipe (the helper stopped reading) costs a
  // warning, not a stalled node.
  (void)::fcntl(fds[1], F_SETFL, ::fcntl(fds[1], F_GETFL) | O_NONBLOCK);
  return std::shared_ptr<GroupReaper>(new GroupReaper(fds[1], pid));
}

GroupReaper::~GroupReaper() {
  ::close(fd_);
  int status = 0;
  while (::waitpid(pid_, &status, 0) < 0 && errno == EINTR) {
  }
}

void GroupReaper::watch(pid_t pgid) {
  if (pgid > 0 && pgid < kPidLimit) send(static_cast<int32_t>(pgid));
}

void GroupReaper::forget(pid_t pgid) {
  if (pgid > 0 && pgid < kPidLimit) send(-static_cast<int32_t>(pgid));
}

void GroupReaper::send(int32_t message) {
  for (;;) {
    ssize_t n = ::write(fd_, &message, sizeof message);
    if (n == static_cast<ssize_t>(sizeof message)) return;
    if (n < 0 && errno == EINTR) continue;
    SHOAL_LOG_WARN("jobs: cannot tell the reaper (pid {}) about process group {}: {}", pid_,
                   message < 0 ? -message : message, n < 0 ? std::strerror(errno) : "short write");
    return;
  }
}

}  // namespace shoal::jobs
