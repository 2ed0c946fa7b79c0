// libFuzzer target: the ONNX metadata reader (read_onnx_metadata) and the split-part resolution that follows it
// (split_sidecar_named), on arbitrary bytes. rtdetr_detect runs this on every .onnx file it is given, before ONNX
// Runtime sees the file, so it must end in a result or an rtdetr::Error on any input; any other exception
// escapes, aborts, and is reported as a crash, as are the sanitizers' findings.
#include <cstddef>
#include <cstdint>
#include <sstream>
#include <string>

#include "rtdetr/error.hpp"
#include "rtdetr/onnx_metadata.hpp"
#include "rtdetr/split.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  std::istringstream in(std::string(reinterpret_cast<const char*>(data), size));
  try {
    const auto metadata = rtdetr::read_onnx_metadata(in, "fuzz.onnx");
    rtdetr::split_sidecar_named(metadata, "models/fuzz.encoder.onnx");
  } catch (const rtdetr::Error&) {
  }
  return 0;
}
