// The only translation unit that includes CLI11 (it costs ~5 s to compile).
#include "cli/cli.h"

#include <CLI/CLI.hpp>

#include <cstdio>
#include <cstring>
#include <iostream>
#include <string>

#include "cli/commands.h"
#include "node/machine.h"

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

void add_ctl_options(CLI::App& app, CtlOptions& ctl) {
  app.add_option("--address", ctl.address, "Node to talk to, HOST:PORT (default: a node on this machine)");
  app.add_option("--token-file", ctl.token_file, "Cluster token (default: the local node's)");
  app.add_option("--timeout-ms", ctl.timeout_ms, "How long to wait for the node")->check(CLI::Range(1, 600000));
}

int ctl_main(const std::string& prog, int argc, char** argv) {
  CLI::App app{"shoalctl: inspect and drive a shoal cluster", prog};
  app.require_subcommand(1);
  CtlOptions ctl;
  add_ctl_options(app, ctl);

  bool json = false;
  auto* status = app.add_subcommand("status", "List cluster members and their state");
  status->add_flag("--json", json, "Print JSON instead of a table");

  return parse_and_run(app, prog, argc, argv, [&]() -> int {
    if (status->parsed()) return run_status(ctl, json);
    return kExitUsage;
  });
}

// Flags given as NAME=VALUE lists are parsed by us so errors name the value.
bool apply_key_values(const std::string& prog, node::NodeOptions& options,
                      const std::vector<std::string>& resources,
                      const std::vector<std::string>& labels, const std::string& memory) {
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
  return true;
}

// `shoal start --config FILE ...`: the file's keys become flags placed before
// the command line's own, so flags given on the command line win (single
// values take the last occurrence; lists such as --join accumulate).
bool expand_config(int argc, char** argv, std::vector<std::string>& out, std::string& error) {
  out.assign(argv, argv + argc);
  if (argc < 2 || std::string(argv[1]) != "start") return true;
  std::string path;
  for (int i = 2; i < argc; i++) {
    std::string arg = argv[i];
    if (arg == "--") break;
    if (arg == "--config" && i + 1 < argc) path = argv[i + 1];
    if (arg.rfind("--config=", 0) == 0) path = arg.substr(9);
  }
  if (path.empty()) return true;
  std::vector<CLI::ConfigItem> items;
  try {
    items = CLI::ConfigTOML().from_file(path);
  } catch (const CLI::Error& e) {
    error = e.what();
    return false;
  }
  std::vector<std::string> flags;
  for (const auto& item : items) {
    if (item.name == "++" || item.name == "--") continue;  // section markers
    if (!item.parents.empty() && !(item.parents.size() == 1 && item.parents[0] == "start")) {
      error = path + ": unknown section '" + item.parents[0] + "' (options go at the top or under [start])";
      return false;
    }
    if (item.name == "config") {
      error = path + ": a config file cannot name another config file";
      return false;
    }
    for (const auto& value : item.inputs) {
      flags.push_back("--" + item.name);
      flags.push_back(value);
    }
  }
  out.insert(out.begin() + 2, flags.begin(), flags.end());
  return true;
}

int shoal_main(const std::string& prog, int argc, char** argv) {
  CLI::App app{"shoal: a peer-to-peer distributed computing node", prog};
  app.require_subcommand(1);
  app.set_version_flag("--version", "shoal 0.1.0");

  node::NodeOptions options;
  std::vector<std::string> resources, labels;
  std::string memory;
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
  start->add_option("--resource", resources, "Custom resource NAME=QTY (repeatable)");
  start->add_option("--label", labels, "Label KEY=VALUE (repeatable)");
  start->add_option("--log-level", options.log_level, "trace, debug, info, warn, error or off")
      ->check(CLI::IsMember({"trace", "debug", "info", "warn", "error", "off"}))->capture_default_str();

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

  std::vector<std::string> expanded;
  std::string config_error;
  if (!expand_config(argc, argv, expanded, config_error)) {
    std::fprintf(stderr, "%s: --config: %s\n", prog.c_str(), config_error.c_str());
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
    if (!apply_key_values(prog, options, resources, labels, memory)) return kExitUsage;
    if (cpus >= 0) options.cpus = cpus;
    if (gpus >= 0) options.gpus = static_cast<uint32_t>(gpus);
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
