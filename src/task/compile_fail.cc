// Cases that must NOT compile, each with the message a user must see.
// compile_fail_test.py compiles this file once per SHOAL_CASE_* macro.
#include <shoal/api.h>

#include <string>

struct NotSerializableThing {
  int* pointer = nullptr;
};
int takes_thing(NotSerializableThing) { return 0; }
int add(int a, int b) { return a + b; }
SHOAL_REMOTE(add);

void cases() {
#if defined(SHOAL_CASE_OK)
  // Control: the harness must see this one compile.
  shoal::ObjectRef<int> r = shoal::task(add).remote(1, 2);
  (void)shoal::serialize(std::vector<int>{1});
  (void)r;
#elif defined(SHOAL_CASE_SERIALIZE)
  (void)shoal::serialize(NotSerializableThing{});
#elif defined(SHOAL_CASE_NESTED)
  (void)shoal::put(std::vector<std::pair<int, NotSerializableThing> >{});
#elif defined(SHOAL_CASE_ARGUMENT_TYPE)
  (void)shoal::task(add).remote(1, std::string("two"));
#elif defined(SHOAL_CASE_ARGUMENT_COUNT)
  (void)shoal::task(add).remote(1);
#elif defined(SHOAL_CASE_REF_TYPE)
  shoal::ObjectRef<std::string> text;
  (void)shoal::task(add).remote(text, 1);
#elif defined(SHOAL_CASE_LAMBDA)
  shoal::task([](int x) { return x; });
#endif
}

#if defined(SHOAL_CASE_REGISTER)
SHOAL_REMOTE(takes_thing);
#endif
