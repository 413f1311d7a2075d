#include "cli/job_commands.h"

#include <dirent.h>
#include <sys/stat.h>
#include <unistd.h>

#include <chrono>
#include <cerrno>
#include <cinttypes>
#include <cstdio>
#include <cstring>
#include <ctime>
#include <fstream>
#include <thread>

#include "cli/ctl_support.h"
#include "jobs/job_types.h"
#include "node/machine.h"

namespace shoal::cli {
namespace {

inline constexpr int kFollowPollMs = 200;
inline constexpr int kFollowErrorsMax = 50;  // consecutive failed polls (node restarting) before giving up

int fail(const std::string& message) {
  std::fprintf(stderr, "shoalctl: %s\n", message.c_str());
  return kExitRuntimeError;
}

int usage(const std::string& message) {
  std::fprintf(stderr, "shoalctl: %s\n", message.c_str());
  return kExitUsage;
}

// Every regular file under `root`, relative paths, within the stated limits.
Status read_working_dir(const std::string& root, const std::string& rel, std::vector<jobs::File>& out,
                        size_t& total) {
  std::string dir = rel.empty() ? root : root + "/" + rel;
  DIR* d = ::opendir(dir.c_str());
  if (d == nullptr) return Status::invalid_argument("--working-dir " + dir + ": " + std::strerror(errno));
  Status result;
  while (dirent* e = ::readdir(d)) {
    std::string name = e->d_name;
    if (name == "." || name == "..") continue;
    std::string child_rel = rel.empty() ? name : rel + "/" + name;
    std::string path = root + "/" + child_rel;
    struct stat st {};
    if (::stat(path.c_str(), &st) != 0) continue;
    if (S_ISDIR(st.st_mode)) {
      result = read_working_dir(root, child_rel, out, total);
      if (!result.ok()) break;
      continue;
    }
    if (!S_ISREG(st.st_mode)) continue;
    total += static_cast<size_t>(st.st_size) + child_rel.size();
    if (total > jobs::kWorkingDirBytesMax || out.size() >= jobs::kWorkingDirFilesMax) {
      result = Status::invalid_argument("--working-dir " + root + " is too large: the limit is " +
                                        std::to_string(jobs::kWorkingDirBytesMax / 1024) + " KiB and " +
                                        std::to_string(jobs::kWorkingDirFilesMax) +
                                        " files (it is shipped through the metadata store)");
      break;
    }
    std::ifstream in(path, std::ios::binary);
    std::string data((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    out.push_back(jobs::File{child_rel, static_cast<uint32_t>(st.st_mode & 0777), std::move(data)});
  }
  ::closedir(d);
  return result;
}

Result<jobs::Spec> build_spec(const SubmitCommand& c, std::vector<jobs::File>& files) {
  jobs::Spec spec;
  spec.argv = c.argv;
  if (spec.argv.empty()) return Status::invalid_argument("no command: put it after --, e.g. shoalctl submit -- echo hi");
  if (c.shell) {
    std::string joined;
    for (size_t i = 0; i < c.argv.size(); ++i) joined += (i ? " " : "") + c.argv[i];
    spec.argv = {joined};
    spec.entrypoint = joined;
  }
  spec.shell = c.shell;
  spec.name = c.name;
  spec.cpus = c.cpus;
  spec.gpus = c.gpus;
  if (!c.memory.empty()) {
    auto bytes = node::parse_bytes(c.memory);
    if (!bytes.ok()) return Status::invalid_argument("--memory: " + bytes.status().message());
    spec.memory_bytes = *bytes;
  }
  for (const auto& r : c.resources) {
    auto parsed = node::parse_resource(r);
    if (!parsed.ok()) return Status::invalid_argument("--resource: " + parsed.status().message());
    spec.custom[parsed->first] = parsed->second;
  }
  for (const auto& e : c.env) {
    size_t eq = e.find('=');
    if (eq == std::string::npos || eq == 0) return Status::invalid_argument("--env " + e + ": expected KEY=VALUE");
    spec.env[e.substr(0, eq)] = e.substr(eq + 1);
  }
  spec.max_retries = c.max_retries;
  if (!c.timeout.empty()) {
    auto ms = jobs::parse_duration_ms(c.timeout);
    if (!ms.ok()) return Status::invalid_argument("--timeout: " + ms.status().message());
    spec.timeout_ms = *ms;
  }
  spec.priority = c.priority;
  spec.after = c.after;
  if (!c.array.empty()) {
    long long a = -1, b = -1;
    char extra = 0;
    if (std::sscanf(c.array.c_str(), "%lld-%lld%c", &a, &b, &extra) != 2 || a < 0 || b < a) {
      return Status::invalid_argument("--array " + c.array + ": expected A-B with 0 <= A <= B");
    }
    spec.array_index = a;
    spec.array_end = b;
  }
  spec.submission_id = c.submission_id;
  if (!c.working_dir.empty()) {
    size_t total = 0;
    SHOAL_RETURN_IF_ERROR(read_working_dir(c.working_dir, "", files, total));
    spec.has_working_dir = true;
  }
  SHOAL_RETURN_IF_ERROR(jobs::validate_spec(spec));
  return spec;
}

Status get_job(const CtlOptions& options, const std::string& id, jobs::Record& out) {
  return with_node(options, [&](rpc::Node::Client& node) {
    auto request = node.jobGetRequest();
    request.setId(id);
    return request.send().then([&](capnp::Response<rpc::Node::JobGetResults> r) -> Status {
      if (r.getError().size() > 0) return Status::not_found(r.getError().cStr());
      auto record = jobs::from_wire(r.getJob());
      if (!record.ok()) return Status::internal("the node sent an unreadable job: " + record.status().message());
      out = std::move(*record);
      return {};
    });
  }, false);
}

struct LogPoll {
  std::string data;
  int64_t offset = 0;
  int64_t next_offset = 0;
  bool finished = false;
};

Status poll_logs(const CtlOptions& options, const std::string& id, int64_t offset, LogPoll& out) {
  return with_node(options, [&](rpc::Node::Client& node) {
    auto request = node.jobLogsRequest();
    request.setId(id);
    request.setOffset(offset);
    request.setMaxBytes(1u << 20);
    return request.send().then([&](capnp::Response<rpc::Node::JobLogsResults> r) -> Status {
      if (r.getError().size() > 0) return Status::unavailable(r.getError().cStr());
      auto data = r.getData();
      out.data.assign(reinterpret_cast<const char*>(data.begin()), data.size());
      out.offset = r.getOffset();
      out.next_offset = r.getNextOffset();
      out.finished = r.getFinished();
      return {};
    });
  }, false);
}

// Prints the output from `offset` on; with follow, until the job is over.
Status print_logs(const CtlOptions& options, const std::string& id, int64_t offset, bool follow) {
  int errors = 0;
  for (;;) {
    LogPoll poll;
    Status s = poll_logs(options, id, offset, poll);
    if (!s.ok()) {
      if (!follow || ++errors > kFollowErrorsMax) return s;
      std::this_thread::sleep_for(std::chrono::milliseconds(kFollowPollMs));
      continue;
    }
    errors = 0;
    if (poll.offset < offset) {
      // A retry runs on another node, whose log starts again at 0.
      offset = 0;
      continue;
    }
    if (!poll.data.empty()) {
      std::fwrite(poll.data.data(), 1, poll.data.size(), stdout);
      std::fflush(stdout);
    }
    offset = poll.next_offset;
    if (!follow) {
      if (poll.data.empty() || poll.finished) return {};
      continue;  // more than one reply's worth
    }
    if (poll.finished) return {};
    if (poll.data.empty()) std::this_thread::sleep_for(std::chrono::milliseconds(kFollowPollMs));
  }
}

std::string time_text(uint64_t ms) {
  if (ms == 0) return "-";
  time_t t = static_cast<time_t>(ms / 1000);
  struct tm tm {};
  localtime_r(&t, &tm);
  char buf[32];
  std::strftime(buf, sizeof buf, "%Y-%m-%d %H:%M:%S", &tm);
  return buf;
}

int exit_code_of(const jobs::Record& r) {
  if (r.state == jobs::State::kSucceeded) return 0;
  if (r.signal > 0) return 128 + r.signal;
  if (r.exit_code > 0 && r.exit_code < 256) return r.exit_code;
  return 1;
}

}  // namespace

int run_submit(const CtlOptions& options, const SubmitCommand& command) {
  std::vector<jobs::File> files;
  auto spec = build_spec(command, files);
  if (!spec.ok()) return usage(spec.status().message());
  std::vector<std::string> ids;
  Status sent = with_node(options, [&](rpc::Node::Client& node) {
    auto request = node.jobSubmitRequest();
    jobs::to_wire(*spec, request.initSpec());
    if (!files.empty()) jobs::to_wire(files, request.initFiles());
    return request.send().then([&](capnp::Response<rpc::Node::JobSubmitResults> r) -> Status {
      if (r.getError().size() > 0) return Status::invalid_argument(r.getError().cStr());
      for (auto id : r.getIds()) ids.emplace_back(id.cStr());
      return {};
    });
  }, false);
  if (!sent.ok()) return fail(sent.message());
  for (const auto& id : ids) std::printf("%s\n", id.c_str());
  std::fflush(stdout);
  if (command.no_wait || ids.size() != 1) return kExitOk;
  const std::string& id = ids[0];
  Status followed = print_logs(options, id, 0, true);
  if (!followed.ok()) return fail("following " + id + ": " + followed.message());
  jobs::Record record;
  for (int i = 0; i < kFollowErrorsMax; ++i) {
    Status got = get_job(options, id, record);
    if (got.ok() && jobs::is_terminal(record.state)) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(kFollowPollMs));
  }
  if (!jobs::is_terminal(record.state)) return fail("job " + id + " did not finish");
  if (record.state != jobs::State::kSucceeded) {
    std::fprintf(stderr, "shoalctl: job %s %s: %s\n", id.c_str(), std::string(jobs::state_name(record.state)).c_str(),
                 record.message.c_str());
  }
  return exit_code_of(record);
}

int run_jobs_list(const CtlOptions& options, const std::string& state, bool json) {
  if (!state.empty()) {
    auto parsed = jobs::parse_state(state);
    if (!parsed.ok()) return usage("--state: " + parsed.status().message());
  }
  std::vector<jobs::Record> records;
  Status s = with_node(options, [&](rpc::Node::Client& node) {
    auto request = node.jobListRequest();
    request.setState(state);
    return request.send().then([&](capnp::Response<rpc::Node::JobListResults> r) -> Status {
      if (r.getError().size() > 0) return Status::invalid_argument(r.getError().cStr());
      for (auto j : r.getJobs()) {
        auto record = jobs::from_wire(j);
        if (record.ok()) records.push_back(std::move(*record));
      }
      return {};
    });
  }, false);
  if (!s.ok()) return fail(s.message());
  if (json) {
    std::string out = "[";
    for (size_t i = 0; i < records.size(); ++i) out += (i ? "," : "") + jobs::record_json(records[i]);
    std::printf("%s]\n", out.c_str());
    return kExitOk;
  }
  std::printf("%-24s %-10s %-9s %-20s %s\n", "JOB", "STATE", "NODE", "SUBMITTED", "COMMAND / MESSAGE");
  for (const auto& r : records) {
    std::string what = r.spec.entrypoint;
    if (what.size() > 40) what = what.substr(0, 37) + "...";
    if (!r.message.empty()) what += "  (" + r.message + ")";
    std::printf("%-24s %-10s %-9s %-20s %s\n", r.id.c_str(), std::string(jobs::state_name(r.state)).c_str(),
                r.node.empty() ? "-" : r.node.substr(0, 8).c_str(), time_text(r.submit_time_ms).c_str(), what.c_str());
  }
  return kExitOk;
}

int run_job_show(const CtlOptions& options, const std::string& id, bool json) {
  jobs::Record r;
  Status s = get_job(options, id, r);
  if (!s.ok()) return fail(s.message());
  if (json) {
    std::printf("%s\n", jobs::record_json(r).c_str());
    return kExitOk;
  }
  std::printf("job:        %s%s\n", r.id.c_str(), r.spec.name.empty() ? "" : (" (" + r.spec.name + ")").c_str());
  std::printf("state:      %s  %s\n", std::string(jobs::state_name(r.state)).c_str(), r.message.c_str());
  std::printf("command:    %s%s\n", r.spec.entrypoint.c_str(), r.spec.shell ? "  (shell)" : "");
  auto demand = r.spec.demand();
  std::printf("resources:  %s\n", demand.ok() ? demand->to_string().c_str() : "?");
  std::printf("node:       %s %s\n", r.node.empty() ? "-" : r.node.c_str(), r.node_address.c_str());
  if (r.pid) std::printf("pid:        %d\n", r.pid);
  std::printf("attempt:    %u (max retries %d)\n", r.attempt, r.spec.max_retries);
  std::printf("priority:   %d\n", r.spec.priority);
  if (!r.spec.after.empty()) {
    std::string after;
    for (const auto& a : r.spec.after) after += (after.empty() ? "" : ", ") + a;
    std::printf("after:      %s\n", after.c_str());
  }
  if (r.spec.array_index >= 0) std::printf("array index: %" PRId64 "\n", r.spec.array_index);
  std::printf("submitted:  %s\n", time_text(r.submit_time_ms).c_str());
  std::printf("started:    %s\n", time_text(r.start_time_ms).c_str());
  std::printf("ended:      %s\n", time_text(r.end_time_ms).c_str());
  if (r.exit_code >= 0) std::printf("exit code:  %d\n", r.exit_code);
  if (r.signal) std::printf("signal:     %d\n", r.signal);
  std::printf("history:\n");
  for (const auto& e : r.history) {
    std::printf("  %s  %-9s %-8s %s\n", time_text(e.time_ms).c_str(), e.state.c_str(),
                e.node.empty() ? "-" : e.node.substr(0, 8).c_str(), e.message.c_str());
  }
  return kExitOk;
}

int run_job_stop(const CtlOptions& options, const std::string& id) {
  bool stopped = false;
  Status s = with_node(options, [&](rpc::Node::Client& node) {
    auto request = node.jobStopRequest();
    request.setId(id);
    return request.send().then([&](capnp::Response<rpc::Node::JobStopResults> r) -> Status {
      if (r.getError().size() > 0) return Status::not_found(r.getError().cStr());
      stopped = r.getStopped();
      return {};
    });
  }, false);
  if (!s.ok()) return fail(s.message());
  std::printf(stopped ? "stopping %s\n" : "%s had already finished\n", id.c_str());
  return kExitOk;
}

int run_job_delete(const CtlOptions& options, const std::string& id) {
  bool deleted = false;
  Status s = with_node(options, [&](rpc::Node::Client& node) {
    auto request = node.jobDeleteRequest();
    request.setId(id);
    return request.send().then([&](capnp::Response<rpc::Node::JobDeleteResults> r) -> Status {
      if (r.getError().size() > 0) return Status::invalid_argument(r.getError().cStr());
      deleted = r.getDeleted();
      return {};
    });
  }, false);
  if (!s.ok()) return fail(s.message());
  if (!deleted) return fail(id + " changed while it was being deleted; try again");
  std::printf("deleted %s\n", id.c_str());
  return kExitOk;
}

int run_job_logs(const CtlOptions& options, const std::string& id, bool follow) {
  Status s = print_logs(options, id, 0, follow);
  if (!s.ok()) return fail(s.message());
  return kExitOk;
}

}  // namespace shoal::cli
