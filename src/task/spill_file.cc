#include "task/spill_file.h"

#include <errno.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstring>

#include "base/crc32c.h"

namespace shoal::detail {
namespace {

constexpr char kMagic[4] = {'S', 'H', 'S', 'P'};
constexpr std::size_t kHeaderChecksumOffset = 36;

void put_le(char* out, uint64_t value, int bytes) {
  for (int i = 0; i < bytes; ++i) out[i] = static_cast<char>(value >> (8 * i));
}

uint64_t get_le(const char* in, int bytes) {
  uint64_t value = 0;
  for (int i = bytes - 1; i >= 0; --i) value = (value << 8) | static_cast<uint8_t>(in[i]);
  return value;
}

std::string describe(const std::string& path, const ObjectId& id) {
  return "spill file " + path + " of object " + id.hex();
}

// Reads exactly `size` bytes at `offset`; the bytes read before EOF or an
// error otherwise.
Result<std::size_t> read_at(int fd, char* out, std::size_t size, uint64_t offset) {
  std::size_t done = 0;
  while (done < size) {
    ssize_t n = ::pread(fd, out + done, size - done, static_cast<off_t>(offset + done));
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return Status::io_error(std::strerror(errno));
    if (n == 0) break;
    done += static_cast<std::size_t>(n);
  }
  return done;
}

class FdCloser {
 public:
  explicit FdCloser(int fd) : fd_(fd) {}
  ~FdCloser() { ::close(fd_); }
  FdCloser(const FdCloser&) = delete;
  FdCloser& operator=(const FdCloser&) = delete;

 private:
  int fd_;
};

Status check_header(const SpillHeader& header, const ObjectId& id, uint64_t payload_bytes,
                    const std::string& what) {
  if (std::memcmp(header.data(), kMagic, sizeof kMagic) != 0) {
    return Status::io_error(what + " is corrupted: it does not start with a spill header");
  }
  uint32_t header_crc = crc32c(std::string_view(header.data(), kHeaderChecksumOffset));
  if (header_crc != get_le(header.data() + kHeaderChecksumOffset, 4)) {
    return Status::io_error(what + " is corrupted: the header's checksum does not match");
  }
  uint64_t version = get_le(header.data() + 4, 2);
  if (version != kSpillFormatVersion || get_le(header.data() + 6, 2) != kSpillHeaderBytes) {
    return Status::io_error(what + " has format version " + std::to_string(version) +
                            ", this process writes and reads " +
                            std::to_string(kSpillFormatVersion));
  }
  if (ObjectId::from_bytes(header.data() + 8) != id) {
    return Status::io_error(what + " is corrupted: it holds object " +
                            ObjectId::from_bytes(header.data() + 8).hex());
  }
  if (get_le(header.data() + 24, 8) != payload_bytes) {
    return Status::io_error(what + " is corrupted: its header says " +
                            std::to_string(get_le(header.data() + 24, 8)) +
                            " bytes, the value has " + std::to_string(payload_bytes));
  }
  return Status();
}

}  // namespace

SpillHeader encode_spill_header(const ObjectId& id, std::string_view payload) {
  SpillHeader header{};
  std::memcpy(header.data(), kMagic, sizeof kMagic);
  put_le(header.data() + 4, kSpillFormatVersion, 2);
  put_le(header.data() + 6, kSpillHeaderBytes, 2);
  id.to_bytes(header.data() + 8);
  put_le(header.data() + 24, payload.size(), 8);
  put_le(header.data() + 32, crc32c(payload), 4);
  put_le(header.data() + kHeaderChecksumOffset,
         crc32c(std::string_view(header.data(), kHeaderChecksumOffset)), 4);
  return header;
}

Result<std::string> read_spill_file(const std::string& path, const ObjectId& id,
                                    uint64_t payload_bytes) {
  const std::string what = describe(path, id);
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    int error = errno;
    return Status::io_error(what + (error == ENOENT ? " is missing" : " cannot be opened") + " (" +
                            std::strerror(error) + ")");
  }
  FdCloser closer(fd);
  struct stat info {};
  if (::fstat(fd, &info) != 0) {
    return Status::io_error(what + " cannot be read (" + std::strerror(errno) + ")");
  }
  const uint64_t expected = kSpillHeaderBytes + payload_bytes;
  if (static_cast<uint64_t>(info.st_size) != expected) {
    return Status::io_error(
        what + " is " +
        (static_cast<uint64_t>(info.st_size) < expected ? "truncated" : "corrupted") + ": " +
        std::to_string(info.st_size) + " bytes, " + std::to_string(expected) + " were written");
  }
  SpillHeader header{};
  Result<std::size_t> got = read_at(fd, header.data(), header.size(), 0);
  if (!got.ok()) return Status::io_error(what + " cannot be read (" + got.status().message() + ")");
  if (*got != header.size()) return Status::io_error(what + " is truncated: no whole header");
  SHOAL_RETURN_IF_ERROR(check_header(header, id, payload_bytes, what));

  std::string payload(payload_bytes, '\0');
  got = read_at(fd, payload.data(), payload.size(), kSpillHeaderBytes);
  if (!got.ok()) return Status::io_error(what + " cannot be read (" + got.status().message() + ")");
  if (*got != payload.size()) {
    return Status::io_error(what + " is truncated: " + std::to_string(*got) + " of " +
                            std::to_string(payload.size()) + " payload bytes");
  }
  uint32_t stored_crc = static_cast<uint32_t>(get_le(header.data() + 32, 4));
  if (crc32c(payload) != stored_crc) {
    return Status::io_error(what + " is corrupted: the payload's CRC32C does not match the header");
  }
  return payload;
}

}  // namespace shoal::detail
