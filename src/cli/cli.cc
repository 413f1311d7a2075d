// The only translation unit that includes CLI11 (it costs ~5 s to compile).
#include "cli/cli.h"

#include <CLI/CLI.hpp>

#include <algorithm>
#include <cstdio>
#include <cstring>
#include <iostream>
#include <string>

#include "cli/certs_command.h"
#include "cli/commands.h"
#include "cli/config_file.h"
#include "cli/job_commands.h"  // jobs (issue 6)
#include "node/machine.h"
#include "rpc/certs.h"

namespace shoal::cli {
namespace {

std::string program_name(const char* argv0) {
  const char* slash = std::strrchr(argv0, '/');
  return slash ? slash + 1 : argv0;
}

// Prints one line naming what was wrong and returns the usage exit code.
int usage_error(const std::string& prog, const CLI::ParseError& e) {
  std::fprintf(stderr, "%s: %s\nRun '%s --help' for usage.\n", prog.c_str(), e.what(), prog.c_str());
  return kExitUsage;
}

int parse_and_run(CLI::App& app, const std::string& prog, int argc, char** argv,
                  const std::function<int()>& run_selected) {
  try {
    app.parse(argc, argv);
  } catch (const CLI::CallForHelp& e) {
    return app.exit(e);
  } catch (const CLI::CallForAllHelp& e) {
    return app.exit(e);
  } catch (const CLI::CallForVersion& e) {
    return app.exit(e);
  } catch (const CLI::ParseError& e) {
    return usage_error(prog, e);
  }
  return run_selected();
}

// TLS flags come in a set: a certificate needs its key, a CA needs both.
bool check_tls_flags(const std::string& prog, const std::string& cert, const std::string& key,
                     const std::string& ca) {
  const char* problem = nullptr;
  if (!cert.empty() && key.empty()) problem = "--tls-cert needs --tls-key";
  if (cert.empty() && !key.empty()) problem = "--tls-key needs --tls-cert";
  if (cert.empty() && key.empty() && !ca.empty()) problem = "--tls-ca needs --tls-cert and --tls-key (mutual TLS)";
  if (problem == nullptr) return true;
  std::fprintf(stderr, "%s: %s\nRun '%s --help' for usage.\n", prog.c_str(), problem, prog.c_str());
  return false;
}

void add_ctl_options(CLI::App& app, CtlOptions& ctl) {
  app.add_option("--address", ctl.address, "Node to talk to, HOST:PORT (default: a node on this machine)");
  app.add_option("--token-file", ctl.token_file, "Cluster token (default: the local node's)");
  app.add_option("--timeout-ms", ctl.timeout_ms, "How long to wait for the node")->check(CLI::Range(1, 600000));
  app.add_option("--tls-cert", ctl.tls_cert, "Client certificate for nodes with TLS (default: the local node's)");
  app.add_option("--tls-key", ctl.tls_key, "Its private key");
  app.add_option("--tls-ca", ctl.tls_ca, "CA that signs the nodes' certificates");
  app.add_option("--tls-server-name", ctl.tls_server_name,
                 "Name the node's certificate must carry (default: node.shoal)");
}

int ctl_main(const std::string& prog, int argc, char** argv) {
  CLI::App app{"shoalctl: inspect and drive a shoal cluster", prog};
  app.require_subcommand(1);
  CtlOptions ctl;
  add_ctl_options(app, ctl);

  bool json = false;
  auto* status = app.add_subcommand("status", "List cluster members and their state");
  status->add_flag("--json", json, "Print JSON instead of a table");
  auto* memory = app.add_subcommand("memory", "List the objects every node holds or owns: size, owner, state, reference");
  memory->add_flag("--json", json, "Print JSON instead of tables");
  std::string task_prefix;
  uint32_t task_limit = 1000;
  auto* tasks_cmd = app.add_subcommand("tasks", "List the task attempts nodes ran, with each retry and its reason");
  tasks_cmd->add_flag("--json", json, "Print JSON instead of a table");
  tasks_cmd->add_option("--id", task_prefix, "Only tasks whose id starts with this");
  tasks_cmd->add_option("--limit", task_limit, "The newest attempts asked of each node")
      ->check(CLI::Range(1u, 10000u))
      ->capture_default_str();

  KvCommand kvc;
  auto* kv = app.add_subcommand("kv", "Read, write and watch the cluster's key-value store");
  kv->require_subcommand(1);
  auto* kv_get = kv->add_subcommand("get", "Print the value of KEY (exit 1 when it does not exist)");
  kv_get->add_option("key", kvc.key, "Key")->required();
  kv_get->add_flag("--json", kvc.json, "Print the key with its revisions as JSON");
  auto* kv_put = kv->add_subcommand("put", "Set KEY to VALUE");
  kv_put->add_option("key", kvc.key, "Key")->required();
  kv_put->add_option("value", kvc.value, "Value")->required();
  kv_put->add_option("--lease", kvc.lease, "Attach the key to this lease (hex id)");
  auto* kv_del = kv->add_subcommand("del", "Delete KEY (or every key starting with it, with --prefix)");
  kv_del->add_option("key", kvc.key, "Key")->required();
  kv_del->add_flag("--prefix", kvc.prefix, "Delete every key that starts with KEY");
  auto* kv_list = kv->add_subcommand("list", "List keys starting with PREFIX, with their values");
  kv_list->add_option("prefix", kvc.key, "Key prefix (default: every key)");
  kv_list->add_option("--limit", kvc.limit, "At most this many keys")->check(CLI::Range(0, 1000000));
  kv_list->add_flag("--keys-only", kvc.keys_only, "Print keys only");
  kv_list->add_flag("--json", kvc.json, "Print JSON");
  auto* kv_watch = kv->add_subcommand("watch", "Print every change of keys starting with PREFIX until interrupted");
  kv_watch->add_option("prefix", kvc.key, "Key prefix (default: every key)");
  kv_watch->add_option("--rev", kvc.revision, "Start from this revision (default: changes from now on)")
      ->check(CLI::Range(int64_t{0}, INT64_MAX));
  kv_watch->add_flag("--json", kvc.json, "One JSON object per change");

  // --- jobs (issue 6) ---
  SubmitCommand submit_cmd;
  auto* submit = app.add_subcommand("submit", "Run a command on the cluster: shoalctl submit [flags] -- CMD ARGS...");
  submit->add_option("--name", submit_cmd.name, "A name to show");
  submit->add_option("--cpus", submit_cmd.cpus, "CPUs it holds while it runs")->check(CLI::Range(0.0, 1e6))->capture_default_str();
  submit->add_option("--gpus", submit_cmd.gpus, "Whole GPUs (CUDA_VISIBLE_DEVICES names them)")->check(CLI::Range(0.0, 4096.0));
  submit->add_option("--memory", submit_cmd.memory, "Memory it holds, e.g. 2GiB");
  submit->add_option("--resource", submit_cmd.resources, "Custom resource NAME=QTY (repeatable)")->allow_extra_args(false);
  submit->add_option("--env", submit_cmd.env, "Environment variable KEY=VALUE (repeatable)")->allow_extra_args(false);
  submit->add_option("--working-dir", submit_cmd.working_dir, "Directory shipped to the node and run in (at most 1 MiB)");
  submit->add_option("--max-retries", submit_cmd.max_retries, "Requeues when its node is lost")->check(CLI::Range(0, 100));
  submit->add_option("--timeout", submit_cmd.timeout, "Time limit, e.g. 90s, 15m, 2h");
  submit->add_option("--priority", submit_cmd.priority, "Higher starts first")->check(CLI::Range(-1000000, 1000000));
  submit->add_option("--after", submit_cmd.after, "Start only after this job succeeded (repeatable)")->allow_extra_args(false);
  submit->add_option("--array", submit_cmd.array, "A-B: one job per index, SHOAL_ARRAY_INDEX set");
  submit->add_option("--submission-id", submit_cmd.submission_id, "The job id to use (default: generated)");
  submit->add_flag("--no-wait", submit_cmd.no_wait, "Print the id and return at once");
  submit->add_flag("--shell", submit_cmd.shell, "Run the command with /bin/sh -c (default: an argv, no shell)");
  submit->add_option("command", submit_cmd.argv, "The command and its arguments (after --)")->required();
  std::string job_state;
  bool job_json = false, follow = false;
  std::string job_id;
  auto* jobs_cmd = app.add_subcommand("jobs", "List jobs");
  jobs_cmd->add_option("--state", job_state, "Only jobs in this state (PENDING, RUNNING, SUCCEEDED, FAILED, ...)");
  jobs_cmd->add_flag("--json", job_json, "Print JSON (Ray Jobs field names)");
  auto* job_cmd = app.add_subcommand("job", "Show one job with its history");
  job_cmd->add_option("job", job_id, "Job id")->required();
  job_cmd->add_flag("--json", job_json, "Print JSON");
  auto* stop_cmd = app.add_subcommand("stop", "Stop a job (SIGTERM to its process group, SIGKILL after a grace period)");
  stop_cmd->add_option("job", job_id, "Job id")->required();
  auto* logs_cmd = app.add_subcommand("logs", "Print a job's output (from any node)");
  logs_cmd->add_option("job", job_id, "Job id")->required();
  logs_cmd->add_flag("-f,--follow", follow, "Keep printing until the job ends");
  auto* delete_cmd = app.add_subcommand("delete", "Delete a finished job's record");
  delete_cmd->add_option("job", job_id, "Job id")->required();
  // --- end jobs ---

  return parse_and_run(app, prog, argc, argv, [&]() -> int {
    if (!check_tls_flags(prog, ctl.tls_cert, ctl.tls_key, ctl.tls_ca)) return kExitUsage;
    if (status->parsed()) return run_status(ctl, json);
    if (memory->parsed()) return run_memory(ctl, json);
    if (tasks_cmd->parsed()) return run_tasks(ctl, json, task_prefix, task_limit);
    // --- jobs (issue 6) ---
    if (submit->parsed()) return run_submit(ctl, submit_cmd);
    if (jobs_cmd->parsed()) return run_jobs_list(ctl, job_state, job_json);
    if (job_cmd->parsed()) return run_job_show(ctl, job_id, job_json);
    if (stop_cmd->parsed()) return run_job_stop(ctl, job_id);
    if (logs_cmd->parsed()) return run_job_logs(ctl, job_id, follow);
    if (delete_cmd->parsed()) return run_job_delete(ctl, job_id);
    // --- end jobs ---
    if (kv_get->parsed()) kvc.op = KvCommand::Op::kGet;
    if (kv_put->parsed()) kvc.op = KvCommand::Op::kPut;
    if (kv_del->parsed()) kvc.op = KvCommand::Op::kDelete;
    if (kv_list->parsed()) kvc.op = KvCommand::Op::kList;
    if (kv_watch->parsed()) kvc.op = KvCommand::Op::kWatch;
    if (kv->parsed()) return run_kv(ctl, kvc);
    return kExitUsage;
  });
}

// Flags given as NAME=VALUE lists are parsed by us so errors name the value.
bool apply_key_values(const std::string& prog, node::NodeOptions& options,
                      const std::vector<std::string>& resources,
                      const std::vector<std::string>& labels, const std::string& memory,
                      const std::string& object_store_memory) {
  for (const auto& r : resources) {
    auto parsed = node::parse_resource(r);
    if (!parsed.ok()) {
      std::fprintf(stderr, "%s: --resource: %s\n", prog.c_str(), parsed.status().message().c_str());
      return false;
    }
    options.resources[parsed->first] = parsed->second;
  }
  for (const auto& l : labels) {
    auto parsed = node::parse_label(l);
    if (!parsed.ok()) {
      std::fprintf(stderr, "%s: --label: %s\n", prog.c_str(), parsed.status().message().c_str());
      return false;
    }
    options.labels[parsed->first] = parsed->second;
  }
  if (!memory.empty()) {
    auto bytes = node::parse_bytes(memory);
    if (!bytes.ok()) {
      std::fprintf(stderr, "%s: --memory: %s\n", prog.c_str(), bytes.status().message().c_str());
      return false;
    }
    options.memory_bytes = *bytes;
  }
  if (!object_store_memory.empty()) {
    auto bytes = node::parse_bytes(object_store_memory);
    if (!bytes.ok() || *bytes < (uint64_t{1} << 20)) {
      std::fprintf(stderr, "%s: --object-store-memory: %s\n", prog.c_str(),
                   bytes.ok() ? "at least 1MiB" : bytes.status().message().c_str());
      return false;
    }
    options.object_store_bytes = *bytes;
  }
  return true;
}

// ---- shoal start --config FILE ------------------------------------------------

size_t edit_distance(const std::string& a, const std::string& b) {
  std::vector<size_t> row(b.size() + 1);
  for (size_t j = 0; j <= b.size(); j++) row[j] = j;
  for (size_t i = 1; i <= a.size(); i++) {
    size_t diagonal = row[0];
    row[0] = i;
    for (size_t j = 1; j <= b.size(); j++) {
      size_t above = row[j];
      row[j] = std::min({row[j] + 1, row[j - 1] + 1, diagonal + (a[i - 1] == b[j - 1] ? 0 : 1)});
      diagonal = above;
    }
  }
  return row[b.size()];
}

// The long flag names of `shoal start` that a config file may set.
std::vector<std::string> config_keys(CLI::App& start) {
  std::vector<std::string> keys;
  for (const CLI::Option* option : start.get_options()) {
    for (const auto& name : option->get_lnames()) {
      if (name != "help" && name != "config") keys.push_back(name);
    }
  }
  std::sort(keys.begin(), keys.end());
  return keys;
}

std::string unknown_key_message(CLI::App& start, const std::string& key) {
  auto keys = config_keys(start);
  std::string best;
  size_t best_distance = 3;  // suggest only close matches
  for (const auto& candidate : keys) {
    size_t distance = edit_distance(key, candidate);
    if (distance < best_distance) {
      best_distance = distance;
      best = candidate;
    }
  }
  std::string message = "unknown key '" + key + "'";
  if (!best.empty()) message += " (did you mean '" + best + "'?)";
  message += "; the keys are the long flags of `shoal start`:";
  for (const auto& candidate : keys) message += " " + candidate;
  return message;
}

// What kinds of TOML value an option takes, from its CLI11 type name.
bool kind_fits(const CLI::Option& option, ConfigKind kind, bool array) {
  if (option.get_type_size() == 0) return kind == ConfigKind::kBoolean;  // a flag
  std::string type = option.get_type_name();
  type = type.substr(0, type.find(':'));
  if (type == "INT" || type == "UINT") return kind == ConfigKind::kInteger;
  if (type == "FLOAT") return kind == ConfigKind::kInteger || kind == ConfigKind::kFloat;
  if (type == "BOOLEAN") return kind == ConfigKind::kBoolean;
  // Text: strings; single values may also be integers (memory = 8589934592).
  return kind == ConfigKind::kString || (kind == ConfigKind::kInteger && !array);
}

std::string expected_kind(const CLI::Option& option) {
  if (option.get_type_size() == 0) return "a boolean";
  std::string type = option.get_type_name();
  type = type.substr(0, type.find(':'));
  if (type == "INT" || type == "UINT") return "an integer";
  if (type == "FLOAT") return "a number";
  if (type == "BOOLEAN") return "a boolean";
  return "a string";
}

// The flags one config entry stands for, after checking its key and type.
Result<std::vector<std::string>> entry_flags(CLI::App& start, const ConfigEntry& entry, const std::string& where) {
  std::string key = entry.key;
  std::replace(key.begin(), key.end(), '_', '-');
  if (key == "config") return Status::invalid_argument(where + "config: a config file cannot name another config file");
  CLI::Option* option = key == "help" ? nullptr : start.get_option_no_throw("--" + key);
  if (option == nullptr) return Status::invalid_argument(where + unknown_key_message(start, entry.key));
  bool many = option->get_items_expected_max() > 1;
  if (entry.kind == ConfigKind::kArray && !many) {
    return Status::invalid_argument(where + entry.key + ": expected " + expected_kind(*option) +
                                    ", got an array (only repeatable flags such as join take arrays)");
  }
  ConfigKind kind = entry.kind == ConfigKind::kArray ? entry.element_kind : entry.kind;
  if (!entry.values.empty() && !kind_fits(*option, kind, many)) {
    return Status::invalid_argument(where + entry.key + ": expected " + expected_kind(*option) + ", got " +
                                    std::string(config_kind_name(kind)) +
                                    (kind == ConfigKind::kString ? " (remove the quotes)" : ""));
  }
  std::vector<std::string> flags;
  for (const auto& value : entry.values) {
    if (option->get_type_size() == 0) {
      flags.push_back("--" + key + "=" + value);
    } else {
      flags.push_back("--" + key);
      flags.push_back(value);
    }
  }
  return flags;
}

// Parses `shoal start FLAGS` alone, so a value CLI11 rejects (a port out of
// range, an unknown log level) is reported with the line it came from.
Status check_flags(CLI::App& app, const std::string& prog, const std::vector<std::string>& flags,
                   const std::string& where, const std::string& key, const std::string& written_key) {
  std::vector<std::string> args = {prog, "start"};
  args.insert(args.end(), flags.begin(), flags.end());
  std::vector<const char*> argv;
  for (const auto& a : args) argv.push_back(a.c_str());
  app.clear();
  try {
    app.parse(static_cast<int>(argv.size()), argv.data());
  } catch (const CLI::ParseError& e) {
    std::string message = e.what();
    std::string prefix = "--" + key + ": ";
    if (message.rfind(prefix, 0) == 0) message.erase(0, prefix.size());
    app.clear();
    return Status::invalid_argument(where + written_key + ": " + message);
  }
  app.clear();
  return {};
}

// `shoal start --config FILE ...`: the file's keys become flags placed before
// the command line's own, so flags given on the command line win (single
// values take the last occurrence; lists such as --join accumulate). Errors
// read "FILE:LINE: KEY: what is wrong".
Status expand_config(CLI::App& app, CLI::App& start, const std::string& prog, int argc, char** argv,
                     std::vector<std::string>& out) {
  out.assign(argv, argv + argc);
  if (argc < 2 || std::string(argv[1]) != "start") return {};
  std::string path;
  for (int i = 2; i < argc; i++) {
    std::string arg = argv[i];
    if (arg == "--") break;
    if (arg == "--config" && i + 1 < argc) path = argv[i + 1];
    if (arg.rfind("--config=", 0) == 0) path = arg.substr(9);
  }
  if (path.empty()) return {};
  auto entries = read_config_file(path);
  if (!entries.ok()) return entries.status();
  std::vector<std::string> flags;
  for (const auto& entry : *entries) {
    std::string where = path + ":" + std::to_string(entry.line) + ": ";
    if (!entry.section.empty() && entry.section != "start") {
      return Status::invalid_argument(where + "unknown table [" + entry.section +
                                      "] (options go at the top or under [start])");
    }
    auto entry_args = entry_flags(start, entry, where);
    if (!entry_args.ok()) return entry_args.status();
    std::string key = entry.key;
    std::replace(key.begin(), key.end(), '_', '-');
    SHOAL_RETURN_IF_ERROR(check_flags(app, prog, *entry_args, where, key, entry.key));
    flags.insert(flags.end(), entry_args->begin(), entry_args->end());
  }
  out.insert(out.begin() + 2, flags.begin(), flags.end());
  return {};
}

int shoal_main(const std::string& prog, int argc, char** argv) {
  CLI::App app{"shoal: a peer-to-peer distributed computing node", prog};
  app.require_subcommand(1);
  app.set_version_flag("--version", "shoal " SHOAL_VERSION);

  node::NodeOptions options;
  std::vector<std::string> resources, labels;
  std::string memory, object_store_memory;
  double cpus = -1;
  int64_t gpus = -1;
  auto* start = app.add_subcommand("start", "Run a node in the foreground (bootstraps a cluster unless --join)");
  // The config file is expanded into flags before parsing (expand_config);
  // this option only documents it and takes its value.
  std::string config_file;
  start->add_option("--config", config_file, "Read options from a TOML file (keys are the long flag names)");
  start->option_defaults()->multi_option_policy(CLI::MultiOptionPolicy::TakeLast);
  start->add_option("--port", options.port, "TCP (RPC) and UDP (gossip) port")
      ->check(CLI::Range(1, 65535))->capture_default_str();
  start->add_option("--bind", options.bind, "Address to listen on")->capture_default_str();
  start->add_option("--advertise", options.advertise, "Address peers use to reach this node (default: bind:port)");
  start->add_option("--join", options.join, "HOST:PORT of a cluster member (repeatable)");
  start->add_option("--data-dir", options.data_dir, "Where the node keeps its state");
  start->add_option("--token-file", options.token_file, "Cluster token (default: <data-dir>/token)");
  start->add_option("--cpus", cpus, "CPUs to offer (default: detected)")->check(CLI::Range(0.0, 1e6));
  start->add_option("--memory", memory, "Memory to offer, e.g. 8GiB (default: detected)");
  start->add_option("--gpus", gpus, "GPUs to offer (default: detected)")->check(CLI::Range(0, 4096));
  start->add_option("--object-store-memory", object_store_memory,
                    "Large values kept in memory before spilling to <data-dir>/spill, e.g. 4GiB (default: 30% of RAM)");
  start->add_option("--resource", resources, "Custom resource NAME=QTY (repeatable)");
  start->add_option("--label", labels, "Label KEY=VALUE (repeatable)");
  start->add_option("--voters", options.voters, "Voters in the metadata Raft group (odd, 1-7)")
      ->check(CLI::IsMember({1, 3, 5, 7}))->capture_default_str();
  start->add_option("--voter-grace", options.voter_grace_s,
                    "Seconds a voter may be dead (per gossip) before it is replaced")
      ->check(CLI::Range(1, 86400))->capture_default_str();
  start->add_option("--log-level", options.log_level, "trace, debug, info, warn, error or off")
      ->check(CLI::IsMember({"trace", "debug", "info", "warn", "error", "off"}))->capture_default_str();
  start->add_option("--tls-cert", options.tls_cert,
                    "PEM certificate of this node: turns on TLS for RPC (make one: shoal certs init)");
  start->add_option("--tls-key", options.tls_key, "PEM private key of --tls-cert (not world-readable)");
  start->add_option("--tls-ca", options.tls_ca,
                    "PEM CA certificate: peers must present a certificate it signed (mutual TLS)");
  start->add_option("--tls-server-name", options.tls_server_name,
                    "Name every node certificate carries (default: node.shoal)");
  // jobs (issue 6)
  int http_port = -1;
  start->add_option("--http-port", http_port, "Jobs REST API port (0: off; default 8265 when free)")
      ->check(CLI::Range(0, 65535));
  start->add_option("--http-bind", options.http_bind, "Address of the REST API (default: --bind)");
  start->add_option("--max-finished-jobs", options.max_finished_jobs,
                    "Finished job records kept; the oldest beyond this are deleted with their logs")
      ->check(CLI::Range(uint64_t{1}, uint64_t{10'000'000}))
      ->capture_default_str();
  int busy_poll_us = -1;
  start->add_option("--busy-poll-us", busy_poll_us,
                    "Longest spin of the event loops before they sleep, adapted to traffic "
                    "(0: never spin; default 100)")
      ->check(CLI::Range(0, 100'000));

  auto* certs = app.add_subcommand("certs", "Make a CA and node certificates for TLS between nodes");
  certs->require_subcommand(1);
  CertsOptions certs_options;
  certs_options.days = rpc::kNodeCertValidityDays;
  auto* certs_init = certs->add_subcommand("init", "Write a new CA and node certificates into DIR");
  certs_init->add_option("dir", certs_options.dir, "Directory to write (created if missing)")->required();
  certs_init->add_option("--node", certs_options.nodes, "Node name, one certificate each (repeatable; default node1..node3)");
  certs_init->add_option("--days", certs_options.days, "Validity of the node certificates")
      ->check(CLI::Range(1u, rpc::kCertValidityDaysMax))->capture_default_str();
  std::string issue_name;
  auto* certs_issue = certs->add_subcommand("issue", "Write one more node certificate signed by DIR's CA");
  certs_issue->add_option("dir", certs_options.dir, "Directory made by `certs init` (holds ca.crt and ca.key)")->required();
  certs_issue->add_option("name", issue_name, "Node name (file stem and certificate name)")->required();
  certs_issue->add_option("--san", certs_options.names, "Extra host name or IP address (repeatable)");
  certs_issue->add_option("--days", certs_options.days, "Validity")
      ->check(CLI::Range(1u, rpc::kCertValidityDaysMax))->capture_default_str();

  auto* ctl = app.add_subcommand("ctl", "The shoalctl commands (shoal ctl --help)");
  ctl->prefix_command();

  auto* debug = app.add_subcommand("debug", "Diagnostics");
  debug->require_subcommand(1);
  std::string probe_address, probe_token;
  int probe_timeout_ms = 1000;
  auto* probe = debug->add_subcommand("gossip-probe", "Send one signed gossip ping and wait for the ack");
  probe->add_option("address", probe_address, "HOST:PORT")->required();
  probe->add_option("--token-file", probe_token, "Key to sign with")->required();
  probe->add_option("--timeout-ms", probe_timeout_ms, "How long to wait")->check(CLI::Range(1, 60000));

  KvLoadOptions load;
  auto* kv_load = debug->add_subcommand("kv-load", "Write many keys through several nodes and report latency");
  kv_load->add_option("--address", load.addresses, "Node HOST:PORT (repeatable; writes rotate over them)")->required();
  kv_load->add_option("--token-file", load.token_file, "Cluster token")->required();
  kv_load->add_option("--count", load.count, "Writes")->check(CLI::Range(uint64_t{1}, uint64_t{100000000}));
  kv_load->add_option("--concurrency", load.concurrency, "Writes in flight")->check(CLI::Range(1, 1000));
  kv_load->add_option("--prefix", load.prefix, "Key prefix");
  kv_load->add_option("--value-bytes", load.value_bytes, "Value size")->check(CLI::Range(size_t{1}, size_t{1} << 20));
  kv_load->add_option("--write-timeout-ms", load.write_timeout_ms, "Give up on one write after this long")
      ->check(CLI::Range(uint64_t{1}, uint64_t{600000}));
  kv_load->add_option("--acked", load.acked_file, "Append 'KEY VALUE' for every acknowledged write to this file");
  kv_load->add_option("--duration-s", load.duration_s, "Stop issuing writes after this many seconds");

  std::vector<std::string> expanded;
  Status config = expand_config(app, *start, prog, argc, argv, expanded);
  if (!config.ok()) {
    std::fprintf(stderr, "%s: %s\n", prog.c_str(), config.message().c_str());
    return kExitUsage;
  }
  std::vector<char*> expanded_argv;
  for (auto& a : expanded) expanded_argv.push_back(a.data());
  return parse_and_run(app, prog, static_cast<int>(expanded_argv.size()), expanded_argv.data(), [&]() -> int {
    if (ctl->parsed()) {
      std::vector<std::string> rest = ctl->remaining();
      std::vector<char*> args;
      std::string ctl_name = prog + " ctl";
      args.push_back(ctl_name.data());
      for (auto& r : rest) args.push_back(r.data());
      return ctl_main(ctl_name, static_cast<int>(args.size()), args.data());
    }
    if (probe->parsed()) return run_gossip_probe(probe_address, probe_token, probe_timeout_ms);
    if (certs_init->parsed()) {
      if (certs_options.nodes.empty()) certs_options.nodes = {"node1", "node2", "node3"};
      return run_certs_init(certs_options);
    }
    if (certs_issue->parsed()) {
      certs_options.nodes = {issue_name};
      return run_certs_issue(certs_options);
    }
    if (kv_load->parsed()) return run_kv_load(load);
    if (!apply_key_values(prog, options, resources, labels, memory, object_store_memory)) return kExitUsage;
    if (!check_tls_flags(prog, options.tls_cert, options.tls_key, options.tls_ca)) return kExitUsage;
    if (cpus >= 0) options.cpus = cpus;
    if (gpus >= 0) options.gpus = static_cast<uint32_t>(gpus);
    if (http_port >= 0) options.http_port = static_cast<uint16_t>(http_port);  // jobs (issue 6)
    if (busy_poll_us >= 0) options.busy_poll_us = static_cast<uint32_t>(busy_poll_us);
    return run_start(options);
  });
}

}  // namespace

int main(int argc, char** argv) {
  std::string prog = program_name(argc > 0 ? argv[0] : "shoal");
  if (prog == "shoalctl") return ctl_main(prog, argc, argv);
  return shoal_main(prog, argc, argv);
}

}  // namespace shoal::cli
