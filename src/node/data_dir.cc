#include "node/data_dir.h"

#include <dirent.h>
#include <fcntl.h>
#include <signal.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <sstream>
#include <vector>

#include "base/crypto.h"

namespace shoal::node {
namespace {

std::string errno_text() { return std::strerror(errno); }

Status mkdirs(const std::string& dir, mode_t mode) {
  if (dir.empty()) return Status::invalid_argument("empty directory path");
  std::string partial;
  std::stringstream parts(dir);
  std::string part;
  if (dir[0] == '/') partial = "/";
  while (std::getline(parts, part, '/')) {
    if (part.empty()) continue;
    partial += part;
    if (::mkdir(partial.c_str(), mode) != 0 && errno != EEXIST) {
      return Status::io_error("cannot create directory " + partial + ": " + errno_text());
    }
    partial += "/";
  }
  struct stat st{};
  if (::stat(dir.c_str(), &st) != 0 || !S_ISDIR(st.st_mode)) {
    return Status::io_error(dir + " is not a directory");
  }
  return {};
}

std::string trim(std::string s) {
  auto not_space = [](unsigned char c) { return !std::isspace(c); };
  s.erase(s.begin(), std::find_if(s.begin(), s.end(), not_space));
  s.erase(std::find_if(s.rbegin(), s.rend(), not_space).base(), s.end());
  return s;
}

Result<std::string> read_small_file(const std::string& path, size_t max_bytes) {
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return Status::not_found("cannot open " + path + ": " + errno_text());
  std::string out(max_bytes + 1, '\0');
  ssize_t n = ::read(fd, out.data(), out.size());
  int saved = errno;
  ::close(fd);
  if (n < 0) return Status::io_error("cannot read " + path + ": " + std::strerror(saved));
  if (static_cast<size_t>(n) > max_bytes) {
    return Status::invalid_argument(path + " is larger than " + std::to_string(max_bytes) + " bytes");
  }
  out.resize(static_cast<size_t>(n));
  return out;
}

// Writes via a temporary file and rename so a crash never leaves half a file.
Status write_file_atomic(const std::string& path, const std::string& content, mode_t mode) {
  std::string tmp = path + ".tmp." + std::to_string(::getpid());
  int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, mode);
  if (fd < 0) return Status::io_error("cannot write " + tmp + ": " + errno_text());
  ssize_t n = ::write(fd, content.data(), content.size());
  bool ok = n == static_cast<ssize_t>(content.size()) && ::fsync(fd) == 0;
  int saved = errno;
  ::close(fd);
  if (!ok || ::rename(tmp.c_str(), path.c_str()) != 0) {
    ::unlink(tmp.c_str());
    return Status::io_error("cannot write " + path + ": " + std::strerror(saved ? saved : errno));
  }
  return {};
}

}  // namespace

Status prepare_data_dir(const std::string& dir) {
  SHOAL_RETURN_IF_ERROR(mkdirs(dir, 0700));
  std::string probe = dir + "/.write-test";
  int fd = ::open(probe.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  if (fd < 0) {
    return Status::io_error("data directory " + dir + " is not writable: " + errno_text());
  }
  ::close(fd);
  ::unlink(probe.c_str());
  return {};
}

Result<int> lock_data_dir(const std::string& dir) {
  std::string path = dir + "/LOCK";
  int fd = ::open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0600);
  if (fd < 0) return Status::io_error("cannot open " + path + ": " + errno_text());
  if (::flock(fd, LOCK_EX | LOCK_NB) != 0) {
    int saved = errno;
    char pid[32] = {};
    ssize_t n = ::pread(fd, pid, sizeof(pid) - 1, 0);
    ::close(fd);
    if (saved == EWOULDBLOCK) {
      std::string holder = n > 0 ? " (pid " + trim(std::string(pid, static_cast<size_t>(n))) + ")" : "";
      return Status::unavailable("data directory " + dir + " is in use by another shoal process" + holder);
    }
    return Status::io_error("cannot lock " + path + ": " + std::strerror(saved));
  }
  std::string pid = std::to_string(::getpid()) + "\n";
  if (::ftruncate(fd, 0) != 0 || ::pwrite(fd, pid.data(), pid.size(), 0) != static_cast<ssize_t>(pid.size())) {
    int saved = errno;
    ::close(fd);
    return Status::io_error("cannot write " + path + ": " + std::strerror(saved));
  }
  return fd;
}

bool is_valid_node_id(const std::string& id) {
  return id.size() == kNodeIdBytes * 2 &&
         std::all_of(id.begin(), id.end(), [](char c) { return std::isxdigit(static_cast<unsigned char>(c)) && !std::isupper(static_cast<unsigned char>(c)); });
}

Result<std::string> load_or_create_node_id(const std::string& dir) {
  std::string path = dir + "/node_id";
  auto existing = read_small_file(path, 256);
  if (existing.ok()) {
    std::string id = trim(*existing);
    if (!is_valid_node_id(id)) {
      return Status::invalid_argument(path + " does not hold a node id (32 lowercase hex characters)");
    }
    return id;
  }
  if (existing.status().code() != Status::Code::kNotFound) return existing.status();
  uint8_t raw[kNodeIdBytes];
  secure_random(raw);
  std::string id = to_hex(raw);
  SHOAL_RETURN_IF_ERROR(write_file_atomic(path, id + "\n", 0600));
  return id;
}

Result<std::string> read_token_file(const std::string& path) {
  auto content = read_small_file(path, 4096);
  if (!content.ok()) return content.status();
  std::string hex = trim(*content);
  if (hex.size() != kTokenBytes * 2) {
    return Status::invalid_argument("token file " + path + " must hold " +
                                    std::to_string(kTokenBytes * 2) + " hex characters, found " +
                                    std::to_string(hex.size()) + " characters");
  }
  auto secret = from_hex(hex);
  if (!secret.ok()) return Status::invalid_argument("token file " + path + ": " + secret.status().message());
  return secret;
}

Result<std::string> load_or_create_token(const std::string& path) {
  if (::access(path.c_str(), F_OK) == 0) return read_token_file(path);
  uint8_t raw[kTokenBytes];
  secure_random(raw);
  SHOAL_RETURN_IF_ERROR(write_file_atomic(path, to_hex(raw) + "\n", 0600));
  return std::string(reinterpret_cast<const char*>(raw), sizeof(raw));
}

Result<std::string> check_token_file_mode(const std::string& path) {
  struct stat st{};
  if (::stat(path.c_str(), &st) != 0) return Status::not_found("cannot stat " + path + ": " + errno_text());
  char mode[8];
  std::snprintf(mode, sizeof(mode), "%04o", static_cast<unsigned>(st.st_mode & 07777));
  if ((st.st_mode & (S_IROTH | S_IWOTH)) != 0) {
    return Status::invalid_argument("token file " + path + " is readable or writable by every user (mode " + mode +
                                    "): anyone on this machine could join the cluster; run: chmod 600 " + path);
  }
  if ((st.st_mode & (S_IRGRP | S_IWGRP)) != 0) {
    return "token file " + path + " is readable by its group (mode " + std::string(mode) +
           "); every member of that group can join the cluster. Consider: chmod 600 " + path;
  }
  return std::string();
}

std::string default_data_dir() {
  if (const char* env = std::getenv("SHOAL_DATA_DIR"); env && *env) return env;
  if (::geteuid() == 0) return "/var/lib/shoal";
  if (const char* xdg = std::getenv("XDG_DATA_HOME"); xdg && *xdg) return std::string(xdg) + "/shoal";
  const char* home = std::getenv("HOME");
  return std::string(home && *home ? home : "/tmp") + "/.local/share/shoal";
}

std::string runtime_dir() {
  if (const char* env = std::getenv("SHOAL_RUNTIME_DIR"); env && *env) return env;
  return "/tmp/shoal-" + std::to_string(::geteuid());
}

Status write_discovery_file(uint16_t port, const LocalNode& node) {
  std::string dir = runtime_dir();
  SHOAL_RETURN_IF_ERROR(mkdirs(dir, 0700));
  std::string content = "address=" + node.address + "\ntoken_file=" + node.token_file +
                        "\ndata_dir=" + node.data_dir + "\npid=" + std::to_string(node.pid) + "\n";
  if (!node.tls_cert.empty()) {
    content += "tls_cert=" + node.tls_cert + "\ntls_key=" + node.tls_key + "\ntls_ca=" + node.tls_ca +
               "\ntls_server_name=" + node.tls_server_name + "\n";
  }
  return write_file_atomic(dir + "/node-" + std::to_string(port), content, 0600);
}

void remove_discovery_file(uint16_t port) {
  std::string path = runtime_dir() + "/node-" + std::to_string(port);
  ::unlink(path.c_str());
}

namespace {

void find_local_nodes_in(const std::string& dir, std::vector<LocalNode>& out) {
  DIR* d = ::opendir(dir.c_str());
  if (d == nullptr) return;
  std::vector<std::string> names;
  while (dirent* e = ::readdir(d)) {
    std::string name = e->d_name;
    if (name.rfind("node-", 0) == 0 && name.find(".tmp.") == std::string::npos) names.push_back(name);
  }
  ::closedir(d);
  std::sort(names.begin(), names.end());
  for (const auto& name : names) {
    auto content = read_small_file(dir + "/" + name, 8192);
    if (!content.ok()) continue;
    LocalNode node;
    std::stringstream lines(*content);
    std::string line;
    while (std::getline(lines, line)) {
      auto eq = line.find('=');
      if (eq == std::string::npos) continue;
      std::string key = line.substr(0, eq), value = line.substr(eq + 1);
      if (key == "address") node.address = value;
      if (key == "token_file") node.token_file = value;
      if (key == "data_dir") node.data_dir = value;
      if (key == "pid") node.pid = std::atoi(value.c_str());
      if (key == "tls_cert") node.tls_cert = value;
      if (key == "tls_key") node.tls_key = value;
      if (key == "tls_ca") node.tls_ca = value;
      if (key == "tls_server_name") node.tls_server_name = value;
    }
    if (node.pid <= 0 || node.address.empty()) continue;
    if (::kill(node.pid, 0) != 0 && errno == ESRCH) continue;  // stale
    out.push_back(node);
  }
}

}  // namespace

std::vector<LocalNode> find_local_nodes() {
  std::vector<LocalNode> out;
  std::string dir = runtime_dir();
  find_local_nodes_in(dir, out);
  if (dir != kServiceRuntimeDir && std::getenv("SHOAL_RUNTIME_DIR") == nullptr) {
    find_local_nodes_in(kServiceRuntimeDir, out);
  }
  return out;
}

}  // namespace shoal::node
