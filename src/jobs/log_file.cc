#include "jobs/log_file.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cinttypes>
#include <cstdio>
#include <cstring>

namespace shoal::jobs {

namespace {

std::string errno_text(const std::string& what) { return what + ": " + std::strerror(errno); }

struct Index {
  uint64_t base = 0;
  uint64_t prev_base = 0;
};

Index read_index(const std::string& dir) {
  Index index;
  FILE* f = std::fopen((dir + "/output.idx").c_str(), "r");
  if (f == nullptr) return index;
  uint64_t a = 0, b = 0;
  if (std::fscanf(f, "%" SCNu64 " %" SCNu64, &a, &b) == 2 && b <= a) index = {a, b};
  std::fclose(f);
  return index;
}

uint64_t file_size(const std::string& path) {
  struct stat st {};
  if (::stat(path.c_str(), &st) != 0) return 0;
  return static_cast<uint64_t>(st.st_size);
}

Status read_range(const std::string& path, uint64_t at, uint64_t n, std::string& out) {
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return errno == ENOENT ? Status() : Status::io_error(errno_text("cannot read " + path));
  out.resize(n);
  uint64_t got = 0;
  while (got < n) {
    ssize_t r = ::pread(fd, out.data() + got, n - got, static_cast<off_t>(at + got));
    if (r < 0 && errno == EINTR) continue;
    if (r <= 0) break;
    got += static_cast<uint64_t>(r);
  }
  ::close(fd);
  out.resize(got);
  return {};
}

}  // namespace

LogWriter::LogWriter(std::string dir, uint64_t file_bytes_max) : dir_(std::move(dir)), file_bytes_max_(file_bytes_max) {}

LogWriter::~LogWriter() {
  if (fd_ >= 0) ::close(fd_);
}

Status LogWriter::open() {
  if (::mkdir(dir_.c_str(), 0700) != 0 && errno != EEXIST) return Status::io_error(errno_text("cannot create " + dir_));
  Index index = read_index(dir_);
  base_ = index.base;
  prev_base_ = index.prev_base;
  fd_ = ::open((dir_ + "/output.log").c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
  if (fd_ < 0) return Status::io_error(errno_text("cannot open " + dir_ + "/output.log"));
  size_ = file_size(dir_ + "/output.log");
  return {};  // output.idx is written at the first rotation: none reads as offsets 0 0
}

Status LogWriter::write_index() {
  std::string tmp = dir_ + "/output.idx.tmp";
  FILE* f = std::fopen(tmp.c_str(), "w");
  if (f == nullptr) return Status::io_error(errno_text("cannot write " + tmp));
  std::fprintf(f, "%" PRIu64 " %" PRIu64 "\n", base_, prev_base_);
  std::fclose(f);
  if (::rename(tmp.c_str(), (dir_ + "/output.idx").c_str()) != 0) return Status::io_error(errno_text("rename " + tmp));
  return {};
}

Status LogWriter::rotate() {
  ::close(fd_);
  fd_ = -1;
  std::string cur = dir_ + "/output.log";
  if (::rename(cur.c_str(), (cur + ".1").c_str()) != 0) return Status::io_error(errno_text("cannot rotate " + cur));
  prev_base_ = base_;
  base_ += size_;
  size_ = 0;
  SHOAL_RETURN_IF_ERROR(write_index());
  fd_ = ::open(cur.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
  if (fd_ < 0) return Status::io_error(errno_text("cannot open " + cur));
  return {};
}

Status LogWriter::append(std::string_view bytes) {
  if (fd_ < 0) return Status::io_error("the log of " + dir_ + " is not open");
  while (!bytes.empty()) {
    if (size_ >= file_bytes_max_) SHOAL_RETURN_IF_ERROR(rotate());
    size_t n = std::min<uint64_t>(bytes.size(), file_bytes_max_ - size_);
    ssize_t w = ::write(fd_, bytes.data(), n);
    if (w < 0 && errno == EINTR) continue;
    if (w < 0) return Status::io_error(errno_text("cannot write " + dir_ + "/output.log"));
    size_ += static_cast<uint64_t>(w);
    bytes.remove_prefix(static_cast<size_t>(w));
  }
  return {};
}

Result<LogChunk> read_log(const std::string& dir, int64_t offset, uint32_t max_bytes) {
  max_bytes = std::min(max_bytes, kLogReadBytesMax);
  Index index = read_index(dir);
  uint64_t size = file_size(dir + "/output.log");
  uint64_t prev_size = index.base - index.prev_base;
  LogChunk chunk;
  chunk.end_offset = index.base + size;
  uint64_t earliest = prev_size > 0 && file_size(dir + "/output.log.1") > 0 ? index.prev_base : index.base;
  uint64_t at = offset < 0 ? (chunk.end_offset > max_bytes ? chunk.end_offset - max_bytes : 0)
                           : static_cast<uint64_t>(offset);
  if (at < earliest) at = earliest;
  if (at > chunk.end_offset) at = chunk.end_offset;
  chunk.offset = at;
  if (at < index.base) {
    uint64_t n = std::min<uint64_t>(index.base - at, max_bytes);
    SHOAL_RETURN_IF_ERROR(read_range(dir + "/output.log.1", at - index.prev_base, n, chunk.data));
    chunk.next_offset = at + chunk.data.size();
    if (chunk.data.size() < n) chunk.next_offset = index.base;  // the old file was cut: skip to the new one
    return chunk;
  }
  uint64_t n = std::min<uint64_t>(chunk.end_offset - at, max_bytes);
  SHOAL_RETURN_IF_ERROR(read_range(dir + "/output.log", at - index.base, n, chunk.data));
  chunk.next_offset = at + chunk.data.size();
  return chunk;
}

}  // namespace shoal::jobs
