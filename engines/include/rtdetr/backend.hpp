// One small interface per runtime: named host tensors in, named host tensors out.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "rtdetr/sidecar.hpp"

namespace rtdetr {

enum class DType { Float32, Int64 };

// A host tensor. Backends convert to and from whatever the runtime holds (fp16 I/O, int32 indices) so that the
// rest of the code sees only the two types of the tensor contract.
struct Tensor {
  DType dtype = DType::Float32;
  std::vector<std::int64_t> shape;
  std::vector<float> f32;
  std::vector<std::int64_t> i64;

  static Tensor floats(std::vector<std::int64_t> shape);
  static Tensor int64s(std::vector<std::int64_t> shape);
  std::size_t elements() const;
};

using TensorMap = std::map<std::string, Tensor>;

class Backend {
 public:
  virtual ~Backend() = default;
  virtual std::string name() const = 0;
  // Runs the model once on a batch; inputs are named as in the sidecar's io.inputs.
  virtual TensorMap run(const TensorMap& inputs) = 0;
  // Largest batch the artifact accepts when its batch axis is dynamic (0: no limit known).
  virtual std::int64_t max_batch() const { return 0; }
};

struct BackendOptions {
  int threads = 0;  // ONNX Runtime intra-op threads; 0 lets the runtime decide (as the Python runner does)
  int device = 0;   // TensorRT: CUDA device index
};

// Both check the artifact's inputs and outputs against the sidecar and throw rtdetr::Error on a mismatch.
std::unique_ptr<Backend> make_onnxruntime_backend(const std::string& path, const Sidecar& sidecar,
                                                  const BackendOptions& options);
std::unique_ptr<Backend> make_tensorrt_backend(const std::string& path, const Sidecar& sidecar,
                                               const BackendOptions& options);

// Which backends this build contains.
bool has_onnxruntime();
bool has_tensorrt();

}  // namespace rtdetr
