// rtdetr_detect: run an exported RT-DETRv2 artifact on images and print the detections.
//
//   rtdetr_detect MODEL.onnx|MODEL.engine|SPLIT.json IMAGE... [--threshold 0.5] [--json] [--threads N] [--top-k K]
//                 [--batch N] [--size HxW]
#include <cerrno>
#include <charconv>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <iostream>
#include <new>
#include <string>
#include <tuple>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

#include "rtdetr/detector.hpp"
#include "rtdetr/error.hpp"

namespace {

const char* const kUsage =
    "usage: rtdetr_detect MODEL IMAGE... [--threshold T] [--json] [--threads N] [--top-k K] [--batch N] [--size HxW]\n"
    "  MODEL      MODEL.onnx (ONNX Runtime) or MODEL.engine/.plan/.trt (TensorRT), with MODEL.json beside it;\n"
    "             or a split artifact (rtdetr-export onnx --split): MODEL.json, or MODEL.encoder/decoder.onnx\n"
    "  IMAGE      PNG or JPEG files\n"
    "  --threshold T  keep detections with score > T (default 0.5)\n"
    "  --json         print one JSON document instead of text\n"
    "  --threads N    ONNX Runtime intra-op threads (default: the runtime's choice)\n"
    "  --top-k K      raw head: candidates before the threshold (default: number of queries)\n"
    "  --batch N      images per run for dynamic-batch artifacts (default 8)\n"
    "  --size HxW     dynamic-size artifacts: input size within the sidecar's range (default: its opt size; N = NxN)\n";

struct UsageError {
  std::string message;
};

double parse_double(const std::string& flag, const std::string& text) {
  char* end = nullptr;
  errno = 0;
  const double v = std::strtod(text.c_str(), &end);
  if (text.empty() || *end != '\0' || errno != 0 || !std::isfinite(v)) {
    throw UsageError{flag + " needs a number, got '" + text + "'"};
  }
  return v;
}

int parse_int(const std::string& flag, const std::string& text, int low) {
  char* end = nullptr;
  errno = 0;
  const long v = std::strtol(text.c_str(), &end, 10);
  if (text.empty() || *end != '\0' || errno != 0 || v < low || v > 1 << 20) {
    throw UsageError{flag + " needs an integer >= " + std::to_string(low) + ", got '" + text + "'"};
  }
  return static_cast<int>(v);
}

// "HxW" or "N" (square) -> (height, width); the range and stride rules are the sidecar's to check.
std::pair<int, int> parse_size(const std::string& flag, const std::string& text) {
  const auto x = text.find_first_of("xX");
  if (x == std::string::npos) {
    const int side = parse_int(flag, text, 1);
    return {side, side};
  }
  return {parse_int(flag, text.substr(0, x), 1), parse_int(flag, text.substr(x + 1), 1)};
}

struct Args {
  std::string model;
  std::vector<std::string> images;
  double threshold = 0.5;
  bool json = false;
  rtdetr::DetectorOptions options;
};

Args parse(int argc, char** argv) {
  Args args;
  args.options.max_batch = 8;
  std::vector<std::string> positional;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    auto value = [&](const std::string& flag) -> std::string {
      if (i + 1 >= argc) throw UsageError{flag + " needs a value"};
      return argv[++i];
    };
    if (a == "--threshold") {
      args.threshold = parse_double(a, value(a));
    } else if (a == "--json") {
      args.json = true;
    } else if (a == "--threads") {
      args.options.backend.threads = parse_int(a, value(a), 1);
    } else if (a == "--top-k") {
      args.options.top_k = parse_int(a, value(a), 1);
    } else if (a == "--batch") {
      args.options.max_batch = parse_int(a, value(a), 1);
    } else if (a == "--size") {
      std::tie(args.options.input_height, args.options.input_width) = parse_size(a, value(a));
    } else if (a == "-h" || a == "--help") {
      std::cout << kUsage;
      std::exit(0);
    } else if (a.size() > 1 && a[0] == '-' && a != "-") {
      throw UsageError{"unknown option " + a};
    } else {
      positional.push_back(a);
    }
  }
  if (positional.size() < 2) throw UsageError{"need a model and at least one image"};
  args.model = positional.front();
  args.images.assign(positional.begin() + 1, positional.end());
  return args;
}

void print_text(const rtdetr::Detector& detector, const std::string& path, const rtdetr::Image& image,
                const std::vector<rtdetr::Detection>& detections) {
  std::printf("%s (%dx%d): %zu detection%s\n", path.c_str(), image.width, image.height, detections.size(),
              detections.size() == 1 ? "" : "s");
  for (const rtdetr::Detection& d : detections) {
    std::printf("  %3lld %-16s %.4f  [%.1f, %.1f, %.1f, %.1f]\n", static_cast<long long>(d.label),
                detector.class_name(d.label).c_str(), d.score, d.box[0], d.box[1], d.box[2], d.box[3]);
  }
}

// JSON string literal. Paths and class names are passed through as UTF-8; bytes that are not UTF-8 become U+FFFD
// rather than an exception, so any file name prints.
std::string quote(const std::string& text) {
  return nlohmann::json(text).dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
}

// Shortest text that reads back as the same float: scores and boxes print exactly what was computed (nlohmann
// would widen a float to double and print its 17 digits). JSON has no NaN or infinity: null keeps it valid.
template <typename T>
std::string number(T value) {
  if (!std::isfinite(value)) return "null";
  char buffer[64];
  const auto result = std::to_chars(buffer, buffer + sizeof buffer, value);
  return std::string(buffer, result.ptr);
}

std::string json_image(const rtdetr::Detector& detector, const std::string& path, const rtdetr::Image& image,
                       const std::vector<rtdetr::Detection>& detections) {
  std::string out = "{\"image\": " + quote(path) + ", \"width\": " + std::to_string(image.width) +
                    ", \"height\": " + std::to_string(image.height) + ", \"detections\": [";
  for (std::size_t i = 0; i < detections.size(); ++i) {
    const rtdetr::Detection& d = detections[i];
    out += (i ? ", " : "") + std::string("{\"label\": ") + std::to_string(d.label) +
           ", \"name\": " + quote(detector.class_name(d.label)) + ", \"score\": " + number(d.score) + ", \"box\": [" +
           number(d.box[0]) + ", " + number(d.box[1]) + ", " + number(d.box[2]) + ", " + number(d.box[3]) + "]}";
  }
  return out + "]}";
}

}  // namespace

int main(int argc, char** argv) {
  Args args;
  try {
    args = parse(argc, argv);
  } catch (const UsageError& e) {
    std::fprintf(stderr, "rtdetr_detect: %s\n%s", e.message.c_str(), kUsage);
    return 2;
  }
  try {
    rtdetr::Detector detector(args.model, args.options);
    // Every image is decoded before the model runs, so that a bad path fails fast.
    std::vector<rtdetr::Image> images;
    for (const std::string& path : args.images) images.push_back(rtdetr::load_image(path));
    const auto results = detector.detect(images, args.threshold);

    if (args.json) {
      const rtdetr::Sidecar& s = detector.sidecar();
      std::string out = "{\"model\": " + quote(args.model) +
                        ", \"backend\": " + quote(detector.backend_name()) +
                        ", \"head\": " + quote(s.head) +
                        ", \"sampler\": " + quote(s.sampler) + ", \"input_size\": [" +
                        std::to_string(s.input_height) + ", " + std::to_string(s.input_width) +
                        "], \"threshold\": " + number(args.threshold) + ", \"images\": [";
      for (std::size_t i = 0; i < images.size(); ++i) {
        out += (i ? ", " : "") + json_image(detector, args.images[i], images[i], results[i]);
      }
      std::printf("%s]}\n", out.c_str());
    } else {
      for (std::size_t i = 0; i < images.size(); ++i) print_text(detector, args.images[i], images[i], results[i]);
    }
    return 0;
  } catch (const rtdetr::Error& e) {
    std::fprintf(stderr, "rtdetr_detect: error: %s\n", e.what());
    return 1;
  } catch (const std::bad_alloc&) {
    std::fprintf(stderr, "rtdetr_detect: error: out of memory\n");
    return 1;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "rtdetr_detect: internal error: %s\n", e.what());
    return 3;
  }
}
