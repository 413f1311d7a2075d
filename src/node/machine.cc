#include "node/machine.h"

#include <arpa/inet.h>
#include <netdb.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <fstream>

#include "base/cpus.h"

namespace shoal::node {

uint32_t detect_cpus() { return usable_cpus(); }

uint64_t detect_memory_bytes() {
  long pages = sysconf(_SC_PHYS_PAGES);
  long page_size = sysconf(_SC_PAGE_SIZE);
  uint64_t total = pages > 0 && page_size > 0 ? static_cast<uint64_t>(pages) * page_size : 0;
  std::ifstream cgroup("/sys/fs/cgroup/memory.max");
  std::string limit;
  if (cgroup >> limit && limit != "max") {
    char* end = nullptr;
    unsigned long long v = std::strtoull(limit.c_str(), &end, 10);
    if (end && *end == '\0' && v > 0 && (total == 0 || v < total)) total = v;
  }
  return total;
}

uint32_t detect_gpus() {
  uint32_t n = 0;
  std::error_code ec;
  for (const auto& entry : std::filesystem::directory_iterator("/dev", ec)) {
    std::string name = entry.path().filename().string();
    if (name.size() > 6 && name.rfind("nvidia", 0) == 0 &&
        std::all_of(name.begin() + 6, name.end(), [](char c) { return std::isdigit(static_cast<unsigned char>(c)); })) {
      n++;
    }
  }
  return n;
}

Result<uint64_t> parse_bytes(const std::string& text) {
  if (text.empty()) return Status::invalid_argument("empty size");
  char* end = nullptr;
  double value = std::strtod(text.c_str(), &end);
  if (end == text.c_str() || !std::isfinite(value) || value < 0) {
    return Status::invalid_argument("'" + text + "' is not a size (examples: 1073741824, 512MiB, 4G)");
  }
  std::string unit(end);
  for (auto& c : unit) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
  double mult = 1;
  if (unit.empty() || unit == "B") {
    mult = 1;
  } else if (unit == "K" || unit == "KB" || unit == "KIB") {
    mult = 1024.0;
  } else if (unit == "M" || unit == "MB" || unit == "MIB") {
    mult = 1024.0 * 1024;
  } else if (unit == "G" || unit == "GB" || unit == "GIB") {
    mult = 1024.0 * 1024 * 1024;
  } else if (unit == "T" || unit == "TB" || unit == "TIB") {
    mult = 1024.0 * 1024 * 1024 * 1024;
  } else {
    return Status::invalid_argument("unknown size unit '" + std::string(end) + "' in '" + text +
                                    "' (use K, M, G or T)");
  }
  double bytes = value * mult;
  if (bytes > 1.8e19) return Status::invalid_argument("size '" + text + "' is too large");
  return static_cast<uint64_t>(bytes);
}

namespace {
bool valid_key(const std::string& key) {
  if (key.empty() || key.size() > 64) return false;
  return std::all_of(key.begin(), key.end(), [](char c) {
    return std::isalnum(static_cast<unsigned char>(c)) || c == '_' || c == '-' || c == '.' || c == '/';
  });
}
}  // namespace

Result<std::pair<std::string, double>> parse_resource(const std::string& text) {
  auto eq = text.find('=');
  if (eq == std::string::npos) return Status::invalid_argument("resource '" + text + "' must be NAME=QTY");
  std::string name = text.substr(0, eq);
  if (!valid_key(name)) {
    return Status::invalid_argument("resource name '" + name + "' must be 1-64 characters of [A-Za-z0-9_.-/]");
  }
  std::string qty = text.substr(eq + 1);
  char* end = nullptr;
  double v = std::strtod(qty.c_str(), &end);
  if (qty.empty() || *end != '\0' || !std::isfinite(v) || v < 0) {
    return Status::invalid_argument("resource quantity '" + qty + "' for " + name +
                                    " must be a non-negative number");
  }
  return std::make_pair(name, v);
}

Result<std::pair<std::string, std::string>> parse_label(const std::string& text) {
  auto eq = text.find('=');
  if (eq == std::string::npos) return Status::invalid_argument("label '" + text + "' must be KEY=VALUE");
  std::string key = text.substr(0, eq), value = text.substr(eq + 1);
  if (!valid_key(key)) {
    return Status::invalid_argument("label key '" + key + "' must be 1-64 characters of [A-Za-z0-9_.-/]");
  }
  if (value.size() > 256) return Status::invalid_argument("label value for " + key + " is longer than 256 bytes");
  return std::make_pair(key, value);
}

Result<std::pair<std::string, uint16_t>> parse_host_port(const std::string& text,
                                                          uint16_t default_port) {
  std::string host, port_text;
  if (!text.empty() && text[0] == '[') {
    auto close = text.find(']');
    if (close == std::string::npos) return Status::invalid_argument("address '" + text + "' has no closing ']'");
    host = text.substr(1, close - 1);
    if (close + 1 < text.size()) {
      if (text[close + 1] != ':') return Status::invalid_argument("address '" + text + "' must be [HOST]:PORT");
      port_text = text.substr(close + 2);
    }
  } else {
    auto colon = text.rfind(':');
    if (colon != std::string::npos && text.find(':') == colon) {
      host = text.substr(0, colon);
      port_text = text.substr(colon + 1);
    } else {
      host = text;
    }
  }
  if (host.empty()) return Status::invalid_argument("address '" + text + "' has no host");
  uint16_t port = default_port;
  if (!port_text.empty() || (text.size() && text.back() == ':')) {
    char* end = nullptr;
    long p = std::strtol(port_text.c_str(), &end, 10);
    if (port_text.empty() || *end != '\0' || p < 1 || p > 65535) {
      return Status::invalid_argument("port '" + port_text + "' in '" + text + "' must be 1-65535");
    }
    port = static_cast<uint16_t>(p);
  }
  return std::make_pair(host, port);
}

Result<std::string> resolve_numeric(const std::string& host) {
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  addrinfo* result = nullptr;
  int rc = ::getaddrinfo(host.c_str(), nullptr, &hints, &result);
  if (rc != 0) return Status::invalid_argument("cannot resolve '" + host + "': " + ::gai_strerror(rc));
  std::string v4, v6;
  for (addrinfo* ai = result; ai != nullptr; ai = ai->ai_next) {
    char buf[INET6_ADDRSTRLEN] = {};
    if (ai->ai_family == AF_INET && v4.empty()) {
      ::inet_ntop(AF_INET, &reinterpret_cast<sockaddr_in*>(ai->ai_addr)->sin_addr, buf, sizeof(buf));
      v4 = buf;
    } else if (ai->ai_family == AF_INET6 && v6.empty()) {
      ::inet_ntop(AF_INET6, &reinterpret_cast<sockaddr_in6*>(ai->ai_addr)->sin6_addr, buf, sizeof(buf));
      v6 = buf;
    }
  }
  ::freeaddrinfo(result);
  if (!v4.empty()) return v4;
  if (!v6.empty()) return v6;
  return Status::invalid_argument("'" + host + "' has no IPv4 or IPv6 address");
}

}  // namespace shoal::node
