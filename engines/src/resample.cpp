// PIL-compatible bilinear resampling (see image.hpp). The arithmetic below is deliberately literal: weights are
// computed in double with the same expressions and evaluation order as Pillow's resampler, rounded to the same
// fixed-point format, and accumulated in 32-bit integers, because any deviation (an FMA, a different rounding
// of a weight, float instead of double) changes some output bytes. This file is compiled with
// -ffp-contract=off for that reason.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <vector>

#include "rtdetr/error.hpp"
#include "rtdetr/image.hpp"

namespace rtdetr {

namespace {

// Weights carry 22 fractional bits: 8-bit samples times weights summing to ~1.0 stay below 2^31 with headroom.
constexpr int kPrecisionBits = 32 - 8 - 2;

// For every output sample: the first contributing input sample, how many contribute, and their fixed-point
// weights (a row of `width` entries, zero past `count`).
struct Taps {
  int width = 0;
  std::vector<int> first;
  std::vector<int> count;
  std::vector<std::int32_t> weight;
};

double triangle(double x) {
  if (x < 0.0) x = -x;
  return x < 1.0 ? 1.0 - x : 0.0;
}

Taps make_taps(int in_size, int out_size) {
  // The whole input is the source box: [0, in_size).
  const double box_start = 0.0;
  const double box_end = static_cast<double>(in_size);
  const double scale = (box_end - box_start) / out_size;
  // Downscaling widens the triangle to cover every input sample under an output sample (antialiasing);
  // upscaling keeps it one input sample wide.
  const double filter_scale = scale < 1.0 ? 1.0 : scale;
  const double support = 1.0 * filter_scale;

  Taps taps;
  taps.width = static_cast<int>(std::ceil(support)) * 2 + 1;
  taps.first.resize(out_size);
  taps.count.resize(out_size);
  taps.weight.assign(static_cast<std::size_t>(out_size) * taps.width, 0);
  std::vector<double> w(taps.width);
  const double inv_filter_scale = 1.0 / filter_scale;

  for (int o = 0; o < out_size; ++o) {
    const double center = box_start + (o + 0.5) * scale;
    // Truncating casts of (x + 0.5) round the window ends the way the reference does.
    int lo = static_cast<int>(center - support + 0.5);
    if (lo < 0) lo = 0;
    int hi = static_cast<int>(center + support + 0.5);
    if (hi > in_size) hi = in_size;
    const int n = std::min(hi - lo, taps.width);
    double total = 0.0;
    for (int i = 0; i < n; ++i) {
      const double v = triangle((i + lo - center + 0.5) * inv_filter_scale);
      w[i] = v;
      total += v;
    }
    std::int32_t* row = &taps.weight[static_cast<std::size_t>(o) * taps.width];
    for (int i = 0; i < n; ++i) {
      const double v = total != 0.0 ? w[i] / total : w[i];
      const double scaled = v * (1 << kPrecisionBits);
      row[i] = static_cast<std::int32_t>(v < 0 ? -0.5 + scaled : 0.5 + scaled);
    }
    taps.first[o] = lo;
    taps.count[o] = n < 0 ? 0 : n;
  }
  return taps;
}

inline std::uint8_t to_byte(std::int32_t acc) {
  if (acc >= (1 << kPrecisionBits << 8)) return 255;
  if (acc <= 0) return 0;
  return static_cast<std::uint8_t>(acc >> kPrecisionBits);
}

// Resamples rows [row0, row0 + rows) of `src` along x into `dst` (rows x dst.width).
void horizontal(const Image& src, int row0, int rows, const Taps& taps, Image& dst) {
  const int out_w = dst.width;
  for (int y = 0; y < rows; ++y) {
    const std::uint8_t* in = &src.rgb[static_cast<std::size_t>(row0 + y) * src.width * 3];
    std::uint8_t* out = &dst.rgb[static_cast<std::size_t>(y) * out_w * 3];
    for (int x = 0; x < out_w; ++x) {
      const std::int32_t* k = &taps.weight[static_cast<std::size_t>(x) * taps.width];
      const std::uint8_t* p = in + static_cast<std::size_t>(taps.first[x]) * 3;
      std::int32_t r = 1 << (kPrecisionBits - 1), g = r, b = r;
      for (int i = 0; i < taps.count[x]; ++i, p += 3) {
        r += p[0] * k[i];
        g += p[1] * k[i];
        b += p[2] * k[i];
      }
      out[x * 3 + 0] = to_byte(r);
      out[x * 3 + 1] = to_byte(g);
      out[x * 3 + 2] = to_byte(b);
    }
  }
}

// Resamples `src` along y; taps.first is relative to src's first row.
void vertical(const Image& src, const Taps& taps, Image& dst) {
  const std::size_t stride = static_cast<std::size_t>(src.width) * 3;
  for (int y = 0; y < dst.height; ++y) {
    const std::int32_t* k = &taps.weight[static_cast<std::size_t>(y) * taps.width];
    const std::uint8_t* base = &src.rgb[static_cast<std::size_t>(taps.first[y]) * stride];
    std::uint8_t* out = &dst.rgb[static_cast<std::size_t>(y) * stride];
    for (std::size_t c = 0; c < stride; ++c) {
      std::int32_t acc = 1 << (kPrecisionBits - 1);
      const std::uint8_t* p = base + c;
      for (int i = 0; i < taps.count[y]; ++i, p += stride) acc += *p * k[i];
      out[c] = to_byte(acc);
    }
  }
}

}  // namespace

Image resize_bilinear(const Image& image, int width, int height) {
  if (width <= 0 || height <= 0) throw Error("resize: target size must be positive");
  if (image.width <= 0 || image.height <= 0) throw Error("resize: empty image");
  if (width == image.width && height == image.height) return image;

  const bool along_x = width != image.width;
  const bool along_y = height != image.height;
  Taps tx = make_taps(image.width, width);
  Taps ty = make_taps(image.height, height);

  if (!along_y) {
    Image out(width, height);
    horizontal(image, 0, image.height, tx, out);
    return out;
  }
  if (!along_x) {
    Image out(width, height);
    vertical(image, ty, out);
    return out;
  }
  // The pass order changes the 8-bit intermediate and therefore the result. Pillow 13 runs the vertical pass
  // first when the height shrinks by more than twice as many pixels as the width does (the rule is on pixel
  // counts, not ratios); otherwise horizontal first, on only the rows the vertical pass will read.
  const int shrink_y = image.height - height;
  const int shrink_x = image.width - width;
  if (shrink_y > 0 && shrink_y > shrink_x * 2) {
    Image mid(image.width, height);
    vertical(image, ty, mid);
    Image out(width, height);
    horizontal(mid, 0, height, tx, out);
    return out;
  }
  const int row_first = ty.first.front();
  const int row_end = ty.first.back() + ty.count.back();
  Image mid(width, row_end - row_first);
  horizontal(image, row_first, row_end - row_first, tx, mid);
  for (int& f : ty.first) f -= row_first;
  Image out(width, height);
  vertical(mid, ty, out);
  return out;
}

void preprocess_into(const Image& image, int height, int width, float* out) {
  Image resized;
  const Image* source = &image;
  if (image.width != width || image.height != height) {
    resized = resize_bilinear(image, width, height);
    source = &resized;
  }
  const Image& src = *source;
  const std::size_t plane = static_cast<std::size_t>(width) * height;
  for (std::size_t i = 0; i < plane; ++i) {
    // float32 division, as numpy does for `uint8_array.astype(float32) / 255.0`.
    out[i] = static_cast<float>(src.rgb[i * 3 + 0]) / 255.0f;
    out[plane + i] = static_cast<float>(src.rgb[i * 3 + 1]) / 255.0f;
    out[2 * plane + i] = static_cast<float>(src.rgb[i * 3 + 2]) / 255.0f;
  }
}

}  // namespace rtdetr
