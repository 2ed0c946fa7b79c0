// Model outputs -> detections, the same rule as rtdetr_export.imaging.postprocess.
#pragma once

#include <array>
#include <cstdint>
#include <utility>
#include <vector>

namespace rtdetr {

struct Detection {
  std::int64_t label = 0;
  float score = 0.0f;
  std::array<float, 4> box{};  // x1, y1, x2, y2 in pixels of the original image
};

// Raw head: logits [n, q, c] (pre-sigmoid) and boxes [n, q, 4] (cxcywh, normalised) -> per image, sorted by
// descending score. Sigmoid, box conversion, scaling and the threshold test run in double precision like the
// Python code; ties keep the lower flat index (query * c + class) first. `sizes` are (width, height) of the
// original images; top_k <= 0 means q (the Python default), and it is capped at q * c.
std::vector<std::vector<Detection>> postprocess_raw(const float* logits, const float* boxes, int n, int q, int c,
                                                    const std::vector<std::pair<int, int>>& sizes, double threshold,
                                                    int top_k = 0);

// Detections head: the graph already did top-k and scaling; keep the rows whose score is above the threshold.
std::vector<Detection> filter_detections(const std::int64_t* labels, const float* boxes, const float* scores, int k,
                                         double threshold);

}  // namespace rtdetr
