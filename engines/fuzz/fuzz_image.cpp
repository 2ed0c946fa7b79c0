// libFuzzer target: PNG/JPEG decoding (with the Exif orientation) and the pre-processing after it. Every input must
// end in an image or an rtdetr::Error; anything else aborts and is reported as a crash.
#include <cstddef>
#include <cstdint>
#include <vector>

#include "rtdetr/error.hpp"
#include "rtdetr/image.hpp"

namespace {
// Far below the decoder's real limit (Pillow's 179 M pixels), so that a 100-byte header claiming a huge image does
// not trip the fuzzer's 2 GB memory limit with a legitimate allocation; the size check itself is the same code.
constexpr std::uint64_t kFuzzMaxPixels = 1 << 18;
}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  try {
    const rtdetr::Image image = rtdetr::decode_image(data, size, "fuzz", kFuzzMaxPixels);
    // An odd target size exercises both resize passes and the float layout on whatever shape came out.
    std::vector<float> input(3 * 19 * 27);
    rtdetr::preprocess_into(image, 19, 27, input.data());
  } catch (const rtdetr::Error&) {
  }
  return 0;
}
