#include "task/wire.h"

#include <array>
#include <cstdint>
#include <tuple>

#include "shoal/serialize.h"

namespace shoal::detail {

namespace {

// What crosses the wire; bin fields are std::vector<char>.
using ErrorTuple = std::tuple<uint8_t, uint8_t, std::string, std::string, std::string,
                              std::vector<char>, std::string, uint32_t>;

constexpr uint8_t kKindMax = static_cast<uint8_t>(ErrorKind::kActorDied);
constexpr uint8_t kCodeMax = static_cast<uint8_t>(Status::Code::kInternal);

}  // namespace

std::string encode_error_info(const ErrorInfo& error) {
  std::vector<char> task_id(TaskId::kSizeBytes);
  error.task_id.to_bytes(task_id.data());
  return serialize(ErrorTuple(static_cast<uint8_t>(error.kind), static_cast<uint8_t>(error.code),
                              error.exception_type, error.message, error.function,
                              std::move(task_id), error.node_id, error.attempts));
}

Result<ErrorInfo> decode_error_info(std::string_view bytes) {
  Result<ErrorTuple> tuple = deserialize<ErrorTuple>(bytes);
  if (!tuple.ok()) return Status::invalid_argument("bad error record: " + tuple.status().message());
  auto& [kind, code, exception_type, message, function, task_id, node_id, attempts] = *tuple;
  if (kind > kKindMax || code > kCodeMax) {
    return Status::invalid_argument("bad error record: kind " + std::to_string(kind) + ", code " +
                                    std::to_string(code) + " unknown");
  }
  if (task_id.size() != TaskId::kSizeBytes) {
    return Status::invalid_argument("bad error record: a task id of " +
                                    std::to_string(task_id.size()) + " bytes");
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
  return error;
}

}  // namespace shoal::detail
