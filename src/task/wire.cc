#include "task/wire.h"

#include <array>
#include <cstdint>
#include <tuple>

#include "shoal/detail/core.h"
#include "shoal/serialize.h"

namespace shoal::detail {

namespace {

// What crosses the wire; bin fields are std::vector<char>.
using ErrorTuple = std::tuple<uint8_t, uint8_t, std::string, std::string, std::string,
                              std::vector<char>, std::string, uint32_t, std::vector<char>>;

constexpr uint8_t kKindMax = static_cast<uint8_t>(ErrorKind::kOwnerDied);
constexpr uint8_t kCodeMax = static_cast<uint8_t>(Status::Code::kInternal);

}  // namespace

std::string encode_error_info(const ErrorInfo& error) {
  std::vector<char> task_id(TaskId::kSizeBytes);
  error.task_id.to_bytes(task_id.data());
  std::vector<char> object_id;  // empty when nil
  if (!error.object_id.nil()) {
    object_id.resize(ObjectId::kSizeBytes);
    error.object_id.to_bytes(object_id.data());
  }
  return serialize(ErrorTuple(static_cast<uint8_t>(error.kind), static_cast<uint8_t>(error.code),
                              error.exception_type, error.message, error.function,
                              std::move(task_id), error.node_id, error.attempts, std::move(object_id)));
}

Result<ErrorInfo> decode_error_info(std::string_view bytes) {
  Result<ErrorTuple> tuple = deserialize<ErrorTuple>(bytes);
  if (!tuple.ok()) return Status::invalid_argument("bad error record: " + tuple.status().message());
  auto& [kind, code, exception_type, message, function, task_id, node_id, attempts, object_id] = *tuple;
  if (kind > kKindMax || code > kCodeMax) {
    return Status::invalid_argument("bad error record: kind " + std::to_string(kind) + ", code " +
                                    std::to_string(code) + " unknown");
  }
  if (task_id.size() != TaskId::kSizeBytes) {
    return Status::invalid_argument("bad error record: a task id of " +
                                    std::to_string(task_id.size()) + " bytes");
  }
  if (!object_id.empty() && object_id.size() != ObjectId::kSizeBytes) {
    return Status::invalid_argument("bad error record: an object id of " +
                                    std::to_string(object_id.size()) + " bytes");
  }
  ErrorInfo error;
  error.kind = static_cast<ErrorKind>(kind);
  error.code = static_cast<Status::Code>(code);
  error.exception_type = std::move(exception_type);
  error.message = std::move(message);
  error.function = std::move(function);
  error.task_id = TaskId::from_bytes(task_id.data());
  error.node_id = std::move(node_id);
  error.attempts = attempts;
  if (!object_id.empty()) error.object_id = ObjectId::from_bytes(object_id.data());
  return error;
}

namespace {

// Walks a msgpack value without building it, noting ObjectRefs.
struct RefFinder : msgpack::null_visitor {
  std::vector<std::pair<ObjectId, std::string>>* out = nullptr;
  bool malformed = false;
  bool visit_ext(const char* v, uint32_t size) {
    // v[0] is the ext type; the body follows.
    if (size == 0 || static_cast<int8_t>(v[0]) != kObjectRefExtType) return true;
    const uint32_t body = size - 1;
    if (body < ObjectId::kSizeBytes || body > ObjectId::kSizeBytes + kOwnerAddressBytesMax) {
      malformed = true;
      return false;
    }
    out->emplace_back(ObjectId::from_bytes(v + 1),
                      std::string(v + 1 + ObjectId::kSizeBytes, body - ObjectId::kSizeBytes));
    return true;
  }
  void parse_error(size_t /*parsed_offset*/, size_t /*error_offset*/) { malformed = true; }
  void insufficient_bytes(size_t /*parsed_offset*/, size_t /*error_offset*/) { malformed = true; }
};

}  // namespace

Result<std::vector<std::pair<ObjectId, std::string>>> find_object_refs(std::string_view bytes) {
  std::vector<std::pair<ObjectId, std::string>> refs;
  RefFinder finder;
  finder.out = &refs;
  std::size_t offset = 0;
  bool parsed = false;
  try {
    parsed = msgpack::parse(bytes.data(), bytes.size(), offset, finder);
  } catch (const std::exception& e) {
    return Status::invalid_argument(std::string("not a msgpack value: ") + e.what());
  }
  if (finder.malformed) return Status::invalid_argument("an ObjectRef is msgpack ext type 17 of 16 to 271 bytes, or the value is cut short");
  if (!parsed || offset != bytes.size()) return Status::invalid_argument("not one whole msgpack value");
  return refs;
}

}  // namespace shoal::detail
