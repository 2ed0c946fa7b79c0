// TensorRT backend (TensorRT 10.x C++ API: name-based I/O, setInputShape / setTensorAddress / enqueueV3).
//
// Compiled only when CMake finds TensorRT and the CUDA toolkit. Host tensors go to the device, the engine runs on
// one stream, results come back; fp16 or int32 engine I/O is converted here so the caller only sees the tensor
// contract's float32 / int64.
#include <NvInferRuntime.h>
#include <cuda_runtime_api.h>

#include <cstring>
#include <fstream>
#include <iterator>
#include <map>
#include <memory>
#include <set>

#include "rtdetr/backend.hpp"
#include "rtdetr/error.hpp"

namespace rtdetr {

namespace {

// Keeps the last error TensorRT reported so that a failed call can say why; warnings and info stay quiet.
class Logger : public nvinfer1::ILogger {
 public:
  void log(Severity severity, const char* message) noexcept override {
    if (severity <= Severity::kERROR) last_error = message;
  }
  std::string last_error;
};

void check_cuda(cudaError_t status, const char* what) {
  if (status != cudaSuccess) throw Error(std::string("CUDA error in ") + what + ": " + cudaGetErrorString(status));
}

// Grows on demand and keeps its allocation between runs of the same batch size.
class DeviceBuffer {
 public:
  DeviceBuffer() = default;
  DeviceBuffer(const DeviceBuffer&) = delete;
  DeviceBuffer& operator=(const DeviceBuffer&) = delete;
  DeviceBuffer(DeviceBuffer&& other) noexcept : ptr_(other.ptr_), bytes_(other.bytes_) {
    other.ptr_ = nullptr;
    other.bytes_ = 0;
  }
  DeviceBuffer& operator=(DeviceBuffer&&) = delete;
  ~DeviceBuffer() {
    if (ptr_) cudaFree(ptr_);
  }
  void* reserve(std::size_t bytes) {
    if (bytes > bytes_) {
      if (ptr_) check_cuda(cudaFree(ptr_), "cudaFree");
      ptr_ = nullptr;
      bytes_ = 0;
      check_cuda(cudaMalloc(&ptr_, bytes), "cudaMalloc");
      bytes_ = bytes;
    }
    return ptr_;
  }

 private:
  void* ptr_ = nullptr;
  std::size_t bytes_ = 0;
};

// IEEE binary16 <-> binary32, for engines built with fp16 I/O.
std::uint16_t to_half(float value) {
  std::uint32_t f;
  std::memcpy(&f, &value, 4);
  const std::uint32_t sign = (f >> 16) & 0x8000u;
  const std::int32_t exponent = static_cast<std::int32_t>((f >> 23) & 0xFF) - 127 + 15;
  std::uint32_t mantissa = f & 0x7FFFFFu;
  if (((f >> 23) & 0xFF) == 0xFF) return static_cast<std::uint16_t>(sign | 0x7C00u | (mantissa ? 0x200u : 0u));
  if (exponent >= 31) return static_cast<std::uint16_t>(sign | 0x7C00u);
  if (exponent <= 0) {
    if (exponent < -10) return static_cast<std::uint16_t>(sign);
    mantissa |= 0x800000u;
    const int shift = 14 - exponent;
    std::uint32_t half = mantissa >> shift;
    const std::uint32_t rest = mantissa & ((1u << shift) - 1);
    const std::uint32_t midpoint = 1u << (shift - 1);
    if (rest > midpoint || (rest == midpoint && (half & 1u))) ++half;
    return static_cast<std::uint16_t>(sign | half);
  }
  std::uint32_t half = (static_cast<std::uint32_t>(exponent) << 10) | (mantissa >> 13);
  const std::uint32_t rest = mantissa & 0x1FFFu;
  if (rest > 0x1000u || (rest == 0x1000u && (half & 1u))) ++half;  // a carry into the exponent is still right
  return static_cast<std::uint16_t>(sign | half);
}

float from_half(std::uint16_t h) {
  const std::uint32_t sign = static_cast<std::uint32_t>(h & 0x8000u) << 16;
  std::uint32_t exponent = (h >> 10) & 0x1Fu;
  std::uint32_t mantissa = h & 0x3FFu;
  std::uint32_t f;
  if (exponent == 0x1F) {
    f = sign | 0x7F800000u | (mantissa << 13);
  } else if (exponent != 0) {
    f = sign | ((exponent + 127 - 15) << 23) | (mantissa << 13);
  } else if (mantissa == 0) {
    f = sign;
  } else {
    exponent = 127 - 15 + 1;
    while (!(mantissa & 0x400u)) {
      mantissa <<= 1;
      --exponent;
    }
    f = sign | (exponent << 23) | ((mantissa & 0x3FFu) << 13);
  }
  float out;
  std::memcpy(&out, &f, 4);
  return out;
}

std::size_t element_size(nvinfer1::DataType type) {
  switch (type) {
    case nvinfer1::DataType::kFLOAT: return 4;
    case nvinfer1::DataType::kHALF: return 2;
    case nvinfer1::DataType::kINT32: return 4;
    case nvinfer1::DataType::kINT64: return 8;
    default: return 0;
  }
}

class Stream {
 public:
  Stream() { check_cuda(cudaStreamCreate(&stream_), "cudaStreamCreate"); }
  Stream(const Stream&) = delete;
  Stream& operator=(const Stream&) = delete;
  ~Stream() { cudaStreamDestroy(stream_); }
  cudaStream_t get() const { return stream_; }

 private:
  cudaStream_t stream_ = nullptr;
};

struct IoTensor {
  std::string name;
  bool is_input = false;
  nvinfer1::DataType type = nvinfer1::DataType::kFLOAT;
  std::vector<std::uint8_t> host;  // staging in the engine's element type
  DeviceBuffer device;
};

class TensorRtBackend : public Backend {
 public:
  TensorRtBackend(const std::string& path, const Sidecar& sidecar, const BackendOptions& options) {
    std::ifstream file(path, std::ios::binary);
    if (!file) throw Error(path + ": cannot open the engine file");
    const std::vector<char> blob((std::istreambuf_iterator<char>(file)), std::istreambuf_iterator<char>());
    check_cuda(cudaSetDevice(options.device), "cudaSetDevice");
    runtime_.reset(nvinfer1::createInferRuntime(logger_));
    if (!runtime_) throw Error("TensorRT: cannot create a runtime (" + logger_.last_error + ")");
    engine_.reset(runtime_->deserializeCudaEngine(blob.data(), blob.size()));
    if (!engine_) {
      throw Error(path + ": TensorRT cannot load it; engines only run with the TensorRT version and GPU they were "
                  "built for (" + logger_.last_error + ")");
    }
    context_.reset(engine_->createExecutionContext());
    if (!context_) throw Error(path + ": TensorRT cannot create an execution context (" + logger_.last_error + ")");
    stream_ = std::make_unique<Stream>();

    std::set<std::string> declared;
    for (const TensorInfo& t : sidecar.inputs) declared.insert(t.name);
    for (const TensorInfo& t : sidecar.outputs) declared.insert(t.name);
    const std::int32_t count = engine_->getNbIOTensors();
    tensors_.resize(static_cast<std::size_t>(count));
    for (std::int32_t i = 0; i < count; ++i) {
      IoTensor& io = tensors_[static_cast<std::size_t>(i)];
      io.name = engine_->getIOTensorName(i);
      io.is_input = engine_->getTensorIOMode(io.name.c_str()) == nvinfer1::TensorIOMode::kINPUT;
      io.type = engine_->getTensorDataType(io.name.c_str());
      if (!declared.count(io.name)) {
        throw Error(path + ": engine tensor " + io.name + " is not in the sidecar (is the .json from another export?)");
      }
      if (element_size(io.type) == 0) {
        throw Error(path + ": engine tensor " + io.name + " has an unsupported data type");
      }
    }
    if (static_cast<std::size_t>(count) != declared.size()) {
      throw Error(path + ": the engine has " + std::to_string(count) + " inputs and outputs, the sidecar lists " +
                  std::to_string(declared.size()));
    }
    const nvinfer1::Dims images = engine_->getTensorShape("images");
    if (images.nbDims > 0 && images.d[0] < 0) {
      max_batch_ = engine_->getProfileShape("images", 0, nvinfer1::OptProfileSelector::kMAX).d[0];
    }
  }

  std::string name() const override { return "tensorrt"; }
  std::int64_t max_batch() const override { return max_batch_; }

  TensorMap run(const TensorMap& inputs) override {
    for (IoTensor& io : tensors_) {
      if (!io.is_input) continue;
      const auto it = inputs.find(io.name);
      if (it == inputs.end()) throw Error("no value for engine input " + io.name);
      const Tensor& t = it->second;
      nvinfer1::Dims dims{};
      if (t.shape.size() > static_cast<std::size_t>(nvinfer1::Dims::MAX_DIMS)) throw Error("input rank too large");
      dims.nbDims = static_cast<std::int32_t>(t.shape.size());
      for (std::size_t d = 0; d < t.shape.size(); ++d) dims.d[d] = t.shape[d];
      if (!context_->setInputShape(io.name.c_str(), dims)) {
        throw Error("TensorRT rejected the shape of " + io.name + " (" + logger_.last_error + ")");
      }
      stage_input(t, io);
      void* device = io.device.reserve(io.host.size());
      check_cuda(cudaMemcpyAsync(device, io.host.data(), io.host.size(), cudaMemcpyHostToDevice, stream_->get()),
                 "cudaMemcpyAsync");
      if (!context_->setTensorAddress(io.name.c_str(), device)) {
        throw Error("TensorRT rejected the address of input " + io.name + " (" + logger_.last_error + ")");
      }
    }
    std::map<std::string, std::vector<std::int64_t>> shapes;
    for (IoTensor& io : tensors_) {
      if (io.is_input) continue;
      const nvinfer1::Dims dims = context_->getTensorShape(io.name.c_str());
      std::vector<std::int64_t> shape;
      std::size_t count = 1;
      for (std::int32_t d = 0; d < dims.nbDims; ++d) {
        // -1 after every input shape is set means a data-dependent output: it needs an output allocator,
        // which our graphs never require (their outputs are [batch, queries or top-k, ...]).
        if (dims.d[d] < 0) throw Error("engine output " + io.name + " has a data-dependent shape; not supported");
        shape.push_back(dims.d[d]);
        count *= static_cast<std::size_t>(dims.d[d]);
      }
      io.host.resize(count * element_size(io.type));
      if (!context_->setTensorAddress(io.name.c_str(), io.device.reserve(io.host.size()))) {
        throw Error("TensorRT rejected the address of output " + io.name + " (" + logger_.last_error + ")");
      }
      shapes[io.name] = shape;
    }
    if (!context_->enqueueV3(stream_->get())) {
      throw Error("TensorRT failed to run the engine (" + logger_.last_error + ")");
    }
    for (IoTensor& io : tensors_) {
      if (io.is_input) continue;
      check_cuda(cudaMemcpyAsync(io.host.data(), io.device.reserve(io.host.size()), io.host.size(),
                                 cudaMemcpyDeviceToHost, stream_->get()),
                 "cudaMemcpyAsync");
    }
    check_cuda(cudaStreamSynchronize(stream_->get()), "cudaStreamSynchronize");

    TensorMap out;
    for (IoTensor& io : tensors_) {
      if (!io.is_input) out[io.name] = unstage_output(io, shapes[io.name]);
    }
    return out;
  }

 private:
  static void stage_input(const Tensor& t, IoTensor& io) {
    const std::size_t n = t.elements();
    io.host.resize(n * element_size(io.type));
    if (t.dtype == DType::Float32 && io.type == nvinfer1::DataType::kFLOAT) {
      std::memcpy(io.host.data(), t.f32.data(), n * 4);
    } else if (t.dtype == DType::Float32 && io.type == nvinfer1::DataType::kHALF) {
      for (std::size_t i = 0; i < n; ++i) {
        const std::uint16_t h = to_half(t.f32[i]);
        std::memcpy(io.host.data() + i * 2, &h, 2);
      }
    } else if (t.dtype == DType::Int64 && io.type == nvinfer1::DataType::kINT64) {
      std::memcpy(io.host.data(), t.i64.data(), n * 8);
    } else if (t.dtype == DType::Int64 && io.type == nvinfer1::DataType::kINT32) {
      for (std::size_t i = 0; i < n; ++i) {
        const std::int32_t v = static_cast<std::int32_t>(t.i64[i]);
        std::memcpy(io.host.data() + i * 4, &v, 4);
      }
    } else {
      throw Error("engine input " + io.name + " has a data type outside the tensor contract");
    }
  }

  static Tensor unstage_output(const IoTensor& io, const std::vector<std::int64_t>& shape) {
    Tensor t;
    t.shape = shape;
    const std::size_t n = t.elements();
    switch (io.type) {
      case nvinfer1::DataType::kFLOAT:
        t.dtype = DType::Float32;
        t.f32.resize(n);
        std::memcpy(t.f32.data(), io.host.data(), n * 4);
        break;
      case nvinfer1::DataType::kHALF:
        t.dtype = DType::Float32;
        t.f32.resize(n);
        for (std::size_t i = 0; i < n; ++i) {
          std::uint16_t h;
          std::memcpy(&h, io.host.data() + i * 2, 2);
          t.f32[i] = from_half(h);
        }
        break;
      case nvinfer1::DataType::kINT64:
        t.dtype = DType::Int64;
        t.i64.resize(n);
        std::memcpy(t.i64.data(), io.host.data(), n * 8);
        break;
      case nvinfer1::DataType::kINT32:
        t.dtype = DType::Int64;
        t.i64.resize(n);
        for (std::size_t i = 0; i < n; ++i) {
          std::int32_t v;
          std::memcpy(&v, io.host.data() + i * 4, 4);
          t.i64[i] = v;
        }
        break;
      default:
        throw Error("engine output " + io.name + " has a data type outside the tensor contract");
    }
    return t;
  }

  // Members are destroyed in reverse order: buffers and stream, then context, engine, runtime, and last the
  // logger that all of them may still call.
  Logger logger_;
  std::unique_ptr<nvinfer1::IRuntime> runtime_;
  std::unique_ptr<nvinfer1::ICudaEngine> engine_;
  std::unique_ptr<nvinfer1::IExecutionContext> context_;
  std::unique_ptr<Stream> stream_;
  std::vector<IoTensor> tensors_;
  std::int64_t max_batch_ = 0;
};

}  // namespace

bool has_tensorrt() { return true; }

std::unique_ptr<Backend> make_tensorrt_backend(const std::string& path, const Sidecar& sidecar,
                                               const BackendOptions& options) {
  return std::make_unique<TensorRtBackend>(path, sidecar, options);
}

}  // namespace rtdetr
