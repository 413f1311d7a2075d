#include "shoal/errors.h"

#include <cxxabi.h>

#include <cstdlib>
#include <exception>
#include <memory>
#include <typeinfo>

namespace shoal {

std::string ErrorInfo::to_string() const {
  std::string out = "task";
  if (!function.empty()) out += " " + function;
  if (!task_id.nil()) out += " (" + task_id.hex() + ")";
  if (!node_id.empty()) out += " on node " + node_id;
  switch (kind) {
    case ErrorKind::kTaskException:
      out += " threw " + (exception_type.empty() ? std::string("an exception") : exception_type);
      if (!message.empty()) out += ": " + message;
      if (attempts > 1) out += " (after " + std::to_string(attempts) + " attempts)";
      break;
    case ErrorKind::kCancelled:
      out += " was cancelled";
      if (!message.empty()) out += ": " + message;
      break;
    case ErrorKind::kActorDied:
    case ErrorKind::kSystem:
      out += " failed: " + message;
      break;
    case ErrorKind::kObjectLost:
    case ErrorKind::kLineageEvicted:
      out += ": its result is lost: " + message;
      break;
    case ErrorKind::kOwnerDied:
      out += ": its result's owner died: " + message;
      break;
  }
  return out;
}

Error::Error(Status status) : std::runtime_error(status.to_string()), status_(std::move(status)) {}

TaskError::TaskError(ErrorInfo info)
    : Error(Status::internal(info.to_string())), info_(std::move(info)) {}

TaskCancelled::TaskCancelled(ErrorInfo info)
    : Error(Status::cancelled(info.to_string())), info_(std::move(info)) {}

ActorDied::ActorDied(ErrorInfo info)
    : Error(Status::unavailable(info.to_string())), info_(std::move(info)) {}

ObjectLost::ObjectLost(ErrorInfo info)
    : Error(Status::unavailable(info.to_string())), info_(std::move(info)) {}

OwnerDied::OwnerDied(ErrorInfo info)
    : Error(Status::unavailable(info.to_string())), info_(std::move(info)) {}

GetTimeout::GetTimeout(std::string message)
    : Error(Status::deadline_exceeded(std::move(message))) {}

namespace detail {

void throw_task_failure(const ErrorInfo& info) {
  switch (info.kind) {
    case ErrorKind::kTaskException:
      throw TaskError(info);
    case ErrorKind::kCancelled:
      throw TaskCancelled(info);
    case ErrorKind::kActorDied:
      throw ActorDied(info);
    case ErrorKind::kObjectLost:
      throw ObjectLost(info);
    case ErrorKind::kLineageEvicted:
      throw LineageEvicted(info);
    case ErrorKind::kOwnerDied:
      throw OwnerDied(info);
    case ErrorKind::kSystem:
      break;
  }
  Status::Code code = info.code == Status::Code::kOk ? Status::Code::kInternal : info.code;
  throw Error(Status(code, info.to_string()));
}

void throw_status(const Status& status) {
  if (status.code() == Status::Code::kDeadlineExceeded) throw GetTimeout(status.message());
  throw Error(status);
}

std::string demangle(const char* mangled_name) {
  int status = 0;
  std::unique_ptr<char, void (*)(void*)> demangled(
      abi::__cxa_demangle(mangled_name, nullptr, nullptr, &status), std::free);
  return status == 0 && demangled ? std::string(demangled.get()) : std::string(mangled_name);
}

ErrorInfo error_from_current_exception() {
  ErrorInfo info;
  info.kind = ErrorKind::kTaskException;
  info.code = Status::Code::kInternal;
  try {
    throw;
  } catch (const ObjectLost& e) {
    // A value the task read is gone (it did not catch that): the task's own
    // failure is that loss, so that its owner can make the value again and
    // run the task again (lineage), or say what was lost.
    info.kind = e.info().kind;
    info.code = Status::Code::kUnavailable;
    info.message = e.info().message;
    info.object_id = e.info().object_id;
  } catch (const OwnerDied& e) {
    info.kind = ErrorKind::kOwnerDied;
    info.code = Status::Code::kUnavailable;
    info.message = e.info().message;
    info.object_id = e.info().object_id;
  } catch (const std::exception& e) {
    info.exception_type = demangle(typeid(e).name());
    info.message = e.what();
  } catch (...) {
    std::type_info* type = abi::__cxa_current_exception_type();
    info.exception_type = type != nullptr ? demangle(type->name()) : "unknown exception";
  }
  return info;
}

}  // namespace detail
}  // namespace shoal
