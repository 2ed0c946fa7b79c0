// rtdetr_host_step: the split artifacts' host step (rtdetr/host_step.hpp) on arrays, to check it against the
// in-graph query selection and detections head from Python. Arrays are raw host-order files (numpy's tofile).
//
//   rtdetr_host_step select B N C D K CELL_LOGITS.f32 CELL_TARGETS.f32 CELL_BOX_LOGITS.f32 OUT_DIR
//       cell_logits [B, N, C], cell_targets [B, N, D], cell_box_logits [B, N, 4]; K queries ->
//       OUT_DIR/index.i64 [B, K], OUT_DIR/query_targets.f32 [B, K, D], OUT_DIR/reference_logits.f32 [B, K, 4]
//   rtdetr_host_step detect B Q C K LOGITS.f32 PRED_BOXES.f32 ORIG_TARGET_SIZES.i64 OUT_DIR
//       logits [B, Q, C], pred_boxes [B, Q, 4], orig_target_sizes [B, 2] (width, height); top-k K ->
//       OUT_DIR/labels.i64 [B, K'], OUT_DIR/boxes.f32 [B, K', 4], OUT_DIR/scores.f32 [B, K'] (K' = min(K, Q * C))
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <exception>
#include <fstream>
#include <string>
#include <vector>

#include "rtdetr/error.hpp"
#include "rtdetr/host_step.hpp"

namespace {

const char* const kUsage =
    "usage: rtdetr_host_step select B N C D K CELL_LOGITS.f32 CELL_TARGETS.f32 CELL_BOX_LOGITS.f32 OUT_DIR\n"
    "       rtdetr_host_step detect B Q C K LOGITS.f32 PRED_BOXES.f32 ORIG_TARGET_SIZES.i64 OUT_DIR\n";

std::int64_t count(const char* text) {
  char* end = nullptr;
  errno = 0;
  const long long v = std::strtoll(text, &end, 10);
  if (*text == '\0' || *end != '\0' || errno != 0 || v < 1 || v > (1LL << 24)) {
    throw rtdetr::Error(std::string("bad dimension '") + text + "' (1..16777216)");
  }
  return v;
}

// A tensor of `shape` from a raw file that must hold exactly its bytes.
rtdetr::Tensor read(const std::string& path, std::vector<std::int64_t> shape, rtdetr::DType dtype) {
  rtdetr::Tensor t = dtype == rtdetr::DType::Float32 ? rtdetr::Tensor::floats(std::move(shape))
                                                     : rtdetr::Tensor::int64s(std::move(shape));
  char* data = dtype == rtdetr::DType::Float32 ? reinterpret_cast<char*>(t.f32.data())
                                               : reinterpret_cast<char*>(t.i64.data());
  const std::size_t bytes = t.elements() * (dtype == rtdetr::DType::Float32 ? sizeof(float) : sizeof(std::int64_t));
  std::ifstream in(path, std::ios::binary | std::ios::ate);
  if (!in) throw rtdetr::Error(path + ": cannot be read");
  if (static_cast<std::size_t>(in.tellg()) != bytes) {
    throw rtdetr::Error(path + ": holds " + std::to_string(static_cast<long long>(in.tellg())) + " bytes, not the " +
                        std::to_string(bytes) + " of its shape");
  }
  in.seekg(0);
  in.read(data, static_cast<std::streamsize>(bytes));
  if (!in) throw rtdetr::Error(path + ": read error");
  return t;
}

void write(const std::string& path, const rtdetr::Tensor& t) {
  std::ofstream out(path, std::ios::binary);
  if (t.dtype == rtdetr::DType::Float32) {
    out.write(reinterpret_cast<const char*>(t.f32.data()), static_cast<std::streamsize>(t.f32.size() * sizeof(float)));
  } else {
    out.write(reinterpret_cast<const char*>(t.i64.data()),
              static_cast<std::streamsize>(t.i64.size() * sizeof(std::int64_t)));
  }
  if (!out) throw rtdetr::Error(path + ": cannot write");
}

}  // namespace

int main(int argc, char** argv) {
  const std::string command = argc > 1 ? argv[1] : "";
  if (!((command == "select" && argc == 11) || (command == "detect" && argc == 10))) {
    std::fputs(kUsage, stderr);
    return 2;
  }
  try {
    using rtdetr::DType;
    const std::string out_dir = std::string(argv[argc - 1]) + "/";
    if (command == "select") {
      const std::int64_t b = count(argv[2]), n = count(argv[3]), c = count(argv[4]), d = count(argv[5]);
      const std::int64_t k = count(argv[6]);
      rtdetr::TensorMap cells;
      cells["cell_logits"] = read(argv[7], {b, n, c}, DType::Float32);
      cells["cell_targets"] = read(argv[8], {b, n, d}, DType::Float32);
      cells["cell_box_logits"] = read(argv[9], {b, n, 4}, DType::Float32);
      cells["memory"] = rtdetr::Tensor::floats({b, 1, 1});  // passed through untouched; not under test here
      // The two calls the split backend makes, in its order.
      const std::vector<std::int64_t> index = rtdetr::host_step::select_cells(cells["cell_logits"], k);
      const rtdetr::TensorMap queries = rtdetr::host_step::gather_queries(cells, index, k);
      rtdetr::Tensor index_tensor = rtdetr::Tensor::int64s({b, k});
      index_tensor.i64 = index;
      write(out_dir + "index.i64", index_tensor);
      write(out_dir + "query_targets.f32", queries.at("query_targets"));
      write(out_dir + "reference_logits.f32", queries.at("reference_logits"));
    } else {
      const std::int64_t b = count(argv[2]), q = count(argv[3]), c = count(argv[4]), k = count(argv[5]);
      const rtdetr::TensorMap found = rtdetr::host_step::top_detections(
          read(argv[6], {b, q, c}, DType::Float32), read(argv[7], {b, q, 4}, DType::Float32),
          read(argv[8], {b, 2}, DType::Int64), k);
      for (const char* name : {"labels", "boxes", "scores"}) {
        write(out_dir + name + (name[0] == 'l' ? ".i64" : ".f32"), found.at(name));
      }
    }
    return 0;
  } catch (const rtdetr::Error& e) {
    std::fprintf(stderr, "rtdetr_host_step: error: %s\n", e.what());
    return 1;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "rtdetr_host_step: error: %s\n", e.what());
    return 1;
  }
}
