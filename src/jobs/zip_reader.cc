#include "jobs/zip_reader.h"

// const next_in: the archive is a string_view and is never written.
#define ZLIB_CONST
#include <zlib.h>

#include <cstdint>
#include <cstdio>
#include <iterator>
#include <map>
#include <set>
#include <string>

namespace shoal::jobs {

namespace {

// Record signatures and fixed sizes: PKWARE's APPNOTE.TXT, section 4.3.
constexpr uint32_t kLocalSignature = 0x04034b50;
constexpr uint32_t kCentralSignature = 0x02014b50;
constexpr uint32_t kEndSignature = 0x06054b50;
constexpr uint32_t kZip64LocatorSignature = 0x07064b50;
constexpr size_t kLocalHeaderBytes = 30;
constexpr size_t kCentralHeaderBytes = 46;
constexpr size_t kEndRecordBytes = 22;
constexpr size_t kZip64LocatorBytes = 20;
constexpr size_t kCommentBytesMax = 0xFFFF;

// General-purpose flags that hide the data or the names from a reader without a key.
constexpr uint16_t kFlagEncrypted = 1 << 0;
constexpr uint16_t kFlagStrongEncryption = 1 << 6;
constexpr uint16_t kFlagMaskedHeaders = 1 << 13;

constexpr uint16_t kMethodStored = 0;
constexpr uint16_t kMethodDeflated = 8;
constexpr uint8_t kSystemUnix = 3;  // high byte of "version made by"

// st_mode file types, as Unix writers store them in the external attributes.
constexpr uint32_t kTypeMask = 0170000;
constexpr uint32_t kTypeRegular = 0100000;
constexpr uint32_t kTypeSymlink = 0120000;

constexpr std::string_view kZip64Refused = "ZIP64 archives are not supported; the working dir limit is 1 MiB";

Status bad(std::string what) { return Status::invalid_argument("working_dir archive: " + what); }

// A name from the archive, fit for an error message: bounded, control bytes escaped.
std::string printable(std::string_view name) {
  constexpr size_t kShown = 200;
  std::string out;
  for (char c : name.substr(0, kShown)) {
    auto b = static_cast<unsigned char>(c);
    if (b < 0x20 || b == 0x7f) {
      char buf[8];
      std::snprintf(buf, sizeof buf, "\\x%02x", b);
      out += buf;
    } else {
      out += c;
    }
  }
  if (name.size() > kShown) out += "...";
  return out;
}

Status bad_file(std::string_view name, std::string what) {
  return bad("file '" + printable(name) + "' " + what);
}

std::string hex32(uint32_t v) {
  char buf[16];
  std::snprintf(buf, sizeof buf, "%08x", v);
  return buf;
}

std::string octal(uint32_t v) {
  char buf[16];
  std::snprintf(buf, sizeof buf, "0%o", v);
  return buf;
}

std::string method_name(uint16_t method) {
  switch (method) {
    case 9: return "9 (deflate64)";
    case 12: return "12 (bzip2)";
    case 14: return "14 (LZMA)";
    case 93: return "93 (zstd)";
    case 95: return "95 (xz)";
    case 99: return "99 (AES encryption)";
    default: return std::to_string(method);
  }
}

// [at, at + n) lies inside s. 64-bit sums: offsets and sizes come from the input.
bool fits(std::string_view s, uint64_t at, uint64_t n) { return at <= s.size() && n <= s.size() - at; }

// Little-endian, byte by byte: the input has no alignment and the host's byte order
// does not matter. Callers check the bounds first.
uint16_t le16(std::string_view s, size_t at) {
  return static_cast<uint16_t>(static_cast<uint8_t>(s[at]) | static_cast<uint8_t>(s[at + 1]) << 8);
}

uint32_t le32(std::string_view s, size_t at) {
  return uint32_t{le16(s, at)} | uint32_t{le16(s, at + 2)} << 16;
}

// ---- End of central directory ------------------------------------------------------------

struct EndRecord {
  uint32_t entries = 0;
  uint32_t dir_offset = 0;
  uint32_t dir_size = 0;
};

Result<EndRecord> parse_end_record(std::string_view archive, size_t pos) {
  uint16_t disk = le16(archive, pos + 4);
  uint16_t dir_disk = le16(archive, pos + 6);
  uint16_t disk_entries = le16(archive, pos + 8);
  EndRecord end;
  end.entries = le16(archive, pos + 10);
  end.dir_size = le32(archive, pos + 12);
  end.dir_offset = le32(archive, pos + 16);
  // A ZIP64 writer saturates these fields and puts a locator just before the record.
  bool zip64_locator =
      pos >= kZip64LocatorBytes && le32(archive, pos - kZip64LocatorBytes) == kZip64LocatorSignature;
  if (end.entries == 0xFFFF || disk_entries == 0xFFFF || end.dir_size == 0xFFFFFFFF ||
      end.dir_offset == 0xFFFFFFFF || zip64_locator) {
    return bad(std::string(kZip64Refused));
  }
  if (disk != 0 || dir_disk != 0 || disk_entries != end.entries) {
    return bad("multi-disk (split or spanned) archives are not supported");
  }
  // The directory lies before the record; offsets count from the archive's first byte
  // (archives with a program prepended, self-extracting ones, are refused).
  if (uint64_t{end.dir_offset} + end.dir_size > pos) {
    return bad("the central directory (" + std::to_string(end.dir_size) + " bytes at offset " +
               std::to_string(end.dir_offset) + ") does not lie before the end record at offset " +
               std::to_string(pos));
  }
  return end;
}

// The record is the last thing in the archive but for a comment of up to 64 KiB, so it is
// searched for backwards. Its comment length must reach exactly to the archive's end, which
// keeps a stray signature in file data from being taken for the record.
Result<EndRecord> find_end_record(std::string_view archive) {
  if (archive.size() < kEndRecordBytes) {
    return bad(std::to_string(archive.size()) + " bytes is too short for a zip archive (at least 22)");
  }
  size_t last = archive.size() - kEndRecordBytes;
  size_t first = last > kCommentBytesMax ? last - kCommentBytesMax : 0;
  for (size_t pos = last + 1; pos-- > first;) {
    if (le32(archive, pos) == kEndSignature && le16(archive, pos + 20) == last - pos) {
      return parse_end_record(archive, pos);
    }
  }
  return bad("no end of central directory record: not a zip archive, or a truncated one");
}

// ---- Central directory -----------------------------------------------------------------

struct Entry {
  std::string_view name;  // points into the archive
  uint8_t system = 0;     // "version made by", high byte
  uint16_t flags = 0;
  uint16_t method = 0;
  uint32_t crc = 0;
  uint32_t compressed_size = 0;
  uint32_t size = 0;
  uint16_t first_disk = 0;
  uint32_t external_attr = 0;
  uint32_t local_offset = 0;
};

// Reads the entry at `pos` in the central directory `dir` and moves `pos` past it.
Result<Entry> read_central_entry(std::string_view dir, size_t& pos, uint32_t index) {
  std::string what = "central directory entry " + std::to_string(index + 1);
  if (!fits(dir, pos, kCentralHeaderBytes)) return bad(what + " runs past the end of the directory");
  if (le32(dir, pos) != kCentralSignature) return bad(what + " has no central directory signature");
  Entry e;
  e.system = static_cast<uint8_t>(le16(dir, pos + 4) >> 8);
  e.flags = le16(dir, pos + 8);
  e.method = le16(dir, pos + 10);
  e.crc = le32(dir, pos + 16);
  e.compressed_size = le32(dir, pos + 20);
  e.size = le32(dir, pos + 24);
  uint16_t name_bytes = le16(dir, pos + 28);
  uint16_t extra_bytes = le16(dir, pos + 30);
  uint16_t comment_bytes = le16(dir, pos + 32);
  e.first_disk = le16(dir, pos + 34);
  e.external_attr = le32(dir, pos + 38);
  e.local_offset = le32(dir, pos + 42);
  size_t name_at = pos + kCentralHeaderBytes;
  size_t variable_bytes = size_t{name_bytes} + extra_bytes + comment_bytes;
  if (!fits(dir, name_at, variable_bytes)) {
    return bad(what + "'s name, extra field or comment runs past the directory");
  }
  e.name = dir.substr(name_at, name_bytes);
  pos = name_at + variable_bytes;
  return e;
}

// What makes an entry unreadable whatever its name: ZIP64, other disks, encryption.
Status check_entry(const Entry& e) {
  if (e.compressed_size == 0xFFFFFFFF || e.size == 0xFFFFFFFF || e.local_offset == 0xFFFFFFFF ||
      e.first_disk == 0xFFFF) {
    return bad_file(e.name, "uses ZIP64: " + std::string(kZip64Refused));
  }
  if (e.first_disk != 0) return bad_file(e.name, "is on another disk: multi-disk archives are not supported");
  if (e.flags & (kFlagEncrypted | kFlagStrongEncryption | kFlagMaskedHeaders)) {
    return bad_file(e.name, "is encrypted; encrypted archives are not supported");
  }
  return {};
}

// validate_file_path, plus what it lets through that a zip must not hold: a backslash is a
// separator to Windows tools (so "..\\x" climbs), and the name is about to become a path.
Status check_path(std::string_view path) {
  if (path.find('\0') != std::string_view::npos) return bad_file(path, "has a NUL byte in its name");
  if (path.find('\\') != std::string_view::npos) {
    return bad_file(path, "has a backslash in its name (zip paths separate with '/')");
  }
  Status status = validate_file_path(path);
  if (!status.ok()) return bad(status.message());
  return {};
}

// Unix writers keep st_mode in the high half of the external attributes; other systems'
// attributes say nothing about execution. Only two modes are kept: the executor runs
// files, it does not reproduce permissions.
Result<uint32_t> file_mode(const Entry& e) {
  if (e.system != kSystemUnix) return 0644u;
  uint32_t st_mode = e.external_attr >> 16;
  uint32_t type = st_mode & kTypeMask;
  if (type == kTypeSymlink) {
    return bad_file(e.name, "is a symbolic link; a working dir holds regular files only");
  }
  // 0: a writer that stores permission bits only (zipfile.ZipInfo's default).
  if (type != kTypeRegular && type != 0) {
    return bad_file(e.name, "is not a regular file (mode " + octal(st_mode) + ")");
  }
  return (st_mode & 0111) != 0 ? 0755u : 0644u;
}

// ---- Data ----------------------------------------------------------------------------

// The local header repeats the name, but its extra field may differ from the central one
// (and, with a data descriptor, its sizes are zero), so the data's offset comes from the
// local header's own lengths. The data must lie before the central directory.
Result<std::string_view> locate_data(std::string_view archive, const Entry& e, uint32_t dir_offset) {
  uint64_t at = e.local_offset;
  std::string where = "offset " + std::to_string(at);
  if (at + kLocalHeaderBytes > dir_offset) {
    return bad_file(e.name, "has its local header at " + where + ", outside the archive's file area");
  }
  if (le32(archive, at) != kLocalSignature) {
    return bad_file(e.name, "has no local header signature at " + where);
  }
  uint16_t flags = le16(archive, at + 6);
  uint16_t method = le16(archive, at + 8);
  uint16_t name_bytes = le16(archive, at + 26);
  uint16_t extra_bytes = le16(archive, at + 28);
  uint64_t name_at = at + kLocalHeaderBytes;
  uint64_t data_at = name_at + name_bytes + extra_bytes;
  if (data_at > dir_offset) {
    return bad_file(e.name, "has a local header at " + where + " that runs past the file area");
  }
  // Readers that trust the local header would see another file: refuse the disagreement.
  std::string_view local_name = archive.substr(name_at, name_bytes);
  if (local_name != e.name) {
    return bad_file(e.name, "is called '" + printable(local_name) + "' in its local header");
  }
  if (method != e.method) {
    return bad_file(e.name, "has method " + std::to_string(method) + " in its local header but " +
                                std::to_string(e.method) + " in the central directory");
  }
  if (flags & (kFlagEncrypted | kFlagStrongEncryption)) {
    return bad_file(e.name, "is encrypted (local header)");
  }
  if (data_at + e.compressed_size > dir_offset) {
    return bad_file(e.name, "has " + std::to_string(e.compressed_size) + " bytes of data at offset " +
                                std::to_string(data_at) + ", past the end of the archive's file area");
  }
  return archive.substr(data_at, e.compressed_size);
}

// Frees the inflate state on every return.
struct InflateStream {
  z_stream z{};
  bool started = false;
  ~InflateStream() {
    if (started) inflateEnd(&z);
  }
};

// Raw deflate (no zlib header) into a buffer of exactly the declared size: a stream that
// would write more stops at the bound, whatever the archive claims.
Result<std::string> inflate_data(const Entry& e, std::string_view compressed) {
  InflateStream stream;
  z_stream& z = stream.z;
  if (inflateInit2(&z, -15) != Z_OK) return bad_file(e.name, "could not be inflated: zlib did not start");
  stream.started = true;
  std::string out(e.size, '\0');
  z.next_in = reinterpret_cast<const Bytef*>(compressed.data());
  z.avail_in = static_cast<uInt>(compressed.size());
  z.next_out = reinterpret_cast<Bytef*>(out.data());
  z.avail_out = static_cast<uInt>(out.size());
  std::string declared = "its declared " + std::to_string(e.size) + " bytes";
  for (;;) {
    // Z_OK means progress (bytes in or out), so the loop ends: input and output are finite.
    int rc = inflate(&z, Z_NO_FLUSH);
    if (rc == Z_STREAM_END) break;
    if (rc == Z_OK) continue;
    if (rc == Z_BUF_ERROR && z.avail_out == 0 && z.avail_in != 0) {
      return bad_file(e.name, "inflates to more than " + declared);
    }
    if (rc == Z_BUF_ERROR) return bad_file(e.name, "has a truncated deflate stream (" + declared + ")");
    std::string why = z.msg != nullptr ? z.msg : "zlib error " + std::to_string(rc);
    return bad_file(e.name, "has damaged deflate data: " + why);
  }
  if (z.total_out != e.size) {
    return bad_file(e.name, "inflates to " + std::to_string(z.total_out) + " bytes, not " + declared);
  }
  if (z.avail_in != 0) {
    return bad_file(e.name,
                    "has " + std::to_string(z.avail_in) + " bytes after the end of its deflate stream");
  }
  return out;
}

Result<std::string> extract(const Entry& e, std::string_view compressed) {
  Result<std::string> data = std::string();
  if (e.method == kMethodStored) {
    if (compressed.size() != e.size) {
      return bad_file(e.name, "is stored with " + std::to_string(compressed.size()) + " bytes but declares " +
                                  std::to_string(e.size));
    }
    data = std::string(compressed);
  } else {
    data = inflate_data(e, compressed);
    if (!data.ok()) return data;
  }
  uint32_t crc = static_cast<uint32_t>(crc32(
      crc32(0L, Z_NULL, 0), reinterpret_cast<const Bytef*>(data->data()), static_cast<uInt>(data->size())));
  if (crc != e.crc) {
    return bad_file(e.name, "is damaged: its CRC-32 is " + hex32(crc) + ", the archive says " + hex32(e.crc));
  }
  return data;
}

// ---- The archive ---------------------------------------------------------------------

class Unzipper {
 public:
  Unzipper(std::string_view archive, const EndRecord& end) : archive_(archive), end_(end) {}

  Result<std::vector<File>> run() {
    std::string_view dir = archive_.substr(end_.dir_offset, end_.dir_size);
    size_t pos = 0;
    for (uint32_t i = 0; i < end_.entries; ++i) {
      Result<Entry> entry = read_central_entry(dir, pos, i);
      if (!entry.ok()) return entry.status();
      SHOAL_RETURN_IF_ERROR(add(*entry));
    }
    if (pos != dir.size()) {
      return bad("the central directory is " + std::to_string(dir.size()) + " bytes but its " +
                 std::to_string(end_.entries) + " entries end at " + std::to_string(pos));
    }
    // Belt and braces: the caller stores what validate_files accepts.
    Status status = validate_files(files_);
    if (!status.ok()) return bad(status.message());
    return std::move(files_);
  }

 private:
  Status add(const Entry& e) {
    SHOAL_RETURN_IF_ERROR(check_entry(e));
    if (!e.name.empty() && e.name.back() == '/') {
      // A directory: the files' paths make it; an empty one is not kept. Its name is
      // still checked, so an unsafe archive is refused whole.
      return check_path(e.name.substr(0, e.name.size() - 1));
    }
    SHOAL_RETURN_IF_ERROR(check_path(e.name));
    Result<uint32_t> mode = file_mode(e);
    if (!mode.ok()) return mode.status();
    SHOAL_RETURN_IF_ERROR(claim_path(e.name));
    if (files_.size() >= kWorkingDirFilesMax) {
      return bad("more than " + std::to_string(kWorkingDirFilesMax) + " files; the limit is " +
                 std::to_string(kWorkingDirFilesMax));
    }
    if (e.method != kMethodStored && e.method != kMethodDeflated) {
      return bad_file(e.name, "uses compression method " + method_name(e.method) +
                                  "; only stored (0) and deflate (8) are supported");
    }
    // Counted as validate_files counts: data and path. Checked before any allocation.
    uint64_t need = uint64_t{e.size} + e.name.size();
    if (need > kWorkingDirBytesMax - bytes_) {
      return bad_file(e.name, "(" + std::to_string(e.size) +
                                  " bytes) takes the working dir past its limit of " +
                                  std::to_string(kWorkingDirBytesMax) + " bytes (1 MiB)");
    }
    Result<std::string_view> compressed = locate_data(archive_, e, end_.dir_offset);
    if (!compressed.ok()) return compressed.status();
    uint64_t data_end = static_cast<uint64_t>(compressed->data() - archive_.data()) + compressed->size();
    SHOAL_RETURN_IF_ERROR(claim_span(e, e.local_offset, data_end));
    Result<std::string> data = extract(e, *compressed);
    if (!data.ok()) return data.status();
    bytes_ += need;
    files_.push_back(File{std::string(e.name), *mode, std::move(*data)});
    return {};
  }

  // Refuses a file whose header and data overlap another's: no writer shares bytes between
  // files, and a bomb that does makes each byte of input cost once per file.
  Status claim_span(const Entry& e, uint64_t begin, uint64_t end) {
    auto next = spans_.lower_bound(begin);
    bool overlaps_next = next != spans_.end() && next->first < end;
    bool overlaps_previous = next != spans_.begin() && std::prev(next)->second > begin;
    if (overlaps_next || overlaps_previous) {
      return bad_file(e.name, "shares bytes " + std::to_string(begin) + "-" + std::to_string(end) +
                                  " of the archive with another file");
    }
    spans_.emplace(begin, end);
    return {};
  }

  // Refuses a path seen before, and a path that is both a file and a directory ("a" and
  // "a/b"): neither can be written out.
  Status claim_path(std::string_view path) {
    if (paths_.count(path) != 0) return bad_file(path, "appears twice in the archive");
    if (dirs_.count(path) != 0) return bad_file(path, "is both a file and a directory");
    for (size_t slash = path.find('/'); slash != std::string_view::npos; slash = path.find('/', slash + 1)) {
      std::string_view parent = path.substr(0, slash);
      if (paths_.count(parent) != 0) return bad_file(parent, "is both a file and a directory");
      dirs_.insert(parent);
    }
    paths_.insert(path);
    return {};
  }

  std::string_view archive_;
  EndRecord end_;
  std::vector<File> files_;
  std::set<std::string_view> paths_;  // views into archive_
  std::set<std::string_view> dirs_;
  std::map<uint64_t, uint64_t> spans_;  // [local header, end of data) of each file
  size_t bytes_ = 0;
};

}  // namespace

Result<std::vector<File>> unzip_files(std::string_view archive) {
  Result<EndRecord> end = find_end_record(archive);
  if (!end.ok()) return end.status();
  return Unzipper(archive, *end).run();
}

}  // namespace shoal::jobs
