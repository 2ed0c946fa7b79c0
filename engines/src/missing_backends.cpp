// Factories for the backends a build leaves out, so that a model of that kind fails with a clear message.
#include "rtdetr/backend.hpp"
#include "rtdetr/error.hpp"

namespace rtdetr {

#ifndef RTDETR_WITH_ONNXRUNTIME
bool has_onnxruntime() { return false; }
std::unique_ptr<Backend> make_onnxruntime_backend(const std::string& path, const Sidecar&, const BackendOptions&) {
  throw Error(path + ": this build has no ONNX Runtime backend (configure with ONNXRUNTIME_ROOT)");
}
#endif

#ifndef RTDETR_WITH_TENSORRT
bool has_tensorrt() { return false; }
std::unique_ptr<Backend> make_tensorrt_backend(const std::string& path, const Sidecar&, const BackendOptions&) {
  throw Error(path + ": this build has no TensorRT backend (configure with -DTensorRT_ROOT=... on a machine with "
              "TensorRT and CUDA)");
}
#endif

}  // namespace rtdetr
