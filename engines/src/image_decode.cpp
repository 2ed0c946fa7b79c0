// PNG and JPEG decoding to the pixels PIL's Image.open(path).convert("RGB") gives, JPEGs turned upright first as
// ImageOps.exif_transpose turns them (orientation.cpp).
//
// libpng and libjpeg report errors by longjmp. Every function that calls setjmp below touches only plain data
// (no C++ objects are created between setjmp and a possible longjmp), and C++ containers are sized in between
// those calls by the callers.
#include <csetjmp>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <string>
#include <utility>
#include <vector>

#include <jpeglib.h>
#include <jerror.h>  // after jpeglib.h: warning codes such as JWRN_JPEG_EOF
#include <png.h>

#include "rtdetr/error.hpp"
#include "orientation.hpp"
#include "rtdetr/image.hpp"

namespace rtdetr {

namespace {

constexpr std::size_t kMessageSize = 256;

void check_size(std::uint64_t width, std::uint64_t height, std::uint64_t max_pixels, const std::string& label) {
  if (width == 0 || height == 0) throw Error(label + ": image has no pixels");
  if (width * height > max_pixels) {
    throw Error(label + ": image too large (" + std::to_string(width) + "x" + std::to_string(height) + ")");
  }
}

// ---- PNG ---------------------------------------------------------------------------------------------------

struct PngSource {
  const std::uint8_t* data;
  std::size_t size;
  std::size_t pos;
  char message[kMessageSize];
};

void png_read_memory(png_structp png, png_bytep out, png_size_t n) {
  auto* src = static_cast<PngSource*>(png_get_io_ptr(png));
  if (n > src->size - src->pos) png_error(png, "truncated file");
  std::memcpy(out, src->data + src->pos, n);
  src->pos += n;
}

void png_fail(png_structp png, png_const_charp message) {
  auto* src = static_cast<PngSource*>(png_get_error_ptr(png));
  std::snprintf(src->message, kMessageSize, "%s", message);
  png_longjmp(png, 1);
}

void png_ignore_warning(png_structp, png_const_charp) {}

struct PngHeader {
  png_uint_32 width;
  png_uint_32 height;
  int bit_depth;
  int color_type;
  bool grey16;  // 16-bit greyscale: PIL opens it as mode "I;16", whose RGB conversion clips at 255
};

// Reads the header and sets up transformations so that rows come out as 8-bit RGB (or raw 16-bit grey).
bool png_begin(png_structp png, png_infop info, PngHeader* header) {
  if (setjmp(png_jmpbuf(png))) return false;
  png_read_info(png, info);
  png_get_IHDR(png, info, &header->width, &header->height, &header->bit_depth, &header->color_type, nullptr,
               nullptr, nullptr);
  header->grey16 = header->color_type == PNG_COLOR_TYPE_GRAY && header->bit_depth == 16;
  if (!header->grey16) {
    if (header->color_type == PNG_COLOR_TYPE_PALETTE) png_set_palette_to_rgb(png);
    if (header->color_type == PNG_COLOR_TYPE_GRAY && header->bit_depth < 8) png_set_expand_gray_1_2_4_to_8(png);
    // PIL keeps the most significant byte of 16-bit samples (no rounding): that is strip, not scale.
    if (header->bit_depth == 16) png_set_strip_16(png);
    // convert("RGB") drops alpha and ignores tRNS without compositing over a background.
    png_set_strip_alpha(png);
    if (header->color_type == PNG_COLOR_TYPE_GRAY || header->color_type == PNG_COLOR_TYPE_GRAY_ALPHA) {
      png_set_gray_to_rgb(png);
    }
  }
  png_set_interlace_handling(png);
  png_read_update_info(png, info);
  const png_size_t expected = header->grey16 ? header->width * 2 : header->width * 3;
  if (png_get_rowbytes(png, info) != expected) png_error(png, "unexpected pixel layout after conversion");
  return true;
}

bool png_rows(png_structp png, png_bytepp rows) {
  if (setjmp(png_jmpbuf(png))) return false;
  png_read_image(png, rows);
  png_read_end(png, nullptr);
  return true;
}

Image decode_png(const std::uint8_t* data, std::size_t size, std::uint64_t max_pixels, const std::string& label) {
  PngSource src{data, size, 0, {0}};
  png_structp png = png_create_read_struct(PNG_LIBPNG_VER_STRING, &src, png_fail, png_ignore_warning);
  png_infop info = png ? png_create_info_struct(png) : nullptr;
  struct Guard {
    png_structp* png;
    png_infop* info;
    ~Guard() { png_destroy_read_struct(png, info, nullptr); }
  } guard{&png, &info};
  if (!png || !info) throw Error(label + ": out of memory while decoding PNG");
  png_set_read_fn(png, &src, png_read_memory);

  PngHeader header{};
  if (!png_begin(png, info, &header)) throw Error(label + ": damaged PNG (" + src.message + ")");
  check_size(header.width, header.height, max_pixels, label);

  Image image(static_cast<int>(header.width), static_cast<int>(header.height));
  std::vector<std::uint8_t> grey16;  // big-endian sample pairs, as stored in the file
  std::vector<png_bytep> rows(header.height);
  if (header.grey16) {
    grey16.resize(static_cast<std::size_t>(header.width) * header.height * 2);
    for (png_uint_32 y = 0; y < header.height; ++y) rows[y] = &grey16[static_cast<std::size_t>(y) * header.width * 2];
  } else {
    for (png_uint_32 y = 0; y < header.height; ++y) {
      rows[y] = &image.rgb[static_cast<std::size_t>(y) * header.width * 3];
    }
  }
  if (!png_rows(png, rows.data())) throw Error(label + ": damaged PNG (" + src.message + ")");
  if (header.grey16) {
    for (std::size_t i = 0; i < grey16.size() / 2; ++i) {
      const unsigned sample = (static_cast<unsigned>(grey16[2 * i]) << 8) | grey16[2 * i + 1];
      const std::uint8_t v = sample > 255 ? 255 : static_cast<std::uint8_t>(sample);
      image.rgb[i * 3] = image.rgb[i * 3 + 1] = image.rgb[i * 3 + 2] = v;
    }
  }
  return image;
}

// ---- JPEG --------------------------------------------------------------------------------------------------

struct JpegErrors {
  jpeg_error_mgr pub;  // first member: libjpeg hands back a pointer to it
  std::jmp_buf jump;
  char message[kMessageSize];
  bool truncated;
};

void jpeg_fail(j_common_ptr cinfo) {
  auto* err = reinterpret_cast<JpegErrors*>(cinfo->err);
  (*cinfo->err->format_message)(cinfo, err->message);
  std::longjmp(err->jump, 1);
}

// libjpeg only warns about a file that ends early and fills the rest with grey; PIL reports it as an error.
void jpeg_message(j_common_ptr cinfo, int level) {
  auto* err = reinterpret_cast<JpegErrors*>(cinfo->err);
  if (level < 0 && cinfo->err->msg_code == JWRN_JPEG_EOF) err->truncated = true;
}

struct JpegHeader {
  JDIMENSION width;
  JDIMENSION height;
  int components;
  bool unsupported_colour;
};

// Reads the markers up to the first scan. APP1 segments (Exif, XMP) are kept for the orientation.
bool jpeg_header(jpeg_decompress_struct* cinfo, JpegErrors* err, const std::uint8_t* data, std::size_t size,
                 JpegHeader* header) {
  if (setjmp(err->jump)) return false;
  jpeg_create_decompress(cinfo);
  jpeg_mem_src(cinfo, data, static_cast<unsigned long>(size));
  jpeg_save_markers(cinfo, JPEG_APP0 + 1, 0xFFFF);
  jpeg_read_header(cinfo, TRUE);
  header->width = cinfo->image_width;
  header->height = cinfo->image_height;
  if (cinfo->jpeg_color_space == JCS_GRAYSCALE) {
    cinfo->out_color_space = JCS_GRAYSCALE;
  } else if (cinfo->jpeg_color_space == JCS_YCbCr || cinfo->jpeg_color_space == JCS_RGB) {
    cinfo->out_color_space = JCS_RGB;
  } else {
    header->unsupported_colour = true;
  }
  return true;
}

// Called only after the size check: a progressive JPEG allocates its whole coefficient buffer here.
bool jpeg_start(jpeg_decompress_struct* cinfo, JpegErrors* err, JpegHeader* header) {
  if (setjmp(err->jump)) return false;
  // libjpeg's defaults (islow IDCT, fancy upsampling) are what PIL uses when it is not asked for a draft.
  jpeg_start_decompress(cinfo);
  header->width = cinfo->output_width;
  header->height = cinfo->output_height;
  header->components = cinfo->output_components;
  return true;
}

// The orientation PIL's exif_transpose reads from the saved APP1 segments: JpegImagePlugin joins every Exif
// segment (the first whole, later ones without their "Exif\0\0"), Image.Exif.load drops one or two leading
// "Exif\0\0", and Image.getexif falls back to the last XMP packet when Exif has no orientation entry.
long jpeg_orientation(const jpeg_decompress_struct& cinfo) {
  static const char kExif[] = "Exif\0\0";  // 6 bytes
  static const char kXmp[] = "http://ns.adobe.com/xap/1.0/";  // then a NUL
  std::vector<std::uint8_t> exif;
  const std::uint8_t* xmp = nullptr;
  std::size_t xmp_size = 0;
  for (jpeg_saved_marker_ptr m = cinfo.marker_list; m; m = m->next) {
    if (m->marker != JPEG_APP0 + 1) continue;
    const std::uint8_t* d = m->data;
    const std::size_t n = m->data_length;
    if (n >= 6 && std::memcmp(d, kExif, 6) == 0) {
      exif.insert(exif.end(), exif.empty() ? d : d + 6, d + n);
    } else if (n >= sizeof kXmp && std::memcmp(d, kXmp, sizeof kXmp) == 0) {
      xmp = d + sizeof kXmp;
      xmp_size = n - sizeof kXmp;
    }
  }
  std::size_t start = 0;
  for (int i = 0; i < 2 && exif.size() - start >= 6 && std::memcmp(exif.data() + start, kExif, 6) == 0; ++i) start += 6;
  long value = orientation::from_tiff(exif.data() + start, exif.size() - start);
  if (value == orientation::kAbsent) value = xmp ? orientation::from_xmp(xmp, xmp_size) : 1;
  return value;
}

bool jpeg_rows(jpeg_decompress_struct* cinfo, JpegErrors* err, JSAMPROW* rows, JDIMENSION height) {
  if (setjmp(err->jump)) return false;
  while (cinfo->output_scanline < height) {
    jpeg_read_scanlines(cinfo, rows + cinfo->output_scanline, height - cinfo->output_scanline);
  }
  jpeg_finish_decompress(cinfo);
  return true;
}

Image decode_jpeg(const std::uint8_t* data, std::size_t size, std::uint64_t max_pixels, const std::string& label) {
  jpeg_decompress_struct cinfo{};
  JpegErrors err{};
  cinfo.err = jpeg_std_error(&err.pub);
  err.pub.error_exit = jpeg_fail;
  err.pub.emit_message = jpeg_message;
  struct Guard {
    jpeg_decompress_struct* cinfo;
    ~Guard() { jpeg_destroy_decompress(cinfo); }
  } guard{&cinfo};

  JpegHeader header{};
  if (!jpeg_header(&cinfo, &err, data, size, &header)) throw Error(label + ": damaged JPEG (" + err.message + ")");
  if (header.unsupported_colour) {
    throw Error(label + ": CMYK/YCCK JPEG is not supported (convert it to RGB first)");
  }
  check_size(header.width, header.height, max_pixels, label);
  // Read now: jpeg_finish_decompress releases the saved markers.
  const long exif_orientation = jpeg_orientation(cinfo);
  if (!jpeg_start(&cinfo, &err, &header)) throw Error(label + ": damaged JPEG (" + err.message + ")");

  Image image(static_cast<int>(header.width), static_cast<int>(header.height));
  const std::size_t row_bytes = static_cast<std::size_t>(header.width) * header.components;
  std::vector<std::uint8_t> grey;
  std::uint8_t* target = image.rgb.data();
  if (header.components == 1) {
    grey.resize(row_bytes * header.height);
    target = grey.data();
  } else if (header.components != 3) {
    throw Error(label + ": JPEG with " + std::to_string(header.components) + " channels is not supported");
  }
  std::vector<JSAMPROW> rows(header.height);
  for (JDIMENSION y = 0; y < header.height; ++y) rows[y] = target + y * row_bytes;
  if (!jpeg_rows(&cinfo, &err, rows.data(), header.height)) throw Error(label + ": damaged JPEG (" + err.message + ")");
  if (err.truncated) throw Error(label + ": damaged JPEG (file ends before the image data does)");
  if (header.components == 1) {
    for (std::size_t i = 0; i < grey.size(); ++i) {
      image.rgb[i * 3] = image.rgb[i * 3 + 1] = image.rgb[i * 3 + 2] = grey[i];
    }
  }
  return orientation::make_upright(std::move(image), exif_orientation);
}

}  // namespace

Image decode_image(const std::uint8_t* data, std::size_t size, const std::string& label, std::uint64_t max_pixels) {
  static const std::uint8_t kPng[8] = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1A, '\n'};
  if (size >= 8 && std::memcmp(data, kPng, 8) == 0) return decode_png(data, size, max_pixels, label);
  if (size >= 3 && data[0] == 0xFF && data[1] == 0xD8 && data[2] == 0xFF) {
    return decode_jpeg(data, size, max_pixels, label);
  }
  throw Error(label + ": not a PNG or JPEG image");
}

Image load_image(const std::string& path) {
  std::error_code ec;
  if (!std::filesystem::is_regular_file(path, ec)) throw Error(path + ": no such image file");
  std::ifstream file(path, std::ios::binary);
  if (!file) throw Error(path + ": cannot open the file");
  std::vector<std::uint8_t> bytes((std::istreambuf_iterator<char>(file)), std::istreambuf_iterator<char>());
  if (file.bad()) throw Error(path + ": cannot read the file");
  return decode_image(bytes.data(), bytes.size(), path);
}

}  // namespace rtdetr
