// Power loss with a real RocksDB: a FileSystem wrapper remembers how much of
// every file was synced; "power loss" cuts each file back to that. A child
// process persists Raft state through it, reports each acknowledged append,
// and exits without closing anything; the parent cuts the files and reopens.
#include <doctest/doctest.h>
#include <rocksdb/env.h>
#include <rocksdb/file_system.h>
#include <sys/wait.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <map>
#include <mutex>

#include "control/log_store.h"

namespace shoal::control {
namespace {

class FaultFs final : public rocksdb::FileSystemWrapper {
 public:
  explicit FaultFs(const std::shared_ptr<rocksdb::FileSystem>& base) : FileSystemWrapper(base) {}
  const char* Name() const override { return "ShoalFaultFs"; }

  struct Sizes {
    uint64_t written = 0;
    uint64_t synced = 0;
  };

  class File final : public rocksdb::FSWritableFileOwnerWrapper {
   public:
    File(FaultFs& fs, std::string name, std::unique_ptr<rocksdb::FSWritableFile> f)
        : FSWritableFileOwnerWrapper(std::move(f)), fs_(fs), name_(std::move(name)) {}
    rocksdb::IOStatus Append(const rocksdb::Slice& data, const rocksdb::IOOptions& o,
                             rocksdb::IODebugContext* d) override {
      auto s = target()->Append(data, o, d);
      if (s.ok()) fs_.wrote(name_, data.size());
      return s;
    }
    rocksdb::IOStatus Append(const rocksdb::Slice& data, const rocksdb::IOOptions& o,
                             const rocksdb::DataVerificationInfo& v, rocksdb::IODebugContext* d) override {
      auto s = target()->Append(data, o, v, d);
      if (s.ok()) fs_.wrote(name_, data.size());
      return s;
    }
    rocksdb::IOStatus Sync(const rocksdb::IOOptions& o, rocksdb::IODebugContext* d) override {
      auto s = target()->Sync(o, d);
      if (s.ok()) fs_.synced(name_);
      return s;
    }
    rocksdb::IOStatus Fsync(const rocksdb::IOOptions& o, rocksdb::IODebugContext* d) override {
      auto s = target()->Fsync(o, d);
      if (s.ok()) fs_.synced(name_);
      return s;
    }

   private:
    FaultFs& fs_;
    std::string name_;
  };

  rocksdb::IOStatus NewWritableFile(const std::string& f, const rocksdb::FileOptions& o,
                                    std::unique_ptr<rocksdb::FSWritableFile>* r,
                                    rocksdb::IODebugContext* d) override {
    std::unique_ptr<rocksdb::FSWritableFile> inner;
    auto s = target()->NewWritableFile(f, o, &inner, d);
    if (!s.ok()) return s;
    {
      std::lock_guard<std::mutex> lock(mu_);
      files_[f] = Sizes{};
    }
    *r = std::make_unique<File>(*this, f, std::move(inner));
    return s;
  }
  rocksdb::IOStatus ReopenWritableFile(const std::string& f, const rocksdb::FileOptions& o,
                                       std::unique_ptr<rocksdb::FSWritableFile>* r,
                                       rocksdb::IODebugContext* d) override {
    std::unique_ptr<rocksdb::FSWritableFile> inner;
    auto s = target()->ReopenWritableFile(f, o, &inner, d);
    if (!s.ok()) return s;
    std::error_code ec;
    uint64_t size = std::filesystem::file_size(f, ec);
    {
      std::lock_guard<std::mutex> lock(mu_);
      files_[f] = Sizes{ec ? 0 : size, ec ? 0 : size};
    }
    *r = std::make_unique<File>(*this, f, std::move(inner));
    return s;
  }
  rocksdb::IOStatus RenameFile(const std::string& from, const std::string& to, const rocksdb::IOOptions& o,
                               rocksdb::IODebugContext* d) override {
    auto s = target()->RenameFile(from, to, o, d);
    if (s.ok()) {
      std::lock_guard<std::mutex> lock(mu_);
      auto it = files_.find(from);
      if (it != files_.end()) {
        files_[to] = it->second;
        files_.erase(it);
      }
    }
    return s;
  }
  rocksdb::IOStatus DeleteFile(const std::string& f, const rocksdb::IOOptions& o,
                               rocksdb::IODebugContext* d) override {
    auto s = target()->DeleteFile(f, o, d);
    if (s.ok()) {
      std::lock_guard<std::mutex> lock(mu_);
      files_.erase(f);
    }
    return s;
  }

  void wrote(const std::string& f, uint64_t n) {
    std::lock_guard<std::mutex> lock(mu_);
    files_[f].written += n;
  }
  void synced(const std::string& f) {
    std::lock_guard<std::mutex> lock(mu_);
    files_[f].synced = files_[f].written;
  }
  // "name synced_size" per line.
  void save(const std::string& path) {
    std::lock_guard<std::mutex> lock(mu_);
    std::ofstream out(path);
    for (const auto& [name, sizes] : files_) out << name << ' ' << sizes.synced << '\n';
  }

 private:
  std::mutex mu_;
  std::map<std::string, Sizes> files_;
};

// Cuts every listed file back to the size it had when last synced.
size_t lose_unsynced(const std::string& table) {
  std::ifstream in(table);
  std::string name;
  uint64_t synced = 0;
  size_t cut = 0;
  while (in >> name >> synced) {
    std::error_code ec;
    uint64_t size = std::filesystem::file_size(name, ec);
    if (ec) continue;
    if (size > synced) {
      std::filesystem::resize_file(name, synced);
      ++cut;
    }
  }
  return cut;
}

raft::Entry entry(raft::Index index, raft::Term term) {
  raft::Entry e;
  e.index = index;
  e.term = term;
  e.data = "entry-" + std::to_string(index);
  return e;
}

}  // namespace

TEST_CASE("the fault file system loses exactly what was not synced") {
  char buf[] = "/tmp/shoal-faultfs-XXXXXX";
  std::string dir = ::mkdtemp(buf);
  auto fs = std::make_shared<FaultFs>(rocksdb::FileSystem::Default());
  std::unique_ptr<rocksdb::FSWritableFile> f;
  std::string path = dir + "/f";
  REQUIRE(fs->NewWritableFile(path, rocksdb::FileOptions(), &f, nullptr).ok());
  REQUIRE(f->Append("synced|", rocksdb::IOOptions(), nullptr).ok());
  REQUIRE(f->Sync(rocksdb::IOOptions(), nullptr).ok());
  REQUIRE(f->Append("lost", rocksdb::IOOptions(), nullptr).ok());
  REQUIRE(f->Close(rocksdb::IOOptions(), nullptr).ok());
  fs->save(dir + "/table");
  CHECK(lose_unsynced(dir + "/table") == 1);
  std::ifstream in(path);
  std::string content((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  CHECK(content == "synced|");
  std::filesystem::remove_all(dir);
}

TEST_CASE("power loss after acknowledged appends loses none of them (every Ready is one synced write)") {
  char buf[] = "/tmp/shoal-powerloss-XXXXXX";
  std::string dir = ::mkdtemp(buf);
  std::string path = dir + "/meta";
  std::string table = dir + "/synced-sizes";
  constexpr raft::Index kAppends = 200;
  pid_t child = ::fork();
  REQUIRE(child >= 0);
  if (child == 0) {
    auto fs = std::make_shared<FaultFs>(rocksdb::FileSystem::Default());
    std::unique_ptr<rocksdb::Env> env = rocksdb::NewCompositeEnv(fs);
    auto store = LogStore::open(path, 7, env.get());
    if (!store.ok()) ::_exit(3);
    for (raft::Index i = 1; i <= kAppends; ++i) {
      raft::Ready rd;
      rd.entries.push_back(entry(i, 1 + i / 64));
      rd.hard_state = raft::HardState{1 + i / 64, 7, i};
      if (!(*store)->persist(rd).ok()) ::_exit(4);
    }
    fs->save(table);
    ::_exit(0);  // power goes out: nothing is closed or flushed
  }
  int status = 0;
  ::waitpid(child, &status, 0);
  REQUIRE(WIFEXITED(status));
  REQUIRE(WEXITSTATUS(status) == 0);
  lose_unsynced(table);

  auto store = LogStore::open(path, 7);
  REQUIRE(store.ok());
  auto& mem = (*store)->memory();
  CHECK(mem.last_index() == kAppends);
  CHECK(mem.initial_state().first.commit == kAppends);
  auto all = mem.entries(1, kAppends + 1, UINT64_MAX);
  REQUIRE(all.ok());
  REQUIRE(all->size() == kAppends);
  for (raft::Index i = 1; i <= kAppends; ++i) CHECK((*all)[i - 1].data == "entry-" + std::to_string(i));
  std::filesystem::remove_all(dir);
}

}  // namespace shoal::control
