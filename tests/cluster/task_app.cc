// The program the task cluster tests (tasks_test.py) run: the same binary is
// every node (`task_app start --join ...`) and the driver
// (`task_app --address HOST:PORT --token-file F MODE [ARGS]`). Each mode does
// one piece of work through the public API and prints one JSON object of what
// it observed; the test asserts on it. Exit code 0 unless the API itself
// failed unexpectedly.
#include <shoal/api.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <ctime>
#include <iostream>
#include <map>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

namespace {

int64_t wall_ns() {
  timespec ts{};
  clock_gettime(CLOCK_REALTIME, &ts);
  return static_cast<int64_t>(ts.tv_sec) * 1'000'000'000 + ts.tv_nsec;
}

}  // namespace

int square(int x) { return x * x; }
int pid_of() { return static_cast<int>(getpid()); }
std::string node_of() { return shoal::current_node_id(); }
int pid_after(int ms) {
  std::this_thread::sleep_for(std::chrono::milliseconds(ms));
  return static_cast<int>(getpid());
}
int fail_with(std::string message) { throw std::runtime_error(message); }
int sleep_ms(int ms) {
  std::this_thread::sleep_for(std::chrono::milliseconds(ms));
  return ms;
}
int slow_square(int x, int ms) {
  std::this_thread::sleep_for(std::chrono::milliseconds(ms));
  return x * x;
}
long nested_sum(int n) {
  std::vector<shoal::ObjectRef<int>> refs;
  for (int i = 0; i < n; ++i) refs.push_back(shoal::task(square).remote(i));
  long total = 0;
  for (int v : shoal::get(refs)) total += v;
  return total;
}

struct Interval {
  int pid = 0;
  int64_t start_ns = 0;
  int64_t end_ns = 0;
  MSGPACK_DEFINE(pid, start_ns, end_ns);
};
Interval busy(int ms) {
  Interval out;
  out.pid = static_cast<int>(getpid());
  out.start_ns = wall_ns();
  std::this_thread::sleep_for(std::chrono::milliseconds(ms));
  out.end_ns = wall_ns();
  return out;
}

// Large values (over 100 KiB stay where they are made and are pulled in
// chunks): a blob of `mib` MiB whose bytes follow from `seed`, and what a
// task saw of one.
std::string make_blob(int mib, int seed) {
  std::string out(static_cast<std::size_t>(mib) << 20, '\0');
  for (std::size_t i = 0; i < out.size(); ++i) out[i] = static_cast<char>((i * 31 + static_cast<std::size_t>(seed)) >> 3);
  return out;
}
uint64_t fnv(const std::string& b) {
  uint64_t h = 1469598103934665603ull;
  for (unsigned char c : b) h = (h ^ c) * 1099511628211ull;
  return h;
}
struct BlobSeen {
  int pid = 0;
  uint64_t size = 0;
  uint64_t hash = 0;
  MSGPACK_DEFINE(pid, size, hash);
};
BlobSeen check_blob(std::string b) { return BlobSeen{static_cast<int>(getpid()), b.size(), fnv(b)}; }
// Refs inside a value: the task borrows them and reads them itself.
// Puts `count` values of `mib` MiB from inside a task (the node owns them;
// its object store spills what does not fit) and reads every one back.
int spill_roundtrip(int count, int mib) {
  std::vector<shoal::ObjectRef<std::string>> refs;
  for (int i = 0; i < count; ++i) refs.push_back(shoal::put(make_blob(mib, i)));
  int correct = 0;
  for (int i = 0; i < count; ++i) correct += refs[static_cast<std::size_t>(i)].get() == make_blob(mib, i) ? 1 : 0;
  return correct;
}
// Puts `count` values of `mib` MiB on this node and hands their refs out:
// the first ones are spilled by the time the driver pulls them, so the node
// reads them back from disk to serve the pull.
std::vector<shoal::ObjectRef<std::string>> put_blobs(int count, int mib) {
  std::vector<shoal::ObjectRef<std::string>> refs;
  for (int i = 0; i < count; ++i) refs.push_back(shoal::put(make_blob(mib, i)));
  return refs;
}
// One put() larger than the node's whole store: the error it gets.
std::string put_too_big(int mib) {
  try {
    shoal::put(make_blob(mib, 1));
    return "";
  } catch (const std::exception& e) {
    return e.what();
  }
}
uint64_t hash_all(std::vector<shoal::ObjectRef<std::string>> refs) {
  uint64_t h = 0;
  for (const std::string& b : shoal::get(refs)) h ^= fnv(b);
  return h;
}

// A value put() inside a task, returned by reference: the node that ran it
// owns the value; the caller borrows it.
shoal::ObjectRef<std::string> put_blob_here(int mib, int seed) { return shoal::put(make_blob(mib, seed)); }

// Keeps refs it was given (a borrower of objects others own) and reads them
// later, after their owners dropped their own references.
class Keeper {
 public:
  void keep(std::vector<shoal::ObjectRef<std::string>> refs) { refs_ = std::move(refs); }
  // The values' hashes, read here and by a task elsewhere that borrows the
  // refs from this actor in turn (refs inside its argument).
  std::vector<uint64_t> read() const {
    std::vector<uint64_t> out;
    for (const std::string& b : shoal::get(refs_)) out.push_back(fnv(b));
    out.push_back(shoal::task(hash_all).strategy(shoal::spread()).remote(refs_).get());
    return out;
  }
  void drop() { refs_.clear(); }

 private:
  std::vector<shoal::ObjectRef<std::string>> refs_;
};

class Log {
 public:
  Log() = default;
  explicit Log(std::vector<int> first) : items_(std::move(first)) {}
  void append(int v) { items_.push_back(v); }
  int append_size(std::string b) {
    items_.push_back(static_cast<int>(b.size() >> 20));
    return static_cast<int>(b.size());
  }
  std::vector<int> all() const { return items_; }
  int where() const { return static_cast<int>(getpid()); }
  int nap(int ms) const {
    std::this_thread::sleep_for(std::chrono::milliseconds(ms));
    return static_cast<int>(getpid());
  }

 private:
  std::vector<int> items_;
};

// Built from refs to large values (inside its constructor's argument).
class Holder {
 public:
  explicit Holder(std::vector<shoal::ObjectRef<std::string>> refs) : refs_(std::move(refs)) {}
  uint64_t sum() const {
    uint64_t h = 0;
    for (const std::string& b : shoal::get(refs_)) h = h * 31 + fnv(b);
    return h;
  }
  int where() const { return static_cast<int>(getpid()); }

 private:
  std::vector<shoal::ObjectRef<std::string>> refs_;
};

SHOAL_REMOTE(square, pid_of, pid_after, fail_with, sleep_ms, slow_square, nested_sum, busy, make_blob, check_blob,
             hash_all, node_of, spill_roundtrip, put_too_big, put_blob_here, put_blobs);
SHOAL_ACTOR(Log, &Log::append, &Log::append_size, &Log::all, &Log::where, &Log::nap);
SHOAL_ACTOR(Keeper, &Keeper::keep, &Keeper::read, &Keeper::drop);
SHOAL_ACTOR(Holder, &Holder::sum, &Holder::where);

// The GPU ids its node gave it (an actor holds them for its life).
class GpuUser {
 public:
  std::vector<int> ids() { return shoal::gpu_ids(); }
};
SHOAL_ACTOR(GpuUser, &GpuUser::ids);
std::vector<int> gpu_ids_after(int ms) {
  std::this_thread::sleep_for(std::chrono::milliseconds(ms));
  return shoal::gpu_ids();
}
SHOAL_REMOTE(gpu_ids_after);

namespace {

std::string pid_counts(const std::vector<int>& pids) {
  std::map<int, int> counts;
  for (int p : pids) ++counts[p];
  std::string out = "{";
  for (const auto& [pid, n] : counts) {
    if (out.size() > 1) out += ",";
    out += "\"" + std::to_string(pid) + "\":" + std::to_string(n);
  }
  return out + "}";
}

std::string json_quoted(const std::string& s) {
  std::string out = "\"";
  for (char c : s) {
    if (c == '"' || c == '\\') out += '\\';
    if (static_cast<unsigned char>(c) < 0x20) {
      out += ' ';
      continue;
    }
    out += c;
  }
  return out + "\"";
}

// The ids of `n` nodes (SPREAD tasks until as many answered), sorted.
std::vector<std::string> node_ids(std::size_t n) {
  std::vector<std::string> ids;
  for (int round = 0; round < 20 && ids.size() < n; ++round) {
    std::vector<shoal::ObjectRef<std::string>> refs;
    for (std::size_t i = 0; i < 2 * n; ++i) refs.push_back(shoal::task(node_of).strategy(shoal::spread()).remote());
    for (const std::string& id : shoal::get(refs)) {
      if (std::find(ids.begin(), ids.end(), id) == ids.end()) ids.push_back(id);
    }
  }
  if (ids.size() < n) throw std::runtime_error("fewer nodes answered than expected");
  std::sort(ids.begin(), ids.end());
  return ids;
}

int run(const std::string& mode, const std::vector<std::string>& args) {
  auto arg = [&](std::size_t i, int fallback) { return i < args.size() ? std::atoi(args[i].c_str()) : fallback; };
  if (mode == "fanout") {
    int n = arg(0, 10'000);
    std::vector<shoal::ObjectRef<int>> refs;
    refs.reserve(n);
    for (int i = 0; i < n; ++i) refs.push_back(shoal::task(square).remote(i % 1000));
    long long sum = 0;
    long long expected = 0;
    std::vector<int> values = shoal::get(refs);
    for (int i = 0; i < n; ++i) {
      sum += values[i];
      expected += static_cast<long long>(i % 1000) * (i % 1000);
    }
    int wrong = 0;
    for (int i = 0; i < n; ++i) wrong += values[i] != (i % 1000) * (i % 1000) ? 1 : 0;
    // Where work lands when there is plenty of it.
    std::vector<shoal::ObjectRef<int>> where;
    for (int i = 0; i < 60; ++i) where.push_back(shoal::task(slow_square).remote(i, 50));
    std::vector<shoal::ObjectRef<int>> pids;
    for (int i = 0; i < 300; ++i) pids.push_back(shoal::task(pid_of).remote());
    shoal::get(where);
    std::printf("{\"count\":%d,\"sum\":%lld,\"expected\":%lld,\"wrong\":%d,\"pids\":%s}\n", n, sum, expected,
                wrong, pid_counts(shoal::get(pids)).c_str());
    return 0;
  }
  if (mode == "objects") {
    int mib = arg(0, 100);
    // 1. A put() value over the old 48 MiB message limit, read by tasks
    //    spread over the nodes (each pulls it in chunks).
    std::string blob = make_blob(mib, 1);
    uint64_t expected = fnv(blob);
    auto put_ref = shoal::put(blob);
    std::vector<shoal::ObjectRef<BlobSeen>> seen;
    for (int i = 0; i < 6; ++i) seen.push_back(shoal::task(check_blob).strategy(shoal::spread()).remote(put_ref));
    int broadcast_wrong = 0;
    std::vector<int> pids;
    for (const BlobSeen& s : shoal::get(seen)) {
      if (s.size != blob.size() || s.hash != expected) ++broadcast_wrong;
      pids.push_back(s.pid);
    }
    // 2. A result over the limit made on a node, read by the driver.
    auto made = shoal::task(make_blob).remote(mib, 2);
    std::string got = made.get();
    bool result_ok = got == make_blob(mib, 2);
    // 3. A chain: one task's large result is the next one's argument.
    auto chained = shoal::task(check_blob).remote(made).get();
    bool chain_ok = chained.size == got.size() && chained.hash == fnv(got);
    // 4. Refs inside a value: a node borrows both and reads them.
    uint64_t nested = shoal::task(hash_all).remote(std::vector<shoal::ObjectRef<std::string>>{put_ref, made}).get();
    bool nested_ok = nested == (expected ^ fnv(got));
    // 5. Actor calls with a large argument stay in order.
    auto log = shoal::actor<Log>().remote();
    log.task(&Log::append).remote(1);
    log.task(&Log::append_size).remote(made);
    log.task(&Log::append).remote(3);
    std::vector<int> order = log.task(&Log::all).remote().get();
    bool actor_ok = order == std::vector<int>{1, mib, 3};
    std::printf("{\"broadcast_wrong\":%d,\"pids\":%s,\"result_ok\":%s,\"chain_ok\":%s,\"nested_ok\":%s,"
                "\"actor_ok\":%s,\"chain_pid\":%d}\n",
                broadcast_wrong, pid_counts(pids).c_str(), result_ok ? "true" : "false", chain_ok ? "true" : "false",
                nested_ok ? "true" : "false", actor_ok ? "true" : "false", chained.pid);
    return 0;
  }
  if (mode == "hold") {
    // Large objects held across the cluster until the test says "drop" on
    // stdin: a result kept by the node that made it, a put() value, and
    // copies pulled by the nodes whose tasks read them.
    std::string line;
    {
      // On the node with the highest id: not where the default placement
      // (the first node by id with idle CPUs) would put its reader.
      std::vector<std::string> ids = node_ids(3);
      auto made = shoal::task(make_blob).strategy(shoal::node_affinity(ids.back())).remote(2, 5);
      auto put_ref = shoal::put(make_blob(3, 6));
      std::vector<shoal::ObjectRef<BlobSeen>> reads;
      for (int i = 0; i < 3; ++i) {
        reads.push_back(shoal::task(check_blob).strategy(shoal::spread()).remote(made));
        reads.push_back(shoal::task(check_blob).strategy(shoal::spread()).remote(put_ref));
      }
      int wrong = 0;
      for (const BlobSeen& seen : shoal::get(reads)) wrong += seen.size < (2u << 20) ? 1 : 0;
      // No strategy: it should run where the 2 MiB argument is.
      int local_pid = shoal::task(check_blob).remote(made).get().pid;
      std::printf("{\"made\":\"%s\",\"put\":\"%s\",\"wrong\":%d,\"local_pid\":%d}\n",
                  made.id().hex().c_str(), put_ref.id().hex().c_str(), wrong, local_pid);
      std::fflush(stdout);
      if (!std::getline(std::cin, line)) return 1;
    }
    std::printf("{\"dropped\":true}\n");
    std::fflush(stdout);
    std::getline(std::cin, line);
    return 0;
  }
  if (mode == "borrow") {
    // Refs that outlive their owners' own references because another
    // process borrowed them: a value a node owns (put inside a task and
    // returned by reference) and one this driver put, both kept by an actor
    // on a third node. Steps on stdin: "read", then "drop", then "exit".
    std::vector<std::string> ids = node_ids(3);
    auto keeper = shoal::actor<Keeper>().strategy(shoal::node_affinity(ids[2])).remote();
    std::string inner_id;
    std::string mine_id;
    {
      auto outer = shoal::task(put_blob_here).strategy(shoal::node_affinity(ids[1])).remote(3, 7);
      shoal::ObjectRef<std::string> inner = outer.get();  // owned by node ids[1]
      auto mine = shoal::put(make_blob(2, 8));             // owned by this driver
      keeper.task(&Keeper::keep).remote(std::vector<shoal::ObjectRef<std::string>>{inner, mine}).get();
      inner_id = inner.id().hex();
      mine_id = mine.id().hex();
    }  // this driver's references are gone; only the keeper's remain
    std::printf("{\"inner\":\"%s\",\"mine\":\"%s\",\"holder\":\"%s\",\"keeper\":\"%s\"}\n",
                inner_id.c_str(), mine_id.c_str(), ids[1].c_str(), ids[2].c_str());
    std::fflush(stdout);
    std::string line;
    if (!std::getline(std::cin, line)) return 1;
    bool read_ok = false;
    std::string read_error;
    try {
      std::vector<uint64_t> hashes = keeper.task(&Keeper::read).remote().get(std::chrono::seconds(60));
      uint64_t a = fnv(make_blob(3, 7));
      uint64_t b = fnv(make_blob(2, 8));
      read_ok = hashes == std::vector<uint64_t>{a, b, a ^ b};
    } catch (const std::exception& e) {
      read_error = e.what();
    }
    std::printf("{\"read_ok\":%s,\"read_error\":%s}\n", read_ok ? "true" : "false",
                json_quoted(read_error).c_str());
    std::fflush(stdout);
    if (!std::getline(std::cin, line)) return 1;
    keeper.task(&Keeper::drop).remote().get();
    std::printf("{\"dropped\":true}\n");
    std::fflush(stdout);
    std::getline(std::cin, line);
    return 0;
  }
  if (mode == "affinity_wait") {
    // Sees every node, then (after "go" on stdin; the test killed node
    // args[0] meanwhile) runs a task bound to it: it waits for the node to
    // come back rather than failing at once.
    node_ids(3);
    std::printf("{\"ready\":true}\n");
    std::fflush(stdout);
    std::string line;
    if (!std::getline(std::cin, line)) return 1;
    int pid = shoal::task(pid_of).strategy(shoal::node_affinity(args.at(0))).remote().get(std::chrono::seconds(60));
    std::printf("{\"pid\":%d}\n", pid);
    return 0;
  }
  if (mode == "lineage") {
    // Values whose only copies are on node args[0], which the test kills
    // (kill -9) between "ready" and "go": a 4 MiB task result read here, one
    // read by a task on another node, and a value node args[0] owned (put
    // inside a task there). The first two are made again (their tasks run
    // again elsewhere) unless SHOAL_MAX_LINEAGE_BYTES keeps no lineage; the
    // third fails with OwnerDied.
    std::vector<std::string> ids = node_ids(3);
    const std::string& victim = args.at(0);
    std::string other = ids[0] == victim ? ids[1] : ids[0];
    auto a = shoal::task(make_blob).strategy(shoal::node_affinity(victim, true)).remote(4, 9);
    auto b = shoal::task(make_blob).strategy(shoal::node_affinity(victim, true)).remote(4, 10);
    auto outer = shoal::task(put_blob_here).strategy(shoal::node_affinity(victim, false)).remote(1, 11);
    shoal::ObjectRef<std::string> inner = outer.get();
    shoal::wait(std::vector<shoal::ObjectRef<std::string>>{a, b}, 2);  // made, not read
    std::printf("{\"ready\":true}\n");
    std::fflush(stdout);
    std::string line;
    if (!std::getline(std::cin, line)) return 1;
    auto outcome = [](auto&& fn) -> std::string {
      try {
        return fn() ? "ok" : "wrong";
      } catch (const shoal::LineageEvicted& e) {
        return std::string("LineageEvicted: ") + e.what();
      } catch (const shoal::ObjectLost& e) {
        return std::string("ObjectLost: ") + e.what();
      } catch (const shoal::OwnerDied& e) {
        return std::string("OwnerDied: ") + e.what();
      } catch (const std::exception& e) {
        return std::string("other: ") + e.what();
      }
    };
    std::string a_out = outcome([&] { return a.get(std::chrono::seconds(120)) == make_blob(4, 9); });
    std::string c_out = outcome([&] {
      BlobSeen seen = shoal::task(check_blob).strategy(shoal::node_affinity(other)).remote(b).get(std::chrono::seconds(120));
      return seen.size == (4u << 20) && seen.hash == fnv(make_blob(4, 10));
    });
    std::string inner_out = outcome([&] { return inner.get(std::chrono::seconds(120)).size() == (1u << 20); });
    std::printf("{\"a\":%s,\"c\":%s,\"inner\":%s}\n", json_quoted(a_out).c_str(), json_quoted(c_out).c_str(),
                json_quoted(inner_out).c_str());
    return 0;
  }
  if (mode == "freeze") {
    // A task and an actor on node args[0], which the test freezes (SIGSTOP)
    // after "ready" until the cluster declares it dead, then thaws. After
    // "go": the task's result and the actor's calls come from other nodes,
    // and the thawed node, a new incarnation, runs new work again.
    std::vector<std::string> ids = node_ids(3);
    const std::string& victim = args.at(0);
    auto log = shoal::actor<Log>().max_restarts(1).strategy(shoal::node_affinity(victim, true)).remote();
    int actor_pid_before = log.task(&Log::where).remote().get();
    auto slow = shoal::task(pid_after).strategy(shoal::node_affinity(victim, true)).remote(4000);
    std::this_thread::sleep_for(std::chrono::milliseconds(500));  // it runs there now
    std::printf("{\"ready\":true,\"actor_pid_before\":%d}\n", actor_pid_before);
    std::fflush(stdout);
    std::string line;
    if (!std::getline(std::cin, line)) return 1;
    int task_pid = slow.get(std::chrono::seconds(120));
    int actor_pid_after = log.task(&Log::where).remote().get(std::chrono::seconds(120));
    int again_pid = shoal::task(pid_of).strategy(shoal::node_affinity(victim)).remote().get(std::chrono::seconds(60));
    std::printf("{\"task_pid\":%d,\"actor_pid_after\":%d,\"again_pid\":%d}\n", task_pid, actor_pid_after,
                again_pid);
    return 0;
  }
  if (mode == "gib") {
    // 1 GiB values through the C++ API: put() here and read by a task on
    // another node; made by a task on another node and read here.
    std::vector<std::string> ids = node_ids(3);
    const int mib = arg(0, 1024);
    bool put_ok = false;
    bool remote_read_ok = false;
    bool result_ok = false;
    {
      uint64_t expected = 0;
      shoal::ObjectRef<std::string> put_ref;
      {
        std::string blob = make_blob(mib, 3);
        expected = fnv(blob);
        put_ref = shoal::put(std::move(blob));
      }
      std::string back = put_ref.get();
      put_ok = back.size() == (static_cast<std::size_t>(mib) << 20) && fnv(back) == expected;
      back = std::string();
      BlobSeen seen = shoal::task(check_blob).strategy(shoal::node_affinity(ids[2])).remote(put_ref).get();
      remote_read_ok = seen.size == (static_cast<std::size_t>(mib) << 20) && seen.hash == expected;
    }
    {
      auto made = shoal::task(make_blob).strategy(shoal::node_affinity(ids[1])).remote(mib, 4);
      std::string got = made.get();
      result_ok = got.size() == (static_cast<std::size_t>(mib) << 20) && fnv(got) == fnv(make_blob(mib, 4));
    }
    std::printf("{\"put_ok\":%s,\"remote_read_ok\":%s,\"result_ok\":%s}\n", put_ok ? "true" : "false",
                remote_read_ok ? "true" : "false", result_ok ? "true" : "false");
    return 0;
  }
  if (mode == "spill") {
    int correct = shoal::task(spill_roundtrip).remote(80, 8).get();
    std::string too_big = shoal::task(put_too_big).remote(100).get();
    // 12 x 8 MiB owned by the node, pulled by this driver from its store,
    // all at once (the node reads the spilled ones back a few at a time).
    auto blobs = shoal::task(put_blobs).remote(12, 8).get();
    std::vector<std::string> values = shoal::get(blobs, std::chrono::seconds(120));
    int pulled = 0;
    for (int i = 0; i < static_cast<int>(values.size()); ++i) {
      pulled += values[static_cast<std::size_t>(i)] == make_blob(8, i) ? 1 : 0;
    }
    std::printf("{\"correct\":%d,\"too_big\":%s,\"pulled\":%d}\n", correct, json_quoted(too_big).c_str(),
                pulled);
    return 0;
  }
  if (mode == "held_spill") {
    // 12 x 8 MiB results, made on the node and held there for this driver
    // (their owner), through a 64 MiB store: the node spills the oldest.
    // The test looks at `shoalctl memory` before "get" on stdin.
    std::vector<shoal::ObjectRef<std::string>> made;
    for (int i = 0; i < 12; ++i) made.push_back(shoal::task(make_blob).remote(8, 100 + i));
    auto ready = shoal::wait(made, static_cast<int>(made.size()), std::chrono::minutes(2));
    std::printf("{\"ready\":%zu}\n", ready.ready.size());
    std::fflush(stdout);
    std::string line;
    if (!std::getline(std::cin, line)) return 1;
    std::vector<std::string> values = shoal::get(made, std::chrono::seconds(120));
    int correct = 0;
    for (int i = 0; i < static_cast<int>(values.size()); ++i) {
      correct += values[static_cast<std::size_t>(i)] == make_blob(8, 100 + i) ? 1 : 0;
    }
    std::printf("{\"correct\":%d}\n", correct);
    return 0;
  }
  if (mode == "failover") {
    // A 256 MiB result on node A, copied to node B by a task there; then
    // (the test kills B around "go") the driver reads it: pullers spread
    // over the copies, so it starts at B (A already served B), and goes on
    // from A when B is gone. A second value only B held fails clearly.
    std::vector<std::string> ids = node_ids(3);
    std::string self = shoal::task(node_of).strategy(shoal::node_affinity(ids[0])).remote().get();
    // A and B: two nodes other than the one this driver is attached to
    // (args[0] names it), so the driver keeps its connection.
    std::vector<std::string> others;
    for (const std::string& id : ids) {
      if (args.empty() || id != args[0]) others.push_back(id);
    }
    const std::string a = others.at(0), b = others.at(1);
    auto made = shoal::task(make_blob).strategy(shoal::node_affinity(a)).remote(256, 9);
    // No retries: nothing may make it again once B is gone (ObjectLost).
    auto only_b = shoal::task(make_blob).strategy(shoal::node_affinity(b)).max_retries(0).remote(1, 4);
    shoal::wait(std::vector<shoal::ObjectRef<std::string>>{made, only_b}, 2, std::chrono::minutes(2));
    BlobSeen at_b = shoal::task(check_blob).strategy(shoal::node_affinity(b)).remote(made).get();
    int b_pid = shoal::task(pid_of).strategy(shoal::node_affinity(b)).remote().get();
    std::printf("{\"victim_pid\":%d,\"b_read\":%llu}\n", b_pid, static_cast<unsigned long long>(at_b.size));
    std::fflush(stdout);
    std::string line;
    if (!std::getline(std::cin, line)) return 1;
    std::string got = made.get();
    bool ok = got == make_blob(256, 9);
    std::string lost_error;
    try {
      only_b.get(std::chrono::seconds(60));
    } catch (const std::exception& e) {
      lost_error = e.what();
    }
    std::printf("{\"ok\":%s,\"lost_error\":%s,\"self\":%s}\n", ok ? "true" : "false",
                json_quoted(lost_error).c_str(), json_quoted(self).c_str());
    return 0;
  }
  if (mode == "copies") {
    // A 4 MiB put() value read by a task on node B, then by tasks on nodes
    // C and A at once: B's copy is known to the owner by then, so one of the
    // later pullers reads from B, the other from this driver (pullers spread
    // over the copies). Prints what each task saw.
    std::vector<std::string> ids = node_ids(3);
    const std::string a = ids[0], b = ids[1], c = ids[2];
    auto value = shoal::put(make_blob(4, 7));
    BlobSeen at_b = shoal::task(check_blob).strategy(shoal::node_affinity(b)).remote(value).get();
    auto later_c = shoal::task(check_blob).strategy(shoal::node_affinity(c)).remote(value);
    auto later_a = shoal::task(check_blob).strategy(shoal::node_affinity(a)).remote(value);
    std::vector<BlobSeen> later = shoal::get(std::vector<shoal::ObjectRef<BlobSeen>>{later_c, later_a});
    std::string seen;
    for (const BlobSeen& s : {at_b, later[0], later[1]}) {
      seen += std::string(seen.empty() ? "" : ",") + "{\"pid\":" + std::to_string(s.pid) +
              ",\"size\":" + std::to_string(s.size) + ",\"hash\":\"" + std::to_string(s.hash) + "\"}";
    }
    std::printf("{\"a\":%s,\"b\":%s,\"c\":%s,\"size\":%llu,\"hash\":\"%llu\",\"seen\":[%s]}\n",
                json_quoted(a).c_str(), json_quoted(b).c_str(), json_quoted(c).c_str(),
                static_cast<unsigned long long>(4u << 20),
                static_cast<unsigned long long>(fnv(make_blob(4, 7))), seen.c_str());
    return 0;
  }
  if (mode == "actor_order") {
    int n = arg(0, 2000);
    auto log = shoal::actor<Log>().remote();
    std::vector<shoal::ObjectRef<void>> calls;
    for (int i = 0; i < n; ++i) calls.push_back(log.task(&Log::append).remote(i));
    std::vector<int> seen = log.task(&Log::all).remote().get();
    bool in_order = static_cast<int>(seen.size()) == n;
    for (int i = 0; in_order && i < n; ++i) in_order = seen[i] == i;
    std::printf("{\"count\":%zu,\"in_order\":%s,\"actor_pid\":%d}\n", seen.size(), in_order ? "true" : "false",
                log.task(&Log::where).remote().get());
    return 0;
  }
  if (mode == "spread") {
    int k = arg(0, 3);
    std::vector<shoal::ObjectRef<int>> refs;
    for (int i = 0; i < k; ++i) refs.push_back(shoal::task(pid_of).strategy(shoal::spread()).remote());
    std::printf("{\"pids\":%s}\n", pid_counts(shoal::get(refs)).c_str());
    return 0;
  }
  if (mode == "concurrency") {
    int n = arg(0, 40);
    int ms = arg(1, 100);
    std::vector<shoal::ObjectRef<Interval>> refs;
    for (int i = 0; i < n; ++i) refs.push_back(shoal::task(busy).remote(ms));
    std::vector<Interval> intervals = shoal::get(refs);
    // Most tasks overlapping at one instant, per process.
    std::map<int, int> most;
    for (const Interval& a : intervals) {
      int overlapping = 0;
      for (const Interval& b : intervals) {
        if (b.pid == a.pid && b.start_ns <= a.start_ns && a.start_ns < b.end_ns) ++overlapping;
      }
      most[a.pid] = std::max(most[a.pid], overlapping);
    }
    std::string out = "{";
    for (const auto& [pid, k] : most) out += (out.size() > 1 ? "," : "") + ("\"" + std::to_string(pid) + "\":") + std::to_string(k);
    std::printf("{\"count\":%zu,\"max_overlap\":%s}}\n", intervals.size(), out.c_str());
    return 0;
  }
  if (mode == "errors") {
    std::string type, message, node, function;
    try {
      shoal::task(fail_with).remote(std::string("boom \"quoted\"")).get();
    } catch (const shoal::TaskError& e) {
      type = e.exception_type();
      message = e.message();
      node = e.info().node_id;
      function = e.info().function;
    }
    bool timed_out = false;
    std::string timeout_message;
    try {
      shoal::task(sleep_ms).remote(3000).get(std::chrono::milliseconds(200));
    } catch (const shoal::GetTimeout& e) {
      timed_out = true;
      timeout_message = e.what();
    }
    // A killed actor: later calls fail with ActorDied.
    auto log = shoal::actor<Log>().remote();
    log.task(&Log::append).remote(1).get();
    shoal::kill(log);
    std::string died;
    try {
      log.task(&Log::all).remote().get(std::chrono::seconds(20));
    } catch (const shoal::ActorDied& e) {
      died = e.what();
    } catch (const std::exception& e) {
      died = std::string("wrong exception: ") + e.what();
    }
    std::printf(
        "{\"type\":%s,\"message\":%s,\"node\":%s,\"function\":%s,\"timed_out\":%s,\"timeout_message\":%s,"
        "\"actor_died\":%s}\n",
        json_quoted(type).c_str(), json_quoted(message).c_str(), json_quoted(node).c_str(), json_quoted(function).c_str(),
        timed_out ? "true" : "false", json_quoted(timeout_message).c_str(), json_quoted(died).c_str());
    return 0;
  }
  if (mode == "missing") {
    std::string error;
    try {
      shoal::task(square).remote(3).get(std::chrono::seconds(20));
    } catch (const std::exception& e) {
      error = e.what();
    }
    std::printf("{\"error\":%s}\n", json_quoted(error).c_str());
    return 0;
  }
  if (mode == "nested") {
    int n = arg(0, 50);
    long total = shoal::task(nested_sum).remote(n).get();
    long expected = 0;
    for (int i = 0; i < n; ++i) expected += static_cast<long>(i) * i;
    std::printf("{\"total\":%ld,\"expected\":%ld}\n", total, expected);
    return 0;
  }
  if (mode == "named_create") {
    auto log = shoal::actor<Log>().name(args.at(0)).detached().remote();
    log.task(&Log::append).remote(7).get();
    log.task(&Log::append).remote(8).get();
    std::string dup_error;
    try {
      shoal::actor<Log>().name(args.at(0)).remote();
    } catch (const std::exception& e) {
      dup_error = e.what();
    }
    std::printf("{\"created\":true,\"duplicate_error\":%s}\n", json_quoted(dup_error).c_str());
    return 0;
  }
  if (mode == "ctor_refs") {
    // An actor on node args[0] built from refs to two 2 MiB values (one
    // put here, one a task's result on another node) that only its
    // constructor's argument still holds; the test kills that node after
    // the first line: the restarted actor gets the same values.
    std::vector<std::string> ids = node_ids(3);
    std::string elsewhere = ids[0] == args.at(0) ? ids[1] : ids[0];
    std::vector<shoal::ObjectRef<std::string>> refs{
        shoal::put(make_blob(2, 1)), shoal::task(make_blob).strategy(shoal::node_affinity(elsewhere)).remote(2, 2)};
    uint64_t expected = fnv(make_blob(2, 1)) * 31 + fnv(make_blob(2, 2));
    auto holder = shoal::actor<Holder>(refs).max_restarts(1).strategy(shoal::node_affinity(args.at(0), true)).remote();
    refs.clear();
    uint64_t before = holder.task(&Holder::sum).remote().get();
    int pid_before = holder.task(&Holder::where).remote().get();
    std::printf("{\"pid\":%d,\"before_ok\":%s}\n", pid_before, before == expected ? "true" : "false");
    std::fflush(stdout);
    char line[16];
    if (std::fgets(line, sizeof line, stdin) == nullptr) return 1;
    uint64_t after = holder.task(&Holder::sum).remote().get(std::chrono::seconds(60));
    int pid_after = holder.task(&Holder::where).remote().get(std::chrono::seconds(60));
    std::printf("{\"pid\":%d,\"after_ok\":%s}\n", pid_after, after == expected ? "true" : "false");
    return 0;
  }
  if (mode == "detached_create") {
    // Two detached named actors on node args[1], made with constructor
    // arguments; this driver exits at once. The test kills that node: the
    // one with max_restarts(2) is made again elsewhere by the cluster (its
    // creator is gone), the one without restarts is given up.
    auto log = shoal::actor<Log>(std::vector<int>{5})
                   .name(args.at(0))
                   .detached()
                   .max_restarts(2)
                   .strategy(shoal::node_affinity(args.at(1), true))
                   .remote();
    auto fragile =
        shoal::actor<Log>().name(args.at(0) + "-fragile").detached().strategy(shoal::node_affinity(args.at(1), true)).remote();
    log.task(&Log::append).remote(6).get();
    int pid = log.task(&Log::where).remote().get();
    int fragile_pid = fragile.task(&Log::where).remote().get();
    std::printf("{\"pid\":%d,\"fragile_pid\":%d}\n", pid, fragile_pid);
    return 0;
  }
  if (mode == "named_get") {
    auto log = shoal::get_actor<Log>(args.at(0));
    log.task(&Log::append).remote(9).get();
    std::vector<int> seen = log.task(&Log::all).remote().get();
    std::string out = "[";
    for (int v : seen) out += (out.size() > 1 ? "," : "") + std::to_string(v);
    std::string missing;
    try {
      shoal::get_actor<Log>(args.at(0) + "-nobody");
    } catch (const std::exception& e) {
      missing = e.what();
    }
    std::printf("{\"items\":%s],\"missing_error\":%s}\n", out.c_str(), json_quoted(missing).c_str());
    return 0;
  }
  if (mode == "retry") {
    // Slow tasks spread over the nodes; the test kill -9s one meanwhile.
    int n = arg(0, 60);
    int ms = arg(1, 500);
    std::vector<shoal::ObjectRef<int>> refs;
    for (int i = 0; i < n; ++i) refs.push_back(shoal::task(slow_square).strategy(shoal::spread()).remote(i, ms));
    std::printf("{\"submitted\":%d}\n", n);
    std::fflush(stdout);
    std::vector<int> values = shoal::get(refs, std::chrono::seconds(90));
    int wrong = 0;
    for (int i = 0; i < n; ++i) wrong += values[i] != i * i ? 1 : 0;
    std::printf("{\"count\":%zu,\"wrong\":%d}\n", values.size(), wrong);
    return 0;
  }
  if (mode == "groups") {
    using shoal::PlacementStrategy;
    shoal::ResourceRequest one_cpu{.cpus = 1, .gpus = 0, .memory_bytes = 0, .custom = {}};
    shoal::ResourceRequest two_cpus{.cpus = 2, .gpus = 0, .memory_bytes = 0, .custom = {}};
    auto spread = shoal::placement_group({one_cpu, one_cpu, one_cpu}, PlacementStrategy::kStrictSpread, "trio");
    bool spread_ready = spread.wait(std::chrono::seconds(20));
    std::vector<int> bundle_pids;
    for (int i = 0; i < 3; ++i) {
      bundle_pids.push_back(
          shoal::task(pid_of).strategy(shoal::placement_group_bundle(spread.id(), i)).remote().get());
    }
    std::string too_big;
    try {
      shoal::task(pid_of).cpus(2).strategy(shoal::placement_group_bundle(spread.id(), 0)).remote().get();
    } catch (const std::exception& e) {
      too_big = e.what();
    }
    auto log = shoal::actor<Log>().cpus(1).strategy(shoal::placement_group_bundle(spread.id(), 1)).remote();
    int actor_pid = log.task(&Log::where).remote().get();
    // Each node has 1 of its 2 CPUs left: 2 CPUs on one node must wait...
    auto pair = shoal::placement_group({two_cpus}, PlacementStrategy::kStrictPack);
    bool pair_ready_before = pair.wait(std::chrono::milliseconds(1500));
    // ...until the first group (and the actor in it) goes.
    shoal::kill(log);
    shoal::remove_placement_group(spread);
    bool pair_ready_after = pair.wait(std::chrono::seconds(20));
    int pair_pid = shoal::task(pid_of).cpus(2).strategy(shoal::placement_group_bundle(pair.id())).remote().get();
    auto four = shoal::placement_group({one_cpu, one_cpu, one_cpu, one_cpu}, PlacementStrategy::kStrictSpread);
    bool four_ready = four.wait(std::chrono::seconds(1));
    std::string removed_wait;
    shoal::remove_placement_group(four);
    try {
      four.wait(std::chrono::seconds(1));
    } catch (const std::exception& e) {
      removed_wait = e.what();
    }
    std::string empty_error;
    try {
      shoal::placement_group({});
    } catch (const std::exception& e) {
      empty_error = e.what();
    }
    // Removing a group while tasks wait for its (busy) bundle: the running
    // one finishes, the waiting ones fail at once instead of waiting for a
    // bundle that will never come back.
    shoal::remove_placement_group(pair);
    auto solo = shoal::placement_group({one_cpu}, PlacementStrategy::kStrictPack);
    bool solo_ready = solo.wait(std::chrono::seconds(20));
    auto solo_bundle = shoal::placement_group_bundle(solo.id(), 0);
    auto running = shoal::task(sleep_ms).strategy(solo_bundle).remote(1500);
    std::vector<shoal::ObjectRef<int>> waiting;
    for (int i = 0; i < 3; ++i) waiting.push_back(shoal::task(pid_of).strategy(solo_bundle).remote());
    std::this_thread::sleep_for(std::chrono::milliseconds(500));
    shoal::remove_placement_group(solo);
    int waiting_failed = 0;
    std::string waiting_error;
    for (auto& ref : waiting) {
      try {
        (void)ref.get(std::chrono::seconds(30));
      } catch (const shoal::GetTimeout& e) {
        waiting_error = std::string("timed out: ") + e.what();
      } catch (const std::exception& e) {
        ++waiting_failed;
        waiting_error = e.what();
      }
    }
    int running_value = running.get(std::chrono::seconds(30));
    std::printf(
        "{\"spread_ready\":%s,\"bundle_pids\":%s,\"too_big\":%s,\"actor_pid\":%d,\"bundle1_pid\":%d,"
        "\"pair_ready_before\":%s,\"pair_ready_after\":%s,\"pair_pid\":%d,\"four_ready\":%s,"
        "\"removed_wait\":%s,\"empty_error\":%s,\"solo_ready\":%s,\"waiting_failed\":%d,"
        "\"waiting_error\":%s,\"running_value\":%d}\n",
        spread_ready ? "true" : "false", pid_counts(bundle_pids).c_str(), json_quoted(too_big).c_str(), actor_pid,
        bundle_pids[1], pair_ready_before ? "true" : "false", pair_ready_after ? "true" : "false", pair_pid,
        four_ready ? "true" : "false", json_quoted(removed_wait).c_str(), json_quoted(empty_error).c_str(),
        solo_ready ? "true" : "false", waiting_failed, json_quoted(waiting_error).c_str(), running_value);
    return 0;
  }
  if (mode == "gpus") {
    // On a node with 2 GPUs: an actor holds one for its life; tasks asking
    // for half a GPU share the other device, tasks asking for a whole one
    // take turns on it. Then, while the actor still holds its GPU, the test
    // runs a command job with --gpus 1 (it must get the other device), and
    // creates the file named by the next argument to let this driver go.
    std::string release = args.empty() ? "" : args[0];
    auto user = shoal::actor<GpuUser>().cpus(0).gpus(1).remote();
    std::vector<int> held = user.task(&GpuUser::ids).remote().get(std::chrono::seconds(30));
    auto many = [](double gpus) {
      std::vector<shoal::ObjectRef<std::vector<int>>> refs;
      for (int i = 0; i < 2; ++i) refs.push_back(shoal::task(gpu_ids_after).cpus(0).gpus(gpus).remote(500));
      return shoal::get(refs, std::chrono::seconds(30));
    };
    auto halves = many(0.5);
    auto wholes = many(1);
    auto none = shoal::task(gpu_ids_after).cpus(0).remote(0).get(std::chrono::seconds(30));
    auto list = [](const std::vector<int>& ids) {
      std::string out = "[";
      for (size_t i = 0; i < ids.size(); ++i) out += (i ? "," : "") + std::to_string(ids[i]);
      return out + "]";
    };
    std::printf("{\"held\":%s,\"halves\":[%s,%s],\"wholes\":[%s,%s],\"none\":%s}\n", list(held).c_str(),
                list(halves[0]).c_str(), list(halves[1]).c_str(), list(wholes[0]).c_str(), list(wholes[1]).c_str(),
                list(none).c_str());
    std::fflush(stdout);
    for (int i = 0; i < 600 && !release.empty() && access(release.c_str(), F_OK) != 0; ++i) {
      std::this_thread::sleep_for(std::chrono::milliseconds(100));
    }
    std::vector<int> still = user.task(&GpuUser::ids).remote().get(std::chrono::seconds(30));
    std::printf("{\"held_at_end\":%s}\n", list(still).c_str());
    return 0;
  }
  if (mode == "affinity") {
    // 12 slow tasks that prefer one node (soft or hard affinity).
    bool soft = args.at(1) == "soft";
    std::vector<shoal::ObjectRef<int>> refs;
    for (int i = 0; i < 12; ++i) {
      refs.push_back(shoal::task(pid_after).strategy(shoal::node_affinity(args.at(0), soft)).remote(300));
    }
    std::printf("{\"pids\":%s}\n", pid_counts(shoal::get(refs)).c_str());
    return 0;
  }
  if (mode == "restart") {
    // An actor that may restart once, first on the node named by args[0];
    // the test kill -9s that node after the first line, then sends a line.
    // With args[1] "detached", the cluster restarts it (not this creator).
    auto options = shoal::actor<Log>().max_restarts(1).strategy(shoal::node_affinity(args.at(0), true));
    if (args.size() > 1 && args[1] == "detached") options = options.name("restarting-" + args[0]).detached();
    auto log = options.remote();
    log.task(&Log::append).remote(1).get();
    int first_pid = log.task(&Log::where).remote().get();
    std::printf("{\"pid\":%d}\n", first_pid);
    std::fflush(stdout);
    char line[16];
    if (std::fgets(line, sizeof line, stdin) == nullptr) return 1;
    // Calls made now wait for the restarted actor (fresh state: the
    // constructor ran again).
    log.task(&Log::append).remote(2).get(std::chrono::seconds(60));
    std::vector<int> seen = log.task(&Log::all).remote().get(std::chrono::seconds(60));
    int second_pid = log.task(&Log::where).remote().get(std::chrono::seconds(60));
    std::string out = "[";
    for (int v : seen) out += (out.size() > 1 ? "," : "") + std::to_string(v);
    std::printf("{\"items\":%s],\"pid\":%d}\n", out.c_str(), second_pid);
    return 0;
  }
  if (mode == "call_retry") {
    // Two actors on node args[0], each with a 3 s call in flight when the
    // test kill -9s that node (after the first line): both restart
    // elsewhere; the call of the one with max_task_retries(1) runs again
    // there, the other's fails with ActorDied naming the cause.
    auto retried = shoal::actor<Log>().max_restarts(1).max_task_retries(1)
                       .strategy(shoal::node_affinity(args.at(0), true)).remote();
    auto not_retried = shoal::actor<Log>().max_restarts(1).strategy(shoal::node_affinity(args.at(0), true)).remote();
    int pid_retried = retried.task(&Log::where).remote().get();
    int pid_not_retried = not_retried.task(&Log::where).remote().get();
    auto a = retried.task(&Log::nap).remote(3000);
    auto b = not_retried.task(&Log::nap).remote(3000);
    std::this_thread::sleep_for(std::chrono::milliseconds(500));  // both calls run there now
    std::printf("{\"pids\":[%d,%d]}\n", pid_retried, pid_not_retried);
    std::fflush(stdout);
    char line[16];
    if (std::fgets(line, sizeof line, stdin) == nullptr) return 1;
    int a_pid = a.get(std::chrono::seconds(60));
    std::string b_error = "no error";
    try {
      b.get(std::chrono::seconds(60));
    } catch (const shoal::ActorDied& e) {
      b_error = std::string("ActorDied: ") + e.what();
    } catch (const std::exception& e) {
      b_error = std::string("other: ") + e.what();
    }
    int b_after = not_retried.task(&Log::where).remote().get(std::chrono::seconds(60));
    std::printf("{\"a_pid\":%d,\"b_error\":%s,\"b_after\":%d}\n", a_pid, json_quoted(b_error).c_str(), b_after);
    return 0;
  }
  if (mode == "abandon") {
    // Holds 1 CPU with an actor and 1 with a placement group, then waits to
    // be kill -9'ed: the nodes must give both back on their own.
    auto log = shoal::actor<Log>().cpus(1).remote();
    int pid = log.task(&Log::where).remote().get();
    shoal::ResourceRequest one{.cpus = 1, .gpus = 0, .memory_bytes = 0, .custom = {}};
    auto group = shoal::placement_group({one});
    bool ready = group.wait(std::chrono::seconds(20));
    std::printf("{\"actor_pid\":%d,\"group_ready\":%s}\n", pid, ready ? "true" : "false");
    std::fflush(stdout);
    std::this_thread::sleep_for(std::chrono::minutes(5));
    return 0;
  }
  if (mode == "infeasible") {
    // Needs more CPUs than any node has: pending, with why, until the timeout.
    auto ref = shoal::task(square).cpus(64).remote(2);
    std::printf("{\"submitted\":1}\n");
    std::fflush(stdout);
    std::string message;
    try {
      ref.get(std::chrono::seconds(arg(0, 20)));
    } catch (const shoal::GetTimeout& e) {
      message = e.what();
    }
    std::printf("{\"timeout_message\":%s}\n", json_quoted(message).c_str());
    return 0;
  }
  std::fprintf(stderr, "task_app: unknown mode %s\n", mode.c_str());
  return 2;
}

}  // namespace

int main(int argc, char** argv) {
  auto cluster = shoal::init(argc, argv);  // `start ...` runs a node and never returns
  if (!cluster.ok()) {
    std::fprintf(stderr, "task_app: %s\n", cluster.status().to_string().c_str());
    return 1;
  }
  std::vector<std::string> positional;
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    if (a == "--address" || a == "--token-file" || a == "--cpus" || a == "--namespace") {
      ++i;
      continue;
    }
    if (a.rfind("--", 0) == 0) continue;
    positional.push_back(a);
  }
  if (positional.empty()) {
    std::fprintf(stderr, "usage: task_app --address HOST:PORT --token-file F MODE [ARGS]\n");
    return 2;
  }
  try {
    return run(positional[0], std::vector<std::string>(positional.begin() + 1, positional.end()));
  } catch (const std::exception& e) {
    std::fprintf(stderr, "task_app: %s\n", e.what());
    return 1;
  }
}
