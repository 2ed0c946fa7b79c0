// libFuzzer target: the sidecar reader on arbitrary bytes. Every input must end in a Sidecar or an rtdetr::Error;
// any other exception escapes, aborts, and is reported as a crash, as are the sanitizers' findings.
#include <cstddef>
#include <cstdint>
#include <string>

#include "rtdetr/error.hpp"
#include "rtdetr/sidecar.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string text(reinterpret_cast<const char*>(data), size);
  try {
    rtdetr::Sidecar sidecar = rtdetr::Sidecar::parse(text, "fuzz.json");
    sidecar.check_contract();
    sidecar.fixed_batch();
    // What a detector does next with the fields: pick a run size within the range (or the fixed one).
    sidecar.use_input_size(sidecar.max_height > 0 ? sidecar.max_height : sidecar.input_height,
                           sidecar.max_width > 0 ? sidecar.max_width : sidecar.input_width);
  } catch (const rtdetr::Error&) {
  }
  // The path rule sees file names from users; the fuzz input stands in for one.
  rtdetr::Sidecar::path_for(text);
  return 0;
}
