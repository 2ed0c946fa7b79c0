// rtdetr_image: the engines' pre-processing on its own, to check it against the Python pipeline.
//
//   rtdetr_image decode IMAGE OUT.rgb                 decoded RGB8 bytes; prints "WIDTH HEIGHT"
//   rtdetr_image resize IMAGE WIDTH HEIGHT OUT.rgb    PIL-bilinear resize of the decoded image
//   rtdetr_image preprocess IMAGE HEIGHT WIDTH OUT.f32  [1, 3, H, W] float32 (host byte order), as the model sees it
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <exception>
#include <fstream>
#include <string>
#include <vector>

#include "rtdetr/error.hpp"
#include "rtdetr/image.hpp"

namespace {

const char* const kUsage =
    "usage: rtdetr_image decode IMAGE OUT.rgb\n"
    "       rtdetr_image resize IMAGE WIDTH HEIGHT OUT.rgb\n"
    "       rtdetr_image preprocess IMAGE HEIGHT WIDTH OUT.f32\n";

int dimension(const char* text) {
  char* end = nullptr;
  errno = 0;
  const long v = std::strtol(text, &end, 10);
  if (*text == '\0' || *end != '\0' || errno != 0 || v < 1 || v > 65535) {
    throw rtdetr::Error(std::string("bad size '") + text + "' (1..65535)");
  }
  return static_cast<int>(v);
}

void write(const std::string& path, const void* data, std::size_t bytes) {
  std::ofstream out(path, std::ios::binary);
  out.write(static_cast<const char*>(data), static_cast<std::streamsize>(bytes));
  if (!out) throw rtdetr::Error(path + ": cannot write");
}

}  // namespace

int main(int argc, char** argv) {
  const std::string command = argc > 1 ? argv[1] : "";
  const bool ok = (command == "decode" && argc == 4) || ((command == "resize" || command == "preprocess") && argc == 6);
  if (!ok) {
    std::fputs(kUsage, stderr);
    return 2;
  }
  try {
    const rtdetr::Image image = rtdetr::load_image(argv[2]);
    if (command == "decode") {
      write(argv[3], image.rgb.data(), image.rgb.size());
    } else if (command == "resize") {
      const rtdetr::Image out = rtdetr::resize_bilinear(image, dimension(argv[3]), dimension(argv[4]));
      write(argv[5], out.rgb.data(), out.rgb.size());
    } else {
      const int h = dimension(argv[3]), w = dimension(argv[4]);
      std::vector<float> out(static_cast<std::size_t>(3) * h * w);
      rtdetr::preprocess_into(image, h, w, out.data());
      write(argv[5], out.data(), out.size() * sizeof(float));
    }
    std::printf("%d %d\n", image.width, image.height);
    return 0;
  } catch (const rtdetr::Error& e) {
    std::fprintf(stderr, "rtdetr_image: error: %s\n", e.what());
    return 1;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "rtdetr_image: error: %s\n", e.what());
    return 1;
  }
}
