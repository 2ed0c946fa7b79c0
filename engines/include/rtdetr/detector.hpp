// Images in, detections out: the sidecar picks the input size, the head and the class names; the file
// extension picks the backend (.onnx: ONNX Runtime; .engine/.plan/.trt: TensorRT).
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "rtdetr/backend.hpp"
#include "rtdetr/image.hpp"
#include "rtdetr/postprocess.hpp"
#include "rtdetr/sidecar.hpp"

namespace rtdetr {

struct DetectorOptions {
  BackendOptions backend;
  int top_k = 0;      // raw head only: candidates kept before the threshold; 0 = number of queries
  int max_batch = 0;  // dynamic-batch artifacts: images per run (0 = all at once, within the engine's limit)
  // Dynamic-size artifacts: the input size to run at, within the sidecar's range (0 = its opt size).
  int input_height = 0;
  int input_width = 0;
};

class Detector {
 public:
  explicit Detector(const std::string& model_path, const DetectorOptions& options = {});

  // One result per image, each sorted by descending score, scores strictly above `threshold`.
  std::vector<std::vector<Detection>> detect(const std::vector<Image>& images, double threshold = 0.5);
  std::vector<Detection> detect(const Image& image, double threshold = 0.5);

  const Sidecar& sidecar() const { return sidecar_; }
  std::string backend_name() const { return backend_->name(); }
  // Class name for a label, or the number as text for labels outside the sidecar's list.
  std::string class_name(std::int64_t label) const;

 private:
  std::vector<std::vector<Detection>> detect_all(const std::vector<const Image*>& images, double threshold);
  std::vector<std::vector<Detection>> run_batch(const std::vector<const Image*>& images, std::int64_t batch,
                                                double threshold);

  Sidecar sidecar_;
  DetectorOptions options_;
  std::unique_ptr<Backend> backend_;
};

}  // namespace rtdetr
