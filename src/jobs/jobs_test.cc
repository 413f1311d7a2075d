// Unit tests of the jobs module's pure parts: validation, encodings, the
// placement policy, durations and the rotated log files; and the group
// reaper, with real processes.
#include <doctest/doctest.h>

#include <poll.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <map>
#include <string>
#include <vector>

#include "base/temp_dir.h"
#include "jobs/group_reaper.h"
#include "jobs/job_process.h"
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
  TempDir tmp("shoal-jobs-test");
  REQUIRE(!tmp.path.empty());
  std::string dir = tmp.path + "/j";
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
  std::string fresh = tmp.path + "/fresh";  // no rotation yet: no index file, offsets from 0
  {
    LogWriter w(fresh, 10);
    REQUIRE(w.open().ok());
    REQUIRE(w.append("abc").ok());
  }
  CHECK(::access((fresh + "/output.idx").c_str(), F_OK) != 0);
  {
    LogWriter w(fresh, 10);
    REQUIRE(w.open().ok());
    CHECK(w.end_offset() == 3);
    REQUIRE(w.append("de").ok());
  }
  auto both = read_log(fresh, 0, 1000);
  REQUIRE(both.ok());
  CHECK(both->data == "abcde");
  CHECK(both->end_offset == 5);
  auto none = read_log(tmp.path + "/missing", 0, 10);
  REQUIRE(none.ok());
  CHECK(none->data.empty());
}

// A child in a process group of its own that waits for a signal; returns
// once the group exists.
pid_t group_leader() {
  pid_t pid = ::fork();
  if (pid == 0) {
    ::setsid();
    for (;;) ::pause();
  }
  REQUIRE(pid > 0);
  for (int i = 0; i < 5000 && ::getpgid(pid) != pid; ++i) ::usleep(1000);
  REQUIRE(::getpgid(pid) == pid);
  return pid;
}

TEST_CASE("the reaper kills the groups it watches when the node's end closes, and not the forgotten ones") {
  pid_t watched = group_leader();
  pid_t forgotten = group_leader();
  pid_t helper = 0;
  {
    auto reaper = GroupReaper::start();
    REQUIRE(reaper.ok());
    helper = (*reaper)->helper_pid();
    (*reaper)->watch(watched);
    (*reaper)->watch(forgotten);
    (*reaper)->forget(forgotten);
    (*reaper)->watch(0);  // not a group: ignored
    ::usleep(20'000);
    CHECK(::kill(watched, 0) == 0);  // nothing happens while the node lives
  }  // closes the pipe, as the node's death does, and waits for the helper
  CHECK(::kill(helper, 0) != 0);
  int status = 0;
  REQUIRE(::waitpid(watched, &status, 0) == watched);
  CHECK(WIFSIGNALED(status));
  CHECK(WTERMSIG(status) == SIGKILL);
  CHECK(::waitpid(forgotten, &status, WNOHANG) == 0);  // still running
  ::kill(forgotten, SIGKILL);
  REQUIRE(::waitpid(forgotten, &status, 0) == forgotten);
}

std::string read_all(int fd) {
  std::string out;
  char buf[4096];
  ssize_t n;
  while ((n = ::read(fd, buf, sizeof buf)) > 0) out.append(buf, static_cast<size_t>(n));
  ::close(fd);
  return out;
}

// Runs argv like a job: returns its stdout, stderr and how it ended, seen
// through the pidfd as the node's loop sees it.
struct Ran {
  std::string out, err;
  ExitStatus status;
  pid_t pid = 0;
};
Ran run_job_process(std::vector<std::string> args, const std::string& cwd, std::vector<std::string> env = {}) {
  std::vector<char*> argv;
  for (auto& a : args) argv.push_back(a.data());
  argv.push_back(nullptr);
  std::vector<char*> envp;
  for (auto& e : env) envp.push_back(e.data());
  envp.push_back(nullptr);
  auto child = spawn_job_process(argv[0], argv.data(), envp.data(), cwd.c_str());
  REQUIRE(child.ok());
  Ran ran;
  ran.pid = child->pid;
  ran.out = read_all(child->output[0]);
  ran.err = read_all(child->output[1]);
  pollfd p{child->pidfd, POLLIN, 0};
  REQUIRE(::poll(&p, 1, 10'000) == 1);
  auto status = try_reap(child->pid);
  REQUIRE(status.has_value());
  ran.status = *status;
  ::close(child->pidfd);
  return ran;
}

TEST_CASE("a job process: own group, its cwd and environment, pipes, exit code and signal") {
  TempDir tmp("shoal-jobs-spawn");
  REQUIRE(!tmp.path.empty());
  const std::string& dir = tmp.path;
  Ran ran = run_job_process({"/bin/sh", "-c", "pwd; echo \"$GREETING\"; echo oops >&2; "
                                              "cut -d\" \" -f5 /proc/$$/stat; exit 3"},
                            dir, {"GREETING=hello", "PATH=/usr/bin:/bin"});
  CHECK(ran.status.exit_code == 3);
  CHECK(ran.status.term_signal == 0);
  CHECK(ran.out == dir + "\nhello\n" + std::to_string(ran.pid) + "\n");
  CHECK(ran.err == "oops\n");

  Ran killed = run_job_process({"/bin/sh", "-c", "kill -TERM $$"}, dir);
  CHECK(killed.status.term_signal == SIGTERM);

  // What the node ignores or blocks, the job gets at its default.
  struct sigaction ignore {};
  ignore.sa_handler = SIG_IGN;
  struct sigaction before {};
  ::sigaction(SIGPIPE, &ignore, &before);
  sigset_t block, old_mask;
  sigemptyset(&block);
  sigaddset(&block, SIGUSR1);
  ::sigprocmask(SIG_BLOCK, &block, &old_mask);
  Ran status = run_job_process({"/bin/grep", "-E", "^Sig(Ign|Blk)", "/proc/self/status"}, dir);
  ::sigprocmask(SIG_SETMASK, &old_mask, nullptr);
  ::sigaction(SIGPIPE, &before, nullptr);
  // glibc's posix_spawn leaves its two internal signals (32, 33: below
  // SIGRTMIN, which no program is given) ignored, as for every program a
  // glibc process starts that way; every other signal is at its default.
  unsigned long long blocked = 1, ignored = 1;
  REQUIRE(std::sscanf(status.out.c_str(), "SigBlk:\t%llx\nSigIgn:\t%llx", &blocked, &ignored) == 2);
  CHECK(blocked == 0);
  CHECK((ignored & ~((1ull << 31) | (1ull << 32))) == 0);
}

TEST_CASE("a job process that cannot start is an error, and leaves nothing behind") {
  TempDir tmp("shoal-jobs-spawn");
  REQUIRE(!tmp.path.empty());
  const std::string& dir = tmp.path;
  std::string text = dir + "/not-a-program";
  REQUIRE(std::system(("printf 'hello' > " + text + " && chmod +x " + text).c_str()) == 0);
  for (const std::string& program : {dir + "/missing", text}) {
    char* argv[] = {const_cast<char*>(program.c_str()), nullptr};
    char* envp[] = {nullptr};
    auto child = spawn_job_process(program.c_str(), argv, envp, dir.c_str());
    CHECK_FALSE(child.ok());
  }
  char* argv[] = {const_cast<char*>("/bin/true"), nullptr};
  char* envp[] = {nullptr};
  auto no_cwd = spawn_job_process("/bin/true", argv, envp, (dir + "/no-such-dir").c_str());
  CHECK_FALSE(no_cwd.ok());
  CHECK(::waitpid(-1, nullptr, WNOHANG) <= 0);  // no child left to reap
}

}  // namespace shoal::jobs
