#include "jobs/job_types.h"
#include "base/json.h"

#include <capnp/message.h>
#include <capnp/serialize.h>
#include <kj/exception.h>

#include <cctype>
#include <cmath>
#include <cstdio>
#include <cstring>

namespace shoal::jobs {

namespace {

constexpr std::string_view kStateNames[] = {"PENDING", "ASSIGNED", "RUNNING", "SUCCEEDED", "FAILED", "STOPPED"};

Status check_text(std::string_view what, std::string_view value, size_t max_bytes) {
  if (value.size() > max_bytes) {
    return Status::invalid_argument(std::string(what) + " is " + std::to_string(value.size()) +
                                    " bytes; the limit is " + std::to_string(max_bytes));
  }
  if (value.find('\0') != std::string_view::npos) {
    return Status::invalid_argument(std::string(what) + " contains a NUL byte");
  }
  return {};
}

Status check_env_name(std::string_view name) {
  if (name.empty() || name.size() > 256) return Status::invalid_argument("environment variable name '" +
                                                                          std::string(name) + "' must be 1-256 bytes");
  for (char c : name) {
    if (!(std::isalnum(static_cast<unsigned char>(c)) || c == '_')) {
      return Status::invalid_argument("environment variable name '" + std::string(name) +
                                      "' may hold only letters, digits and '_'");
    }
  }
  if (std::isdigit(static_cast<unsigned char>(name[0]))) {
    return Status::invalid_argument("environment variable name '" + std::string(name) + "' starts with a digit");
  }
  return {};
}

std::string format_double(double v) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.17g", v);
  return buf;
}

}  // namespace

std::string_view state_name(State state) { return kStateNames[static_cast<int>(state)]; }

Result<State> parse_state(std::string_view name) {
  for (int i = 0; i < 6; ++i) {
    std::string upper(name);
    for (char& c : upper) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
    if (upper == kStateNames[i]) return static_cast<State>(i);
  }
  return Status::invalid_argument("unknown job state '" + std::string(name) +
                                  "' (PENDING, ASSIGNED, RUNNING, SUCCEEDED, FAILED or STOPPED)");
}

bool is_terminal(State state) {
  return state == State::kSucceeded || state == State::kFailed || state == State::kStopped;
}

std::string_view ray_status(State state) {
  return state == State::kAssigned ? "PENDING" : state_name(state);
}

Result<detail::ResourceSet> Spec::demand() const {
  std::vector<std::pair<std::string, double>> wholes = {
      {std::string(detail::ResourceSet::kCpu), cpus},
      {std::string(detail::ResourceSet::kGpu), gpus},
      {std::string(detail::ResourceSet::kMemory), static_cast<double>(memory_bytes)},
  };
  for (const auto& [name, amount] : custom) wholes.emplace_back(name, amount);
  return detail::ResourceSet::from_wholes(wholes);
}

void Record::transition(State to, std::string why, uint64_t now_ms, const std::string& node_id) {
  state = to;
  message = std::move(why);
  history.push_back(Event{now_ms, std::string(state_name(to)), node_id, message});
  if (history.size() > kHistoryMax) history.erase(history.begin(), history.end() - kHistoryMax);
}

// ---- Validation ---------------------------------------------------------------------

Status validate_id(std::string_view id) {
  if (id.empty() || id.size() > kIdBytesMax) {
    return Status::invalid_argument("job id '" + std::string(id.substr(0, 80)) + "' must be 1-64 characters");
  }
  if (id[0] == '.') return Status::invalid_argument("job id '" + std::string(id) + "' starts with '.'");
  for (char c : id) {
    if (!(std::isalnum(static_cast<unsigned char>(c)) || c == '_' || c == '-' || c == '.')) {
      return Status::invalid_argument("job id '" + std::string(id) +
                                      "' may hold only letters, digits, '_', '-' and '.'");
    }
  }
  return {};
}

Status validate_spec(const Spec& spec) {
  if (spec.argv.empty() || spec.argv[0].empty()) return Status::invalid_argument("the job has no command");
  if (spec.argv.size() > kArgvMax) {
    return Status::invalid_argument("the command has " + std::to_string(spec.argv.size()) +
                                    " arguments; the limit is " + std::to_string(kArgvMax));
  }
  if (spec.shell && spec.argv.size() != 1) {
    return Status::invalid_argument("a shell command is one string");
  }
  size_t total = 0;
  for (const auto& arg : spec.argv) {
    SHOAL_RETURN_IF_ERROR(check_text("a command argument", arg, kArgBytesMax));
    total += arg.size();
  }
  if (total > kEntrypointBytesMax) {
    return Status::invalid_argument("the command is " + std::to_string(total) + " bytes; the limit is " +
                                    std::to_string(kEntrypointBytesMax));
  }
  SHOAL_RETURN_IF_ERROR(check_text("the entrypoint", spec.entrypoint, kEntrypointBytesMax + kArgvMax));
  SHOAL_RETURN_IF_ERROR(check_text("the job name", spec.name, kNameBytesMax));
  auto check_quantity = [](const std::string& what, double v) -> Status {
    if (!std::isfinite(v) || v < 0 || v > 1e6) {
      return Status::invalid_argument(what + " = " + format_double(v) + ": must be a number from 0 to 1000000");
    }
    return {};
  };
  SHOAL_RETURN_IF_ERROR(check_quantity("cpus", spec.cpus));
  SHOAL_RETURN_IF_ERROR(check_quantity("gpus", spec.gpus));
  if (spec.gpus != std::floor(spec.gpus)) {
    return Status::invalid_argument("gpus = " + format_double(spec.gpus) + ": a job takes whole GPUs");
  }
  if (spec.memory_bytes > (uint64_t{1} << 50)) return Status::invalid_argument("memory: more than 1 PiB");
  if (spec.custom.size() > kCustomResourcesMax) return Status::invalid_argument("too many custom resources");
  for (const auto& [name, amount] : spec.custom) {
    SHOAL_RETURN_IF_ERROR(check_text("a resource name", name, 128));
    if (name.empty()) return Status::invalid_argument("a resource has an empty name");
    if (name == "CPU" || name == "GPU" || name == "memory") {
      return Status::invalid_argument("resource " + name + " is built in: use --cpus, --gpus or --memory");
    }
    SHOAL_RETURN_IF_ERROR(check_quantity("resource " + name, amount));
  }
  if (spec.env.size() > kEnvMax) return Status::invalid_argument("too many environment variables (limit 256)");
  for (const auto& [name, value] : spec.env) {
    SHOAL_RETURN_IF_ERROR(check_env_name(name));
    SHOAL_RETURN_IF_ERROR(check_text("environment variable " + name, value, kEnvValueBytesMax));
  }
  if (spec.metadata.size() > kMetadataMax) return Status::invalid_argument("too many metadata entries (limit 64)");
  for (const auto& [key, value] : spec.metadata) {
    SHOAL_RETURN_IF_ERROR(check_text("a metadata key", key, 256));
    SHOAL_RETURN_IF_ERROR(check_text("metadata " + key, value, 4096));
  }
  if (spec.max_retries < 0 || spec.max_retries > kMaxRetriesMax) {
    return Status::invalid_argument("max retries " + std::to_string(spec.max_retries) + ": must be 0-100");
  }
  if (spec.timeout_ms > kTimeoutMsMax) return Status::invalid_argument("timeout: more than a year");
  if (spec.priority < -1'000'000 || spec.priority > 1'000'000) {
    return Status::invalid_argument("priority must be from -1000000 to 1000000");
  }
  if (spec.after.size() > kAfterMax) return Status::invalid_argument("too many --after jobs (limit 64)");
  for (const auto& dep : spec.after) SHOAL_RETURN_IF_ERROR(validate_id(dep));
  if (spec.array_index < -1 || spec.array_index > kArrayIndexMax || spec.array_end > kArrayIndexMax) {
    return Status::invalid_argument("array indexes must be from 0 to 1000000");
  }
  if (spec.array_end >= 0) {
    if (spec.array_index < 0 || spec.array_end < spec.array_index) {
      return Status::invalid_argument("--array A-B needs 0 <= A <= B");
    }
    if (static_cast<size_t>(spec.array_end - spec.array_index + 1) > kArrayJobsMax) {
      return Status::invalid_argument("--array makes at most 1000 jobs");
    }
  }
  if (!spec.submission_id.empty()) SHOAL_RETURN_IF_ERROR(validate_id(spec.submission_id));
  return {};
}

Status validate_file_path(std::string_view path) {
  if (path.empty() || path.size() > 1024) return Status::invalid_argument("a working-dir path must be 1-1024 bytes");
  if (path[0] == '/') return Status::invalid_argument("working-dir path '" + std::string(path) + "' is absolute");
  size_t start = 0;
  while (start <= path.size()) {
    size_t end = path.find('/', start);
    if (end == std::string_view::npos) end = path.size();
    std::string_view part = path.substr(start, end - start);
    if (part.empty() || part == "." || part == "..") {
      return Status::invalid_argument("working-dir path '" + std::string(path) + "' has an empty, '.' or '..' part");
    }
    start = end + 1;
  }
  if (path.find('\0') != std::string_view::npos) return Status::invalid_argument("working-dir path has a NUL byte");
  return {};
}

Result<std::string> package_key(std::string_view uri) {
  size_t sep = uri.find("://");
  std::string_view protocol = uri.substr(0, sep == std::string_view::npos ? 0 : sep);
  std::string_view name = sep == std::string_view::npos ? std::string_view() : uri.substr(sep + 3);
  auto bad = [&](const std::string& why) {
    return Status::invalid_argument("package URI " + json_string(uri.substr(0, 200)) + ": " + why);
  };
  if (protocol.empty() || protocol.size() > 16) return bad("expected <protocol>://<name>, like gcs://_ray_pkg_1a2b.zip");
  for (char ch : protocol) {
    if (ch < 'a' || ch > 'z') return bad("the protocol must be lowercase letters");
  }
  if (name.empty() || name.size() > 128 || name[0] == '.') return bad("the name must be 1-128 characters, not starting with '.'");
  for (char ch : name) {
    bool ok = (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') || ch == '_' ||
              ch == '.' || ch == '-';
    if (!ok) return bad("the name may hold only letters, digits, '_', '.' and '-'");
  }
  return std::string(kPackagePrefix) + std::string(protocol) + "/" + std::string(name);
}

Status validate_files(const std::vector<File>& files) {
  if (files.size() > kWorkingDirFilesMax) {
    return Status::invalid_argument("the working dir has " + std::to_string(files.size()) +
                                    " files; the limit is " + std::to_string(kWorkingDirFilesMax));
  }
  size_t total = 0;
  for (const auto& f : files) {
    SHOAL_RETURN_IF_ERROR(validate_file_path(f.path));
    total += f.data.size() + f.path.size();
  }
  if (total > kWorkingDirBytesMax) {
    return Status::invalid_argument("the working dir holds " + std::to_string(total) + " bytes; the limit is " +
                                    std::to_string(kWorkingDirBytesMax) + " (1 MiB)");
  }
  return {};
}

// ---- capnp ----------------------------------------------------------------------------

namespace {

template <typename Builder>
void set_pairs(Builder list_builder, const std::map<std::string, std::string>& pairs) {
  unsigned i = 0;
  for (const auto& [k, v] : pairs) {
    list_builder[i].setKey(k);
    list_builder[i].setValue(v);
    ++i;
  }
}

std::map<std::string, std::string> get_pairs(capnp::List<wire::JobPair>::Reader list) {
  std::map<std::string, std::string> out;
  for (auto p : list) out[p.getKey().cStr()] = p.getValue().cStr();
  return out;
}

}  // namespace

void to_wire(const Spec& spec, wire::JobSpec::Builder out) {
  auto argv = out.initArgv(static_cast<unsigned>(spec.argv.size()));
  for (unsigned i = 0; i < spec.argv.size(); ++i) argv.set(i, spec.argv[i]);
  out.setShell(spec.shell);
  out.setName(spec.name);
  out.setCpus(spec.cpus);
  out.setGpus(spec.gpus);
  out.setMemoryBytes(spec.memory_bytes);
  auto custom = out.initCustom(static_cast<unsigned>(spec.custom.size()));
  unsigned i = 0;
  for (const auto& [name, amount] : spec.custom) {
    custom[i].setName(name);
    custom[i].setAmount(amount);
    ++i;
  }
  set_pairs(out.initEnv(static_cast<unsigned>(spec.env.size())), spec.env);
  out.setMaxRetries(spec.max_retries);
  out.setTimeoutMs(spec.timeout_ms);
  out.setPriority(spec.priority);
  auto after = out.initAfter(static_cast<unsigned>(spec.after.size()));
  for (unsigned j = 0; j < spec.after.size(); ++j) after.set(j, spec.after[j]);
  out.setArrayIndex(spec.array_index);
  out.setArrayEnd(spec.array_end);
  out.setSubmissionId(spec.submission_id);
  set_pairs(out.initMetadata(static_cast<unsigned>(spec.metadata.size())), spec.metadata);
  out.setHasWorkingDir(spec.has_working_dir);
  out.setEntrypoint(spec.entrypoint);
  out.setFilesKey(spec.files_key);
}

Result<Spec> from_wire(wire::JobSpec::Reader in) {
  Spec spec;
  if (in.getArgv().size() > kArgvMax) return Status::invalid_argument("too many command arguments");
  for (auto a : in.getArgv()) spec.argv.emplace_back(a.cStr(), a.size());
  spec.shell = in.getShell();
  spec.name = in.getName().cStr();
  spec.cpus = in.getCpus();
  spec.gpus = in.getGpus();
  spec.memory_bytes = in.getMemoryBytes();
  if (in.getCustom().size() > kCustomResourcesMax) return Status::invalid_argument("too many custom resources");
  for (auto q : in.getCustom()) spec.custom[q.getName().cStr()] = q.getAmount();
  if (in.getEnv().size() > kEnvMax) return Status::invalid_argument("too many environment variables");
  spec.env = get_pairs(in.getEnv());
  spec.max_retries = in.getMaxRetries();
  spec.timeout_ms = in.getTimeoutMs();
  spec.priority = in.getPriority();
  if (in.getAfter().size() > kAfterMax) return Status::invalid_argument("too many --after jobs");
  for (auto a : in.getAfter()) spec.after.emplace_back(a.cStr());
  spec.array_index = in.getArrayIndex();
  spec.array_end = in.getArrayEnd();
  spec.submission_id = in.getSubmissionId().cStr();
  if (in.getMetadata().size() > kMetadataMax) return Status::invalid_argument("too many metadata entries");
  spec.metadata = get_pairs(in.getMetadata());
  spec.has_working_dir = in.getHasWorkingDir();
  spec.entrypoint = in.getEntrypoint().cStr();
  spec.files_key = in.getFilesKey().cStr();
  if (!spec.files_key.empty()) SHOAL_RETURN_IF_ERROR(validate_id(spec.files_key));
  SHOAL_RETURN_IF_ERROR(validate_spec(spec));
  return spec;
}

void to_wire(const Record& r, wire::JobRecord::Builder out) {
  out.setId(r.id);
  to_wire(r.spec, out.initSpec());
  out.setState(std::string(state_name(r.state)));
  out.setMessage(r.message);
  out.setNode(r.node);
  out.setNodeAddress(r.node_address);
  out.setPid(r.pid);
  out.setAttempt(r.attempt);
  out.setSubmitTimeMs(r.submit_time_ms);
  out.setStartTimeMs(r.start_time_ms);
  out.setEndTimeMs(r.end_time_ms);
  out.setExitCode(r.exit_code);
  out.setSignal(r.signal);
  out.setStopRequested(r.stop_requested);
  auto history = out.initHistory(static_cast<unsigned>(r.history.size()));
  for (unsigned i = 0; i < r.history.size(); ++i) {
    history[i].setTimeMs(r.history[i].time_ms);
    history[i].setState(r.history[i].state);
    history[i].setNode(r.history[i].node);
    history[i].setMessage(r.history[i].message);
  }
  auto gpus = out.initGpuIds(static_cast<unsigned>(r.gpu_ids.size()));
  for (unsigned i = 0; i < r.gpu_ids.size(); ++i) gpus.set(i, r.gpu_ids[i]);
  set_pairs(out.initLogNodes(static_cast<unsigned>(r.log_nodes.size())), r.log_nodes);
}

Result<Record> from_wire(wire::JobRecord::Reader in) {
  Record r;
  r.id = in.getId().cStr();
  SHOAL_RETURN_IF_ERROR(validate_id(r.id));
  auto spec = from_wire(in.getSpec());
  if (!spec.ok()) return Status::invalid_argument("job " + r.id + ": " + spec.status().message());
  r.spec = std::move(*spec);
  auto state = parse_state(in.getState().cStr());
  if (!state.ok()) return state.status();
  r.state = *state;
  r.message = in.getMessage().cStr();
  r.node = in.getNode().cStr();
  r.node_address = in.getNodeAddress().cStr();
  r.pid = in.getPid();
  r.attempt = in.getAttempt();
  r.submit_time_ms = in.getSubmitTimeMs();
  r.start_time_ms = in.getStartTimeMs();
  r.end_time_ms = in.getEndTimeMs();
  r.exit_code = in.getExitCode();
  r.signal = in.getSignal();
  r.stop_requested = in.getStopRequested();
  if (in.getHistory().size() > kHistoryMax * 2) return Status::invalid_argument("job history too long");
  for (auto e : in.getHistory()) {
    r.history.push_back(Event{e.getTimeMs(), e.getState().cStr(), e.getNode().cStr(), e.getMessage().cStr()});
  }
  if (in.getGpuIds().size() > 4096) return Status::invalid_argument("too many GPU ids");
  for (auto g : in.getGpuIds()) r.gpu_ids.push_back(g);
  if (in.getLogNodes().size() > 1024) return Status::invalid_argument("too many log nodes");
  r.log_nodes = get_pairs(in.getLogNodes());
  return r;
}

void to_wire(const std::vector<File>& files, wire::JobFiles::Builder out) {
  auto list = out.initFiles(static_cast<unsigned>(files.size()));
  for (unsigned i = 0; i < files.size(); ++i) {
    list[i].setPath(files[i].path);
    list[i].setMode(files[i].mode);
    list[i].setData(kj::arrayPtr(reinterpret_cast<const kj::byte*>(files[i].data.data()), files[i].data.size()));
  }
}

Result<std::vector<File>> from_wire(wire::JobFiles::Reader in) {
  if (in.getFiles().size() > kWorkingDirFilesMax) return Status::invalid_argument("too many working-dir files");
  std::vector<File> files;
  for (auto f : in.getFiles()) {
    auto data = f.getData();
    files.push_back(File{f.getPath().cStr(), f.getMode() & 0777,
                         std::string(reinterpret_cast<const char*>(data.begin()), data.size())});
  }
  SHOAL_RETURN_IF_ERROR(validate_files(files));
  return files;
}

namespace {

std::string to_bytes(capnp::MallocMessageBuilder& message) {
  auto words = capnp::messageToFlatArray(message);
  auto bytes = words.asBytes();
  return std::string(reinterpret_cast<const char*>(bytes.begin()), bytes.size());
}

template <typename Fn>
auto read_message(std::string_view bytes, size_t max_bytes, Fn&& fn) -> decltype(fn(std::declval<capnp::FlatArrayMessageReader&>())) {
  if (bytes.size() > max_bytes) return Status::resource_exhausted("a stored job value is too large");
  if (bytes.size() % sizeof(capnp::word) != 0 || bytes.empty()) {
    return Status::invalid_argument("a stored job value is not a Cap'n Proto message");
  }
  // Copy into aligned words: store values carry no alignment promise.
  kj::Array<capnp::word> words = kj::heapArray<capnp::word>(bytes.size() / sizeof(capnp::word));
  std::memcpy(words.begin(), bytes.data(), bytes.size());
  decltype(fn(std::declval<capnp::FlatArrayMessageReader&>())) result = Status::internal("unset");
  KJ_IF_MAYBE(e, kj::runCatchingExceptions([&]() {
                capnp::ReaderOptions options;
                options.traversalLimitInWords = bytes.size() / sizeof(capnp::word) * 4 + 1024;
                options.nestingLimit = 16;
                capnp::FlatArrayMessageReader reader(words, options);
                result = fn(reader);
              })) {
    return Status::invalid_argument(std::string("a stored job value is damaged: ") + e->getDescription().cStr());
  }
  return result;
}

}  // namespace

std::string encode_record(const Record& record) {
  capnp::MallocMessageBuilder message;
  to_wire(record, message.initRoot<wire::JobRecord>());
  return to_bytes(message);
}

Result<Record> decode_record(std::string_view bytes) {
  return read_message(bytes, kRecordBytesMax, [](capnp::FlatArrayMessageReader& reader) -> Result<Record> {
    return from_wire(reader.getRoot<wire::JobRecord>());
  });
}

std::string encode_files(const std::vector<File>& files) {
  capnp::MallocMessageBuilder message;
  to_wire(files, message.initRoot<wire::JobFiles>());
  return to_bytes(message);
}

Result<std::vector<File>> decode_files(std::string_view bytes) {
  return read_message(bytes, kWorkingDirBytesMax * 2, [](capnp::FlatArrayMessageReader& reader) {
    return from_wire(reader.getRoot<wire::JobFiles>());
  });
}

// ---- JSON -------------------------------------------------------------------------------

std::string json_string(std::string_view s) { return json_quote(s); }

namespace {

std::string json_object(const std::map<std::string, std::string>& pairs) {
  std::string out = "{";
  for (const auto& [k, v] : pairs) {
    if (out.size() > 1) out += ",";
    out += json_string(k) + ":" + json_string(v);
  }
  return out + "}";
}

std::string json_number(double v) {
  if (!std::isfinite(v)) return "0";
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.15g", v);
  return buf;
}

}  // namespace

std::string record_json(const Record& r) {
  const Spec& s = r.spec;
  std::string out = "{";
  out += "\"type\":\"SUBMISSION\"";
  out += ",\"job_id\":" + json_string(r.id);
  out += ",\"submission_id\":" + json_string(r.id);
  out += ",\"status\":" + json_string(ray_status(r.state));
  out += ",\"state\":" + json_string(state_name(r.state));
  out += ",\"entrypoint\":" + json_string(s.entrypoint);
  out += ",\"message\":" + json_string(r.message);
  out += ",\"error_type\":" + (r.state == State::kFailed ? json_string("JOB_FAILED") : std::string("null"));
  out += ",\"start_time\":" + (r.start_time_ms ? std::to_string(r.start_time_ms) : std::string("null"));
  out += ",\"end_time\":" + (r.end_time_ms ? std::to_string(r.end_time_ms) : std::string("null"));
  out += ",\"submit_time\":" + std::to_string(r.submit_time_ms);
  out += ",\"metadata\":" + json_object(s.metadata);
  out += ",\"runtime_env\":{\"env_vars\":" + json_object(s.env) + "}";
  out += ",\"driver_info\":null";
  out += ",\"driver_exit_code\":" + (r.exit_code >= 0 ? std::to_string(r.exit_code) : std::string("null"));
  out += ",\"entrypoint_num_cpus\":" + json_number(s.cpus);
  out += ",\"entrypoint_num_gpus\":" + json_number(s.gpus);
  out += ",\"entrypoint_memory\":" + std::to_string(s.memory_bytes);
  out += ",\"entrypoint_resources\":{";
  bool first = true;
  for (const auto& [name, amount] : s.custom) {
    if (!first) out += ",";
    first = false;
    out += json_string(name) + ":" + json_number(amount);
  }
  out += "}";
  out += ",\"name\":" + json_string(s.name);
  out += ",\"node_id\":" + json_string(r.node);
  out += ",\"node_address\":" + json_string(r.node_address);
  out += ",\"pid\":" + std::to_string(r.pid);
  out += ",\"attempt\":" + std::to_string(r.attempt);
  out += ",\"max_retries\":" + std::to_string(s.max_retries);
  out += ",\"priority\":" + std::to_string(s.priority);
  out += ",\"timeout_ms\":" + std::to_string(s.timeout_ms);
  out += ",\"signal\":" + std::to_string(r.signal);
  out += ",\"array_index\":" + (s.array_index >= 0 ? std::to_string(s.array_index) : std::string("null"));
  out += ",\"after\":[";
  for (size_t i = 0; i < s.after.size(); ++i) out += (i ? "," : "") + json_string(s.after[i]);
  out += "],\"gpu_ids\":[";
  for (size_t i = 0; i < r.gpu_ids.size(); ++i) out += (i ? "," : "") + std::to_string(r.gpu_ids[i]);
  out += "],\"stop_requested\":" + std::string(r.stop_requested ? "true" : "false");
  out += ",\"history\":[";
  for (size_t i = 0; i < r.history.size(); ++i) {
    const Event& e = r.history[i];
    out += (i ? "," : "") + std::string("{\"time\":") + std::to_string(e.time_ms) + ",\"state\":" +
           json_string(e.state) + ",\"node_id\":" + json_string(e.node) + ",\"message\":" + json_string(e.message) +
           "}";
  }
  out += "]}";
  return out;
}

// ---- Text -------------------------------------------------------------------------------

Result<std::vector<std::string>> split_command(std::string_view text) {
  std::vector<std::string> words;
  std::string word;
  bool in_word = false;
  size_t i = 0;
  while (i < text.size()) {
    char c = text[i];
    if (c == ' ' || c == '\t' || c == '\n') {
      if (in_word) words.push_back(std::move(word));
      word.clear();
      in_word = false;
      ++i;
    } else if (c == '\'') {
      size_t end = text.find('\'', i + 1);
      if (end == std::string_view::npos) return Status::invalid_argument("the entrypoint has an unterminated ' quote");
      word.append(text.substr(i + 1, end - i - 1));
      in_word = true;
      i = end + 1;
    } else if (c == '"') {
      ++i;
      bool closed = false;
      while (i < text.size()) {
        if (text[i] == '"') {
          closed = true;
          ++i;
          break;
        }
        if (text[i] == '\\' && i + 1 < text.size() && (text[i + 1] == '"' || text[i + 1] == '\\')) ++i;
        word += text[i++];
      }
      if (!closed) return Status::invalid_argument("the entrypoint has an unterminated \" quote");
      in_word = true;
    } else if (c == '\\' && i + 1 < text.size()) {
      word += text[i + 1];
      in_word = true;
      i += 2;
    } else {
      word += c;
      in_word = true;
      ++i;
    }
  }
  if (in_word) words.push_back(std::move(word));
  if (words.empty()) return Status::invalid_argument("the entrypoint is empty");
  return words;
}

Result<uint64_t> parse_duration_ms(std::string_view text) {
  auto bad = [&]() {
    return Status::invalid_argument("duration '" + std::string(text) +
                                    "': expected a number with a unit (500ms, 90s, 15m, 2h, 1d, 1h30m) or seconds");
  };
  if (text.empty() || text.size() > 32) return bad();
  uint64_t total = 0;
  size_t i = 0;
  bool any = false;
  while (i < text.size()) {
    if (!std::isdigit(static_cast<unsigned char>(text[i]))) return bad();
    uint64_t n = 0;
    while (i < text.size() && std::isdigit(static_cast<unsigned char>(text[i]))) {
      n = n * 10 + static_cast<uint64_t>(text[i] - '0');
      if (n > kTimeoutMsMax) return bad();
      ++i;
    }
    std::string unit;
    while (i < text.size() && std::isalpha(static_cast<unsigned char>(text[i]))) unit += text[i++];
    uint64_t scale = 0;
    if (unit.empty()) {
      if (any || i != text.size()) return bad();
      scale = 1000;
    } else if (unit == "ms") {
      scale = 1;
    } else if (unit == "s") {
      scale = 1000;
    } else if (unit == "m") {
      scale = 60'000;
    } else if (unit == "h") {
      scale = 3'600'000;
    } else if (unit == "d") {
      scale = 86'400'000;
    } else {
      return bad();
    }
    total += n * scale;
    if (total > kTimeoutMsMax) {
      return Status::invalid_argument("duration '" + std::string(text) + "' is longer than a year");
    }
    any = true;
  }
  if (total == 0) return Status::invalid_argument("duration '" + std::string(text) + "' must be above zero");
  return total;
}

}  // namespace shoal::jobs
