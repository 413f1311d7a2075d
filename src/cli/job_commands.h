// `shoalctl submit | jobs | job | stop | logs | delete` (command jobs, issue 6).
#pragma once

#include <string>
#include <vector>

#include "cli/commands.h"

namespace shoal::cli {

struct SubmitCommand {
  std::string name;
  double cpus = 1;
  double gpus = 0;
  std::string memory;                  // "8GiB"
  std::vector<std::string> resources;  // NAME=QTY
  std::vector<std::string> env;        // KEY=VALUE
  std::string working_dir;
  int max_retries = 0;
  std::string timeout;                 // "90s"
  int priority = 0;
  std::vector<std::string> after;
  std::string array;                   // "A-B"
  std::string submission_id;
  bool no_wait = false;
  bool shell = false;
  std::vector<std::string> argv;
};

// Prints the job id(s). Without --no-wait, follows the output and exits with
// the job's exit code (128 + signal when killed, 1 for other failures).
int run_submit(const CtlOptions& options, const SubmitCommand& command);
int run_jobs_list(const CtlOptions& options, const std::string& state, bool json);
int run_job_show(const CtlOptions& options, const std::string& id, bool json);
int run_job_stop(const CtlOptions& options, const std::string& id);
int run_job_delete(const CtlOptions& options, const std::string& id);
int run_job_logs(const CtlOptions& options, const std::string& id, bool follow);

}  // namespace shoal::cli
