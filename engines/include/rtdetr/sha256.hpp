// SHA-256 of a file, as hex: a split sidecar records each graph's digest (rtdetr_export.files.file_sha256), and
// the engines check it before running, so that graphs of two exports are never run together.
#pragma once

#include <string>

namespace rtdetr {

// Lower-case hex digest of the file's bytes; throws rtdetr::Error (one line) if it cannot be read.
std::string file_sha256(const std::string& path);

}  // namespace rtdetr
