// The host step of a split artifact (rtdetr-export onnx --split), as rtdetr_export/imaging/host_step.py computes
// it: query selection between the two graphs (the top-k cells by their best class logit, and the rows of those
// cells), and the detections head's top-k over the raw outputs. Split graphs leave these out because edge runtimes
// lack TopK and GatherElements; the engines do them here, with ONNX TopK's tie rule (equal scores: lower index
// first), so that a split artifact selects what the single graph selects.
#pragma once

#include <cstdint>
#include <vector>

#include "rtdetr/backend.hpp"

namespace rtdetr {
namespace host_step {

// The host step version this code implements; a split sidecar records the one it was exported for
// (host_step.version, rtdetr_export.imaging.host_step.HOST_STEP_VERSION) and must name the same.
constexpr int kVersion = 1;

// Indices [rows, k] of each row's k highest `scores` [rows, n], best first; equal scores keep the lower index
// first; NaN sorts last (as numpy's stable argsort of -scores, which the Python host step uses).
std::vector<std::int64_t> top_k_indices(const float* scores, std::int64_t rows, std::int64_t n, std::int64_t k);

// Query selection: cell_logits [B, N, C] -> the indices [B, num_queries] of the cells with the highest best class
// logit, best first. Throws rtdetr::Error when the tensor is not [B, N, C] or N < num_queries.
std::vector<std::int64_t> select_cells(const Tensor& cell_logits, std::int64_t num_queries);

// x [B, N, F] and index [B, k] -> x[b, index[b, i], :] as [B, k, F].
Tensor gather_rows(const Tensor& x, const std::vector<std::int64_t>& index, std::int64_t k);

// Graph 1's outputs (memory, cell_targets, cell_logits, cell_box_logits) and the selected cells [B, k] -> graph 2's
// inputs: memory as it is, query_targets and reference_logits gathered from the selected rows.
TensorMap gather_queries(const TensorMap& cells, const std::vector<std::int64_t>& index, std::int64_t k);

// The detections head on the raw outputs: logits [B, Q, C], pred_boxes [B, Q, 4] (cxcywh in [0, 1]),
// orig_target_sizes [B, 2] (width, height) -> labels [B, K] int64, boxes [B, K, 4] xyxy pixels, scores [B, K]
// float32, best first, ties on the lower flat index (query * C + class).
TensorMap top_detections(const Tensor& logits, const Tensor& pred_boxes, const Tensor& orig_target_sizes,
                         std::int64_t top_k);

}  // namespace host_step
}  // namespace rtdetr
