// Command jobs: the values (spec, record, files), their limits, their
// validation and their encodings (schemas/jobs.capnp bytes in the metadata
// store; JSON for shoalctl and the REST API).
//
// Values only: any thread may build, copy and inspect them. Decoding never
// trusts its input (the store may hold bytes written by another version, the
// network sends anything): sizes, counts and states are checked and errors
// are Status values naming what was wrong.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <string_view>
#include <vector>

#include "jobs.capnp.h"
#include "shoal/status.h"
#include "task/resources.h"

namespace shoal::jobs {

// ---- Limits -----------------------------------------------------------------------
inline constexpr size_t kArgvMax = 1'024;
inline constexpr size_t kArgBytesMax = 64 * 1'024;
inline constexpr size_t kEntrypointBytesMax = 128 * 1'024;  // argv or shell text, all together
inline constexpr size_t kEnvMax = 256;
inline constexpr size_t kEnvValueBytesMax = 32 * 1'024;
inline constexpr size_t kMetadataMax = 64;
inline constexpr size_t kNameBytesMax = 256;
inline constexpr size_t kIdBytesMax = 64;
inline constexpr size_t kAfterMax = 64;
inline constexpr size_t kCustomResourcesMax = 32;
inline constexpr int kMaxRetriesMax = 100;
inline constexpr int64_t kArrayIndexMax = 1'000'000;
inline constexpr size_t kArrayJobsMax = 1'000;          // jobs one --array makes
inline constexpr size_t kHistoryMax = 32;               // transitions kept per record
inline constexpr size_t kWorkingDirBytesMax = 1'024 * 1'024;  // all files together (one store value)
inline constexpr size_t kWorkingDirFilesMax = 1'000;
inline constexpr size_t kRecordBytesMax = 256 * 1'024;  // one encoded record
inline constexpr uint64_t kTimeoutMsMax = 366ull * 24 * 3'600 * 1'000;

// Keys in the metadata store.
inline constexpr std::string_view kRecordPrefix = "/shoal/jobs/r/";  // + id -> JobRecord bytes
inline constexpr std::string_view kFilesPrefix = "/shoal/jobs/f/";   // + id -> JobFiles bytes
inline constexpr std::string_view kPackagePrefix = "/shoal/jobs/p/";  // + protocol/name -> JobFiles bytes

enum class State : uint8_t { kPending, kAssigned, kRunning, kSucceeded, kFailed, kStopped };
std::string_view state_name(State state);
Result<State> parse_state(std::string_view name);
bool is_terminal(State state);
// The Ray Jobs status of a state (ASSIGNED shows as PENDING).
std::string_view ray_status(State state);

struct Spec {
  std::vector<std::string> argv;
  bool shell = false;
  std::string name;
  double cpus = 1;
  double gpus = 0;
  uint64_t memory_bytes = 0;
  std::map<std::string, double> custom;
  std::map<std::string, std::string> env;
  int max_retries = 0;
  uint64_t timeout_ms = 0;
  int priority = 0;
  std::vector<std::string> after;
  int64_t array_index = -1;
  int64_t array_end = -1;  // submit only: make array_index..array_end
  std::string submission_id;
  std::map<std::string, std::string> metadata;
  bool has_working_dir = false;
  std::string entrypoint;  // display form
  std::string files_key;   // job id whose working-dir files this job uses

  // What the job holds while it runs, in the executor's units.
  Result<detail::ResourceSet> demand() const;
};

struct Event {
  uint64_t time_ms = 0;
  std::string state;
  std::string node;
  std::string message;
};

struct Record {
  std::string id;
  Spec spec;
  State state = State::kPending;
  std::string message;
  std::string node;
  std::string node_address;
  int32_t pid = 0;
  uint32_t attempt = 0;
  uint64_t submit_time_ms = 0;
  uint64_t start_time_ms = 0;
  uint64_t end_time_ms = 0;
  int32_t exit_code = -1;
  int32_t signal = 0;
  bool stop_requested = false;
  std::vector<Event> history;
  std::vector<uint32_t> gpu_ids;
  std::map<std::string, std::string> log_nodes;  // node id -> address

  // Changes state and appends to the history (bounded).
  void transition(State to, std::string message, uint64_t now_ms, const std::string& node_id);
};

struct File {
  std::string path;
  uint32_t mode = 0644;
  std::string data;
};

// ---- Validation ---------------------------------------------------------------------
// A job id (generated or a REST submission_id): 1-64 of [A-Za-z0-9_.-], not
// starting with '.'.
Status validate_id(std::string_view id);
Status validate_spec(const Spec& spec);
// Relative path without "..", empty components or a leading '/'.
Status validate_file_path(std::string_view path);
Status validate_files(const std::vector<File>& files);

// A Ray package URI ("gcs://_ray_pkg_<hash>.zip": protocol of 1-16
// lowercase letters, name of 1-128 of [A-Za-z0-9_.-] not starting with '.')
// -> its key under kPackagePrefix.
Result<std::string> package_key(std::string_view uri);

// ---- capnp ----------------------------------------------------------------------------
void to_wire(const Spec& spec, wire::JobSpec::Builder out);
Result<Spec> from_wire(wire::JobSpec::Reader in);  // validates
void to_wire(const Record& record, wire::JobRecord::Builder out);
Result<Record> from_wire(wire::JobRecord::Reader in);
void to_wire(const std::vector<File>& files, wire::JobFiles::Builder out);
Result<std::vector<File>> from_wire(wire::JobFiles::Reader in);

// Bytes for the store (flat capnp message) and back, bounded.
std::string encode_record(const Record& record);
Result<Record> decode_record(std::string_view bytes);
std::string encode_files(const std::vector<File>& files);
Result<std::vector<File>> decode_files(std::string_view bytes);

// ---- JSON (shoalctl --json and the REST API; Ray Jobs field names) -------------------
std::string json_string(std::string_view s);
std::string record_json(const Record& record);

// ---- Text -------------------------------------------------------------------------------
// Splits a command line into words the way a shell splits them (blanks,
// '...', "...", backslash), without expanding or interpreting anything:
// `echo $HOME; rm x` is four literal words.
Result<std::vector<std::string>> split_command(std::string_view text);
// "90s", "15m", "2h", "1h30m", "500ms", "3600" (seconds): milliseconds.
Result<uint64_t> parse_duration_ms(std::string_view text);

}  // namespace shoal::jobs
