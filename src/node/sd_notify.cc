#include "node/sd_notify.h"

#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <string>

namespace shoal::node {

Status sd_notify(std::string_view state) {
  const char* socket_path = std::getenv("NOTIFY_SOCKET");
  if (socket_path == nullptr || socket_path[0] == '\0') return {};
  std::string path = socket_path;
  sockaddr_un address{};
  address.sun_family = AF_UNIX;
  // '@' names a socket in the abstract namespace (leading NUL byte).
  if ((path[0] != '/' && path[0] != '@') || path.size() >= sizeof(address.sun_path)) {
    return Status::invalid_argument("NOTIFY_SOCKET=" + path + " is not a socket path");
  }
  std::memcpy(address.sun_path, path.data(), path.size());
  if (path[0] == '@') address.sun_path[0] = '\0';
  socklen_t length = static_cast<socklen_t>(offsetof(sockaddr_un, sun_path) + path.size());

  int fd = ::socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  if (fd < 0) {
    return Status::io_error(std::string("cannot create a socket for sd_notify: ") +
                            std::strerror(errno));
  }
  ssize_t sent = ::sendto(fd, state.data(), state.size(), MSG_NOSIGNAL,
                          reinterpret_cast<const sockaddr*>(&address), length);
  int saved = errno;
  ::close(fd);
  if (sent != static_cast<ssize_t>(state.size())) {
    return Status::io_error("cannot notify systemd at " + path + ": " + std::strerror(saved));
  }
  return {};
}

}  // namespace shoal::node
