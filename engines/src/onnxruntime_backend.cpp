// ONNX Runtime backend (C++ API over the C API; CPU execution provider).
#include <onnxruntime_cxx_api.h>

#include <sstream>

#include "rtdetr/backend.hpp"
#include "rtdetr/error.hpp"

namespace rtdetr {

namespace {

std::string first_line(const std::string& text) {
  const auto end = text.find('\n');
  std::string line = text.substr(0, end);
  return line.size() > 200 ? line.substr(0, 200) + "..." : line;
}

std::string shape_text(const std::vector<std::int64_t>& shape) {
  std::ostringstream out;
  out << '[';
  for (std::size_t i = 0; i < shape.size(); ++i) out << (i ? ", " : "") << shape[i];
  out << ']';
  return out.str();
}

// The sidecar is only trusted as far as the graph agrees with it: same tensor names, ranks and fixed dimensions.
void check_against_sidecar(const std::string& path, const std::vector<TensorInfo>& declared,
                           const std::vector<std::string>& names, const std::vector<std::vector<std::int64_t>>& shapes,
                           const char* kind) {
  if (declared.size() != names.size()) {
    throw Error(path + ": the model has " + std::to_string(names.size()) + " " + kind + " but its sidecar lists " +
                std::to_string(declared.size()) + " (is the .json from another export?)");
  }
  for (std::size_t i = 0; i < names.size(); ++i) {
    if (declared[i].name != names[i]) {
      throw Error(path + ": " + kind + " " + names[i] + " is not in the sidecar (is the .json from another export?)");
    }
    const auto& want = declared[i].shape;
    const auto& got = shapes[i];
    // A dimension left symbolic on either side (dynamic batch, or one the exporter could not name) matches any.
    bool same = want.size() == got.size();
    for (std::size_t d = 0; same && d < got.size(); ++d) same = want[d] < 0 || got[d] < 0 || want[d] == got[d];
    if (!same) {
      throw Error(path + ": " + kind + " " + names[i] + " is " + shape_text(got) + " but the sidecar says " +
                  shape_text(want));
    }
  }
}

class OnnxRuntimeBackend : public Backend {
 public:
  OnnxRuntimeBackend(const std::string& path, const Sidecar& sidecar, const BackendOptions& options)
      : env_(ORT_LOGGING_LEVEL_FATAL, "rtdetr") {  // failures surface as exceptions, reported in one line
    Ort::SessionOptions session_options;
    if (options.threads > 0) session_options.SetIntraOpNumThreads(options.threads);
    try {
      session_ = Ort::Session(env_, path.c_str(), session_options);
    } catch (const Ort::Exception& e) {
      throw Error(path + ": ONNX Runtime cannot load it (" + first_line(e.what()) + ")");
    }
    Ort::AllocatorWithDefaultOptions allocator;
    std::vector<std::vector<std::int64_t>> in_shapes, out_shapes;
    for (std::size_t i = 0; i < session_.GetInputCount(); ++i) {
      input_names_.push_back(session_.GetInputNameAllocated(i, allocator).get());
      in_shapes.push_back(session_.GetInputTypeInfo(i).GetTensorTypeAndShapeInfo().GetShape());
    }
    for (std::size_t i = 0; i < session_.GetOutputCount(); ++i) {
      output_names_.push_back(session_.GetOutputNameAllocated(i, allocator).get());
      out_shapes.push_back(session_.GetOutputTypeInfo(i).GetTensorTypeAndShapeInfo().GetShape());
    }
    check_against_sidecar(path, sidecar.inputs, input_names_, in_shapes, "inputs");
    check_against_sidecar(path, sidecar.outputs, output_names_, out_shapes, "outputs");
  }

  std::string name() const override { return "onnxruntime"; }

  TensorMap run(const TensorMap& inputs) override {
    const Ort::MemoryInfo memory = Ort::MemoryInfo::CreateCpu(OrtArenaAllocator, OrtMemTypeDefault);
    std::vector<Ort::Value> values;
    std::vector<const char*> in_names, out_names;
    for (const std::string& name : input_names_) {
      const auto it = inputs.find(name);
      if (it == inputs.end()) throw Error("no value for model input " + name);
      // ORT only reads the buffers; CreateTensor takes non-const pointers for its generic interface.
      Tensor& t = const_cast<Tensor&>(it->second);
      if (t.dtype == DType::Float32) {
        values.push_back(
            Ort::Value::CreateTensor<float>(memory, t.f32.data(), t.f32.size(), t.shape.data(), t.shape.size()));
      } else {
        values.push_back(Ort::Value::CreateTensor<std::int64_t>(memory, t.i64.data(), t.i64.size(), t.shape.data(),
                                                               t.shape.size()));
      }
      in_names.push_back(name.c_str());
    }
    for (const std::string& name : output_names_) out_names.push_back(name.c_str());

    std::vector<Ort::Value> results;
    try {
      results = session_.Run(Ort::RunOptions{nullptr}, in_names.data(), values.data(), values.size(), out_names.data(),
                             out_names.size());
    } catch (const Ort::Exception& e) {
      throw Error("ONNX Runtime failed to run the model (" + first_line(e.what()) + ")");
    }

    TensorMap out;
    for (std::size_t i = 0; i < results.size(); ++i) {
      const auto info = results[i].GetTensorTypeAndShapeInfo();
      Tensor t;
      t.shape = info.GetShape();
      const std::size_t count = info.GetElementCount();
      switch (info.GetElementType()) {
        case ONNX_TENSOR_ELEMENT_DATA_TYPE_FLOAT: {
          const float* p = results[i].GetTensorData<float>();
          t.dtype = DType::Float32;
          t.f32.assign(p, p + count);
          break;
        }
        case ONNX_TENSOR_ELEMENT_DATA_TYPE_INT64: {
          const std::int64_t* p = results[i].GetTensorData<std::int64_t>();
          t.dtype = DType::Int64;
          t.i64.assign(p, p + count);
          break;
        }
        default:
          throw Error("output " + output_names_[i] + " has an element type outside the tensor contract");
      }
      out[output_names_[i]] = std::move(t);
    }
    return out;
  }

 private:
  Ort::Env env_;
  Ort::Session session_{nullptr};
  std::vector<std::string> input_names_;
  std::vector<std::string> output_names_;
};

}  // namespace

bool has_onnxruntime() { return true; }

std::unique_ptr<Backend> make_onnxruntime_backend(const std::string& path, const Sidecar& sidecar,
                                                  const BackendOptions& options) {
  return std::make_unique<OnnxRuntimeBackend>(path, sidecar, options);
}

}  // namespace rtdetr
