// Reading a job's working dir from a zip archive.
//
// Ray's Jobs clients upload `runtime_env.working_dir` as a zip archive
// (PUT /api/packages/gcs/_ray_pkg_<hash>.zip, written by Python's zipfile),
// with the files at the archive's root, relative to the directory. This turns
// such an archive into shoal's own list of files.
//
// A pure function: any thread may call it. The archive comes from the network,
// so nothing in it is trusted: every offset and size is checked against the
// archive's bounds, inflated output is bounded by the declared size and by the
// working dir's limits (a lying "zip bomb" stops at the bound), and each file
// is checked against its CRC-32.
#pragma once

#include <string_view>
#include <vector>

#include "jobs/job_types.h"
#include "shoal/status.h"

namespace shoal::jobs {

// Reads a zip archive (as Python's zipfile / Ray's package upload writes it)
// into working-dir files. Never trusts its input.
//
// Supported: stored (0) and deflated (8) entries, data descriptors, an archive
// comment. Refused: ZIP64, multi-disk archives, encryption, other methods,
// symlinks and other non-regular entries, unsafe or duplicate paths, a file
// that is also a directory, more than kWorkingDirFilesMax files, more than
// kWorkingDirBytesMax bytes (data and paths, counted as validate_files counts
// them). Directory entries ("name/") are skipped. A file's mode is 0755 if the
// archive (made on Unix) gives it any execute bit, else 0644.
//
// Errors are invalid_argument, their message starting "working_dir archive: ".
// The files come in the central directory's order and pass validate_files.
Result<std::vector<File>> unzip_files(std::string_view archive);

}  // namespace shoal::jobs
