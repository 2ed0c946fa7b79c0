// Images and the pre-processing of the Python pipeline (rtdetr_export.imaging.preprocess), reproduced exactly:
// decode to 8-bit RGB as PIL's Image.open(...).convert("RGB") does, resize with PIL's BILINEAR filter,
// divide by 255, lay out as NCHW float32.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

namespace rtdetr {

struct Image {
  int width = 0;
  int height = 0;
  std::vector<std::uint8_t> rgb;  // height rows of width * 3 bytes, R G B

  Image() = default;
  Image(int w, int h) : width(w), height(h), rgb(static_cast<std::size_t>(w) * h * 3) {}
};

// Pillow refuses images above twice its default MAX_IMAGE_PIXELS (decompression-bomb guard); so do we.
constexpr std::uint64_t kMaxImagePixels = 2ULL * 89478485ULL;

// PNG (any bit depth / colour type) and baseline or progressive JPEG (grey or YCbCr); a JPEG is turned upright as
// its Exif (or XMP) orientation says, as PIL's ImageOps.exif_transpose does. Throws rtdetr::Error with a one-line
// message for a missing file, a file that is no PNG/JPEG, a damaged one, or one above `max_pixels`.
Image load_image(const std::string& path);
Image decode_image(const std::uint8_t* data, std::size_t size, const std::string& label,
                   std::uint64_t max_pixels = kMaxImagePixels);

// PIL's Image.resize((width, height), Image.Resampling.BILINEAR) on an RGB image, bit for bit (Pillow 13): a
// separable triangle filter whose support grows with the downscale factor (antialiasing), one pass per axis in
// Pillow's order, with 22-bit fixed-point weights and 8-bit rounding between the passes.
Image resize_bilinear(const Image& image, int width, int height);

// One image -> 3 * height * width floats (CHW) in [0, 1] at `out`; resizes first when the size differs.
void preprocess_into(const Image& image, int height, int width, float* out);

}  // namespace rtdetr
