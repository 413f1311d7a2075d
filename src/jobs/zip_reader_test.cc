// Unit tests of the working-dir zip reader. Every archive is written here, by a
// small zip writer below (stored and deflated entries, Unix modes, data
// descriptors, and the lies a hostile archive tells), so each case says what
// its bytes are; one more comes from Python's zipfile when python3 is there.
#include <doctest/doctest.h>

#define ZLIB_CONST
#include <zlib.h>

#include <cstdint>
#include <cstdio>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "jobs/zip_reader.h"

namespace shoal::jobs {
namespace {

constexpr std::string_view kPrefix = "working_dir archive: ";

// One entry as the writer lays it out. The optional fields write lies.
struct ZipEntry {
  std::string name;
  std::string data;
  uint16_t method = 0;         // 0 stored, 8 deflated; anything else writes `data` as is
  uint32_t st_mode = 0100644;  // external attributes >> 16
  uint8_t system = 3;          // "version made by" high byte: 3 Unix, 0 MS-DOS
  uint16_t flags = 0;          // bit 3 writes a data descriptor
  std::optional<uint32_t> crc;
  std::optional<uint32_t> size;
  std::optional<std::string> payload;     // the bytes stored, instead of `data` (compressed)
  std::optional<std::string> local_name;  // a local header that names another file
  std::string local_extra;                // zipfile and Info-ZIP write different extra fields
  std::optional<uint32_t> offset;         // where the central directory says the local header is
};

void put16(std::string& out, uint32_t v) {
  out += static_cast<char>(v & 0xff);
  out += static_cast<char>((v >> 8) & 0xff);
}

void put32(std::string& out, uint32_t v) {
  put16(out, v & 0xffff);
  put16(out, v >> 16);
}

uint32_t crc_of(std::string_view data) {
  return static_cast<uint32_t>(crc32(crc32(0L, Z_NULL, 0), reinterpret_cast<const Bytef*>(data.data()),
                                     static_cast<uInt>(data.size())));
}

// Raw deflate, as zipfile writes it (no zlib header: window bits -15).
std::string deflate_raw(std::string_view data) {
  z_stream z{};
  REQUIRE(deflateInit2(&z, Z_DEFAULT_COMPRESSION, Z_DEFLATED, -15, 8, Z_DEFAULT_STRATEGY) == Z_OK);
  std::string out(deflateBound(&z, data.size()), '\0');
  z.next_in = reinterpret_cast<const Bytef*>(data.data());
  z.avail_in = static_cast<uInt>(data.size());
  z.next_out = reinterpret_cast<Bytef*>(out.data());
  z.avail_out = static_cast<uInt>(out.size());
  int rc = deflate(&z, Z_FINISH);
  out.resize(z.total_out);
  deflateEnd(&z);
  REQUIRE(rc == Z_STREAM_END);
  return out;
}

std::string write_zip(const std::vector<ZipEntry>& entries, std::string_view comment = "") {
  std::string out;
  std::string dir;
  for (const ZipEntry& e : entries) {
    std::string payload = e.payload ? *e.payload : e.method == 8 ? deflate_raw(e.data) : e.data;
    uint32_t crc = e.crc.value_or(crc_of(e.data));
    uint32_t size = e.size.value_or(static_cast<uint32_t>(e.data.size()));
    auto compressed = static_cast<uint32_t>(payload.size());
    bool descriptor = (e.flags & 8) != 0;
    uint32_t offset = e.offset.value_or(static_cast<uint32_t>(out.size()));
    std::string local_name = e.local_name.value_or(e.name);

    put32(out, 0x04034b50);
    put16(out, 20);
    put16(out, e.flags);
    put16(out, e.method);
    put16(out, 0);       // time
    put16(out, 0x5821);  // date: 2024-01-01
    put32(out, descriptor ? 0 : crc);
    put32(out, descriptor ? 0 : compressed);
    put32(out, descriptor ? 0 : size);
    put16(out, static_cast<uint32_t>(local_name.size()));
    put16(out, static_cast<uint32_t>(e.local_extra.size()));
    out += local_name + e.local_extra + payload;
    if (descriptor) {
      put32(out, 0x08074b50);
      put32(out, crc);
      put32(out, compressed);
      put32(out, size);
    }

    bool is_dir = !e.name.empty() && e.name.back() == '/';
    put32(dir, 0x02014b50);
    put16(dir, uint32_t{e.system} << 8 | 20);
    put16(dir, 20);
    put16(dir, e.flags);
    put16(dir, e.method);
    put16(dir, 0);
    put16(dir, 0x5821);
    put32(dir, crc);
    put32(dir, compressed);
    put32(dir, size);
    put16(dir, static_cast<uint32_t>(e.name.size()));
    put16(dir, 0);  // extra
    put16(dir, 0);  // comment
    put16(dir, 0);  // disk
    put16(dir, 0);  // internal attributes
    put32(dir, e.st_mode << 16 | (is_dir ? 0x10 : 0));
    put32(dir, offset);
    dir += e.name;
  }
  auto dir_offset = static_cast<uint32_t>(out.size());
  out += dir;
  put32(out, 0x06054b50);
  put16(out, 0);
  put16(out, 0);
  put16(out, static_cast<uint32_t>(entries.size()));
  put16(out, static_cast<uint32_t>(entries.size()));
  put32(out, static_cast<uint32_t>(dir.size()));
  put32(out, dir_offset);
  put16(out, static_cast<uint32_t>(comment.size()));
  out += comment;
  return out;
}

ZipEntry file(std::string name, std::string data, uint16_t method = 0, uint32_t st_mode = 0100644) {
  ZipEntry e;
  e.name = std::move(name);
  e.data = std::move(data);
  e.method = method;
  e.st_mode = st_mode;
  return e;
}

ZipEntry directory(std::string name) { return file(std::move(name), "", 0, 040755); }

// The archive's error message ("" when it is accepted); every error must have the prefix.
std::string error_of(std::string_view archive) {
  auto files = unzip_files(archive);
  if (files.ok()) return "";
  CHECK(files.status().code() == Status::Code::kInvalidArgument);
  CHECK(files.status().message().rfind(kPrefix, 0) == 0);
  return files.status().message();
}

#define CHECK_REFUSED(archive, needle)                 \
  do {                                                 \
    std::string message_ = error_of(archive);          \
    INFO("error: " << message_);                       \
    CHECK_FALSE(message_.empty());                     \
    CHECK(message_.find(needle) != std::string::npos); \
  } while (0)

// Some text that deflate shrinks but not to nothing.
std::string text(size_t bytes) {
  std::string out;
  for (size_t i = 0; out.size() < bytes; ++i) out += "line " + std::to_string(i * 7919 % 1000) + "\n";
  out.resize(bytes);
  return out;
}

std::string small_archive() {
  return write_zip(
      {directory("pkg/"), file("pkg/a.py", "print(1)\n"), file("run.sh", text(300), 8, 0100755)});
}

void patch16(std::string& s, size_t at, uint32_t v) {
  s[at] = static_cast<char>(v & 0xff);
  s[at + 1] = static_cast<char>((v >> 8) & 0xff);
}

void patch32(std::string& s, size_t at, uint32_t v) {
  patch16(s, at, v & 0xffff);
  patch16(s, at + 2, v >> 16);
}

}  // namespace

TEST_CASE("zip: stored and deflated files round-trip with their modes") {
  ZipEntry dos = file("dos.bat", "@echo off\r\n", 0, 0100755);
  dos.system = 0;  // MS-DOS attributes say nothing about execution
  std::vector<ZipEntry> entries = {
      file("stored.txt", "hello\n"),
      file("run.sh", "#!/bin/sh\necho hi\n", 0, 0100755),
      file("big.txt", text(200'000), 8),
      file("tool", text(5'000), 8, 0100700),  // any x bit: 0755
      file("group_x", "x", 0, 0100610),
      file("private", "k", 0, 0100600),
      file("bits_only", "b", 0, 0755),  // no file type, as zipfile.ZipInfo writes by default
      file("empty", ""),
      file("empty_deflated", "", 8),
      dos,
  };
  std::string archive = write_zip(entries);
  CHECK(archive.size() < 100'000);  // the big file was compressed
  auto files = unzip_files(archive);
  REQUIRE_MESSAGE(files.ok(), files.status().message());
  REQUIRE(files->size() == entries.size());
  std::vector<uint32_t> modes = {0644, 0755, 0644, 0755, 0755, 0644, 0755, 0644, 0644, 0644};
  for (size_t i = 0; i < entries.size(); ++i) {
    INFO("file " << entries[i].name);
    CHECK((*files)[i].path == entries[i].name);
    CHECK((*files)[i].data == entries[i].data);
    CHECK((*files)[i].mode == modes[i]);
  }
}

TEST_CASE("zip: directories are skipped, nested paths kept") {
  auto files =
      unzip_files(write_zip({directory("src/"), directory("src/pkg/"), file("src/pkg/mod.py", "x = 1\n", 8),
                             directory("empty/"), file("a/b/c/d.txt", "deep")}));
  REQUIRE_MESSAGE(files.ok(), files.status().message());
  REQUIRE(files->size() == 2);
  CHECK((*files)[0].path == "src/pkg/mod.py");
  CHECK((*files)[0].data == "x = 1\n");
  CHECK((*files)[1].path == "a/b/c/d.txt");
}

TEST_CASE("zip: data descriptors, local extra fields and a comment") {
  ZipEntry stored = file("stored.txt", "stored with a descriptor");
  stored.flags = 8;
  ZipEntry deflated = file("dir/deflated.txt", text(10'000), 8, 0100755);
  deflated.flags = 8;
  deflated.local_extra = std::string("\x55\x54\x05\x00\x03\x00\x00\x00\x00", 9);  // Info-ZIP timestamp
  ZipEntry utf8 = file("caf\xc3\xa9.txt", "utf-8 name");
  utf8.flags = 0x800;
  auto files = unzip_files(write_zip({stored, deflated, utf8}, "an archive comment"));
  REQUIRE_MESSAGE(files.ok(), files.status().message());
  REQUIRE(files->size() == 3);
  CHECK((*files)[0].data == stored.data);
  CHECK((*files)[1].data == deflated.data);
  CHECK((*files)[1].mode == 0755);
  CHECK((*files)[2].path == utf8.name);

  // The longest comment there can be: the end record is 64 KiB + 22 bytes from the end.
  files = unzip_files(write_zip({stored}, std::string(0xFFFF, 'c')));
  REQUIRE_MESSAGE(files.ok(), files.status().message());
  CHECK(files->size() == 1);
}

TEST_CASE("zip: an empty archive (end record only) has no files") {
  std::string archive = write_zip({});
  CHECK(archive.size() == 22);
  auto files = unzip_files(archive);
  REQUIRE_MESSAGE(files.ok(), files.status().message());
  CHECK(files->empty());
  auto only_dirs = unzip_files(write_zip({directory("a/"), directory("a/b/")}));
  REQUIRE(only_dirs.ok());
  CHECK(only_dirs->empty());
}

TEST_CASE("zip: not an archive") {
  CHECK_REFUSED("", "too short");
  CHECK_REFUSED("PK", "too short");
  CHECK_REFUSED(std::string(1'000, 'x'), "no end of central directory record");
  CHECK_REFUSED(small_archive() + "trailing", "no end of central directory record");
}

TEST_CASE("zip: a bad CRC is refused") {
  ZipEntry lying = file("data.bin", "some bytes");
  lying.crc = crc_of("other bytes");
  CHECK_REFUSED(write_zip({file("ok.txt", "ok"), lying}), "file 'data.bin' is damaged: its CRC-32");
  ZipEntry flipped = file("flipped.txt", "abcdef");
  flipped.payload = "abcdeF";
  CHECK_REFUSED(write_zip({flipped}), "CRC-32");
  ZipEntry deflated = file("deflated.txt", text(1'000), 8);
  deflated.crc = 0;
  CHECK_REFUSED(write_zip({deflated}), "CRC-32");
}

TEST_CASE("zip: every prefix of an archive is an error, never a crash") {
  std::string archive = small_archive();
  REQUIRE(unzip_files(archive).ok());
  for (size_t len = 0; len < archive.size(); ++len) {
    INFO("prefix of " << len << " bytes");
    CHECK_FALSE(error_of(archive.substr(0, len)).empty());
  }
}

TEST_CASE("zip: every damaged byte is an error or harmless, never a crash") {
  // A small fuzzer: under ASan/UBSan this finds out-of-bounds reads. Bytes such as the
  // timestamps may change without harm; anything else must give a prefixed error.
  ZipEntry descriptor = file("d.txt", "descriptor", 8);
  descriptor.flags = 8;
  std::string archive = write_zip(
      {directory("pkg/"), file("pkg/a.py", "print(1)\n"), file("run.sh", text(300), 8, 0100755), descriptor},
      "note");
  size_t refused = 0;
  for (size_t at = 0; at < archive.size(); ++at) {
    for (uint8_t mask : {0x01, 0x80, 0xff}) {
      std::string damaged = archive;
      damaged[at] = static_cast<char>(damaged[at] ^ mask);
      refused += !error_of(damaged).empty();
    }
  }
  CHECK(refused > archive.size());  // most damage is noticed
}

TEST_CASE("zip: a zip bomb stops at its declared size") {
  // Declares 100 bytes, inflates to 100,000: caught by the bounded output buffer.
  ZipEntry bomb = file("bomb", std::string(100'000, '\0'), 8);
  bomb.size = 100;
  CHECK_REFUSED(write_zip({bomb}), "file 'bomb' inflates to more than its declared 100 bytes");
  // Declares nothing at all.
  bomb.size = 0;
  CHECK_REFUSED(write_zip({bomb}), "inflates to more than its declared 0 bytes");
  // Honest about 2 MiB (in 2 KiB of deflate): over the limit before anything is inflated.
  ZipEntry big = file("big", std::string(2 * 1'024 * 1'024, '\0'), 8);
  std::string archive = write_zip({big});
  CHECK(archive.size() < 10'000);
  CHECK_REFUSED(archive, "limit of 1048576 bytes");
  // A declared size over the limit, whatever the data.
  ZipEntry liar = file("liar", "tiny");
  liar.size = 0x7FFFFFFF;
  CHECK_REFUSED(write_zip({liar}), "file 'liar' (2147483647 bytes) takes the working dir past its limit");
  // Each file under the limit, together over it.
  CHECK_REFUSED(write_zip({file("a", text(600'000), 8), file("b", text(600'000), 8)}),
                "file 'b' (600000 bytes) takes the working dir past its limit of 1048576 bytes");
  // Declares more than it inflates to.
  ZipEntry short_one = file("short", text(100), 8);
  short_one.size = 200;
  CHECK_REFUSED(write_zip({short_one}), "inflates to 100 bytes, not its declared 200");
  // Stored sizes must agree.
  ZipEntry stored = file("stored", "12345");
  stored.size = 4;
  CHECK_REFUSED(write_zip({stored}), "is stored with 5 bytes but declares 4");
}

TEST_CASE("zip: damaged deflate data is refused") {
  std::string deflated = deflate_raw(text(5'000));
  ZipEntry cut = file("cut", text(5'000), 8);
  cut.payload = deflated.substr(0, deflated.size() / 2);
  CHECK_REFUSED(write_zip({cut}), "file 'cut' has a truncated deflate stream");
  ZipEntry junk = file("junk", "abc", 8);
  junk.payload = std::string("\xff\xff\xff\xff", 4);  // block type 3 does not exist
  CHECK_REFUSED(write_zip({junk}), "file 'junk' has damaged deflate data");
  ZipEntry trailing = file("trailing", text(100), 8);
  trailing.payload = deflate_raw(text(100)) + "xyz";
  CHECK_REFUSED(write_zip({trailing}), "has 3 bytes after the end of its deflate stream");
}

TEST_CASE("zip: more files than the limit are refused") {
  std::vector<ZipEntry> entries;
  for (size_t i = 0; i < kWorkingDirFilesMax; ++i) entries.push_back(file("f" + std::to_string(i), "x"));
  entries.push_back(directory("dirs_do_not_count/"));
  auto files = unzip_files(write_zip(entries));
  REQUIRE_MESSAGE(files.ok(), files.status().message());
  CHECK(files->size() == kWorkingDirFilesMax);
  entries.push_back(file("one_more", "x"));
  CHECK_REFUSED(write_zip(entries), "more than 1000 files; the limit is 1000");
}

TEST_CASE("zip: unsafe paths are refused") {
  std::vector<std::string> names = {"../x",
                                    "/etc/passwd",
                                    "a//b",
                                    "a/../../b",
                                    "./x",
                                    "a/.",
                                    "..\\x",
                                    "a\\b",
                                    std::string("a\0b", 3),
                                    std::string(2'000, 'n')};
  for (const std::string& name : names) {
    INFO("name " << name);
    std::string message = error_of(write_zip({file(name, "x")}));
    CHECK_FALSE(message.empty());
  }
  CHECK_REFUSED(write_zip({file("../x", "x")}), "'..'");
  CHECK_REFUSED(write_zip({file("/etc/passwd", "x")}), "absolute");
  CHECK_REFUSED(write_zip({file("a\\..\\b", "x")}), "backslash");
  CHECK_REFUSED(write_zip({file(std::string("a\0b", 3), "x")}), "file 'a\\x00b' has a NUL byte");
  CHECK_REFUSED(write_zip({file("", "x")}), "1-1024 bytes");
  // Directory entries are skipped, but an unsafe one still condemns the archive.
  CHECK_REFUSED(write_zip({directory("../"), file("ok", "x")}), "'..'");
  CHECK_REFUSED(write_zip({directory("/")}), "1-1024 bytes");
}

TEST_CASE("zip: unknown compression methods are refused by name") {
  ZipEntry bzip2 = file("data.bz2", "BZh91AY&SY");
  bzip2.method = 12;
  CHECK_REFUSED(write_zip({bzip2}), "file 'data.bz2' uses compression method 12 (bzip2)");
  ZipEntry odd = file("odd", "?");
  odd.method = 77;
  CHECK_REFUSED(write_zip({odd}), "method 77; only stored (0) and deflate (8)");
}

TEST_CASE("zip: encrypted entries are refused") {
  ZipEntry secret = file("secret.txt", "not really encrypted");
  secret.flags = 1;
  CHECK_REFUSED(write_zip({secret}), "file 'secret.txt' is encrypted");
  ZipEntry aes = file("aes.txt", "?");
  aes.flags = 1;
  aes.method = 99;
  CHECK_REFUSED(write_zip({aes}), "is encrypted");
}

TEST_CASE("zip: symlinks and other special files are refused") {
  CHECK_REFUSED(write_zip({file("link", "/etc/passwd", 0, 0120777)}), "file 'link' is a symbolic link");
  CHECK_REFUSED(write_zip({file("dev", "", 0, 0020644)}), "file 'dev' is not a regular file (mode 020644)");
  CHECK_REFUSED(write_zip({file("dir_without_slash", "", 0, 040755)}), "is not a regular file");
  // An MS-DOS archive has no file types: its attributes are not read as st_mode.
  ZipEntry dos = file("link", "text", 0, 0120777);
  dos.system = 0;
  auto files = unzip_files(write_zip({dos}));
  REQUIRE(files.ok());
  CHECK((*files)[0].mode == 0644);
}

TEST_CASE("zip: duplicate names and file/directory clashes are refused") {
  CHECK_REFUSED(write_zip({file("a.txt", "1"), file("a.txt", "2")}), "file 'a.txt' appears twice");
  CHECK_REFUSED(write_zip({file("a", "1"), file("a/b", "2")}), "file 'a' is both a file and a directory");
  CHECK_REFUSED(write_zip({file("a/b/c", "1"), file("a/b", "2")}),
                "file 'a/b' is both a file and a directory");
  CHECK(unzip_files(write_zip({file("a/b", "1"), file("a/c", "2"), file("ab", "3")})).ok());
}

TEST_CASE("zip: ZIP64 and multi-disk archives are refused") {
  ZipEntry huge = file("huge", "x");
  huge.size = 0xFFFFFFFF;
  CHECK_REFUSED(write_zip({huge}), "ZIP64 archives are not supported; the working dir limit is 1 MiB");

  std::string archive = write_zip({});
  patch16(archive, 8, 0xFFFF);
  patch16(archive, 10, 0xFFFF);
  CHECK_REFUSED(archive, "ZIP64 archives are not supported");

  // A ZIP64 end record locator just before the end record.
  std::string locator;
  put32(locator, 0x07064b50);
  locator += std::string(16, '\0');
  CHECK_REFUSED(locator + write_zip({}), "ZIP64 archives are not supported");

  archive = write_zip({});
  patch16(archive, 4, 1);
  CHECK_REFUSED(archive, "multi-disk");
}

TEST_CASE("zip: headers that disagree or point outside the archive are refused") {
  ZipEntry renamed = file("innocent.txt", "x");
  renamed.local_name = "../evil";
  CHECK_REFUSED(write_zip({renamed}), "file 'innocent.txt' is called '../evil' in its local header");

  std::string archive = write_zip({file("a.txt", "abc")});
  size_t end = archive.size() - 22;
  size_t dir = end - 46 - 5;
  REQUIRE(archive.compare(dir, 4, "PK\x01\x02") == 0);

  std::string moved = archive;
  patch32(moved, dir + 42, 1);  // the local header offset
  CHECK_REFUSED(moved, "file 'a.txt' has no local header signature at offset 1");
  patch32(moved, dir + 42, 0x10000);
  CHECK_REFUSED(moved, "outside the archive's file area");

  std::string method = archive;
  patch16(method, dir + 10, 8);
  CHECK_REFUSED(method, "has method 0 in its local header but 8 in the central directory");

  std::string long_data = archive;
  patch32(long_data, dir + 20, 1'000);  // compressed size
  CHECK_REFUSED(long_data, "has 1000 bytes of data at offset 35, past the end");

  std::string long_name = archive;
  patch16(long_name, 26, 60'000);  // local name length
  CHECK_REFUSED(long_name, "runs past the file area");

  std::string bad_dir = archive;
  patch32(bad_dir, end + 16, 0x7FFFFFF0);  // directory offset
  CHECK_REFUSED(bad_dir, "the central directory");

  std::string extra_entries = archive;
  patch16(extra_entries, end + 8, 2);
  patch16(extra_entries, end + 10, 2);
  CHECK_REFUSED(extra_entries, "central directory entry 2 runs past the end of the directory");

  std::string fewer_entries = write_zip({file("a", "1"), file("b", "2")});
  patch16(fewer_entries, fewer_entries.size() - 22 + 8, 1);
  patch16(fewer_entries, fewer_entries.size() - 22 + 10, 1);
  CHECK_REFUSED(fewer_entries, "but its 1 entries end at");
}

TEST_CASE("zip: files that share bytes (an overlapping zip bomb) are refused") {
  // "inner" is a whole local header and data for "b"; "a" stores it as its data, and the
  // central directory's "b" points inside "a". Each is a valid file on its own.
  std::string inner = write_zip({file("b", "y")}).substr(0, 30 + 1 + 1);
  ZipEntry b = file("b", "y");
  b.offset = 30 + 1;  // a's data
  CHECK(unzip_files(write_zip({file("a", inner)})).ok());
  CHECK_REFUSED(write_zip({file("a", inner), b}),
                "file 'b' shares bytes 31-63 of the archive with another file");
  // The other order: the earlier span is found from above.
  std::vector<ZipEntry> reversed = {b, file("a", inner)};
  reversed[0].offset = 32 + 30 + 1;  // "b" takes 32 bytes first now; a's header and name follow
  CHECK_REFUSED(write_zip(reversed), "file 'a' shares bytes");
}

TEST_CASE("zip: an archive written by Python's zipfile") {
  // zipfile writing to a pipe cannot seek back, so it writes data descriptors (flag bit 3),
  // as an upload streamed by a client would.
  const char* script =
      "import sys, zipfile\n"
      "with zipfile.ZipFile(sys.stdout.buffer, \"w\") as z:\n"
      "    z.writestr(\"README.txt\", b\"hello\\n\")\n"
      "    i = zipfile.ZipInfo(\"bin/run.sh\")\n"
      "    i.external_attr = 0o100755 << 16\n"
      "    i.compress_type = zipfile.ZIP_DEFLATED\n"
      "    z.writestr(i, b\"#!/bin/sh\\necho hi\\n\" * 50)\n"
      "    z.writestr(\"empty/\", b\"\")\n"
      "    z.writestr(\"pkg/mod.py\", b\"x = 1\\n\" * 100, compress_type=zipfile.ZIP_DEFLATED)\n";
  std::string command = std::string("python3 -c '") + script + "' 2>/dev/null";
  std::string archive;
  if (FILE* pipe = popen(command.c_str(), "r")) {
    char buf[4096];
    size_t n;
    while ((n = std::fread(buf, 1, sizeof buf, pipe)) > 0) archive.append(buf, n);
    if (pclose(pipe) != 0) archive.clear();
  }
  if (archive.empty()) {
    MESSAGE("python3 with zipfile is not available: skipped");
    return;
  }
  auto files = unzip_files(archive);
  REQUIRE_MESSAGE(files.ok(), files.status().message());
  REQUIRE(files->size() == 3);
  CHECK((*files)[0].path == "README.txt");
  CHECK((*files)[0].data == "hello\n");
  CHECK((*files)[0].mode == 0644);
  CHECK((*files)[1].path == "bin/run.sh");
  CHECK((*files)[1].mode == 0755);
  CHECK((*files)[1].data.size() == 18 * 50);
  CHECK((*files)[2].path == "pkg/mod.py");
  CHECK((*files)[2].data.size() == 600);
}

}  // namespace shoal::jobs
