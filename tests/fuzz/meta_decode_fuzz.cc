// libFuzzer target for what the metadata path reads from the network and
// from Raft entries: meta requests and responses (codec), the KV state
// machine applying arbitrary entry bytes, and Raft messages in their Cap'n
// Proto form (control/wire) stepped into a live RawNode. Nothing may crash,
// assert or leak.
#include <capnp/serialize.h>
#include <kj/array.h>

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <string_view>

#include "control/wire.h"
#include "meta/codec.h"
#include "meta/kv.h"
#include "raft/raft.h"

namespace {

shoal::meta::KvStore& store() {
  static shoal::meta::KvStore kv;
  return kv;
}

shoal::raft::RawNode& node() {
  static shoal::raft::MemoryStorage storage;
  static std::unique_ptr<shoal::raft::RawNode> raw = [] {
    shoal::raft::Config config;
    config.id = 1;
    config.storage = &storage;
    auto created = shoal::raft::RawNode::create(config);
    auto n = std::move(*created);
    (void)n->bootstrap({1, 2, 3});
    return n;
  }();
  return *raw;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string_view bytes(reinterpret_cast<const char*>(data), size);
  (void)shoal::meta::decode_request(bytes);
  (void)shoal::meta::decode_response(bytes);
  static uint64_t index = 0;
  (void)store().apply(++index, bytes);

  // The same bytes as a Raft message, if they parse as a capnp message.
  if (size % 8 == 0 && size > 0 && size < (1 << 20)) {
    kj::Array<capnp::word> words = kj::heapArray<capnp::word>(size / 8);
    std::memcpy(words.begin(), data, size);
    try {
      capnp::ReaderOptions options;
      options.traversalLimitInWords = size / 8 * 4 + 64;
      options.nestingLimit = 16;
      capnp::FlatArrayMessageReader reader(words, options);
      auto message = shoal::control::read_message(reader.getRoot<shoal::raftwire::Message>());
      if (message.ok()) {
        (void)node().step(*message);
        if (node().has_ready()) {
          (void)node().ready();
          node().advance();
        }
      }
    } catch (const kj::Exception&) {
      // Malformed capnp framing: refused by the reader, as in production.
    }
  }
  return 0;
}
