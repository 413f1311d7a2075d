// A private directory under $TMPDIR (or /tmp) for one test, removed with
// everything in it when the object goes. `path` is empty if it could not be
// made (tests check it).
#pragma once

#include <stdlib.h>

#include <filesystem>
#include <string>
#include <system_error>

namespace shoal {

struct TempDir {
  std::string path;

  explicit TempDir(const std::string& prefix = "shoal-test") {
    const char* tmp = ::getenv("TMPDIR");
    std::string pattern = std::string(tmp != nullptr && *tmp ? tmp : "/tmp") + "/" + prefix + "-XXXXXX";
    if (::mkdtemp(pattern.data()) != nullptr) path = pattern;
  }
  ~TempDir() {
    std::error_code ignored;
    if (!path.empty()) std::filesystem::remove_all(path, ignored);
  }
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
};

}  // namespace shoal
