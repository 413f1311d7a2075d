// The `objects` benchmark's program (tools/bench/objects_bench.py runs it):
// the same binary is each node (`objects_bench start --join ...`) and the
// driver (`objects_bench --address HOST:PORT --token-file F FIGURE MIB`),
// which prints one JSON object with the figure and its baseline measured in
// the same process:
//
//   put        put() of one MIB MiB value: GB/s, against memcpy of as many bytes
//   get        get() of that value in the process that put it, against memcpy
//   transfer   a MIB MiB result made on one node, read by a task on another
//              (pulled over the bulk channel): GB/s, the median of 3 after a
//              first (reported too), against one plain TCP copy of as many
//              bytes over loopback
//   broadcast  one MIB MiB put() value read by a task on every node (each
//              pulls it): seconds, and the bytes moved per second
#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <shoal/api.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <set>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "base/malloc_tuning.h"

std::string blob(int mib) {
  std::string out(static_cast<std::size_t>(mib) << 20, '\0');
  for (std::size_t i = 0; i < out.size(); i += 4096) out[i] = static_cast<char>(i >> 12);
  return out;
}
uint64_t blob_size(std::string b) { return b.size(); }
std::string where() { return shoal::current_node_id(); }

SHOAL_REMOTE(blob, blob_size, where);

namespace {

using Clock = std::chrono::steady_clock;

double seconds_since(Clock::time_point start) {
  return std::chrono::duration<double>(Clock::now() - start).count();
}

double gbps(std::size_t bytes, double seconds) { return static_cast<double>(bytes) / seconds / 1e9; }

double memcpy_gbps(std::size_t bytes) {
  std::string from(bytes, 'x');
  std::string to(bytes, '\0');
  std::memcpy(to.data(), from.data(), bytes);  // warm both buffers' pages
  auto start = Clock::now();
  std::memcpy(to.data(), from.data(), bytes);
  double s = seconds_since(start);
  if (to[bytes / 2] != 'x') throw std::runtime_error("memcpy baseline copied nothing");
  return gbps(bytes, s);
}

// One plain TCP stream over loopback: a thread writes `bytes`, this thread
// reads them into one buffer (what a pull does, without RPC).
double tcp_gbps(std::size_t bytes) {
  int listener = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof addr;
  if (listener < 0 || ::bind(listener, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0 ||
      ::listen(listener, 1) != 0 || ::getsockname(listener, reinterpret_cast<sockaddr*>(&addr), &len) != 0) {
    throw std::runtime_error("tcp baseline: cannot listen on loopback");
  }
  std::string out(bytes, 'y');
  std::string in(bytes, '\0');
  std::thread writer([&] {
    int fd = ::socket(AF_INET, SOCK_STREAM, 0);
    if (::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) return;
    std::size_t sent = 0;
    while (sent < bytes) {
      ssize_t n = ::write(fd, out.data() + sent, bytes - sent);
      if (n <= 0) break;
      sent += static_cast<std::size_t>(n);
    }
    ::close(fd);
  });
  int fd = ::accept(listener, nullptr, nullptr);
  auto start = Clock::now();
  std::size_t got = 0;
  while (got < bytes) {
    ssize_t n = ::read(fd, in.data() + got, bytes - got);
    if (n <= 0) break;
    got += static_cast<std::size_t>(n);
  }
  double s = seconds_since(start);
  writer.join();
  ::close(fd);
  ::close(listener);
  if (got != bytes) throw std::runtime_error("tcp baseline: short read");
  return gbps(bytes, s);
}

// The node ids of the cluster's members (one SPREAD task per node, until
// `nodes` distinct ones answered).
std::vector<std::string> node_ids(std::size_t nodes) {
  std::set<std::string> seen;
  for (int round = 0; round < 20 && seen.size() < nodes; ++round) {
    std::vector<shoal::ObjectRef<std::string>> refs;
    for (std::size_t i = 0; i < nodes * 2; ++i) refs.push_back(shoal::task(where).strategy(shoal::spread()).remote());
    for (const std::string& id : shoal::get(refs)) seen.insert(id);
  }
  if (seen.size() < nodes) throw std::runtime_error("fewer nodes answered than expected");
  return std::vector<std::string>(seen.begin(), seen.end());
}

int run(const std::string& figure, int mib, int nodes) {
  const std::size_t bytes = static_cast<std::size_t>(mib) << 20;
  if (figure == "put" || figure == "get") {
    // Steady state, like Ray's figure (puts in a loop): the median of 5
    // rounds of put, get, drop.
    std::string value = blob(mib);
    std::vector<double> put_s, get_s;
    for (int round = 0; round < 5; ++round) {
      auto start = Clock::now();
      auto ref = shoal::put(value);
      put_s.push_back(seconds_since(start));
      start = Clock::now();
      std::string back = ref.get();
      get_s.push_back(seconds_since(start));
      if (back.size() != bytes) throw std::runtime_error("get() returned another size");
    }
    std::sort(put_s.begin(), put_s.end());
    std::sort(get_s.begin(), get_s.end());
    double base = memcpy_gbps(bytes);
    std::printf("{\"single_client_put_gigabytes_per_s\":%.3f,\"single_client_get_gigabytes_per_s\":%.3f,"
                "\"first_put_gigabytes_per_s\":%.3f,\"baseline_memcpy_gigabytes_per_s\":%.3f,\"bytes\":%zu}\n",
                gbps(bytes, put_s[2]), gbps(bytes, get_s[2]), gbps(bytes, put_s.back()), base, bytes);
    return 0;
  }
  if (figure == "transfer") {
    std::vector<std::string> ids = node_ids(2);
    // Warm the connection between the two nodes with a small pull first.
    auto small = shoal::task(blob).strategy(shoal::node_affinity(ids[0])).remote(1);
    shoal::task(blob_size).strategy(shoal::node_affinity(ids[1])).remote(small).get();
    // Steady state, like the put figure and like the TCP baseline (which
    // reads into a buffer touched before): the median of 3 transfers after
    // the first, each of a new value. The first one, into memory the node
    // never touched, is reported on its own.
    std::vector<double> transfer_s;
    for (int round = 0; round < 4; ++round) {
      auto made = shoal::task(blob).strategy(shoal::node_affinity(ids[0])).remote(mib);
      shoal::wait(std::vector<shoal::ObjectRef<std::string>>{made}, 1, std::chrono::minutes(5));
      auto start = Clock::now();
      uint64_t size = shoal::task(blob_size).strategy(shoal::node_affinity(ids[1])).remote(made).get();
      transfer_s.push_back(seconds_since(start));
      if (size != bytes) throw std::runtime_error("the reading task saw another size");
    }
    double first = transfer_s.front();
    std::vector<double> steady(transfer_s.begin() + 1, transfer_s.end());
    std::sort(steady.begin(), steady.end());
    double base = tcp_gbps(bytes);
    std::printf("{\"transfer_gigabytes_per_s\":%.3f,\"transfer_seconds\":%.3f,\"first_transfer_gigabytes_per_s\":%.3f,"
                "\"baseline_tcp_gigabytes_per_s\":%.3f,\"bytes\":%zu}\n",
                gbps(bytes, steady[1]), steady[1], gbps(bytes, first), base, bytes);
    return 0;
  }
  if (figure == "broadcast") {
    std::vector<std::string> ids = node_ids(static_cast<std::size_t>(nodes));
    auto value = shoal::put(blob(mib));
    auto start = Clock::now();
    std::vector<shoal::ObjectRef<uint64_t>> reads;
    for (const std::string& id : ids) {
      reads.push_back(shoal::task(blob_size).strategy(shoal::node_affinity(id)).remote(value));
    }
    for (uint64_t size : shoal::get(reads)) {
      if (size != bytes) throw std::runtime_error("a reading task saw another size");
    }
    double s = seconds_since(start);
    double base = tcp_gbps(bytes);
    std::printf("{\"broadcast_seconds\":%.3f,\"broadcast_gigabytes_per_s\":%.3f,\"nodes\":%zu,"
                "\"baseline_tcp_gigabytes_per_s\":%.3f,\"bytes\":%zu}\n",
                s, gbps(bytes * ids.size(), s), ids.size(), base, bytes);
    return 0;
  }
  std::fprintf(stderr, "objects_bench: unknown figure %s\n", figure.c_str());
  return 2;
}

}  // namespace

int main(int argc, char** argv) {
  shoal::tune_allocator_for_large_values();
  auto cluster = shoal::init(argc, argv);  // `start ...` runs a node and never returns
  if (!cluster.ok()) {
    std::fprintf(stderr, "objects_bench: %s\n", cluster.status().to_string().c_str());
    return 1;
  }
  std::vector<std::string> positional;
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    if (a == "--address" || a == "--token-file") {
      ++i;
      continue;
    }
    positional.push_back(a);
  }
  if (positional.size() < 2) {
    std::fprintf(stderr, "usage: objects_bench --address HOST:PORT --token-file F FIGURE MIB [NODES]\n");
    return 2;
  }
  try {
    int nodes = positional.size() > 2 ? std::atoi(positional[2].c_str()) : 2;
    return run(positional[0], std::atoi(positional[1].c_str()), nodes);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "objects_bench: %s\n", e.what());
    return 1;
  }
}
