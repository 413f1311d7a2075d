#include "task/task_history.h"

#include <doctest/doctest.h>

namespace shoal::detail {
namespace {

TaskId task(uint64_t n) {
  TaskId id;
  id.hi = 7;
  id.lo = n;
  return id;
}

TaskAttempt attempt_of(uint64_t n, uint32_t attempt, std::string reason = "") {
  return TaskAttempt{.id = task(n), .function = "f", .owner = "127.0.0.1:1", .attempt = attempt,
                     .retry_reason = std::move(reason), .received_ms = static_cast<int64_t>(n)};
}

}  // namespace

TEST_CASE("task history keeps each attempt with its end and the reason it ran again") {
  TaskHistory h;
  h.received(attempt_of(1, 1));
  h.received(attempt_of(2, 2, "attempt 1 on 10.0.0.3:7100: node left the cluster"));
  h.ended(task(1), "FINISHED", "", 50);
  h.ended(task(2), "FAILED", "boom", 60);
  // A late second end (a fenced task's result) changes nothing.
  h.ended(task(2), "FINISHED", "", 70);
  bool truncated = true;
  auto all = h.newest(10, &truncated);
  CHECK_FALSE(truncated);
  REQUIRE(all.size() == 2);
  CHECK(all[0].state == "FINISHED");
  CHECK(all[0].ended_ms == 50);
  CHECK(all[1].state == "FAILED");
  CHECK(all[1].detail == "boom");
  CHECK(all[1].attempt == 2);
  CHECK(all[1].retry_reason.find("node left the cluster") != std::string::npos);
}

TEST_CASE("task history is bounded: the oldest attempts go, and ending a gone one is ignored") {
  TaskHistory h(3);
  for (uint64_t n = 1; n <= 5; ++n) h.received(attempt_of(n, 1));
  h.ended(task(1), "FINISHED", "", 9);  // evicted already
  h.ended(task(5), "SPILLED", "handed back", 9);
  bool truncated = false;
  auto newest = h.newest(2, &truncated);
  CHECK(truncated);
  REQUIRE(newest.size() == 2);
  CHECK(newest[0].id == task(4));
  CHECK(newest[0].state == "RUNNING");
  CHECK(newest[1].state == "SPILLED");
  auto all = h.newest(100, &truncated);
  CHECK_FALSE(truncated);
  CHECK(all.size() == 3);
  CHECK(all.front().id == task(3));
}

TEST_CASE("a task pushed again to the same node keeps both attempts") {
  TaskHistory h;
  h.received(attempt_of(1, 1));
  h.ended(task(1), "SPILLED", "", 5);
  h.received(attempt_of(1, 1));
  h.ended(task(1), "FINISHED", "", 8);
  auto all = h.newest(10, nullptr);
  REQUIRE(all.size() == 2);
  CHECK(all[0].state == "SPILLED");
  CHECK(all[1].state == "FINISHED");
}

}  // namespace shoal::detail
