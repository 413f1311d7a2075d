// Small conversions between Cap'n Proto messages and the task runtime's
// types, shared by cluster_runtime.cc and cluster_objects.cc.
#pragma once

#include <capnp/blob.h>
#include <kj/exception.h>

#include <string>

namespace shoal::detail {

inline std::string data_string(capnp::Data::Reader data) {
  return std::string(reinterpret_cast<const char*>(data.begin()), data.size());
}

inline capnp::Data::Reader as_data(const std::string& s) {
  return capnp::Data::Reader(reinterpret_cast<const capnp::byte*>(s.data()), s.size());
}

inline std::string kj_text(const kj::Exception& e) { return e.getDescription().cStr(); }

}  // namespace shoal::detail
