// Safe reading of msgpack: validation before msgpack-c allocates anything,
// and the wire forms of ObjectRef and ActorHandle.
#include "shoal/serialize.h"

#include <algorithm>
#include <new>
#include <vector>

#include "shoal/actor.h"
#include "shoal/detail/core.h"
#include "shoal/object_ref.h"

namespace shoal::detail {

namespace {

uint64_t read_be(const uint8_t* p, int bytes) {
  uint64_t v = 0;
  for (int i = 0; i < bytes; ++i) v = (v << 8) | p[i];
  return v;
}

// Reads one msgpack header at `pos`: what follows it (payload bytes to skip,
// or child values of a container).
struct Header {
  std::size_t header_bytes = 1;
  uint64_t payload_bytes = 0;  // str/bin/ext data (ext: including the type byte)
  uint64_t children = 0;       // values inside an array or map (2 per map entry)
  uint64_t elements = 0;       // entries of an array or map, for the limit
  bool container = false;
};

Status read_header(const uint8_t* p, std::size_t remaining, Header& h) {
  const uint8_t tag = p[0];
  auto need = [&](std::size_t n) { return remaining >= n; };
  auto sized = [&](int length_bytes, int extra_type_byte) -> bool {
    if (!need(1 + static_cast<std::size_t>(length_bytes))) return false;
    h.header_bytes = 1 + length_bytes;
    h.payload_bytes = read_be(p + 1, length_bytes) + extra_type_byte;
    return true;
  };
  auto container = [&](uint64_t entries, bool map, int length_bytes) -> bool {
    if (!need(1 + static_cast<std::size_t>(length_bytes))) return false;
    h.header_bytes = 1 + length_bytes;
    h.container = true;
    h.elements = entries;
    h.children = map ? 2 * entries : entries;
    return true;
  };
  bool ok = true;
  if (tag <= 0x7f || tag >= 0xe0 || tag == 0xc0 || tag == 0xc2 || tag == 0xc3) {
    h.header_bytes = 1;  // fixint, nil, bool
  } else if (tag >= 0x80 && tag <= 0x8f) {
    ok = container(tag & 0x0f, true, 0);
  } else if (tag >= 0x90 && tag <= 0x9f) {
    ok = container(tag & 0x0f, false, 0);
  } else if (tag >= 0xa0 && tag <= 0xbf) {
    h.payload_bytes = tag & 0x1f;
  } else {
    switch (tag) {
      case 0xc4:
        ok = sized(1, 0);
        break;  // bin 8/16/32
      case 0xc5:
        ok = sized(2, 0);
        break;
      case 0xc6:
        ok = sized(4, 0);
        break;
      case 0xc7:
        ok = sized(1, 1);
        break;  // ext 8/16/32
      case 0xc8:
        ok = sized(2, 1);
        break;
      case 0xc9:
        ok = sized(4, 1);
        break;
      case 0xca:
        h.payload_bytes = 4;
        break;  // float 32/64
      case 0xcb:
        h.payload_bytes = 8;
        break;
      case 0xcc:
      case 0xd0:
        h.payload_bytes = 1;
        break;  // (u)int 8..64
      case 0xcd:
      case 0xd1:
        h.payload_bytes = 2;
        break;
      case 0xce:
      case 0xd2:
        h.payload_bytes = 4;
        break;
      case 0xcf:
      case 0xd3:
        h.payload_bytes = 8;
        break;
      case 0xd4:
        h.payload_bytes = 2;
        break;  // fixext 1..16 (+ type byte)
      case 0xd5:
        h.payload_bytes = 3;
        break;
      case 0xd6:
        h.payload_bytes = 5;
        break;
      case 0xd7:
        h.payload_bytes = 9;
        break;
      case 0xd8:
        h.payload_bytes = 17;
        break;
      case 0xd9:
        ok = sized(1, 0);
        break;  // str 8/16/32
      case 0xda:
        ok = sized(2, 0);
        break;
      case 0xdb:
        ok = sized(4, 0);
        break;
      case 0xdc:
        ok = need(3) && container(read_be(p + 1, 2), false, 2);
        break;
      case 0xdd:
        ok = need(5) && container(read_be(p + 1, 4), false, 4);
        break;
      case 0xde:
        ok = need(3) && container(read_be(p + 1, 2), true, 2);
        break;
      case 0xdf:
        ok = need(5) && container(read_be(p + 1, 4), true, 4);
        break;
      default:  // 0xc1: never used
        return Status::invalid_argument("byte 0xc1 is not msgpack");
    }
  }
  if (!ok) return Status::invalid_argument("truncated: the value ends inside a header");
  return Status();
}

}  // namespace

Status validate_msgpack(std::string_view bytes, const DeserializeLimits& limits) {
  if (bytes.empty()) return Status::invalid_argument("no bytes (an empty value)");
  if (bytes.size() > limits.bytes_max) {
    return Status::resource_exhausted("the value is " + std::to_string(bytes.size()) +
                                      " bytes, over the limit of " +
                                      std::to_string(limits.bytes_max));
  }
  const auto* data = reinterpret_cast<const uint8_t*>(bytes.data());
  const std::size_t size = bytes.size();
  std::size_t pos = 0;
  // Values still to read at each open level; the bottom is the top-level value.
  std::vector<uint64_t> stack{1};
  while (!stack.empty()) {
    if (stack.back() == 0) {
      stack.pop_back();
      continue;
    }
    --stack.back();
    if (pos >= size)
      return Status::invalid_argument("truncated: " + std::to_string(size) +
                                      " bytes end mid-value");
    Header h;
    SHOAL_RETURN_IF_ERROR(read_header(data + pos, size - pos, h));
    pos += h.header_bytes;
    const std::size_t remaining = size - pos;
    if (h.container) {
      if (h.elements > limits.container_elements_max) {
        return Status::resource_exhausted("a container of " + std::to_string(h.elements) +
                                          " entries is over the limit of " +
                                          std::to_string(limits.container_elements_max));
      }
      if (h.children > remaining) {  // every value takes at least one byte
        return Status::invalid_argument("truncated: a container claims " +
                                        std::to_string(h.elements) + " entries but only " +
                                        std::to_string(remaining) + " bytes follow");
      }
      if (h.children > 0) {
        if (stack.size() > limits.depth_max) {
          return Status::resource_exhausted("values nested deeper than the limit of " +
                                            std::to_string(limits.depth_max));
        }
        stack.push_back(h.children);
      }
    } else {
      if (h.payload_bytes > remaining) {
        return Status::invalid_argument("truncated: " + std::to_string(h.payload_bytes) +
                                        " bytes of data announced, " + std::to_string(remaining) +
                                        " present");
      }
      pos += h.payload_bytes;
    }
  }
  if (pos != size) {
    return Status::invalid_argument(std::to_string(size - pos) + " bytes follow the value");
  }
  return Status();
}

msgpack::unpack_limit unpack_limit_for(std::size_t size, const DeserializeLimits& limits) {
  // validate_msgpack has checked all of this; these are a second line.
  std::size_t elements = std::min(limits.container_elements_max, size);
  return msgpack::unpack_limit(elements, std::min(limits.container_elements_max, size / 2 + 1),
                               size, size, size, limits.depth_max + 1);
}

Status deserialize_error(const std::string& type_name) {
  const std::string prefix = "cannot read a " + type_name + ": ";
  try {
    throw;
  } catch (const msgpack::size_overflow& e) {
    return Status::resource_exhausted(prefix + "over a size limit (" + e.what() + ")");
  } catch (const msgpack::unpack_error& e) {
    return Status::invalid_argument(prefix + "malformed msgpack (" + e.what() + ")");
  } catch (const msgpack::type_error&) {
    return Status::invalid_argument(prefix +
                                    "the bytes hold another type (or a number out of range)");
  } catch (const Error& e) {
    return Status(e.status().code(), prefix + e.status().message());
  } catch (const std::bad_alloc&) {
    return Status::resource_exhausted(prefix + "out of memory");
  } catch (const std::exception& e) {
    return Status::invalid_argument(prefix + e.what());
  } catch (...) {
    return Status::invalid_argument(prefix + "an unknown exception");
  }
}

std::string describe_read_failure(const ObjectId& id, const std::string& type,
                                  const Status& status) {
  return "object " + id.hex() + " cannot be read as " + type + ": " + status.message();
}

RefPtr unpack_object_ref(const msgpack::object& object) {
  if (object.type == msgpack::type::NIL) return nullptr;
  constexpr std::size_t kIdBytes = ObjectId::kSizeBytes;
  if (object.type != msgpack::type::EXT || object.via.ext.type() != kObjectRefExtType ||
      object.via.ext.size < kIdBytes || object.via.ext.size > kIdBytes + kOwnerAddressBytesMax) {
    throw Error(Status::invalid_argument("an ObjectRef is msgpack ext type 17 of 16 to 271 bytes"));
  }
  const char* data = object.via.ext.data();
  return adopt_ref(ObjectId::from_bytes(data),
                   std::string(data + kIdBytes, object.via.ext.size - kIdBytes));
}

ActorPtr unpack_actor_handle(const msgpack::object& object, const std::string* expected_class,
                             const char* type_name) {
  if (object.type == msgpack::type::NIL) return nullptr;
  constexpr std::size_t kIdBytes = ActorId::kSizeBytes;
  if (object.type != msgpack::type::EXT || object.via.ext.type() != kActorHandleExtType ||
      object.via.ext.size < kIdBytes + 1) {
    throw Error(
        Status::invalid_argument("an ActorHandle is msgpack ext type 18 of at least 17 bytes"));
  }
  const char* data = object.via.ext.data();
  const std::size_t size = object.via.ext.size;
  const std::size_t class_size = static_cast<uint8_t>(data[kIdBytes]);
  if (kIdBytes + 1 + class_size > size ||
      size - kIdBytes - 1 - class_size > kOwnerAddressBytesMax) {
    throw Error(
        Status::invalid_argument("an ActorHandle's class name or owner address has a bad length"));
  }
  std::string class_name(data + kIdBytes + 1, class_size);
  if (expected_class == nullptr) {
    throw Error(Status::invalid_argument("class " + demangle(type_name) +
                                         " is not registered with SHOAL_ACTOR"));
  }
  if (class_name != *expected_class) {
    throw Error(Status::invalid_argument("a handle to an actor of class " + class_name +
                                         " is not an ActorHandle<" + *expected_class + ">"));
  }
  return adopt_actor(
      ActorId::from_bytes(data), std::move(class_name),
      std::string(data + kIdBytes + 1 + class_size, size - kIdBytes - 1 - class_size));
}

}  // namespace shoal::detail
