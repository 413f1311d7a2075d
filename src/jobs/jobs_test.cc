// Unit tests of the jobs module's pure parts: validation, encodings, the
// placement policy, durations and the rotated log files.
#include <doctest/doctest.h>

#include <unistd.h>

#include <cstdlib>
#include <map>
#include <string>

#include "jobs/job_types.h"
#include "jobs/log_file.h"
#include "jobs/scheduler.h"

namespace shoal::jobs {
namespace {

Spec simple(double cpus = 1) {
  Spec s;
  s.argv = {"true"};
  s.cpus = cpus;
  return s;
}

detail::ResourceSet cpus(double n) { return *detail::ResourceSet::from_wholes({{"CPU", n}}); }

CachedJob pending(const std::string& id, int64_t rev, double c = 1, int priority = 0) {
  CachedJob j;
  j.record.id = id;
  j.record.spec = simple(c);
  j.record.spec.priority = priority;
  j.create_revision = rev;
  j.mod_revision = rev;
  return j;
}

std::vector<Decision> schedule(const std::vector<const CachedJob*>& jobs, const std::vector<NodeView>& nodes,
                               uint64_t now_ms) {
  return jobs::schedule(jobs, nodes, now_ms, [&](const std::string& id) -> const CachedJob* {
    for (const CachedJob* j : jobs) {
      if (j->record.id == id) return j;
    }
    return nullptr;
  });
}

std::vector<const CachedJob*> ptrs(const std::vector<CachedJob>& jobs) {
  std::vector<const CachedJob*> out;
  for (const auto& j : jobs) out.push_back(&j);
  return out;
}

}  // namespace

TEST_CASE("durations parse with units and refuse garbage") {
  CHECK(*parse_duration_ms("90s") == 90'000);
  CHECK(*parse_duration_ms("1h30m") == 5'400'000);
  CHECK(*parse_duration_ms("500ms") == 500);
  CHECK(*parse_duration_ms("12") == 12'000);
  CHECK_FALSE(parse_duration_ms("").ok());
  CHECK_FALSE(parse_duration_ms("5x").ok());
  CHECK_FALSE(parse_duration_ms("-5s").ok());
  CHECK_FALSE(parse_duration_ms("0s").ok());
  CHECK_FALSE(parse_duration_ms("99999999999999h").ok());
}

TEST_CASE("entrypoints split into words without any shell interpretation") {
  auto words = split_command("echo 'a;b' \"$HOME x\" \\| `id` > f");
  REQUIRE(words.ok());
  CHECK(*words == std::vector<std::string>{"echo", "a;b", "$HOME x", "|", "`id`", ">", "f"});
  CHECK(*split_command("  a   b  ") == std::vector<std::string>{"a", "b"});
  CHECK(*split_command("''") == std::vector<std::string>{""});
  CHECK_FALSE(split_command("echo 'open").ok());
  CHECK_FALSE(split_command("echo \"open").ok());
  CHECK_FALSE(split_command("   ").ok());
}

TEST_CASE("specs are validated") {
  CHECK(validate_spec(simple()).ok());
  Spec s = simple();
  s.argv.clear();
  CHECK_FALSE(validate_spec(s).ok());
  s = simple(-1);
  CHECK_FALSE(validate_spec(s).ok());
  s = simple();
  s.gpus = 0.5;
  CHECK_FALSE(validate_spec(s).ok());
  s = simple();
  s.env["1BAD"] = "x";
  CHECK_FALSE(validate_spec(s).ok());
  s = simple();
  s.array_index = 5;
  s.array_end = 2;
  CHECK_FALSE(validate_spec(s).ok());
  CHECK_FALSE(validate_id("../etc").ok());
  CHECK_FALSE(validate_id("").ok());
  CHECK(validate_id("job_abc-1.2").ok());
  CHECK_FALSE(validate_file_path("../x").ok());
  CHECK_FALSE(validate_file_path("/x").ok());
  CHECK_FALSE(validate_file_path("a//b").ok());
  CHECK(validate_file_path("a/b.txt").ok());
}

TEST_CASE("records round-trip through their bytes; damage is an error") {
  Record r;
  r.id = "job_1";
  r.spec = simple(2);
  r.spec.env["A"] = "b";
  r.spec.after = {"job_0"};
  r.transition(State::kRunning, "running", 5, "node");
  r.gpu_ids = {0, 1};
  std::string bytes = encode_record(r);
  auto back = decode_record(bytes);
  REQUIRE(back.ok());
  CHECK(back->id == "job_1");
  CHECK(back->state == State::kRunning);
  CHECK(back->spec.env.at("A") == "b");
  CHECK(back->gpu_ids.size() == 2);
  CHECK_FALSE(decode_record("garbage!").ok());
  CHECK_FALSE(decode_record(std::string(16, '\xff')).ok());
  std::string cut = bytes.substr(0, bytes.size() / 16 * 8);
  CHECK_FALSE(decode_record(cut).ok());
}

TEST_CASE("the scheduler never places more than a node has") {
  std::vector<NodeView> nodes = {{"a", "1", cpus(2), true, false}, {"b", "2", cpus(1), true, false}};
  std::vector<CachedJob> jobs;
  for (int i = 0; i < 5; ++i) jobs.push_back(pending("j" + std::to_string(i), i + 1));
  auto decisions = schedule(ptrs(jobs), nodes, 0);
  int assigned = 0;
  for (const auto& d : decisions) assigned += d.record.state == State::kAssigned;
  CHECK(assigned == 3);
  // With those running, nothing more fits.
  for (const auto& d : decisions) {
    for (auto& j : jobs) {
      if (j.record.id == d.record.id) j.record = d.record;
    }
  }
  for (const auto& d : schedule(ptrs(jobs), nodes, 0)) CHECK(d.record.state != State::kAssigned);
}

TEST_CASE("higher priority first, no lower priority passes a blocked one") {
  std::vector<NodeView> nodes = {{"a", "1", cpus(2), true, false}};
  std::vector<CachedJob> jobs = {pending("low", 1, 1, 0), pending("big", 2, 2, 5), pending("small", 3, 1, 5)};
  auto decisions = schedule(ptrs(jobs), nodes, 0);
  std::map<std::string, State> got;
  for (const auto& d : decisions) got[d.record.id] = d.record.state;
  CHECK(got["big"] == State::kAssigned);
  CHECK(got.count("low") == 1);
  CHECK(got["low"] == State::kPending);
}

TEST_CASE("dependencies wait, then fail with their dependency") {
  std::vector<NodeView> nodes = {{"a", "1", cpus(4), true, false}};
  std::vector<CachedJob> jobs = {pending("first", 1), pending("second", 2)};
  jobs[1].record.spec.after = {"first"};
  auto decisions = schedule(ptrs(jobs), nodes, 0);
  for (const auto& d : decisions) {
    if (d.record.id == "second") {
      CHECK(d.record.state == State::kPending);
      CHECK(d.record.message.find("dependency") == 0);
    }
  }
  jobs[0].record.state = State::kFailed;
  decisions = schedule(ptrs(jobs), nodes, 0);
  REQUIRE(decisions.size() == 1);
  CHECK(decisions[0].record.state == State::kFailed);
  CHECK(decisions[0].record.message == "dependency first failed");
}

TEST_CASE("jobs of a lost node are requeued while retries last, then fail") {
  std::vector<NodeView> nodes = {{"a", "1", cpus(4), false, true}, {"b", "2", cpus(4), true, false}};
  std::vector<CachedJob> jobs = {pending("r", 1), pending("f", 2)};
  for (auto& j : jobs) {
    j.record.state = State::kRunning;
    j.record.node = "a";
  }
  jobs[0].record.spec.max_retries = 1;
  auto decisions = schedule(ptrs(jobs), nodes, 0);
  std::map<std::string, Record> got;
  for (const auto& d : decisions) got[d.record.id] = d.record;
  CHECK(got["r"].state == State::kPending);
  CHECK(got["r"].attempt == 1);
  CHECK(got["f"].state == State::kFailed);
  CHECK(got["f"].message == "node lost");
}

TEST_CASE("the oldest finished records go beyond the cap, never one a waiting job names") {
  std::vector<CachedJob> finished;
  for (int i = 0; i < 8; ++i) {
    CachedJob j = pending("f" + std::to_string(i), i + 1);
    j.record.state = State::kSucceeded;
    j.record.end_time_ms = 1000 + (i == 3 ? 10'000 : i);  // f3 ended last
    finished.push_back(j);
  }
  std::vector<CachedJob> unfinished = {pending("waits", 100)};
  unfinished[0].record.spec.after = {"f0"};
  auto names = [](const std::vector<const CachedJob*>& jobs) {
    std::vector<std::string> out;
    for (const CachedJob* j : jobs) out.push_back(j->record.id);
    return out;
  };
  CHECK(finished_to_prune(ptrs(finished), ptrs(unfinished), 8).empty());
  CHECK(finished_to_prune(ptrs(finished), ptrs(unfinished), 100).empty());
  // Keep 5: 3 go, the oldest ends first, f0 stays (awaited), f3 ended last.
  CHECK(names(finished_to_prune(ptrs(finished), ptrs(unfinished), 5)) == std::vector<std::string>{"f1", "f2", "f4"});
  CHECK(names(finished_to_prune(ptrs(finished), {}, 5)) == std::vector<std::string>{"f0", "f1", "f2"});
  // Equal end times: submission order.
  for (auto& j : finished) j.record.end_time_ms = 5;
  CHECK(names(finished_to_prune(ptrs(finished), {}, 6)) == std::vector<std::string>{"f0", "f1"});
  // One round deletes at most kPrunesPerRoundMax.
  std::vector<CachedJob> many;
  for (int i = 0; i < 200; ++i) {
    CachedJob j = pending("m" + std::to_string(i), i + 1);
    j.record.state = State::kFailed;
    many.push_back(j);
  }
  CHECK(finished_to_prune(ptrs(many), {}, 1).size() == kPrunesPerRoundMax);
}

TEST_CASE("package URIs name a key of their own, and nothing else") {
  CHECK(*package_key("gcs://_ray_pkg_0123abcd.zip") == std::string(kPackagePrefix) + "gcs/_ray_pkg_0123abcd.zip");
  for (const char* bad : {"", "gcs:/x.zip", "://x.zip", "gcs://", "GCS://x.zip", "gcs://../x", "gcs://a/b.zip",
                          "gcs://.hidden", "gcs://x y", "averyveryverylongprotocol://x", "gcs://x\ny"}) {
    auto key = package_key(bad);
    CHECK_MESSAGE(!key.ok(), bad);
    if (!key.ok()) CHECK(key.status().message().find("package URI") == 0);
  }
  CHECK_FALSE(package_key("gcs://" + std::string(129, 'a')).ok());
  CHECK(package_key("gcs://" + std::string(128, 'a')).ok());
}

TEST_CASE("random rounds: never over a node's totals, never a lower priority before a blocked higher one") {
  for (uint32_t seed = 1; seed <= 200; ++seed) {
    std::srand(seed);
    std::vector<NodeView> nodes;
    int node_count = 1 + std::rand() % 4;
    for (int n = 0; n < node_count; ++n) {
      nodes.push_back({"n" + std::to_string(n), "a", cpus(1 + std::rand() % 4), std::rand() % 5 != 0, false});
    }
    std::vector<CachedJob> jobs;
    int job_count = std::rand() % 30;
    for (int i = 0; i < job_count; ++i) {
      CachedJob j = pending("j" + std::to_string(i), i + 1, 0.5 * (1 + std::rand() % 4), std::rand() % 3);
      if (std::rand() % 3 == 0) {  // already running somewhere
        j.record.state = State::kRunning;
        j.record.node = nodes[static_cast<size_t>(std::rand() % node_count)].id;
      }
      jobs.push_back(j);
    }
    auto decisions = schedule(ptrs(jobs), nodes, 0);
    std::map<std::string, double> used;
    for (auto& j : jobs) {
      for (const auto& d : decisions) {
        if (d.record.id == j.record.id) j.record = d.record;
      }
      if (j.record.state == State::kRunning || j.record.state == State::kAssigned) used[j.record.node] += j.record.spec.cpus;
    }
    int lowest_placed_priority = 1 << 30, highest_blocked = -1;
    for (const auto& d : decisions) {
      if (d.record.state == State::kAssigned) {
        lowest_placed_priority = std::min(lowest_placed_priority, d.record.spec.priority);
      } else if (d.record.message.rfind("resources: waiting", 0) == 0) {
        highest_blocked = std::max(highest_blocked, d.record.spec.priority);
      }
    }
    INFO("seed " << seed);
    CHECK(lowest_placed_priority >= highest_blocked);
    for (const auto& n : nodes) {
      double before = 0;  // jobs that were already running may exceed nothing new
      for (const auto& j : jobs) {
        if (j.record.node == n.id && j.record.state == State::kRunning) before += j.record.spec.cpus;
      }
      if (before <= n.total.wholes("CPU")) CHECK(used[n.id] <= n.total.wholes("CPU") + 1e-9);
      if (!n.alive) {
        for (const auto& d : decisions) CHECK_FALSE((d.record.node == n.id && d.record.state == State::kAssigned));
      }
    }
  }
}

TEST_CASE("logs rotate at the cap and are read by offset") {
  char tmpl[] = "/tmp/shoal-jobs-test-XXXXXX";
  REQUIRE(::mkdtemp(tmpl) != nullptr);
  std::string dir = std::string(tmpl) + "/j";
  {
    LogWriter w(dir, 10);
    REQUIRE(w.open().ok());
    REQUIRE(w.append("0123456789abcdefghij").ok());  // two full files
    REQUIRE(w.append("XYZ").ok());                   // rotates: 0-9 dropped
    CHECK(w.end_offset() == 23);
  }
  auto all = read_log(dir, 0, 1000);
  REQUIRE(all.ok());
  CHECK(all->offset == 10);
  CHECK(all->data == "abcdefghij");
  auto rest = read_log(dir, static_cast<int64_t>(all->next_offset), 1000);
  REQUIRE(rest.ok());
  CHECK(rest->data == "XYZ");
  CHECK(rest->next_offset == 23);
  auto tail = read_log(dir, -1, 2);
  CHECK(tail->data == "YZ");
  {
    LogWriter w(dir, 10);  // a restarted node appends where it was
    REQUIRE(w.open().ok());
    CHECK(w.end_offset() == 23);
  }
  auto none = read_log(std::string(tmpl) + "/missing", 0, 10);
  REQUIRE(none.ok());
  CHECK(none->data.empty());
  std::system(("rm -rf " + std::string(tmpl)).c_str());
}

}  // namespace shoal::jobs
