// libFuzzer: a Jobs REST upload (PUT /api/packages/...) is a zip archive
// from the network. unzip_files must answer every input with files or an
// error of its own ("working_dir archive: ..."), never crash, read out of
// bounds or allocate without bound (ASan/UBSan and -rss_limit_mb watch).
#include <cstddef>
#include <cstdint>
#include <string_view>

#include "jobs/zip_reader.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  auto files = shoal::jobs::unzip_files(std::string_view(reinterpret_cast<const char*>(data), size));
  if (!files.ok() && files.status().message().rfind("working_dir archive: ", 0) != 0) __builtin_trap();
  if (files.ok() && !shoal::jobs::validate_files(*files).ok()) __builtin_trap();
  return 0;
}
