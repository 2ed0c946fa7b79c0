#include "rtdetr/onnx_metadata.hpp"

#include <cstdint>
#include <fstream>
#include <vector>

#include "rtdetr/error.hpp"

namespace rtdetr {

namespace {

// Protobuf wire types (https://protobuf.dev/programming-guides/encoding/).
enum Wire { kVarint = 0, kFixed64 = 1, kLength = 2, kFixed32 = 5 };
constexpr std::uint64_t kMetadataProps = 14;  // ModelProto.metadata_props (onnx.proto)
// One metadata entry is a key and a JSON value of a few hundred bytes; a cap keeps a damaged length from
// allocating gigabytes.
constexpr std::uint64_t kMaxEntry = 1 << 20;

[[noreturn]] void malformed(const std::string& label, const char* why) {
  throw Error(label + ": not an ONNX model (" + why + ")");
}

// A byte source: the stream at top level, a buffer inside an entry.
struct Cursor {
  const std::uint8_t* data;
  std::size_t size;
  std::size_t at = 0;
};

bool read_varint(std::istream& in, std::uint64_t& value, const std::string& label) {
  value = 0;
  for (int shift = 0; shift < 64; shift += 7) {
    const int ch = in.get();
    if (ch == std::char_traits<char>::eof()) {
      if (shift == 0) return false;  // a clean end between fields
      malformed(label, "truncated varint");
    }
    value |= static_cast<std::uint64_t>(ch & 0x7f) << shift;
    if (!(ch & 0x80)) return true;
  }
  malformed(label, "varint too long");
}

std::uint64_t read_varint(Cursor& c, const std::string& label) {
  std::uint64_t value = 0;
  for (int shift = 0; shift < 64; shift += 7) {
    if (c.at >= c.size) malformed(label, "truncated varint");
    const std::uint8_t byte = c.data[c.at++];
    value |= static_cast<std::uint64_t>(byte & 0x7f) << shift;
    if (!(byte & 0x80)) return value;
  }
  malformed(label, "varint too long");
}

// StringStringEntryProto: key = 1, value = 2; other fields are skipped by their wire type.
void read_entry(Cursor c, std::map<std::string, std::string>& out, const std::string& label) {
  std::string key, value;
  while (c.at < c.size) {
    const std::uint64_t tag = read_varint(c, label);
    const std::uint64_t field = tag >> 3;
    std::uint64_t skip = 0;
    switch (tag & 7) {
      case kVarint: read_varint(c, label); continue;
      case kFixed64: skip = 8; break;
      case kFixed32: skip = 4; break;
      case kLength: skip = read_varint(c, label); break;
      default: malformed(label, "unknown wire type in metadata");
    }
    if (skip > c.size - c.at) malformed(label, "metadata entry past its end");
    if ((tag & 7) == kLength && (field == 1 || field == 2)) {
      (field == 1 ? key : value).assign(reinterpret_cast<const char*>(c.data + c.at), static_cast<std::size_t>(skip));
    }
    c.at += static_cast<std::size_t>(skip);
  }
  out[key] = value;
}

}  // namespace

std::map<std::string, std::string> read_onnx_metadata(std::istream& in, const std::string& label) {
  in.seekg(0, std::ios::end);
  const std::streamoff end = in.tellg();
  in.seekg(0, std::ios::beg);
  if (!in || end < 0) malformed(label, "cannot be read");
  const auto size = static_cast<std::uint64_t>(end);
  std::map<std::string, std::string> out;
  std::uint64_t tag = 0;
  std::vector<std::uint8_t> entry;
  while (read_varint(in, tag, label)) {
    const std::uint64_t field = tag >> 3;
    if (field == 0) malformed(label, "field number 0");
    std::uint64_t length = 0;
    switch (tag & 7) {
      case kVarint:
        if (!read_varint(in, length, label)) malformed(label, "truncated varint");
        continue;
      case kFixed64: length = 8; break;
      case kFixed32: length = 4; break;
      case kLength:
        if (!read_varint(in, length, label)) malformed(label, "truncated length");
        break;
      default: malformed(label, "unknown wire type");
    }
    const std::streamoff position = in.tellg();
    if (position < 0) malformed(label, "cannot be read");
    const auto here = static_cast<std::uint64_t>(position);
    if (length > size - here) malformed(label, "field past the end of the file");
    if ((tag & 7) == kLength && field == kMetadataProps) {
      if (length > kMaxEntry) malformed(label, "metadata entry too large");
      entry.resize(static_cast<std::size_t>(length));
      in.read(reinterpret_cast<char*>(entry.data()), static_cast<std::streamsize>(length));
      if (!in) malformed(label, "truncated metadata entry");
      read_entry(Cursor{entry.data(), entry.size()}, out, label);
    } else {
      in.seekg(static_cast<std::streamoff>(here + length), std::ios::beg);  // the graph and its weights: skipped
      if (!in) malformed(label, "cannot be read");
    }
  }
  return out;
}

std::map<std::string, std::string> read_onnx_metadata_file(const std::string& path) {
  std::ifstream file(path, std::ios::binary);
  if (!file) throw Error(path + ": cannot be read");
  return read_onnx_metadata(file, path);
}

}  // namespace rtdetr
