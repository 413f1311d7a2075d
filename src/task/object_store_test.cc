// The object store: spilling least recently used values to files and reading
// them back, pinning, admission, freeing, corrupted and missing spill files,
// a real full disk (ENOSPC on a 4 MiB tmpfs in a private mount namespace),
// and a LocalRuntime workload ten times the store's capacity.
#include "task/object_store.h"
#include "task/executor.h"

#include <doctest/doctest.h>
#include <sched.h>
#include <stdlib.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/vfs.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <string>
#include <thread>
#include <unordered_map>
#include <vector>

#include "base/clock.h"
#include "base/temp_dir.h"
#include "shoal/serialize.h"
#include "task/local_runtime.h"
#include "task/spill_file.h"

using namespace shoal;
using namespace shoal::detail;

namespace {

constexpr uint64_t kMiB = uint64_t{1} << 20;

// A fresh directory per test, removed with it.
struct TestDir : shoal::TempDir {
  TestDir() : shoal::TempDir("shoal-store") { REQUIRE(!path.empty()); }
};

// Deterministic bytes for value `seed`: differ in every 8-byte word.
std::string pattern_bytes(uint64_t size, uint64_t seed) {
  std::string out(size, '\0');
  uint64_t x = seed * 0x9e3779b97f4a7c15ull + 1;
  for (uint64_t i = 0; i < size; i += 8) {
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    std::memcpy(out.data() + i, &x, std::min<uint64_t>(8, size - i));
  }
  return out;
}

ObjectValuePtr make_value(uint64_t size, uint64_t seed) {
  auto value = std::make_shared<ObjectValue>();
  value->bytes = pattern_bytes(size, seed);
  return value;
}

ObjectId object(uint64_t n) { return ObjectId::for_put(TaskId{7, n << 16}); }

std::size_t files_in(const std::string& dir) {
  std::size_t count = 0;
  for (const auto& item : std::filesystem::directory_iterator(dir)) {
    (void)item;
    ++count;
  }
  return count;
}

std::unordered_map<ObjectId, ObjectStore::ObjectInfo> by_id(const ObjectStore& store) {
  std::unordered_map<ObjectId, ObjectStore::ObjectInfo> out;
  for (ObjectStore::ObjectInfo& info : store.list()) out.emplace(info.id, std::move(info));
  return out;
}

std::shared_ptr<ObjectStore> make_store(ObjectStore::Config config) {
  Result<std::shared_ptr<ObjectStore>> store = ObjectStore::create(std::move(config));
  REQUIRE(store.ok());
  return std::move(*store);
}

// The value of `id` as the store gives it back, compared with the bytes it
// was made from.
bool holds(ObjectStore& store, uint64_t n, uint64_t size) {
  Result<ObjectValuePtr> value = store.get(object(n));
  REQUIRE(value.ok());
  REQUIRE(*value != nullptr);
  if ((*value)->error) {
    FAIL_CHECK("object " << n << ": " << (*value)->error->message);
    return false;
  }
  return (*value)->bytes == pattern_bytes(size, n);
}

}  // namespace

TEST_CASE("spill file: the header round-trips and every kind of damage is named") {
  TestDir dir;
  std::string path = dir.path + "/x.spill";
  std::string payload = pattern_bytes(10'000, 3);
  SpillHeader header = encode_spill_header(object(1), payload);
  auto write = [&](const std::string& bytes) {
    std::ofstream out(path, std::ios::binary | std::ios::trunc);
    out << bytes;
  };
  std::string good = std::string(header.data(), header.size()) + payload;
  write(good);
  Result<std::string> back = read_spill_file(path, object(1), payload.size());
  REQUIRE(back.ok());
  CHECK(*back == payload);

  CHECK(read_spill_file(path, object(2), payload.size()).status().message().find("holds object") !=
        std::string::npos);
  std::string flipped = good;
  flipped[kSpillHeaderBytes + 5000] ^= 0x10;
  write(flipped);
  Result<std::string> bad = read_spill_file(path, object(1), payload.size());
  CHECK(bad.status().code() == Status::Code::kIoError);
  CHECK(bad.status().message().find("CRC32C does not match") != std::string::npos);
  CHECK(bad.status().message().find(path) != std::string::npos);
  flipped = good;
  flipped[26] ^= 1;  // the payload length in the header
  write(flipped);
  CHECK(read_spill_file(path, object(1), payload.size())
            .status()
            .message()
            .find("header's checksum") != std::string::npos);
  write(good.substr(0, good.size() - 1));
  CHECK(read_spill_file(path, object(1), payload.size()).status().message().find("truncated") !=
        std::string::npos);
  std::filesystem::remove(path);
  CHECK(read_spill_file(path, object(1), payload.size()).status().message().find("is missing") !=
        std::string::npos);
}

TEST_CASE(
    "object store: values over the capacity spill least recently used first and come back "
    "byte-identical") {
  TestDir dir;
  const std::string spill_dir = dir.path + "/spill";
  {
    auto store =
        make_store({.capacity_bytes = 4 * kMiB, .spill_dir = spill_dir, .inline_max = 1024});
    CHECK(store->spill_dir() == spill_dir);
    CHECK(!store->manages(*make_value(1024, 0)));
    CHECK(store->manages(*make_value(1025, 0)));
    for (uint64_t n = 0; n < 4; ++n) REQUIRE(store->add(object(n), make_value(kMiB, n)).ok());
    store->wait_idle();
    CHECK(store->stats().spills == 0);
    CHECK(holds(*store, 0, kMiB));  // object 0 is now the most recently used; 1 the least

    REQUIRE(store->add(object(4), make_value(kMiB, 4)).ok());
    store->wait_idle();
    auto infos = by_id(*store);
    CHECK(infos[object(1)].state == ObjectStore::State::kSpilled);
    CHECK(!infos[object(1)].spill_path.empty());
    for (uint64_t n : {0, 2, 3, 4}) CHECK(infos[object(n)].state == ObjectStore::State::kInMemory);
    ObjectStore::Stats stats = store->stats();
    CHECK(stats.spills == 1);
    CHECK(stats.spilled_bytes_total == kMiB);
    CHECK(stats.objects_spilled == 1);
    CHECK(stats.objects_in_memory == 4);
    CHECK(stats.memory_bytes == 4 * kMiB);
    CHECK(stats.spilled_bytes == kMiB);
    CHECK(stats.disk_bytes == kMiB);
    CHECK(stats.disk_errors == 0);
    CHECK(files_in(spill_dir) == 1);
    CHECK(std::filesystem::file_size(infos[object(1)].spill_path) == kMiB + kSpillHeaderBytes);

    // Reading it back restores it; the next least recently used (2) makes room.
    CHECK(holds(*store, 1, kMiB));
    store->wait_idle();
    infos = by_id(*store);
    CHECK(infos[object(1)].state == ObjectStore::State::kInMemory);
    CHECK(!infos[object(1)].spill_path.empty());  // the file stays: spilling again is free
    CHECK(infos[object(2)].state == ObjectStore::State::kSpilled);
    stats = store->stats();
    CHECK(stats.restores == 1);
    CHECK(stats.restored_bytes_total == kMiB);
    CHECK(stats.spills == 2);
    CHECK(stats.memory_bytes == 4 * kMiB);
    CHECK(stats.disk_bytes == 2 * kMiB);
    for (uint64_t n = 0; n < 5; ++n) CHECK(holds(*store, n, kMiB));
    store->wait_idle();
    stats = store->stats();
    CHECK(stats.memory_bytes <= 4 * kMiB);
    CHECK(stats.memory_bytes + stats.spilled_bytes == 5 * kMiB);
    CHECK(stats.objects_pinned == 0);
  }
  CHECK(!std::filesystem::exists(spill_dir));  // it made the dir, so shutdown removed it
}

TEST_CASE("object store: pinned values are never spilled; room is made once a pin goes") {
  TestDir dir;
  auto store = make_store({.capacity_bytes = 2 * kMiB,
                           .spill_dir = dir.path,
                           .inline_max = 1024,
                           .pinned_wait_ms_max = 20});
  REQUIRE(store->add(object(1), make_value(kMiB, 1)).ok());
  REQUIRE(store->add(object(2), make_value(kMiB, 2)).ok());
  ObjectValuePtr pin1 = *store->get(object(1));
  ObjectValuePtr pin2 = *store->get(object(2));
  // Object 3 is the most recently used, but the only one nobody reads.
  REQUIRE(store->add(object(3), make_value(kMiB, 3)).ok());
  store->wait_idle();
  auto infos = by_id(*store);
  CHECK(infos[object(1)].state == ObjectStore::State::kInMemory);
  CHECK(infos[object(1)].pinned);
  CHECK(infos[object(2)].state == ObjectStore::State::kInMemory);
  CHECK(infos[object(2)].pinned);
  CHECK(infos[object(3)].state == ObjectStore::State::kSpilled);
  CHECK(store->stats().objects_pinned == 2);

  Status full = store->wait_for_room(kMiB);
  CHECK(full.code() == Status::Code::kResourceExhausted);
  CHECK(full.message().find("ObjectStoreFull") != std::string::npos);
  CHECK(full.message().find("pinned") != std::string::npos);
  CHECK(store->stats().spills == 1);

  pin1.reset();
  CHECK(store->wait_for_room(kMiB).ok());  // object 1 spills
  store->wait_idle();
  CHECK(store->wait_for_room(kMiB).ok());
  infos = by_id(*store);
  CHECK(infos[object(1)].state == ObjectStore::State::kSpilled);
  CHECK(infos[object(2)].state == ObjectStore::State::kInMemory);
  ObjectStore::Stats stats = store->stats();
  CHECK(stats.spills == 2);
  CHECK(stats.objects_pinned == 1);
  CHECK(stats.memory_bytes == kMiB);
  CHECK(pin2->bytes == pattern_bytes(kMiB, 2));  // read in place all along
}

TEST_CASE("object store: wait_for_room() waits for a reader to let go of a pinned value") {
  TestDir dir;
  auto store = make_store({.capacity_bytes = 2 * kMiB,
                           .spill_dir = dir.path,
                           .inline_max = 1024,
                           .pinned_wait_ms_max = 600'000});  // no limit in practice
  REQUIRE(store->add(object(1), make_value(2 * kMiB, 1)).ok());
  ObjectValuePtr pin = *store->get(object(1));
  std::atomic<bool> waiting{false};
  std::thread reader([&] {
    while (!waiting.load()) std::this_thread::yield();
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
    pin.reset();  // the reader is done
  });
  waiting = true;
  Status room = store->wait_for_room(kMiB);
  reader.join();
  CHECK(room.ok());
  store->wait_idle();
  CHECK(by_id(*store)[object(1)].state == ObjectStore::State::kSpilled);
}

TEST_CASE("object store: a task waiting for room lends its CPU to the task that frees it") {
  // One CPU. Task A needs room that only a pinned value can give; task B,
  // queued behind A, is the reader that lets go of it. A must not hold the
  // only CPU while it waits, or B never runs and A gives up.
  TestDir dir;
  auto store = make_store({.capacity_bytes = 2 * kMiB,
                           .spill_dir = dir.path,
                           .inline_max = 1024,
                           .pinned_wait_ms_max = 5'000});
  REQUIRE(store->add(object(1), make_value(2 * kMiB, 1)).ok());
  auto pin = std::make_shared<ObjectValuePtr>(*store->get(object(1)));
  Executor executor(Executor::Config{*ResourceSet::from_wholes({{"CPU", 1}}), 1, 4});
  std::atomic<bool> a_started{false};
  std::atomic<bool> a_done{false};
  Status room;
  REQUIRE(executor.submit(WorkItem{TaskId{1, 1 << 16}, *ResourceSet::from_wholes({{"CPU", 1}}), [&] {
                            a_started = true;
                            room = store->wait_for_room(kMiB);
                            a_done = true;
                          }})
              .ok());
  while (!a_started.load()) std::this_thread::yield();
  REQUIRE(executor.submit(WorkItem{TaskId{1, 2 << 16}, *ResourceSet::from_wholes({{"CPU", 1}}),
                                   [pin] { pin->reset(); }})
              .ok());
  pin.reset();
  for (int i = 0; i < 10'000 && !a_done.load(); ++i) std::this_thread::sleep_for(std::chrono::milliseconds(1));
  CHECK(a_done.load());
  CHECK(room.ok());
  std::vector<WorkItem> left = executor.drain();
  executor.join();
}

TEST_CASE("object store: a value bigger than the whole store is refused at once, clearly") {
  TestDir dir;
  auto store = make_store({.capacity_bytes = 2 * kMiB, .spill_dir = dir.path, .inline_max = 1024});
  Status refused = store->add(object(1), make_value(2 * kMiB + 1, 1));
  CHECK(refused.code() == Status::Code::kResourceExhausted);
  CHECK(refused.message().find("ObjectStoreFull") != std::string::npos);
  CHECK(refused.message().find(std::to_string(2 * kMiB + 1) + " bytes") != std::string::npos);
  CHECK(refused.message().find(std::to_string(2 * kMiB) + " bytes") != std::string::npos);
  Status room = store->wait_for_room(2 * kMiB + 1);
  CHECK(room.code() == Status::Code::kResourceExhausted);
  CHECK(room.message().find("bigger than the whole object store") != std::string::npos);
  CHECK(store->stats().memory_bytes == 0);
  CHECK(store->add(object(2), make_value(2 * kMiB, 2)).ok());  // exactly the capacity fits
}

TEST_CASE("object store: a second value under a stored id is refused; the first stays") {
  TestDir dir;
  auto store = make_store({.capacity_bytes = 8 * kMiB, .spill_dir = dir.path, .inline_max = 1024});
  REQUIRE(store->add(object(1), make_value(kMiB, 1)).ok());
  Status again = store->add(object(1), make_value(kMiB, 2));
  CHECK(again.code() == Status::Code::kAlreadyExists);
  CHECK(store->stats().memory_bytes == kMiB);
  auto got = store->get(object(1));
  REQUIRE(got.ok());
  CHECK((*got)->bytes == pattern_bytes(kMiB, 1));
}

TEST_CASE("object store: freeing a spilled object deletes its file, also while it is written") {
  TestDir dir;
  auto store = make_store({.capacity_bytes = kMiB, .spill_dir = dir.path, .inline_max = 1024});
  REQUIRE(store->add(object(0), make_value(kMiB, 0)).ok());
  REQUIRE(store->add(object(1), make_value(kMiB, 1)).ok());
  store->wait_idle();
  CHECK(by_id(*store)[object(0)].state == ObjectStore::State::kSpilled);
  CHECK(files_in(dir.path) == 1);
  store->remove(object(0));
  store->wait_idle();
  CHECK(files_in(dir.path) == 0);

  // Each add makes the one before spill; removing that one at once races
  // with its write at every stage. No file may be left behind.
  for (uint64_t n = 2; n < 40; ++n) {
    REQUIRE(store->add(object(n), make_value(kMiB, n)).ok());
    store->remove(object(n - 1));
  }
  store->wait_idle();
  CHECK(files_in(dir.path) == 0);
  ObjectStore::Stats stats = store->stats();
  CHECK(stats.memory_bytes == kMiB);
  CHECK(stats.objects_in_memory == 1);
  CHECK(stats.objects_spilled + stats.objects_spilling == 0);
  store->remove(object(39));
  store->wait_idle();
  stats = store->stats();
  CHECK(stats.memory_bytes == 0);
  CHECK(stats.disk_bytes == 0);
  CHECK(files_in(dir.path) == 0);
}

TEST_CASE("object store: refs inside a spilled value stay in memory and come back with it") {
  TestDir dir;
  auto store = make_store({.capacity_bytes = kMiB, .spill_dir = dir.path, .inline_max = 1024});
  auto value = std::make_shared<ObjectValue>();
  value->bytes = pattern_bytes(kMiB, 1);
  // A ref whose runtime is gone: its destructor tells nobody.
  auto inner = std::make_shared<const RefState>(object(100), "local/x", std::weak_ptr<Runtime>());
  std::weak_ptr<const RefState> watch = inner;
  value->contained.refs.push_back(std::move(inner));
  REQUIRE(store->add(object(1), std::move(value)).ok());
  REQUIRE(store->add(object(2), make_value(kMiB, 2)).ok());
  store->wait_idle();
  REQUIRE(by_id(*store)[object(1)].state == ObjectStore::State::kSpilled);
  CHECK(!watch.expired());  // kept by the store's entry, not by the file
  ObjectValuePtr back = *store->get(object(1));
  REQUIRE(back->contained.refs.size() == 1);
  CHECK(back->contained.refs[0]->id == object(100));
  back.reset();
  store->remove(object(1));
  CHECK(watch.expired());
}

TEST_CASE(
    "object store: corrupted, truncated and deleted spill files give a clear error at get(); "
    "other objects are unaffected") {
  TestDir dir;
  auto store = make_store({.capacity_bytes = kMiB, .spill_dir = dir.path, .inline_max = 1024});
  for (uint64_t n = 0; n < 5; ++n) REQUIRE(store->add(object(n), make_value(kMiB, n)).ok());
  store->wait_idle();
  auto infos = by_id(*store);
  for (uint64_t n = 0; n < 4; ++n) REQUIRE(infos[object(n)].state == ObjectStore::State::kSpilled);
  const std::string flipped = infos[object(0)].spill_path;
  const std::string truncated = infos[object(1)].spill_path;
  const std::string deleted = infos[object(2)].spill_path;
  {
    std::fstream file(flipped, std::ios::in | std::ios::out | std::ios::binary);
    file.seekg(kSpillHeaderBytes + 12345);
    char byte = 0;
    file.get(byte);
    file.seekp(kSpillHeaderBytes + 12345);
    file.put(static_cast<char>(byte ^ 0x01));
  }
  std::filesystem::resize_file(truncated, kMiB / 2);
  std::filesystem::remove(deleted);

  auto error_of = [&](uint64_t n) -> std::string {
    Result<ObjectValuePtr> value = store->get(object(n));
    REQUIRE(value.ok());
    REQUIRE((*value)->error.has_value());
    CHECK((*value)->error->code == Status::Code::kIoError);
    CHECK((*value)->bytes.empty());
    return (*value)->error->message;
  };
  std::string message = error_of(0);
  CHECK(message.find(flipped) != std::string::npos);
  CHECK(message.find("corrupted") != std::string::npos);
  message = error_of(1);
  CHECK(message.find(truncated) != std::string::npos);
  CHECK(message.find("truncated") != std::string::npos);
  message = error_of(2);
  CHECK(message.find(deleted) != std::string::npos);
  CHECK(message.find("missing") != std::string::npos);
  CHECK(error_of(0) == error_of(0));  // the same answer every time, never other bytes

  CHECK(holds(*store, 3, kMiB));
  CHECK(holds(*store, 4, kMiB));
  CHECK(store->stats().restore_errors == 5);
  for (uint64_t n = 0; n < 5; ++n) store->remove(object(n));
  store->wait_idle();
  CHECK(files_in(dir.path) == 0);
}

// ---- A full disk -------------------------------------------------------------
//
// ENOSPC for real: the parent forks a child that unshares its mount
// namespace, mounts a 4 MiB tmpfs and execs this binary again to run the
// scenario below (skipped in a normal run), whose result becomes the child's
// exit status.

namespace {
constexpr const char* kFullDiskEnv = "SHOAL_TEST_FULL_DISK_DIR";
constexpr const char* kFullDiskCase = "object store (child): full disk scenario";
}  // namespace

TEST_CASE(
    "object store: a full disk refuses spills; values stay readable, no retry storm, and "
    "spilling resumes after a free") {
  if (::geteuid() != 0) {
    FAIL(
        "this test mounts a tmpfs in a private mount namespace and needs root (CI runs the unit "
        "tests as root); it cannot pass without it");
  }
  TestDir mount_point;
  std::vector<std::string> env_strings;
  for (char** e = environ; *e != nullptr; ++e) env_strings.emplace_back(*e);
  env_strings.push_back(std::string(kFullDiskEnv) + "=" + mount_point.path);
  std::vector<char*> envp;
  for (std::string& s : env_strings) envp.push_back(s.data());
  envp.push_back(nullptr);
  std::string filter = std::string("--test-case=") + kFullDiskCase;
  std::string no_skip = "--no-skip=true";
  std::string name = "object_store_test";
  char* argv[] = {name.data(), filter.data(), no_skip.data(), nullptr};

  pid_t pid = ::fork();
  REQUIRE(pid >= 0);
  if (pid == 0) {  // only async-signal-safe calls until exec
    if (::unshare(CLONE_NEWNS) != 0) ::_exit(90);
    if (::mount(nullptr, "/", nullptr, MS_REC | MS_PRIVATE, nullptr) != 0) ::_exit(91);
    if (::mount("tmpfs", mount_point.path.c_str(), "tmpfs", 0, "size=4m,mode=0700") != 0) {
      ::_exit(92);
    }
    ::execve("/proc/self/exe", argv, envp.data());
    ::_exit(93);
  }
  int status = 0;
  REQUIRE(::waitpid(pid, &status, 0) == pid);
  REQUIRE(WIFEXITED(status));
  int code = WEXITSTATUS(status);
  INFO(
      "exit status of the child: 90 unshare(CLONE_NEWNS) failed, 91 making / private failed, "
      "92 mounting the tmpfs failed, 93 exec failed; others: its doctest failures, printed above");
  CHECK(code == 0);
}

TEST_CASE("object store (child): full disk scenario" * doctest::skip()) {
  const char* mount_dir = ::getenv(kFullDiskEnv);
  REQUIRE(mount_dir != nullptr);
  struct statfs info {};
  REQUIRE(::statfs(mount_dir, &info) == 0);
  REQUIRE(static_cast<uint64_t>(info.f_blocks) * info.f_bsize == 4 * kMiB);  // the tmpfs is there

  ManualClock clock;
  const std::string spill_dir = std::string(mount_dir) + "/spill";
  // One write at a time, so exactly which spill hits the full disk is known:
  // 4 MiB hold three 1 MiB files (plus headers) and not a fourth.
  auto store = make_store({.capacity_bytes = 2 * kMiB,
                           .spill_dir = spill_dir,
                           .inline_max = 1024,
                           .spills_in_flight_max = 1,
                           .disk_retry_backoff_ms = 1000,
                           .clock = &clock});
  for (uint64_t n = 0; n < 6; ++n) REQUIRE(store->add(object(n), make_value(kMiB, n)).ok());
  store->wait_idle();
  ObjectStore::Stats stats = store->stats();
  CHECK(stats.spills == 3);
  CHECK(stats.disk_errors == 1);
  CHECK(stats.objects_spilled == 3);
  CHECK(stats.memory_bytes == 3 * kMiB);  // nothing admitted is lost
  CHECK(stats.disk_error.find("no space left on device") != std::string::npos);
  CHECK(files_in(spill_dir) == 3);  // the partial file was deleted

  // The refusal is remembered: no new writes until a delete or the backoff.
  REQUIRE(store->add(object(6), make_value(kMiB, 6)).ok());
  for (int i = 0; i < 5; ++i) {
    Status full = store->wait_for_room(kMiB);
    CHECK(full.code() == Status::Code::kResourceExhausted);
    CHECK(full.message().find("ObjectStoreFull") != std::string::npos);
    CHECK(full.message().find(spill_dir) != std::string::npos);
    CHECK(full.message().find("no space left on device") != std::string::npos);
  }
  store->wait_idle();
  stats = store->stats();
  CHECK(stats.disk_errors == 1);
  CHECK(stats.spills == 3);

  for (uint64_t n = 0; n < 7; ++n) CHECK(holds(*store, n, kMiB));  // from memory or from disk
  store->wait_idle();
  CHECK(store->stats().disk_errors == 1);

  // A freed spill file gives space back: one more spill fits, the next fails.
  store->remove(object(1));
  store->wait_idle();
  stats = store->stats();
  CHECK(stats.spills == 4);
  CHECK(stats.disk_errors == 2);
  CHECK(files_in(spill_dir) == 3);

  // After the backoff, one more try (the disk is still full).
  clock.advance_ms(1000);
  CHECK(store->wait_for_room(kMiB).code() == Status::Code::kResourceExhausted);
  store->wait_idle();
  CHECK(store->stats().disk_errors == 3);
  CHECK(store->stats().spills == 4);

  for (uint64_t n : {0, 2, 3, 4, 5, 6}) CHECK(holds(*store, n, kMiB));
  for (uint64_t n : {0, 2, 3, 4, 5, 6}) store->remove(object(n));
  store->wait_idle();
  stats = store->stats();
  CHECK(stats.memory_bytes == 0);
  CHECK(stats.disk_bytes == 0);
  CHECK(files_in(spill_dir) == 0);
  store->shutdown();
  CHECK(!std::filesystem::exists(spill_dir));
}

// ---- Through LocalRuntime --------------------------------------------------------

namespace {

std::shared_ptr<LocalRuntime> local_runtime(uint64_t store_bytes, std::string spill_dir) {
  LocalRuntime::Config config;
  config.node_id = std::string(32, 'b');
  config.total = *ResourceSet::from_wholes({{"CPU", 2}});
  config.object_store_bytes_max = store_bytes;
  config.spill_dir = std::move(spill_dir);
  return LocalRuntime::create(config);
}

RefPtr put_string(LocalRuntime& runtime, const std::string& text) {
  Result<RefPtr> ref = runtime.put(serialize_value(text));
  REQUIRE(ref.ok());
  return std::move(*ref);
}

ObjectValuePtr get_one(LocalRuntime& runtime, const RefPtr& ref) {
  const RefState* refs[] = {ref.get()};
  Result<std::vector<ObjectValuePtr>> values = runtime.get(refs, std::nullopt);
  REQUIRE(values.ok());
  return (*values)[0];
}

}  // namespace

TEST_CASE(
    "local runtime: ten times the store's capacity goes through spilling, byte-identical; "
    "dropping every ref frees memory and disk") {
  TestDir dir;
  const std::string spill_dir = dir.path + "/spill";
  std::shared_ptr<LocalRuntime> runtime = local_runtime(64 * kMiB, spill_dir);
  const std::shared_ptr<ObjectStore>& store = runtime->object_store();
  REQUIRE(store != nullptr);
  // 640 MiB in values of 1 to 4 MiB (and a few odd bytes).
  std::vector<RefPtr> refs;
  std::vector<uint64_t> sizes;
  uint64_t total = 0;
  for (uint64_t n = 0; total < 640 * kMiB; ++n) {
    uint64_t size = (1 + n % 4) * kMiB + n;
    refs.push_back(put_string(*runtime, pattern_bytes(size, n)));
    sizes.push_back(size);
    total += size;
  }
  ObjectStore::Stats stats = store->stats();
  CHECK(stats.memory_bytes <= 64 * kMiB);
  CHECK(stats.spills > 0);
  for (std::size_t n = 0; n < refs.size(); ++n) {
    ObjectValuePtr value = get_one(*runtime, refs[n]);
    REQUIRE(value != nullptr);
    REQUIRE(!value->error);
    Result<std::string> text = deserialize<std::string>(value->bytes);
    REQUIRE(text.ok());
    CHECK(text->size() == sizes[n]);
    CHECK(*text == pattern_bytes(sizes[n], n));
  }
  stats = store->stats();
  CHECK(stats.restores > 0);
  CHECK(stats.disk_errors == 0);
  CHECK(stats.restore_errors == 0);
  CHECK(stats.spilled_bytes_total >= total - 64 * kMiB);

  refs.clear();
  store->wait_idle();
  stats = store->stats();
  CHECK(stats.memory_bytes == 0);
  CHECK(stats.inline_bytes == 0);
  CHECK(stats.spilled_bytes == 0);
  CHECK(stats.disk_bytes == 0);
  CHECK(stats.objects_in_memory + stats.objects_spilled + stats.objects_spilling == 0);
  CHECK(runtime->object_count() == 0);
  CHECK(files_in(spill_dir) == 0);
  runtime->shutdown();
  CHECK(!std::filesystem::exists(spill_dir));
}

TEST_CASE(
    "local runtime: without a spill dir the store uses a private temporary one, removed at "
    "shutdown") {
  std::shared_ptr<LocalRuntime> runtime = local_runtime(kMiB, "");
  REQUIRE(runtime->object_store() != nullptr);
  const std::string spill_dir = runtime->object_store()->spill_dir();
  CHECK(spill_dir.find("shoal-spill-") != std::string::npos);
  RefPtr a = put_string(*runtime, pattern_bytes(700'000, 1));
  RefPtr b = put_string(*runtime, pattern_bytes(700'000, 2));  // a spills
  runtime->object_store()->wait_idle();
  CHECK(files_in(spill_dir) == 1);
  runtime->shutdown();
  CHECK(!std::filesystem::exists(spill_dir));
}

TEST_CASE(
    "local runtime: a corrupted spill file fails get() of that object only, naming the file") {
  TestDir dir;
  std::shared_ptr<LocalRuntime> runtime = local_runtime(kMiB, dir.path);
  RefPtr first = put_string(*runtime, pattern_bytes(700'000, 1));
  RefPtr second = put_string(*runtime, pattern_bytes(700'000, 2));
  runtime->object_store()->wait_idle();
  std::string path = by_id(*runtime->object_store())[first->id].spill_path;
  REQUIRE(!path.empty());
  std::filesystem::resize_file(path, 100);
  ObjectValuePtr broken = get_one(*runtime, first);
  REQUIRE(broken->error.has_value());
  CHECK(broken->error->message.find(path) != std::string::npos);
  CHECK_THROWS_WITH_AS(throw_if_failed(*broken), doctest::Contains("truncated"), Error);
  ObjectValuePtr fine = get_one(*runtime, second);
  REQUIRE(!fine->error);
  CHECK(deserialize<std::string>(fine->bytes).value() == pattern_bytes(700'000, 2));
  runtime->shutdown();
}

TEST_CASE("local runtime: put() of a value bigger than the store fails with ObjectStoreFull") {
  TestDir dir;
  std::shared_ptr<LocalRuntime> runtime = local_runtime(kMiB, dir.path);
  Result<RefPtr> ref = runtime->put(serialize_value(pattern_bytes(kMiB + 1, 1)));
  CHECK(ref.status().code() == Status::Code::kResourceExhausted);
  CHECK(ref.status().message().find("ObjectStoreFull") != std::string::npos);
  CHECK(ref.status().message().find("bigger than the whole object store (1048576 bytes)") !=
        std::string::npos);
  runtime->shutdown();
}
