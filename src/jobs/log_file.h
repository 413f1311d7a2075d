// A job's output on the node that runs it: size-capped, rotated files.
//
// <dir>/output.log holds the newest bytes, <dir>/output.log.1 the previous
// file; <dir>/output.idx remembers at which logical offset (bytes the job
// ever wrote) each of them starts, so readers ask by offset and a restarted
// node serves the same offsets. When output.log would pass file_bytes_max it
// becomes output.log.1 (the older one is dropped): a job keeps at most
// 2 x file_bytes_max bytes of output. Loop thread; plain blocking file I/O
// (page cache writes, small).
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include "shoal/status.h"

namespace shoal::jobs {

inline constexpr uint64_t kLogFileBytesMax = 32ull << 20;  // per file; two files kept
inline constexpr uint32_t kLogReadBytesMax = 1u << 20;      // one read (one RPC reply)

class LogWriter {
 public:
  LogWriter(std::string dir, uint64_t file_bytes_max = kLogFileBytesMax);
  ~LogWriter();
  LogWriter(const LogWriter&) = delete;
  LogWriter& operator=(const LogWriter&) = delete;

  // Creates the directory and opens (appending to) output.log.
  Status open();
  Status append(std::string_view bytes);
  uint64_t end_offset() const { return base_ + size_; }

 private:
  Status rotate();
  Status write_index();

  std::string dir_;
  uint64_t file_bytes_max_;
  int fd_ = -1;
  uint64_t base_ = 0;       // logical offset of output.log's first byte
  uint64_t prev_base_ = 0;  // of output.log.1's
  uint64_t size_ = 0;
};

struct LogChunk {
  std::string data;
  uint64_t offset = 0;       // where data starts (may be past the asked offset: rotated away)
  uint64_t next_offset = 0;  // ask for this next
  uint64_t end_offset = 0;   // everything written so far
};

// Reads up to max_bytes from logical `offset` (negative: the last max_bytes).
// A directory without logs reads as empty.
Result<LogChunk> read_log(const std::string& dir, int64_t offset, uint32_t max_bytes);

}  // namespace shoal::jobs
