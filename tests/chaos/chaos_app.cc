// The program the chaos harness (tests/chaos/run) runs: every node
// (`chaos_app start --join ...`) and each workload driver
// (`chaos_app --address HOST:PORT --token-file F WORKLOAD SECONDS SEED`).
// A workload repeats a piece of work whose correct result it knows, for
// SECONDS, while the harness kills, freezes and restarts nodes. After each
// round it prints one JSON line:
//   {"t": <unix seconds>, "ok": true}                      the result was right
//   {"t": ..., "ok": false, "wrong": true, "what": "..."}  a wrong result (never allowed)
//   {"t": ..., "ok": false, "budget": true, "what": "..."} an error that says a retry or
//                                                          restart budget ran out (allowed)
//   {"t": ..., "ok": false, "lost": true, "what": "..."}   any other error (never allowed)
#include <shoal/api.h>

#include <chrono>
#include <cstdint>
#include <cstdio>
#include <random>
#include <string>
#include <vector>

namespace {

double now_s() {
  return std::chrono::duration<double>(std::chrono::system_clock::now().time_since_epoch()).count();
}

std::string quoted(const std::string& s) {
  std::string out = "\"";
  for (char c : s) {
    if (c == '"' || c == '\\') out += '\\';
    out += static_cast<unsigned char>(c) < 0x20 ? ' ' : c;
  }
  return out + "\"";
}

void report(const char* kind, const std::string& what) {
  if (kind == nullptr) {
    std::printf("{\"t\":%.3f,\"ok\":true}\n", now_s());
  } else {
    std::printf("{\"t\":%.3f,\"ok\":false,\"%s\":true,\"what\":%s}\n", now_s(), kind, quoted(what).c_str());
  }
  std::fflush(stdout);
}

// An error says a budget ran out when it names one.
bool budget_error(const std::string& what) {
  for (const char* marker : {"used up", "max_restarts", "LineageEvicted", "no longer kept", "max_retries"}) {
    if (what.find(marker) != std::string::npos) return true;
  }
  return false;
}

uint64_t fnv(const std::string& b) {
  uint64_t h = 1469598103934665603ull;
  for (unsigned char c : b) h = (h ^ c) * 1099511628211ull;
  return h;
}

}  // namespace

// ---- dag: a two-level reduction over values big enough to stay on nodes ----------------
std::vector<int64_t> leaf(int64_t i) {
  std::vector<int64_t> out(32 * 1024);  // 256 KiB: held where it was made
  for (std::size_t k = 0; k < out.size(); ++k) out[k] = i * 1000 + static_cast<int64_t>(k % 97);
  return out;
}
std::vector<int64_t> combine(std::vector<int64_t> a, std::vector<int64_t> b) {
  for (std::size_t k = 0; k < a.size() && k < b.size(); ++k) a[k] += b[k];
  return a;
}
int64_t total(std::vector<int64_t> v) {
  int64_t s = 0;
  for (int64_t x : v) s += x;
  return s;
}

// ---- mapreduce: blobs made on nodes, hashed by a reducer that borrows their refs -------
std::string blob(int seed) {
  std::string out(2u << 20, '\0');
  for (std::size_t i = 0; i < out.size(); ++i) out[i] = static_cast<char>((i * 131 + static_cast<std::size_t>(seed)) >> 5);
  return out;
}
uint64_t hash_blobs(std::vector<shoal::ObjectRef<std::string>> refs) {
  uint64_t h = 0;
  for (const std::string& b : shoal::get(refs)) h = h * 31 + fnv(b);
  return h;
}

// ---- counter: an actor whose calls, within one incarnation, count 1, 2, 3, ... -------
class Counter {
 public:
  Counter() : incarnation_(std::random_device{}()) {}
  std::vector<uint64_t> incr() { return {incarnation_, ++count_}; }

 private:
  uint64_t incarnation_;
  uint64_t count_ = 0;
};

SHOAL_REMOTE(leaf, combine, total, blob, hash_blobs);
SHOAL_ACTOR(Counter, &Counter::incr);

namespace {

template <typename Fn>
void rounds(double seconds, Fn&& round) {
  const double end = now_s() + seconds;
  while (now_s() < end) {
    try {
      std::string wrong = round();
      if (wrong.empty()) {
        report(nullptr, "");
      } else {
        report("wrong", wrong);
      }
    } catch (const std::exception& e) {
      report(budget_error(e.what()) ? "budget" : "lost", e.what());
    }
  }
}

int run(const std::string& workload, double seconds, int seed) {
  constexpr auto kRoundTimeout = std::chrono::seconds(120);
  std::mt19937 rng(static_cast<uint32_t>(seed));
  if (workload == "dag") {
    rounds(seconds, [&]() -> std::string {
      const int64_t base = static_cast<int64_t>(rng() % 1000);
      std::vector<shoal::ObjectRef<std::vector<int64_t>>> level;
      for (int64_t i = 0; i < 8; ++i) level.push_back(shoal::task(leaf).max_retries(10).remote(base + i));
      while (level.size() > 1) {
        std::vector<shoal::ObjectRef<std::vector<int64_t>>> next;
        for (std::size_t i = 0; i + 1 < level.size(); i += 2) {
          next.push_back(shoal::task(combine).max_retries(10).remote(level[i], level[i + 1]));
        }
        level = std::move(next);
      }
      int64_t got = shoal::task(total).max_retries(10).remote(level[0]).get(kRoundTimeout);
      int64_t expected = 0;
      for (int64_t i = 0; i < 8; ++i) expected += total(leaf(base + i));
      return got == expected ? "" : "dag total " + std::to_string(got) + ", expected " + std::to_string(expected);
    });
    return 0;
  }
  if (workload == "mapreduce") {
    rounds(seconds, [&]() -> std::string {
      const int base = static_cast<int>(rng() % 1000);
      std::vector<shoal::ObjectRef<std::string>> maps;
      for (int i = 0; i < 6; ++i) maps.push_back(shoal::task(blob).strategy(shoal::spread()).max_retries(10).remote(base + i));
      uint64_t got = shoal::task(hash_blobs).max_retries(10).remote(maps).get(kRoundTimeout);
      uint64_t expected = 0;
      for (int i = 0; i < 6; ++i) expected = expected * 31 + fnv(blob(base + i));
      return got == expected ? "" : "mapreduce hash " + std::to_string(got) + ", expected " + std::to_string(expected);
    });
    return 0;
  }
  if (workload == "counter") {
    auto counter = shoal::actor<Counter>().max_restarts(-1).max_task_retries(-1).remote();
    uint64_t incarnation = 0;
    uint64_t last = 0;
    rounds(seconds, [&]() -> std::string {
      std::vector<uint64_t> got = counter.task(&Counter::incr).remote().get(kRoundTimeout);
      if (got.size() != 2) return "counter answered " + std::to_string(got.size()) + " numbers";
      if (got[0] != incarnation) {
        // Restarted (its node died): a new incarnation counts from 1.
        incarnation = got[0];
        last = 0;
      }
      if (got[1] != last + 1) {
        return "counter said " + std::to_string(got[1]) + " after " + std::to_string(last) + " in one incarnation";
      }
      last = got[1];
      return "";
    });
    return 0;
  }
  std::fprintf(stderr, "chaos_app: unknown workload '%s' (dag, mapreduce, counter)\n", workload.c_str());
  return 2;
}

}  // namespace

int main(int argc, char** argv) {
  auto cluster = shoal::init(argc, argv);  // `start ...` runs a node and never returns
  if (!cluster.ok()) {
    std::fprintf(stderr, "chaos_app: %s\n", cluster.status().to_string().c_str());
    return 1;
  }
  std::vector<std::string> args;
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    if (a == "--address" || a == "--token-file") {
      ++i;
      continue;
    }
    if (a.rfind("--", 0) == 0) continue;
    args.push_back(a);
  }
  if (args.size() != 3) {
    std::fprintf(stderr, "usage: chaos_app --address HOST:PORT --token-file F WORKLOAD SECONDS SEED\n");
    return 2;
  }
  return run(args[0], std::stod(args[1]), std::stoi(args[2]));
}
