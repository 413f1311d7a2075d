#include "shoal/registry.h"

#include <algorithm>
#include <cctype>
#include <mutex>

#include "shoal/actor.h"
#include "shoal/task.h"

namespace shoal::detail {

namespace {

std::string trim(std::string_view text) {
  std::size_t begin = 0;
  std::size_t end = text.size();
  while (begin < end && std::isspace(static_cast<unsigned char>(text[begin]))) ++begin;
  while (end > begin && std::isspace(static_cast<unsigned char>(text[end - 1]))) --end;
  return std::string(text.substr(begin, end - begin));
}

// "(x)" -> "x", repeatedly.
std::string strip_parentheses(std::string name) {
  while (name.size() >= 2 && name.front() == '(' && name.back() == ')')
    name = trim(name.substr(1, name.size() - 2));
  return name;
}

std::string normalize_name(std::string_view raw) {
  std::string name = strip_parentheses(trim(raw));
  static constexpr std::string_view kOverload = "SHOAL_OVERLOAD(";
  if (name.rfind(kOverload, 0) == 0 && name.back() == ')') {
    std::string inner = name.substr(kOverload.size(), name.size() - kOverload.size() - 1);
    std::vector<std::string> parts = parse_registration_names(inner);
    if (!parts.empty()) {
      std::string out = parts[0] + "(";
      for (std::size_t i = 1; i < parts.size(); ++i) out += (i > 1 ? ", " : "") + parts[i];
      return out + ")";
    }
  }
  if (!name.empty() && name.front() == '&') name = trim(name.substr(1));
  return name;
}

std::mutex& pending_errors_mutex() {
  static std::mutex mutex;
  return mutex;
}
std::vector<std::string>& pending_errors() {
  static std::vector<std::string> errors;
  return errors;
}

}  // namespace

std::vector<std::string> parse_registration_names(std::string_view text) {
  std::vector<std::string> out;
  int depth = 0;
  std::size_t start = 0;
  for (std::size_t i = 0; i <= text.size(); ++i) {
    char c = i < text.size() ? text[i] : ',';
    if (c == '(' || c == '<' || c == '[' || c == '{') ++depth;
    if (c == ')' || c == '>' || c == ']' || c == '}') --depth;
    if (c == ',' && depth <= 0) {
      std::string name = normalize_name(text.substr(start, i - start));
      if (!name.empty()) out.push_back(std::move(name));
      start = i + 1;
    }
  }
  return out;
}

void note_registration_error(std::string message) {
  std::lock_guard lock(pending_errors_mutex());
  pending_errors().push_back(std::move(message));
}

Registry& Registry::instance() {
  static Registry registry;  // constructed on first use: safe during static initialization
  return registry;
}

void Registry::add_function(std::string name, std::uintptr_t key, Invoker invoker) {
  std::unique_lock lock(mutex_);
  auto it = functions_.find(name);
  if (it != functions_.end()) {
    if (it->second.first != key) {
      errors_.push_back("two different functions are registered as " + name +
                        " (qualify one: SHOAL_REMOTE(ns::" + name + "))");
    }
    return;
  }
  function_names_.try_emplace(key, name);  // the first name of a function stays its name
  functions_.emplace(std::move(name), std::make_pair(key, std::move(invoker)));
}

void Registry::add_actor_class(std::string name, std::type_index type) {
  std::unique_lock lock(mutex_);
  if (name.size() > kClassNameBytesMax) {
    errors_.push_back("actor class name " + name.substr(0, 40) + "... is longer than " +
                      std::to_string(kClassNameBytesMax) + " bytes");
    return;
  }
  auto named = class_types_.find(name);
  if (named != class_types_.end() && named->second != type) {
    errors_.push_back("two different classes are registered as actor class " + name);
    return;
  }
  ClassEntry& entry = classes_[type];
  if (!entry.name.empty() && entry.name != name) {
    errors_.push_back("actor class " + entry.name + " is registered again as " + name);
    return;
  }
  entry.name = name;
  class_types_.emplace(std::move(name), type);
}

void Registry::add_method(std::type_index type, std::string name, std::string key,
                          Invoker invoker) {
  std::unique_lock lock(mutex_);
  ClassEntry& entry = classes_[type];
  auto by_key = entry.method_names_by_key.find(key);
  if (entry.methods.count(name) != 0) {
    if (by_key == entry.method_names_by_key.end() || by_key->second != name) {
      errors_.push_back("two different methods are registered as " + name);
    }
    return;
  }
  entry.method_names_by_key.try_emplace(std::move(key), name);
  entry.methods.emplace(std::move(name), std::move(invoker));
}

void Registry::add_constructor(std::type_index type, std::string key, Constructor constructor) {
  std::unique_lock lock(mutex_);
  classes_[type].constructors.try_emplace(std::move(key), std::move(constructor));
}

const std::string* Registry::function_name(std::uintptr_t key) const {
  std::shared_lock lock(mutex_);
  auto it = function_names_.find(key);
  return it == function_names_.end() ? nullptr : &it->second;
}

const Invoker* Registry::function(std::string_view name) const {
  std::shared_lock lock(mutex_);
  auto it = functions_.find(name);
  return it == functions_.end() ? nullptr : &it->second.second;
}

const std::string* Registry::class_name(std::type_index type) const {
  std::shared_lock lock(mutex_);
  auto it = classes_.find(type);
  return it == classes_.end() || it->second.name.empty() ? nullptr : &it->second.name;
}

const std::string* Registry::method_name(std::type_index type, std::string_view key) const {
  std::shared_lock lock(mutex_);
  auto it = classes_.find(type);
  if (it == classes_.end()) return nullptr;
  auto m = it->second.method_names_by_key.find(key);
  return m == it->second.method_names_by_key.end() ? nullptr : &m->second;
}

const Registry::ClassEntry* Registry::class_by_name(std::string_view name) const {
  auto type = class_types_.find(name);
  if (type == class_types_.end()) return nullptr;
  auto it = classes_.find(type->second);
  return it == classes_.end() ? nullptr : &it->second;
}

const Invoker* Registry::method(std::string_view class_name, std::string_view method_name) const {
  std::shared_lock lock(mutex_);
  const ClassEntry* entry = class_by_name(class_name);
  if (entry == nullptr) return nullptr;
  auto it = entry->methods.find(method_name);
  return it == entry->methods.end() ? nullptr : &it->second;
}

const Constructor* Registry::constructor(std::string_view class_name, std::string_view key) const {
  std::shared_lock lock(mutex_);
  const ClassEntry* entry = class_by_name(class_name);
  if (entry == nullptr) return nullptr;
  auto it = entry->constructors.find(key);
  return it == entry->constructors.end() ? nullptr : &it->second;
}

std::vector<std::string> Registry::names() const {
  std::shared_lock lock(mutex_);
  std::vector<std::string> out;
  for (const auto& [name, entry] : functions_) out.push_back(name);
  for (const auto& [type, entry] : classes_) {
    for (const auto& [name, invoker] : entry.methods) out.push_back(name);
  }
  std::sort(out.begin(), out.end());
  return out;
}

Status Registry::status() const {
  std::vector<std::string> errors;
  {
    std::shared_lock lock(mutex_);
    errors = errors_;
  }
  {
    std::lock_guard lock(pending_errors_mutex());
    errors.insert(errors.end(), pending_errors().begin(), pending_errors().end());
  }
  if (errors.empty()) return Status();
  std::string message = "bad registrations: ";
  for (std::size_t i = 0; i < errors.size(); ++i) message += (i > 0 ? "; " : "") + errors[i];
  return Status::invalid_argument(message);
}

ErrorInfo argument_count_error(const std::string& name, std::size_t expected, std::size_t got) {
  ErrorInfo error;
  error.code = Status::Code::kInvalidArgument;
  error.message = name + " takes " + std::to_string(expected) + " arguments but the call has " +
                  std::to_string(got) + " (are both sides the same version of the program?)";
  return error;
}

ErrorInfo argument_error(const std::string& name, std::size_t index, const std::string& type,
                         const Status& status) {
  ErrorInfo error;
  error.code = Status::Code::kInvalidArgument;
  error.message = "argument " + std::to_string(index + 1) + " of " + name + " (" + type +
                  ") could not be read: " + status.message();
  return error;
}

void throw_unregistered_function(const std::string& signature) {
  throw Error(
      Status::not_found("shoal::task(): this function (" + signature +
                        ") is not registered: add SHOAL_REMOTE(its name) at namespace scope"));
}

void throw_unregistered_class(const std::string& type) {
  throw Error(Status::not_found("class " + type +
                                " is not registered as an actor: add SHOAL_ACTOR(" + type + ", &" +
                                type + "::method, ...) at namespace scope"));
}

void throw_unregistered_method(const std::string& class_name, const std::string& method_type) {
  throw Error(Status::not_found("this method of " + class_name + " (" + method_type +
                                ") is not registered: list it in SHOAL_ACTOR(" + class_name +
                                ", ...)"));
}

void throw_wrong_actor_class(std::string_view name, const std::string& actual,
                             const std::string& wanted) {
  throw Error(Status::invalid_argument("actor " + std::string(name) + " is a " + actual +
                                       ", not a " + wanted));
}

}  // namespace shoal::detail
