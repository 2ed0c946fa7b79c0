#include "orientation.hpp"

#include <cmath>
#include <cstring>
#include <string>
#include <utility>
#include <vector>

namespace rtdetr::orientation {

namespace {

// Bounds-checked reads in the TIFF block's byte order. Offsets come from the file, so every read checks them.
class TiffReader {
 public:
  TiffReader(const std::uint8_t* data, std::size_t size, bool big_endian)
      : data_(data), size_(size), big_(big_endian) {}

  bool has(std::uint64_t offset, std::uint64_t count) const { return offset <= size_ && count <= size_ - offset; }

  std::uint64_t unsigned_at(std::size_t offset, int bytes) const {
    std::uint64_t v = 0;
    for (int i = 0; i < bytes; ++i) {
      const std::uint64_t byte = data_[offset + (big_ ? i : bytes - 1 - i)];
      v = (v << 8) | byte;
    }
    return v;
  }

  std::int64_t signed_at(std::size_t offset, int bytes) const {
    const std::uint64_t v = unsigned_at(offset, bytes);
    const std::uint64_t sign = std::uint64_t{1} << (8 * bytes - 1);
    // Two's complement without relying on implementation-defined narrowing.
    return (v & sign) ? -static_cast<std::int64_t>((~v & (sign - 1)) + 1) : static_cast<std::int64_t>(v);
  }

 private:
  const std::uint8_t* data_;
  std::size_t size_;
  bool big_;
};

// Bytes per value of the TIFF types PIL loads (TiffImagePlugin's _load_dispatch); 0 for types it skips.
int unit_size(unsigned type) {
  switch (type) {
    case 1: case 2: case 6: case 7: return 1;     // BYTE, ASCII, SBYTE, UNDEFINED
    case 3: case 8: return 2;                     // SHORT, SSHORT
    case 4: case 9: case 11: case 13: return 4;   // LONG, SLONG, FLOAT, IFD
    case 5: case 10: case 12: case 16: return 8;  // RATIONAL, SRATIONAL, DOUBLE, LONG8
    default: return 0;
  }
}

constexpr long kNotAnOrientation = 0;  // a value PIL reads but that is no orientation (bytes, text, 6.5, 3/0)

// The first value of an entry as PIL's dict lookup sees it: numbers compare equal to an integer key when they
// are that integer (6, 6.0, 12/2); byte strings, text and non-integral numbers match no orientation.
long first_value(const TiffReader& r, unsigned type, std::size_t at) {
  switch (type) {
    case 3: case 4: case 13: case 16: {
      const std::uint64_t v = r.unsigned_at(at, unit_size(type));
      return v <= 8 ? static_cast<long>(v) : kNotAnOrientation;
    }
    case 6: case 8: case 9: {
      const std::int64_t v = r.signed_at(at, unit_size(type));
      return v >= 0 && v <= 8 ? static_cast<long>(v) : kNotAnOrientation;
    }
    case 5: case 10: {
      const bool is_signed = type == 10;
      const std::int64_t num = is_signed ? r.signed_at(at, 4) : static_cast<std::int64_t>(r.unsigned_at(at, 4));
      const std::int64_t den = is_signed ? r.signed_at(at + 4, 4) : static_cast<std::int64_t>(r.unsigned_at(at + 4, 4));
      if (den == 0) return kNotAnOrientation;  // PIL makes such a rational NaN
      for (long k = 1; k <= 8; ++k) {
        if (num == k * den) return k;
      }
      return kNotAnOrientation;
    }
    case 11: case 12: {
      double v = 0.0;
      if (type == 11) {
        const std::uint32_t bits = static_cast<std::uint32_t>(r.unsigned_at(at, 4));
        float f;
        std::memcpy(&f, &bits, sizeof f);
        v = f;
      } else {
        const std::uint64_t bits = r.unsigned_at(at, 8);
        std::memcpy(&v, &bits, sizeof v);
      }
      for (long k = 1; k <= 8; ++k) {
        if (v == static_cast<double>(k)) return k;
      }
      return kNotAnOrientation;
    }
    default:
      return kNotAnOrientation;
  }
}

}  // namespace

long from_tiff(const std::uint8_t* data, std::size_t size) {
  // PIL's header prefixes: II*\0 and MM\0* (and the two odd mixed spellings it also takes); BigTIFF is not Exif.
  if (size < 8) return kAbsent;
  const bool little = data[0] == 'I' && data[1] == 'I';
  const bool big = data[0] == 'M' && data[1] == 'M';
  const bool magic = (data[2] == 42 && data[3] == 0) || (data[2] == 0 && data[3] == 42);
  if (!(little || big) || !magic) return kAbsent;
  const TiffReader r(data, size, big);
  const std::uint64_t ifd = r.unsigned_at(4, 4);
  if (!r.has(ifd, 2)) return kAbsent;
  const std::uint64_t entries = r.unsigned_at(static_cast<std::size_t>(ifd), 2);
  // PIL (TiffImagePlugin.ImageFileDirectory_v2.load) keeps the first readable entry of each tag, and skips an
  // out-of-line value once the values read so far add up to more than the block holds; so the other tags'
  // entries matter too.
  std::vector<bool> recorded(0x10000, false);
  std::uint64_t out_of_line_total = 0;
  for (std::uint64_t i = 0; i < entries; ++i) {
    const std::uint64_t entry = ifd + 2 + 12 * i;
    if (!r.has(entry, 12)) break;  // a truncated directory keeps the entries read so far, as PIL's does
    const std::size_t at = static_cast<std::size_t>(entry);
    const unsigned tag = static_cast<unsigned>(r.unsigned_at(at, 2));
    if (recorded[tag]) continue;
    const unsigned type = static_cast<unsigned>(r.unsigned_at(at + 2, 2));
    const int unit = unit_size(type);
    if (unit == 0) continue;  // a type PIL does not load
    const std::uint64_t bytes = r.unsigned_at(at + 4, 4) * static_cast<std::uint64_t>(unit);
    std::uint64_t value_at = entry + 8;
    if (bytes > 4) {
      value_at = r.unsigned_at(at + 8, 4);  // larger values live at an offset from the TIFF header
      out_of_line_total += bytes;
      if (out_of_line_total > size || !r.has(value_at, bytes)) continue;
    }
    if (bytes == 0) continue;  // no value
    recorded[tag] = true;
    if (tag == 0x0112) return first_value(r, type, static_cast<std::size_t>(value_at));
  }
  return kAbsent;
}

long from_xmp(const std::uint8_t* data, std::size_t size) {
  static const char kTag[] = "tiff:Orientation";
  const std::size_t tag = sizeof kTag - 1;
  for (std::size_t i = 0; i + tag < size; ++i) {
    if (std::memcmp(data + i, kTag, tag) != 0) continue;
    std::size_t j = i + tag;
    if (data[j] == '=' && j + 1 < size && data[j + 1] == '"') {
      j += 2;
    } else if (data[j] == '>') {
      j += 1;
    } else {
      continue;
    }
    if (j < size && data[j] >= '0' && data[j] <= '9') return data[j] - '0';
  }
  return 1;
}

Image make_upright(Image image, long orientation) {
  if (orientation < 2 || orientation > 8) return image;
  const int w = image.width, h = image.height;
  const bool swap = orientation >= 5;  // the transpositions and the quarter turns exchange width and height
  Image out(swap ? h : w, swap ? w : h);
  for (int y = 0; y < out.height; ++y) {
    for (int x = 0; x < out.width; ++x) {
      int sx = x, sy = y;
      switch (orientation) {
        case 2: sx = w - 1 - x; break;                      // FLIP_LEFT_RIGHT
        case 3: sx = w - 1 - x; sy = h - 1 - y; break;      // ROTATE_180
        case 4: sy = h - 1 - y; break;                      // FLIP_TOP_BOTTOM
        case 5: sx = y; sy = x; break;                      // TRANSPOSE
        case 6: sx = y; sy = h - 1 - x; break;              // ROTATE_270 (a quarter turn clockwise)
        case 7: sx = w - 1 - y; sy = h - 1 - x; break;      // TRANSVERSE
        default: sx = w - 1 - y; sy = x; break;             // 8: ROTATE_90 (counter-clockwise)
      }
      const std::uint8_t* src = &image.rgb[(static_cast<std::size_t>(sy) * w + sx) * 3];
      std::uint8_t* dst = &out.rgb[(static_cast<std::size_t>(y) * out.width + x) * 3];
      dst[0] = src[0];
      dst[1] = src[1];
      dst[2] = src[2];
    }
  }
  return out;
}

}  // namespace rtdetr::orientation
