#include "task/object_store.h"

#include "task/executor.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>
#include <uv.h>

#include <algorithm>
#include <chrono>
#include <cstring>
#include <string_view>
#include <utility>

#include "base/assert.h"
#include "base/log.h"
#include "base/thread_name.h"
#include "task/spill_file.h"

namespace shoal::detail {

// One file operation for the loop thread: a spill write (open, write until
// done, close; on failure close and delete the partial file) or a delete.
// While libuv runs it, the request's data field owns it.
struct ObjectStore::FileWork {
  enum class Kind : uint8_t { kSpill, kDelete };
  Kind kind = Kind::kSpill;
  ObjectStore* store = nullptr;
  ObjectId id;
  uint64_t sequence = 0;
  std::string path;
  ObjectValuePtr value;  // kSpill: the bytes being written (counts as one pin)
  SpillHeader header{};
  uv_fs_t request{};
  uv_file fd = -1;
  uint64_t written = 0;   // of header + payload
  int error = 0;          // the first failure (a libuv error code)
  const char* step = "";  // where it failed: open, write, close

  uint64_t total() const { return kSpillHeaderBytes + value->bytes.size(); }
};

struct ObjectStore::Loop {
  uv_loop_t uv{};
  uv_async_t wake{};
  std::thread thread;
  std::thread::id thread_id;
};

namespace {

using FileWorkPtr = std::unique_ptr<ObjectStore::FileWork>;

std::string errno_text(int error) { return std::strerror(error); }

std::string full(const std::string& message) { return "ObjectStoreFull: " + message; }

// Deletes *.spill files an earlier process left in `dir`.
Status remove_stale_files(const std::string& dir) {
  DIR* listing = ::opendir(dir.c_str());
  if (listing == nullptr) {
    return Status::io_error("object store: cannot read spill dir " + dir + " (" +
                            errno_text(errno) + ")");
  }
  std::size_t removed = 0;
  while (const dirent* item = ::readdir(listing)) {
    std::string_view name(item->d_name);
    if (name.size() > kSpillFileSuffix.size() && name.ends_with(kSpillFileSuffix)) {
      if (::unlink((dir + "/" + std::string(name)).c_str()) == 0) ++removed;
    }
  }
  ::closedir(listing);
  if (removed > 0)
    SHOAL_LOG_INFO("object store: removed {} stale spill files from {}", removed, dir);
  return Status();
}

// Makes the spill directory; `made` says whether it did not exist before.
Result<std::string> prepare_dir(const std::string& wanted, bool& made) {
  if (wanted.empty()) {
    const char* tmp = ::getenv("TMPDIR");
    std::string pattern =
        std::string(tmp != nullptr && *tmp != '\0' ? tmp : "/tmp") + "/shoal-spill-XXXXXX";
    if (::mkdtemp(pattern.data()) == nullptr) {
      return Status::io_error("object store: cannot make a spill dir " + pattern + " (" +
                              errno_text(errno) + ")");
    }
    made = true;
    return pattern;
  }
  if (::mkdir(wanted.c_str(), 0700) == 0) {
    made = true;
    return wanted;
  }
  int error = errno;
  struct stat info {};
  if (error != EEXIST || ::stat(wanted.c_str(), &info) != 0 || !S_ISDIR(info.st_mode)) {
    return Status::io_error("object store: cannot make spill dir " + wanted + " (" +
                            errno_text(error) + ")");
  }
  made = false;
  SHOAL_RETURN_IF_ERROR(remove_stale_files(wanted));
  return wanted;
}

}  // namespace

// ---- Creation and shutdown ---------------------------------------------------

Result<std::shared_ptr<ObjectStore>> ObjectStore::create(Config config) {
  if (config.capacity_bytes == 0) {
    return Status::invalid_argument("object store: the capacity must be more than 0 bytes");
  }
  if (config.spills_in_flight_max == 0) config.spills_in_flight_max = 1;
  bool made = false;
  Result<std::string> dir = prepare_dir(config.spill_dir, made);
  if (!dir.ok()) return dir.status();
  return std::shared_ptr<ObjectStore>(new ObjectStore(std::move(config), std::move(*dir), made));
}

ObjectStore::ObjectStore(Config config, std::string spill_dir, bool made_dir)
    : config_(std::move(config)),
      spill_dir_(std::move(spill_dir)),
      made_dir_(made_dir),
      clock_(config_.clock != nullptr ? *config_.clock : system_clock_),
      loop_(std::make_unique<Loop>()) {
  SHOAL_ASSERT(uv_loop_init(&loop_->uv) == 0);
  SHOAL_ASSERT(uv_async_init(&loop_->uv, &loop_->wake, [](uv_async_t* handle) {
                 static_cast<ObjectStore*>(handle->data)->on_wake();
               }) == 0);
  loop_->wake.data = this;
  loop_->thread = std::thread([this] {
    name_this_thread("shoal-store");
    uv_run(&loop_->uv, UV_RUN_DEFAULT);
  });
  loop_->thread_id = loop_->thread.get_id();
}

ObjectStore::~ObjectStore() { shutdown(); }

void ObjectStore::shutdown() {
  SHOAL_ASSERT(std::this_thread::get_id() != loop_->thread_id,
               "ObjectStore::shutdown() on its own loop thread");
  {
    std::lock_guard lock(mutex_);
    if (stopping_) return;
    stopping_ = true;
    wake_locked();  // the loop closes once the file operations in flight finish
  }
  loop_->thread.join();
  int rc = uv_loop_close(&loop_->uv);
  SHOAL_ASSERT(rc == 0, uv_strerror(rc));

  std::unordered_map<ObjectId, Entry> entries;
  std::vector<FileWorkPtr> queued;
  std::vector<ObjectValuePtr> orphans;
  {
    std::lock_guard lock(mutex_);
    entries.swap(entries_);
    queued.swap(queue_);
    orphans.swap(orphans_);
    lru_.clear();
    memory_bytes_ = spilling_bytes_ = 0;
    files_in_flight_ = spills_in_flight_ = 0;
    changed_.notify_all();
  }
  for (const auto& [id, entry] : entries) {
    SHOAL_ASSERT(entry.state != State::kSpilling, id.hex());
    if (entry.file_sequence != 0) ::unlink(spill_path(id, entry.file_sequence).c_str());
  }
  for (const FileWorkPtr& work : queued) {
    if (work->kind == FileWork::Kind::kDelete) ::unlink(work->path.c_str());
  }
  entries.clear();  // may release refs: no lock held
  orphans.clear();
  if (made_dir_ && ::rmdir(spill_dir_.c_str()) != 0) {
    SHOAL_LOG_WARN("object store: cannot remove spill dir {}: {}", spill_dir_, errno_text(errno));
  }
}

// ---- Public operations ---------------------------------------------------------

bool ObjectStore::manages(const ObjectValue& value) const {
  return !value.error && value.bytes.size() > config_.inline_max;
}

Status ObjectStore::add(const ObjectId& id, ObjectValuePtr value) {
  SHOAL_ASSERT(value != nullptr && manages(*value), id.hex());
  const uint64_t size = value->bytes.size();
  if (size > config_.capacity_bytes) {
    return Status::resource_exhausted(full("object " + id.hex() + " is " + std::to_string(size) +
                                           " bytes, more than the whole object store (" +
                                           std::to_string(config_.capacity_bytes) + " bytes)"));
  }
  std::vector<ObjectValuePtr> garbage;
  std::lock_guard lock(mutex_);
  if (stopping_) return Status::unavailable("object store: shut down");
  auto [it, inserted] = entries_.try_emplace(id);
  if (!inserted) return Status::already_exists("object store: " + id.hex() + " is stored already");
  Entry& entry = it->second;
  entry.size = size;
  entry.contained = value->contained;
  entry.value = std::move(value);
  lru_.push_front(id);
  entry.lru = lru_.begin();
  memory_bytes_ += size;
  make_room_locked(0, garbage);
  return Status();
}

Status ObjectStore::wait_for_room(uint64_t bytes) {
  if (bytes > config_.capacity_bytes) {
    return Status::resource_exhausted(full("a value of " + std::to_string(bytes) +
                                           " bytes is bigger than the whole object store (" +
                                           std::to_string(config_.capacity_bytes) + " bytes)"));
  }
  const auto start = std::chrono::steady_clock::now();
  const auto deadline = start + std::chrono::milliseconds(config_.room_wait_ms_max);
  const auto pins_deadline =
      std::min(deadline, start + std::chrono::milliseconds(config_.pinned_wait_ms_max));
  std::vector<ObjectValuePtr> garbage;  // destroyed after the lock is released
  std::vector<ObjectValuePtr> orphans;
  // A task that has to wait lends its CPUs meanwhile (the work that frees
  // room — a reader finishing, a task dropping its refs — may need them);
  // declared before the lock so that taking them back happens unlocked.
  std::optional<Executor::BlockingScope> blocking;
  std::unique_lock lock(mutex_);
  orphans.swap(orphans_);
  while (true) {
    if (stopping_) return Status::unavailable("object store: shut down");
    if (memory_bytes_ + inline_bytes_ + bytes <= config_.capacity_bytes) return Status();
    make_room_locked(bytes, garbage);
    if (memory_bytes_ + inline_bytes_ + bytes <= config_.capacity_bytes) return Status();
    if (spills_in_flight_ == 0) {  // nothing in flight will free memory
      if (disk_refused_) {
        return Status::resource_exhausted(full_message_locked(
            bytes, "spilling to " + spill_dir_ + " failed (" + disk_error_ + ")"));
      }
      if (!any_pinned_locked()) {
        return Status::resource_exhausted(
            full_message_locked(bytes, "small values, which never spill, fill the rest"));
      }
      if (std::chrono::steady_clock::now() >= pins_deadline) {
        return Status::resource_exhausted(full_message_locked(
            bytes, "the large values in memory stayed in use (pinned by readers) for " +
                       std::to_string(config_.pinned_wait_ms_max) +
                       " ms; small values never spill"));
      }
      if (!blocking) blocking.emplace();
      changed_.wait_for(lock, std::chrono::milliseconds(kPinPollMs));  // a reader may let go
      continue;
    }
    if (!blocking) blocking.emplace();
    if (changed_.wait_until(lock, deadline) == std::cv_status::timeout &&
        memory_bytes_ + inline_bytes_ + bytes > config_.capacity_bytes) {
      return Status::resource_exhausted(
          full_message_locked(bytes, "spills to " + spill_dir_ + " did not finish within " +
                                         std::to_string(config_.room_wait_ms_max) + " ms"));
    }
  }
}

Result<ObjectValuePtr> ObjectStore::get(const ObjectId& id) {
  uint64_t size = 0;
  std::string path;
  Contained contained;
  {
    std::lock_guard lock(mutex_);
    auto it = entries_.find(id);
    if (it == entries_.end()) {
      return Status::not_found("object store: object " + id.hex() + " is not held here");
    }
    Entry& entry = it->second;
    if (entry.value != nullptr) {
      lru_.splice(lru_.begin(), lru_, entry.lru);
      return entry.value;
    }
    SHOAL_ASSERT(entry.state == State::kSpilled && entry.file_sequence != 0, id.hex());
    size = entry.size;
    path = spill_path(id, entry.file_sequence);
    contained = entry.contained;
  }
  Result<std::string> bytes = read_spill_file(path, id, size);
  if (!bytes.ok()) {
    SHOAL_LOG_WARN("object store: {}", bytes.status().message());
    {
      std::lock_guard lock(mutex_);
      ++counters_.restore_errors;
    }
    auto failed = std::make_shared<ObjectValue>();
    failed->error = ErrorInfo{};
    failed->error->kind = ErrorKind::kSystem;
    failed->error->code = Status::Code::kIoError;
    failed->error->message = "object store: " + bytes.status().message();
    return ObjectValuePtr(std::move(failed));
  }
  auto restored = std::make_shared<ObjectValue>();
  restored->bytes = std::move(*bytes);
  restored->contained = std::move(contained);
  ObjectValuePtr value = std::move(restored);
  std::vector<ObjectValuePtr> garbage;
  std::lock_guard lock(mutex_);
  auto it = entries_.find(id);
  if (it == entries_.end()) {
    // Removed meanwhile; `value` goes after the lock (its refs may be the last).
    garbage.push_back(std::move(value));
    return Status::not_found("object store: object " + id.hex() + " is not held here");
  }
  Entry& entry = it->second;
  if (entry.value != nullptr) return entry.value;  // another reader restored it first
  entry.value = value;
  entry.state = State::kInMemory;
  lru_.push_front(id);
  entry.lru = lru_.begin();
  memory_bytes_ += size;
  ++counters_.restores;
  counters_.restored_bytes_total += size;
  make_room_locked(0, garbage);  // `value` is pinned by this caller meanwhile
  return value;
}

void ObjectStore::remove(const ObjectId& id) {
  Entry removed;  // destroyed after the lock is released (it may hold the last refs)
  std::vector<ObjectValuePtr> orphans;
  std::lock_guard lock(mutex_);
  orphans.swap(orphans_);
  auto it = entries_.find(id);
  if (it == entries_.end()) return;
  Entry& entry = it->second;
  if (entry.value != nullptr) {
    lru_.erase(entry.lru);
    memory_bytes_ -= entry.size;
  }
  if (entry.state == State::kSpilling) spilling_bytes_ -= entry.size;  // the write deletes its file
  if (entry.file_sequence != 0) queue_delete_locked(id, entry.file_sequence);
  removed = std::move(entry);
  entries_.erase(it);
  changed_.notify_all();
}

std::optional<uint64_t> ObjectStore::spilled_size(const ObjectId& id) const {
  std::lock_guard lock(mutex_);
  auto it = entries_.find(id);
  if (it == entries_.end() || it->second.value != nullptr) return std::nullopt;
  return it->second.size;
}

void ObjectStore::hold_inline(uint64_t bytes) {
  std::vector<ObjectValuePtr> garbage;
  std::lock_guard lock(mutex_);
  inline_bytes_ += bytes;
  make_room_locked(0, garbage);
}

void ObjectStore::release_inline(uint64_t bytes) {
  std::lock_guard lock(mutex_);
  SHOAL_ASSERT(inline_bytes_ >= bytes, inline_bytes_, bytes);
  inline_bytes_ -= bytes;
  changed_.notify_all();
}

ObjectStore::Stats ObjectStore::stats() const {
  std::lock_guard lock(mutex_);
  Stats stats = counters_;
  stats.capacity_bytes = config_.capacity_bytes;
  stats.memory_bytes = memory_bytes_;
  stats.inline_bytes = inline_bytes_;
  stats.files_in_flight = files_in_flight_;
  if (disk_refused_) stats.disk_error = disk_error_;
  for (const auto& [id, entry] : entries_) {
    if (entry.file_sequence != 0) stats.disk_bytes += entry.size;
    if (pinned(entry)) ++stats.objects_pinned;
    switch (entry.state) {
      case State::kInMemory:
        ++stats.objects_in_memory;
        break;
      case State::kSpilling:
        ++stats.objects_spilling;
        break;
      case State::kSpilled:
        ++stats.objects_spilled;
        stats.spilled_bytes += entry.size;
        break;
    }
  }
  return stats;
}

std::vector<ObjectStore::ObjectInfo> ObjectStore::list() const {
  std::lock_guard lock(mutex_);
  std::vector<ObjectInfo> out;
  out.reserve(entries_.size());
  for (const auto& [id, entry] : entries_) {
    ObjectInfo info;
    info.id = id;
    info.size_bytes = entry.size;
    info.state = entry.state;
    info.pinned = pinned(entry);
    if (entry.file_sequence != 0) info.spill_path = spill_path(id, entry.file_sequence);
    out.push_back(std::move(info));
  }
  return out;
}

void ObjectStore::wait_idle() {
  std::vector<ObjectValuePtr> orphans;
  {
    std::unique_lock lock(mutex_);
    changed_.wait(lock, [&] { return files_in_flight_ == 0 || wake_closed_; });
    orphans.swap(orphans_);
  }
}

// ---- Internals (mutex_ held) -------------------------------------------------------

std::string ObjectStore::spill_path(const ObjectId& id, uint64_t sequence) const {
  return spill_dir_ + "/" + id.hex() + "." + std::to_string(sequence) +
         std::string(kSpillFileSuffix);
}

bool ObjectStore::pinned(const Entry& entry) const {
  // A spill write holds one more pointer to the value it writes.
  long store_refs = entry.state == State::kSpilling ? 2 : 1;
  return entry.value != nullptr && entry.value.use_count() > store_refs;
}

bool ObjectStore::any_pinned_locked() const {
  for (const ObjectId& id : lru_) {
    if (pinned(entries_.find(id)->second)) return true;
  }
  return false;
}

uint64_t ObjectStore::resident_bytes() const {
  return memory_bytes_ - spilling_bytes_ + inline_bytes_;
}

void ObjectStore::make_room_locked(uint64_t incoming, std::vector<ObjectValuePtr>& garbage) {
  if (stopping_) return;
  uint64_t resident = resident_bytes();
  if (resident + incoming <= config_.capacity_bytes) return;
  if (disk_refused_ && clock_.now_ms() - disk_refused_at_ms_ >= config_.disk_retry_backoff_ms) {
    disk_refused_ = false;  // the backoff passed: one more try
  }
  std::size_t writes = spills_in_flight_;
  // Least recently used first; chosen before any is changed (that unlinks
  // them from lru_).
  std::vector<std::pair<ObjectId, Entry*>> victims;
  for (auto it = lru_.rbegin(); it != lru_.rend() && resident + incoming > config_.capacity_bytes;
       ++it) {
    Entry& entry = entries_.find(*it)->second;
    if (entry.state != State::kInMemory || pinned(entry)) continue;
    if (entry.file_sequence == 0) {
      if (disk_refused_ || writes >= config_.spills_in_flight_max) continue;
      ++writes;
    }
    victims.emplace_back(*it, &entry);
    resident -= entry.size;
  }
  for (auto& victim : victims) {
    Entry& entry = *victim.second;
    if (entry.file_sequence != 0) {
      drop_to_disk_locked(entry, garbage);
      continue;
    }
    entry.state = State::kSpilling;
    entry.writing_sequence = next_sequence_++;
    spilling_bytes_ += entry.size;
    ++spills_in_flight_;
    ++files_in_flight_;
    auto work = std::make_unique<FileWork>();
    work->kind = FileWork::Kind::kSpill;
    work->store = this;
    work->id = victim.first;
    work->sequence = entry.writing_sequence;
    work->path = spill_path(victim.first, work->sequence);
    work->value = entry.value;
    queue_.push_back(std::move(work));
  }
  if (!queue_.empty()) wake_locked();
}

void ObjectStore::drop_to_disk_locked(Entry& entry, std::vector<ObjectValuePtr>& garbage) {
  // The entry keeps the refs (contained), so releasing the value frees only
  // its bytes.
  garbage.push_back(std::move(entry.value));
  entry.value = nullptr;
  lru_.erase(entry.lru);
  memory_bytes_ -= entry.size;
  entry.state = State::kSpilled;
  changed_.notify_all();
}

void ObjectStore::queue_delete_locked(const ObjectId& id, uint64_t sequence) {
  auto work = std::make_unique<FileWork>();
  work->kind = FileWork::Kind::kDelete;
  work->store = this;
  work->id = id;
  work->sequence = sequence;
  work->path = spill_path(id, sequence);
  ++files_in_flight_;
  queue_.push_back(std::move(work));
  wake_locked();
}

std::string ObjectStore::full_message_locked(uint64_t bytes, const std::string& why) const {
  return full(std::to_string(bytes) + " bytes do not fit: " + std::to_string(memory_bytes_) +
              " bytes of large values and " + std::to_string(inline_bytes_) +
              " bytes of small ones are in memory, of " + std::to_string(config_.capacity_bytes) +
              " (the object store's capacity), and " + why);
}

void ObjectStore::wake_locked() {
  if (!wake_closed_) uv_async_send(&loop_->wake);
}

// ---- Loop thread -----------------------------------------------------------------

namespace {

FileWorkPtr take(uv_fs_t* request) {
  FileWorkPtr work(static_cast<ObjectStore::FileWork*>(request->data));
  request->data = nullptr;
  uv_fs_req_cleanup(request);
  return work;
}

}  // namespace

void ObjectStore::on_wake() {
  std::vector<FileWorkPtr> batch;
  bool stopping = false;
  {
    std::lock_guard lock(mutex_);
    batch.swap(queue_);
    stopping = stopping_;
  }
  for (FileWorkPtr& work : batch) {
    if (work->kind == FileWork::Kind::kDelete) {
      start_delete(std::move(work));
    } else if (stopping) {
      finish_spill(std::move(work), UV_ECANCELED, "shutdown");
    } else {
      start_spill(std::move(work));
    }
  }
  close_if_done();
}

void ObjectStore::close_if_done() {
  {
    std::lock_guard lock(mutex_);
    if (!stopping_ || files_in_flight_ > 0 || !queue_.empty() || wake_closed_) return;
    wake_closed_ = true;
    changed_.notify_all();
  }
  uv_close(reinterpret_cast<uv_handle_t*>(&loop_->wake), nullptr);  // uv_run returns
}

void ObjectStore::start_spill(FileWorkPtr work) {
  work->header = encode_spill_header(work->id, work->value->bytes);
  uv_fs_t* request = &work->request;
  request->data = work.get();
  int rc = uv_fs_open(&loop_->uv, request, work->path.c_str(),
                      O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600, [](uv_fs_t* req) {
                        int result = static_cast<int>(req->result);
                        FileWorkPtr work = take(req);
                        if (result < 0) {
                          // Nothing was created (O_EXCL): nothing to delete.
                          work->store->finish_spill(std::move(work), result, "open");
                          return;
                        }
                        work->fd = result;
                        work->store->write_more(std::move(work));
                      });
  if (rc < 0) {
    request->data = nullptr;
    finish_spill(std::move(work), rc, "open");
    return;
  }
  (void)work.release();  // owned by the request until its callback
}

void ObjectStore::write_more(FileWorkPtr work) {
  const std::string& payload = work->value->bytes;
  uv_buf_t buffers[2];
  unsigned count = 0;
  if (work->written < kSpillHeaderBytes) {
    buffers[count++] = uv_buf_init(work->header.data() + work->written,
                                   static_cast<unsigned>(kSpillHeaderBytes - work->written));
  }
  uint64_t payload_done = work->written > kSpillHeaderBytes ? work->written - kSpillHeaderBytes : 0;
  // One call writes at most 1 GiB (uv_buf_t lengths, and Linux stops at 2 GiB).
  uint64_t chunk = std::min<uint64_t>(payload.size() - payload_done, uint64_t{1} << 30);
  if (chunk > 0) {
    buffers[count++] =
        uv_buf_init(const_cast<char*>(payload.data()) + payload_done, static_cast<unsigned>(chunk));
  }
  uv_fs_t* request = &work->request;
  request->data = work.get();
  int rc =
      uv_fs_write(&loop_->uv, request, work->fd, buffers, count,
                  static_cast<int64_t>(work->written), [](uv_fs_t* req) {
                    int64_t result = req->result;
                    FileWorkPtr work = take(req);
                    if (result <= 0) {
                      // 0 bytes written for a non-empty request: no progress.
                      work->store->fail_spill(
                          std::move(work), result < 0 ? static_cast<int>(result) : UV_EIO, "write");
                      return;
                    }
                    work->written += static_cast<uint64_t>(result);
                    if (work->written < work->total()) {
                      work->store->write_more(std::move(work));
                    } else {
                      work->store->close_spill(std::move(work));
                    }
                  });
  if (rc < 0) {
    request->data = nullptr;
    fail_spill(std::move(work), rc, "write");
    return;
  }
  (void)work.release();
}

void ObjectStore::close_spill(FileWorkPtr work) {
  uv_fs_t* request = &work->request;
  request->data = work.get();
  uv_file fd = work->fd;
  work->fd = -1;
  int rc = uv_fs_close(&loop_->uv, request, fd, [](uv_fs_t* req) {
    int result = static_cast<int>(req->result);
    FileWorkPtr work = take(req);
    if (result < 0) {
      work->store->fail_spill(std::move(work), result, "close");  // some file systems report late
      return;
    }
    work->store->finish_spill(std::move(work), 0, "");
  });
  if (rc < 0) {
    request->data = nullptr;
    fail_spill(std::move(work), rc, "close");
    return;
  }
  (void)work.release();
}

// A write failed after the file was created: close it (if still open), delete
// it, then report. The value stays in memory.
void ObjectStore::fail_spill(FileWorkPtr work, int error, const char* step) {
  if (work->error == 0) {
    work->error = error;
    work->step = step;
  }
  const int first_error = work->error;  // what is reported: the first failure
  const char* first_step = work->step;
  uv_fs_t* request = &work->request;
  request->data = work.get();
  int rc = 0;
  if (work->fd >= 0) {
    uv_file fd = work->fd;
    work->fd = -1;
    rc = uv_fs_close(&loop_->uv, request, fd, [](uv_fs_t* req) {
      FileWorkPtr work = take(req);
      // Arguments are evaluated in no set order: read them before the move.
      int error = work->error;
      const char* step = work->step;
      work->store->fail_spill(std::move(work), error, step);
    });
  } else {
    rc = uv_fs_unlink(&loop_->uv, request, work->path.c_str(), [](uv_fs_t* req) {
      int result = static_cast<int>(req->result);
      FileWorkPtr work = take(req);
      if (result < 0 && result != UV_ENOENT) {
        SHOAL_LOG_WARN("object store: cannot delete partial spill file {}: {}", work->path,
                       uv_strerror(result));
      }
      int error = work->error;
      const char* step = work->step;
      work->store->finish_spill(std::move(work), error, step);
    });
  }
  if (rc < 0) {
    request->data = nullptr;
    SHOAL_LOG_WARN("object store: cannot clean up spill file {}: {}", work->path, uv_strerror(rc));
    finish_spill(std::move(work), first_error, first_step);
    return;
  }
  (void)work.release();
}

void ObjectStore::finish_spill(FileWorkPtr work, int error, const char* step) {
  std::vector<ObjectValuePtr> garbage;  // values whose entries keep their refs
  {
    std::lock_guard lock(mutex_);
    --spills_in_flight_;
    auto it = entries_.find(work->id);
    bool current = it != entries_.end() && it->second.state == State::kSpilling &&
                   it->second.writing_sequence == work->sequence;
    if (!current) {
      // Freed while it was written: delete the file, and let another thread
      // release the value (its refs may be the last ones, and destroying
      // them must not happen on this thread: see orphans_).
      if (error == 0) queue_delete_locked(work->id, work->sequence);
      orphans_.push_back(std::move(work->value));
    } else {
      Entry& entry = it->second;
      spilling_bytes_ -= entry.size;
      entry.writing_sequence = 0;
      if (error == 0) {
        ++counters_.spills;
        counters_.spilled_bytes_total += entry.size;
        entry.file_sequence = work->sequence;
        bool still_read = pinned(entry);  // a reader took it while it was written
        entry.state = State::kInMemory;
        if (!still_read) drop_to_disk_locked(entry, garbage);
      } else {
        entry.state = State::kInMemory;
        if (error != UV_ECANCELED) {
          ++counters_.disk_errors;
          disk_refused_ = true;
          disk_refused_at_ms_ = clock_.now_ms();
          disk_error_ = std::string(step) + " " + work->path + ": " + uv_strerror(error);
          SHOAL_LOG_WARN(
              "object store: spilling object {} failed ({}); it stays in memory, and "
              "no more spills start for {} ms or until a spill file is deleted",
              work->id.hex(), disk_error_, config_.disk_retry_backoff_ms);
        }
      }
      garbage.push_back(std::move(work->value));
    }
    make_room_locked(0, garbage);
    changed_.notify_all();
  }
  garbage.clear();
  work.reset();
  done_with_file();  // after the values went: wait_idle() then sees them gone
}

void ObjectStore::done_with_file() {
  {
    std::lock_guard lock(mutex_);
    --files_in_flight_;
    changed_.notify_all();
  }
  close_if_done();
}

void ObjectStore::start_delete(FileWorkPtr work) {
  uv_fs_t* request = &work->request;
  request->data = work.get();
  int rc = uv_fs_unlink(&loop_->uv, request, work->path.c_str(), [](uv_fs_t* req) {
    int result = static_cast<int>(req->result);
    FileWorkPtr work = take(req);
    work->store->finish_delete(std::move(work), result);
  });
  if (rc < 0) {
    request->data = nullptr;
    finish_delete(std::move(work), rc);
    return;
  }
  (void)work.release();
}

void ObjectStore::finish_delete(FileWorkPtr work, int error) {
  if (error < 0) {
    SHOAL_LOG_WARN("object store: cannot delete spill file {}: {}", work->path, uv_strerror(error));
  }
  std::vector<ObjectValuePtr> garbage;
  {
    std::lock_guard lock(mutex_);
    if (error == 0) disk_refused_ = false;  // space came back: spilling may work again
    make_room_locked(0, garbage);
    changed_.notify_all();
  }
  garbage.clear();
  done_with_file();
}

}  // namespace shoal::detail
