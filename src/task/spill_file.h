// The file one spilled object value is written to (ObjectStore): a fixed
// header, then the value's bytes (the msgpack payload) as they are.
//
//   offset  size  field
//   0       4     magic "SHSP"
//   4       2     format version (kSpillFormatVersion), little-endian
//   6       2     header size (kSpillHeaderBytes), little-endian
//   8       16    object id, big-endian (as on the wire)
//   24      8     payload size in bytes, little-endian
//   32      4     CRC32C of the payload, little-endian
//   36      4     CRC32C of bytes 0..35 (the header itself), little-endian
//
// Only the bytes are saved: the refs inside the value (Contained) stay in
// memory with the store's entry, so that the objects they name stay alive
// and nothing on disk has to be turned back into a reference.
//
// Spill files live only as long as the process that wrote them (they are
// deleted when the object is freed and at shutdown), so they are never
// fsync'ed and carry no compatibility promise beyond the version check.
//
// Pure functions; any thread.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include "shoal/ids.h"
#include "shoal/status.h"

namespace shoal::detail {

inline constexpr std::size_t kSpillHeaderBytes = 40;
inline constexpr uint16_t kSpillFormatVersion = 1;
inline constexpr std::string_view kSpillFileSuffix = ".spill";

using SpillHeader = std::array<char, kSpillHeaderBytes>;

// The header for `payload`, the bytes of object `id`.
SpillHeader encode_spill_header(const ObjectId& id, std::string_view payload);

// Reads the spill file at `path` back: the payload of object `id`, which
// must be `payload_bytes` long. Blocking I/O on the caller's thread. A file
// that is missing, short, long, of another object or whose checksums do not
// match gives kIoError with a message naming the file and what is wrong —
// never bytes that differ from those written.
Result<std::string> read_spill_file(const std::string& path, const ObjectId& id,
                                    uint64_t payload_bytes);

}  // namespace shoal::detail
