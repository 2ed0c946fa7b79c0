// The orientation a JPEG's Exif (or XMP) metadata asks for, and the transposition that makes the pixels upright:
// what PIL's ImageOps.exif_transpose(Image.open(path)) does, which the Python loader applies.
#pragma once

#include <cstddef>
#include <cstdint>

#include "rtdetr/image.hpp"

namespace rtdetr::orientation {

constexpr long kAbsent = -1;

// Orientation tag (0x0112) of IFD0 in a TIFF structure (an Exif block without its "Exif\0\0" prefix), read as PIL
// reads it: the first readable entry wins, any numeric type, its first value. kAbsent when there is no readable
// entry (PIL then looks at XMP); 0 for an entry whose value is no orientation (PIL then does nothing).
long from_tiff(const std::uint8_t* data, std::size_t size);

// tiff:Orientation="N" or <tiff:Orientation>N</...> in an XMP packet (PIL's fallback when Exif has no tag); 1 if none.
long from_xmp(const std::uint8_t* data, std::size_t size);

// PIL's Image.transpose for orientations 2..8 (FLIP_LEFT_RIGHT, ROTATE_180, FLIP_TOP_BOTTOM, TRANSPOSE,
// ROTATE_270, TRANSVERSE, ROTATE_90); any other value leaves the image as it is.
Image make_upright(Image image, long orientation);

}  // namespace rtdetr::orientation
