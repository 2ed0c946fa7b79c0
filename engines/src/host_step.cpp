// Compiled with -ffp-contract=off: the box corners and the sigmoid must round exactly as numpy's operations do
// (a fused multiply-add in cx - 0.5 * w would change the last bit).
#include "rtdetr/host_step.hpp"

#include <algorithm>
#include <cmath>
#include <limits>
#include <numeric>
#include <string>

#include "rtdetr/error.hpp"

namespace rtdetr {
namespace host_step {

namespace {

void need_rank(const Tensor& t, const char* name, std::size_t rank, DType dtype) {
  if (t.shape.size() != rank || t.dtype != dtype) {
    throw Error(std::string("host step: ") + name + " should be a rank-" + std::to_string(rank) + " " +
                (dtype == DType::Float32 ? "float32" : "int64") + " tensor");
  }
  for (const std::int64_t d : t.shape) {
    if (d < 0) throw Error(std::string("host step: ") + name + " has a negative dimension");
  }
}

const Tensor& need(const TensorMap& tensors, const char* name) {
  const auto it = tensors.find(name);
  if (it == tensors.end()) throw Error(std::string("host step: graph 1 produced no ") + name);
  return it->second;
}

}  // namespace

std::vector<std::int64_t> top_k_indices(const float* scores, std::int64_t rows, std::int64_t n, std::int64_t k) {
  k = std::max<std::int64_t>(0, std::min(k, n));
  std::vector<std::int64_t> out(static_cast<std::size_t>(rows * k));
  std::vector<std::int64_t> order(static_cast<std::size_t>(n));
  for (std::int64_t r = 0; r < rows; ++r) {
    const float* s = scores + r * n;
    std::iota(order.begin(), order.end(), 0);
    // The rule of ONNX TopK and of numpy's stable argsort of -scores: higher first, equal ones by index. NaN (not
    // expected from a model) goes last, where numpy puts it, so that the order stays a strict weak ordering.
    const auto before = [s](std::int64_t a, std::int64_t b) {
      const float sa = s[a], sb = s[b];
      const bool na = std::isnan(sa), nb = std::isnan(sb);
      if (na != nb) return nb;
      if (na) return a < b;
      return sa > sb || (sa == sb && a < b);
    };
    std::partial_sort(order.begin(), order.begin() + k, order.end(), before);
    std::copy(order.begin(), order.begin() + k, out.begin() + r * k);
  }
  return out;
}

std::vector<std::int64_t> select_cells(const Tensor& cell_logits, std::int64_t num_queries) {
  need_rank(cell_logits, "cell_logits", 3, DType::Float32);
  const std::int64_t b = cell_logits.shape[0], n = cell_logits.shape[1], c = cell_logits.shape[2];
  if (c < 1) throw Error("host step: cell_logits has no classes");
  if (n < num_queries) {
    throw Error("host step: graph 1 gives " + std::to_string(n) + " cells, fewer than the " +
                std::to_string(num_queries) + " queries graph 2 decodes");
  }
  // Each cell's best class logit; numpy's max propagates NaN, and so does this.
  std::vector<float> best(static_cast<std::size_t>(b * n));
  for (std::int64_t i = 0; i < b * n; ++i) {
    const float* row = cell_logits.f32.data() + i * c;
    float m = row[0];
    for (std::int64_t j = 1; j < c && !std::isnan(m); ++j) m = std::isnan(row[j]) || row[j] > m ? row[j] : m;
    best[static_cast<std::size_t>(i)] = m;
  }
  return top_k_indices(best.data(), b, n, num_queries);
}

Tensor gather_rows(const Tensor& x, const std::vector<std::int64_t>& index, std::int64_t k) {
  need_rank(x, "a gathered tensor", 3, DType::Float32);
  const std::int64_t b = x.shape[0], n = x.shape[1], f = x.shape[2];
  if (static_cast<std::int64_t>(index.size()) != b * k) throw Error("host step: index does not match the batch");
  Tensor out = Tensor::floats({b, k, f});
  for (std::int64_t i = 0; i < b; ++i) {
    for (std::int64_t j = 0; j < k; ++j) {
      const std::int64_t row = index[static_cast<std::size_t>(i * k + j)];
      if (row < 0 || row >= n) throw Error("host step: index out of range");
      std::copy_n(x.f32.data() + (i * n + row) * f, f, out.f32.data() + (i * k + j) * f);
    }
  }
  return out;
}

TensorMap gather_queries(const TensorMap& cells, const std::vector<std::int64_t>& index, std::int64_t k) {
  TensorMap out;
  out["memory"] = need(cells, "memory");
  out["query_targets"] = gather_rows(need(cells, "cell_targets"), index, k);
  out["reference_logits"] = gather_rows(need(cells, "cell_box_logits"), index, k);
  return out;
}

TensorMap top_detections(const Tensor& logits, const Tensor& pred_boxes, const Tensor& orig_target_sizes,
                         std::int64_t top_k) {
  need_rank(logits, "logits", 3, DType::Float32);
  need_rank(pred_boxes, "pred_boxes", 3, DType::Float32);
  need_rank(orig_target_sizes, "orig_target_sizes", 2, DType::Int64);
  const std::int64_t b = logits.shape[0], q = logits.shape[1], c = logits.shape[2];
  if (pred_boxes.shape != std::vector<std::int64_t>{b, q, 4} ||
      orig_target_sizes.shape != std::vector<std::int64_t>{b, 2}) {
    throw Error("host step: logits, pred_boxes and orig_target_sizes disagree in size");
  }
  const std::int64_t flat = q * c;
  const std::int64_t k = std::max<std::int64_t>(0, std::min(top_k, flat));  // numpy's [:, :top_k] keeps at most q*c
  // The probabilities as postprocess computes them (sigmoid in double), then float32 as the Python host step casts
  // them: the top-k runs on the float32 values, so scores that round to the same float32 tie.
  std::vector<float> probs(static_cast<std::size_t>(b * flat));
  for (std::size_t i = 0; i < probs.size(); ++i) {
    probs[i] = static_cast<float>(1.0 / (1.0 + std::exp(-static_cast<double>(logits.f32[i]))));
  }
  const std::vector<std::int64_t> index = top_k_indices(probs.data(), b, flat, k);
  TensorMap out;
  Tensor labels = Tensor::int64s({b, k});
  Tensor boxes = Tensor::floats({b, k, 4});
  Tensor scores = Tensor::floats({b, k});
  for (std::int64_t i = 0; i < b; ++i) {
    // float32 throughout, in numpy's order: corners from centre and half size, then times the size as float32.
    const float width = static_cast<float>(orig_target_sizes.i64[static_cast<std::size_t>(i * 2)]);
    const float height = static_cast<float>(orig_target_sizes.i64[static_cast<std::size_t>(i * 2 + 1)]);
    for (std::int64_t j = 0; j < k; ++j) {
      const std::int64_t at = index[static_cast<std::size_t>(i * k + j)];
      const std::int64_t query = at / c;
      const float* box = pred_boxes.f32.data() + (i * q + query) * 4;
      const float cx = box[0], cy = box[1], w = box[2], h = box[3];
      float* corners = boxes.f32.data() + (i * k + j) * 4;
      corners[0] = (cx - 0.5f * w) * width;
      corners[1] = (cy - 0.5f * h) * height;
      corners[2] = (cx + 0.5f * w) * width;
      corners[3] = (cy + 0.5f * h) * height;
      labels.i64[static_cast<std::size_t>(i * k + j)] = at - query * c;
      scores.f32[static_cast<std::size_t>(i * k + j)] = probs[static_cast<std::size_t>(i * flat + at)];
    }
  }
  out["labels"] = std::move(labels);
  out["boxes"] = std::move(boxes);
  out["scores"] = std::move(scores);
  return out;
}

}  // namespace host_step
}  // namespace rtdetr
