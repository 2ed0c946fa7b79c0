// Compiled with -ffp-contract=off: the double expressions must round exactly as numpy's do.
#include "rtdetr/postprocess.hpp"

#include <algorithm>
#include <cmath>
#include <numeric>

namespace rtdetr {

std::vector<std::vector<Detection>> postprocess_raw(const float* logits, const float* boxes, int n, int q, int c,
                                                    const std::vector<std::pair<int, int>>& sizes, double threshold,
                                                    int top_k) {
  const int total = q * c;
  const int k = std::min(top_k > 0 ? top_k : q, total);
  std::vector<std::vector<Detection>> results(n);
  std::vector<double> prob(total);
  std::vector<int> order(total);
  for (int i = 0; i < n; ++i) {
    const float* li = logits + static_cast<std::size_t>(i) * total;
    for (int j = 0; j < total; ++j) prob[j] = 1.0 / (1.0 + std::exp(-static_cast<double>(li[j])));
    std::iota(order.begin(), order.end(), 0);
    // numpy's stable argsort of -p: higher probability first, equal ones by index; NaN (never expected) last.
    const auto before = [&](int a, int b) {
      const double pa = prob[a], pb = prob[b];
      const bool na = std::isnan(pa), nb = std::isnan(pb);
      if (na != nb) return nb;
      if (na) return a < b;
      return pa > pb || (pa == pb && a < b);
    };
    std::partial_sort(order.begin(), order.begin() + k, order.end(), before);

    const double width = sizes[i].first;
    const double height = sizes[i].second;
    const float* bi = boxes + static_cast<std::size_t>(i) * q * 4;
    for (int r = 0; r < k; ++r) {
      const int flat = order[r];
      const double score = prob[flat];
      if (!(score > threshold)) continue;
      const float* b = bi + static_cast<std::size_t>(flat / c) * 4;
      const double cx = b[0], cy = b[1], w = b[2], h = b[3];
      Detection d;
      d.label = flat % c;
      d.score = static_cast<float>(score);
      d.box = {static_cast<float>((cx - w / 2) * width), static_cast<float>((cy - h / 2) * height),
               static_cast<float>((cx + w / 2) * width), static_cast<float>((cy + h / 2) * height)};
      results[i].push_back(d);
    }
  }
  return results;
}

std::vector<Detection> filter_detections(const std::int64_t* labels, const float* boxes, const float* scores, int k,
                                         double threshold) {
  std::vector<Detection> out;
  for (int r = 0; r < k; ++r) {
    if (!(static_cast<double>(scores[r]) > threshold)) continue;
    Detection d;
    d.label = labels[r];
    d.score = scores[r];
    d.box = {boxes[r * 4], boxes[r * 4 + 1], boxes[r * 4 + 2], boxes[r * 4 + 3]};
    out.push_back(d);
  }
  return out;
}

}  // namespace rtdetr
