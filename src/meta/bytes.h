// A tiny binary format for snapshots: little-endian fixed integers, LEB128
// varints and length-prefixed byte strings, plus CRC32C and FNV-1a hashes.
// ByteReader never reads past its input: every getter fails cleanly instead.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include "shoal/status.h"

namespace shoal::meta {

// CRC-32C (Castagnoli), as used by iSCSI, ext4 and LevelDB; `crc` continues
// a previous result. Uses SSE4.2 where the CPU has it; crc32c_portable is the
// table-driven fallback (same results, exposed for tests).
uint32_t crc32c(std::string_view data, uint32_t crc = 0);
uint32_t crc32c_portable(std::string_view data, uint32_t crc = 0);

// FNV-1a, 64-bit: a fast deterministic fingerprint (not collision resistant
// against an adversary; used to tell a retried request from a different one).
uint64_t fnv1a64(std::string_view data);

class ByteWriter {
 public:
  void put_u8(uint8_t v) { out_.push_back(static_cast<char>(v)); }
  void put_fixed32(uint32_t v);
  void put_varint(uint64_t v);
  void put_signed(int64_t v) { put_varint(static_cast<uint64_t>(v)); }
  void put_bytes(std::string_view s) {
    put_varint(s.size());
    out_.append(s);
  }
  void put_raw(std::string_view s) { out_.append(s); }
  const std::string& data() const { return out_; }
  std::string release() { return std::move(out_); }

 private:
  std::string out_;
};

class ByteReader {
 public:
  explicit ByteReader(std::string_view in) : in_(in) {}
  Status get_u8(uint8_t& v, const char* what);
  Status get_fixed32(uint32_t& v, const char* what);
  Status get_varint(uint64_t& v, const char* what);
  // Fails on values that do not fit in int64_t's non-negative half.
  Status get_non_negative(int64_t& v, const char* what);
  // Fails when the length exceeds `max` or the remaining input.
  Status get_bytes(std::string& v, size_t max, const char* what);
  // A count of entries, each at least `min_entry_bytes` long: fails when the
  // remaining input could not hold that many (so no huge reserve on garbage).
  Status get_count(size_t& v, size_t min_entry_bytes, const char* what);
  size_t remaining() const { return in_.size() - pos_; }

 private:
  Status truncated(const char* what) const;
  std::string_view in_;
  size_t pos_ = 0;
};

}  // namespace shoal::meta
