// The exceptions shoal's task API throws, and the error record behind them.
//
// Work submitted with shoal::task(...).remote() or an actor method fails
// *at get()*, never at the call that submitted it (except for programmer
// errors such as an unregistered function, thrown at once). What went wrong
// travels with the object as an ErrorInfo, so the same record can cross the
// network; get() turns it into one of these exceptions:
//
//   shoal::Error           base of everything below; status() says what class
//                          of failure (Status::Code) and what() the whole text
//   shoal::TaskError       the task's own code threw: the exception's type
//                          (demangled), message, task id, function and node
//   shoal::TaskCancelled   shoal::cancel() reached the task before it finished
//   shoal::ActorDied       the actor was killed, or its constructor threw
//   shoal::ObjectLost      every copy of the value went with its nodes and it
//                          could not be made again: put() values, results of
//                          actor calls, tasks whose retries are used up
//   shoal::LineageEvicted  (an ObjectLost) it could have been made again, but
//                          the owner no longer kept how (lineage over its limit)
//   shoal::OwnerDied       the process that owned the object is gone
//   shoal::GetTimeout      get()/wait with a timeout ran out of time
//
// A task that depends on a failed task (an ObjectRef argument) fails with the
// *original* error, so get() at the end of a chain names the task that threw.
// Everything here is a value type: any thread may copy and read it.
#pragma once

#include <cstdint>
#include <stdexcept>
#include <string>

#include "shoal/ids.h"
#include "shoal/status.h"

namespace shoal {

enum class ErrorKind : uint8_t {
  kSystem = 0,         // shoal itself failed the task (bad argument bytes, unknown
                       // function, resources no node has, shutdown, ...)
  kTaskException = 1,  // the task's code threw
  kCancelled = 2,      // shoal::cancel()
  kActorDied = 3,      // the actor is gone (killed, constructor threw)
  kObjectLost = 4,     // every copy of a value is gone and it cannot be rebuilt
  kLineageEvicted = 5, // lost, and how to rebuild it was dropped (lineage limit)
  kOwnerDied = 6,      // the object's owner is gone
};

// Why a task failed, and where. `code` classifies it for programs;
// to_string() is the text a person reads.
struct ErrorInfo {
  ErrorKind kind = ErrorKind::kSystem;
  Status::Code code = Status::Code::kInternal;
  std::string exception_type;  // demangled C++ type of what was thrown (kTaskException)
  std::string message;         // what() of the exception, or shoal's explanation
  std::string function;        // registered name: "add", "Counter::incr"
  TaskId task_id;
  std::string node_id;    // the node the task ran (or was to run) on
  uint32_t attempts = 0;  // how many times it ran (retries included)
  ObjectId object_id;     // kObjectLost, kLineageEvicted, kOwnerDied: the object (nil if unknown)

  // "task add (task 3f.., node 9a..) threw std::runtime_error: boom"
  std::string to_string() const;
};

// Base of every exception the task API throws.
class Error : public std::runtime_error {
 public:
  explicit Error(Status status);
  const Status& status() const noexcept { return status_; }

 private:
  Status status_;
};

// The code of a task threw. status().code() is kInternal.
class TaskError : public Error {
 public:
  explicit TaskError(ErrorInfo info);
  const ErrorInfo& info() const noexcept { return info_; }
  const std::string& exception_type() const noexcept { return info_.exception_type; }
  const std::string& message() const noexcept { return info_.message; }
  const std::string& function() const noexcept { return info_.function; }
  const TaskId& task_id() const noexcept { return info_.task_id; }
  const std::string& node_id() const noexcept { return info_.node_id; }

 private:
  ErrorInfo info_;
};

// The task was cancelled before it finished. status().code() is kCancelled.
class TaskCancelled : public Error {
 public:
  explicit TaskCancelled(ErrorInfo info);
  const ErrorInfo& info() const noexcept { return info_; }

 private:
  ErrorInfo info_;
};

// The actor that was to run the call is dead. status().code() is kUnavailable.
class ActorDied : public Error {
 public:
  explicit ActorDied(ErrorInfo info);
  const ErrorInfo& info() const noexcept { return info_; }

 private:
  ErrorInfo info_;
};

// Every copy of the object is gone and it cannot be made again (why is in
// the message). status().code() is kUnavailable.
class ObjectLost : public Error {
 public:
  explicit ObjectLost(ErrorInfo info);
  const ErrorInfo& info() const noexcept { return info_; }

 private:
  ErrorInfo info_;
};

// Lost, and its lineage (the task that made it) was dropped to keep the
// owner's lineage memory under its limit (SHOAL_MAX_LINEAGE_BYTES).
class LineageEvicted : public ObjectLost {
 public:
  explicit LineageEvicted(ErrorInfo info) : ObjectLost(std::move(info)) {}
};

// The process that owned the object (and tracked its copies) is gone.
// status().code() is kUnavailable.
class OwnerDied : public Error {
 public:
  explicit OwnerDied(ErrorInfo info);
  const ErrorInfo& info() const noexcept { return info_; }

 private:
  ErrorInfo info_;
};

// get() or wait() with a timeout gave up. status().code() is kDeadlineExceeded.
class GetTimeout : public Error {
 public:
  explicit GetTimeout(std::string message);
};

namespace detail {

// Throws the exception that matches `info`: TaskError, TaskCancelled,
// ActorDied, ObjectLost, LineageEvicted, OwnerDied, or Error for kSystem.
[[noreturn]] void throw_task_failure(const ErrorInfo& info);
// Throws Error(status); GetTimeout for kDeadlineExceeded.
[[noreturn]] void throw_status(const Status& status);

// The demangled name of a type as typeid reports it ("std::vector<int, ...>").
std::string demangle(const char* mangled_name);

// Describes the exception being handled; call it only inside a catch block.
// Sets kind, code, exception_type and message.
ErrorInfo error_from_current_exception();

}  // namespace detail
}  // namespace shoal
