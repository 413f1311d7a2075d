// Registry: names from the macros (overloads included), lookups, invoking
// by name with serialized arguments, and the errors of bad calls.
#include "shoal/registry.h"

#include <doctest/doctest.h>

#include <stdexcept>

#include "shoal/api.h"

using namespace shoal;

namespace registry_test {

int add(int a, int b) { return a + b; }
int scale(int x, int k) { return x * k; }
double scale(double x, double k) { return x * k + 0.5; }
int quiet(int x) noexcept { return -x; }
std::string greet(const std::string& name, std::vector<int> counts) {
  return name + ":" + std::to_string(counts.size());
}
void nothing() {}
int sum_refs(std::vector<ObjectRef<int>> refs) { return static_cast<int>(refs.size()); }
void mutate(std::string& text) { text += "!"; }

struct ParseError : std::runtime_error {
  using std::runtime_error::runtime_error;
};
int throws(int x) {
  if (x < 0) throw ParseError("negative: " + std::to_string(x));
  if (x == 0) throw 42;
  return x;
}

struct Calculator {
  int total = 0;
  int add(int x) { return total += x; }
  int add(int x, int y) { return total += x + y; }
  int get() const { return total; }
};

}  // namespace registry_test

SHOAL_REMOTE(registry_test::add, registry_test::quiet,
             SHOAL_OVERLOAD(registry_test::scale, int, int),
             SHOAL_OVERLOAD(registry_test::scale, double, double));
SHOAL_REMOTE(registry_test::greet, registry_test::nothing, registry_test::sum_refs,
             registry_test::mutate, registry_test::throws);
SHOAL_ACTOR(registry_test::Calculator, SHOAL_OVERLOAD(registry_test::Calculator::add, int),
            SHOAL_OVERLOAD(registry_test::Calculator::add, int, int),
            &registry_test::Calculator::get);

using namespace registry_test;

namespace {

detail::InvokeResult call(const std::string& name, const std::vector<std::string>& args) {
  const detail::Invoker* invoker = detail::Registry::instance().function(name);
  REQUIRE_MESSAGE(invoker != nullptr, name);
  std::vector<std::string_view> views(args.begin(), args.end());
  return (*invoker)(nullptr, views);
}

}  // namespace

TEST_CASE("registry: names from the macro text") {
  CHECK(detail::parse_registration_names("add, mul") == std::vector<std::string>{"add", "mul"});
  CHECK(detail::parse_registration_names(" &Counter::incr ,&Counter::get") ==
        std::vector<std::string>{"Counter::incr", "Counter::get"});
  CHECK(detail::parse_registration_names("SHOAL_OVERLOAD(scale, int, std::map<int, int>), f") ==
        std::vector<std::string>{"scale(int, std::map<int, int>)", "f"});
  CHECK(detail::parse_registration_names("SHOAL_OVERLOAD(Calc::get)") ==
        std::vector<std::string>{"Calc::get()"});
  CHECK(detail::parse_registration_names("static_cast<int (*)(int, int)>(f)") ==
        std::vector<std::string>{"static_cast<int (*)(int, int)>(f)"});
  CHECK(detail::parse_registration_names("").empty());
}

TEST_CASE("registry: functions, overloads and methods are found by pointer and by name") {
  auto& registry = detail::Registry::instance();
  CHECK(registry.status().ok());
  REQUIRE(registry.function_name(detail::function_key(&add)) != nullptr);
  CHECK(*registry.function_name(detail::function_key(&add)) == "registry_test::add");
  CHECK(*registry.function_name(detail::function_key(overload<int, int>(scale))) ==
        "registry_test::scale(int, int)");
  CHECK(*registry.function_name(detail::function_key(SHOAL_OVERLOAD(scale, double, double))) ==
        "registry_test::scale(double, double)");
  CHECK(*registry.function_name(detail::function_key(&quiet)) == "registry_test::quiet");
  CHECK(registry.function("registry_test::nothing") != nullptr);
  CHECK(registry.function("nope") == nullptr);
  CHECK(registry.class_name(typeid(Calculator)) != nullptr);
  CHECK(*registry.class_name(typeid(Calculator)) == "registry_test::Calculator");
  CHECK(*registry.method_name(typeid(Calculator),
                              detail::method_key(overload<int, int>(&Calculator::add))) ==
        "registry_test::Calculator::add(int, int)");
  CHECK(*registry.method_name(typeid(Calculator), detail::method_key(&Calculator::get)) ==
        "registry_test::Calculator::get");
  CHECK(registry.method("registry_test::Calculator", "registry_test::Calculator::add(int)") !=
        nullptr);
  CHECK(registry.method("registry_test::Calculator", "registry_test::Calculator::mul") == nullptr);
  std::vector<std::string> names = registry.names();
  CHECK(std::find(names.begin(), names.end(), "registry_test::greet") != names.end());
  CHECK(std::find(names.begin(), names.end(), "registry_test::Calculator::get") != names.end());

  // task() finds names by pointer; unregistered functions are an error at once.
  CHECK(task(overload<double, double>(scale)).name() == "registry_test::scale(double, double)");
  CHECK_THROWS_AS(task(+[](int x) { return x; }), Error);
}

TEST_CASE("registry: invoking by name reads arguments, runs, serializes the result") {
  detail::InvokeResult r = call("registry_test::add", {serialize(2), serialize(40)});
  REQUIRE_FALSE(r.error);
  CHECK(deserialize<int>(r.value.bytes).value() == 42);

  r = call("registry_test::scale(double, double)",
           {serialize(2.0), serialize(3)});  // int widens to double
  REQUIRE_FALSE(r.error);
  CHECK(deserialize<double>(r.value.bytes).value() == 6.5);

  r = call("registry_test::greet",
           {serialize(std::string("ann")), serialize(std::vector<int>{1, 2})});
  CHECK(deserialize<std::string>(r.value.bytes).value() == "ann:2");

  r = call("registry_test::mutate", {serialize(std::string("x"))});
  REQUIRE_FALSE(r.error);
  CHECK(r.value.bytes == std::string(1, '\xc0'));  // void: nil

  r = call("registry_test::nothing", {});
  CHECK_FALSE(r.error);
}

TEST_CASE("registry: bad arguments and exceptions become error records") {
  detail::InvokeResult r = call("registry_test::add", {serialize(1)});
  REQUIRE(r.error);
  CHECK(r.error->code == Status::Code::kInvalidArgument);
  CHECK(r.error->message.find("takes 2 arguments but the call has 1") != std::string::npos);

  r = call("registry_test::add", {serialize(1), serialize(std::string("two"))});
  REQUIRE(r.error);
  CHECK(r.error->kind == ErrorKind::kSystem);
  CHECK(r.error->message.find("argument 2 of registry_test::add (int) could not be read") !=
        std::string::npos);

  r = call("registry_test::add", {serialize(1), std::string("\xdd\xff\xff\xff\xff", 5)});
  REQUIRE(r.error);
  CHECK(r.error->message.find("argument 2") != std::string::npos);

  r = call("registry_test::throws", {serialize(-5)});
  REQUIRE(r.error);
  CHECK(r.error->kind == ErrorKind::kTaskException);
  CHECK(r.error->exception_type == "registry_test::ParseError");
  CHECK(r.error->message == "negative: -5");

  r = call("registry_test::throws", {serialize(0)});
  REQUIRE(r.error);
  CHECK(r.error->exception_type == "int");
}

TEST_CASE("registry: two functions under one name are reported") {
  detail::Registry registry;  // a private one: the process's registry stays clean
  registry.add_function("f", 1, nullptr);
  registry.add_function("f", 1, nullptr);  // the same function twice (two TUs): fine
  CHECK(registry.status().ok());
  registry.add_function("f", 2, nullptr);
  CHECK(registry.status().message().find("two different functions are registered as f") !=
        std::string::npos);
  registry.add_actor_class("A", typeid(int));
  registry.add_actor_class("A", typeid(double));
  CHECK(registry.status().message().find("actor class A") != std::string::npos);
}
