#include "rtdetr/detector.hpp"

#include <algorithm>
#include <cctype>
#include <filesystem>

#include "rtdetr/error.hpp"
#include "rtdetr/split.hpp"

namespace rtdetr {

Tensor Tensor::floats(std::vector<std::int64_t> shape) {
  Tensor t;
  t.dtype = DType::Float32;
  t.shape = std::move(shape);
  t.f32.assign(t.elements(), 0.0f);
  return t;
}

Tensor Tensor::int64s(std::vector<std::int64_t> shape) {
  Tensor t;
  t.dtype = DType::Int64;
  t.shape = std::move(shape);
  t.i64.assign(t.elements(), 0);
  return t;
}

std::size_t Tensor::elements() const {
  std::size_t n = 1;
  for (const std::int64_t d : shape) n *= static_cast<std::size_t>(d);
  return n;
}

namespace {

std::string lower_extension(const std::string& path) {
  std::string ext = std::filesystem::path(path).extension().string();
  std::transform(ext.begin(), ext.end(), ext.begin(),
                 [](unsigned char ch) { return static_cast<char>(std::tolower(ch)); });
  return ext;
}

const Tensor& output(const TensorMap& outputs, const char* name, std::size_t rank, std::int64_t batch) {
  const auto it = outputs.find(name);
  if (it == outputs.end()) throw Error(std::string("the model produced no output named ") + name);
  const Tensor& t = it->second;
  if (t.shape.size() != rank || t.shape[0] != batch) {
    throw Error(std::string("output ") + name + " has an unexpected shape");
  }
  return t;
}

}  // namespace

Detector::Detector(const std::string& model_path, const DetectorOptions& options) : options_(options) {
  std::error_code ec;
  if (!std::filesystem::is_regular_file(model_path, ec)) throw Error(model_path + ": no such model file");
  // A split artifact is opened by its sidecar or either graph; every other file by the one sidecar-path rule.
  const std::string split_sidecar = split_sidecar_for(model_path);
  sidecar_ = split_sidecar.empty() ? Sidecar::load_for(model_path) : Sidecar::load(split_sidecar);
  if (!split_sidecar.empty() && !sidecar_.split) {
    throw Error(split_sidecar + ": not the sidecar of a split artifact; run the .onnx or engine file it describes");
  }
  if (split_sidecar.empty() && sidecar_.split) {
    throw Error(sidecar_.path + ": the sidecar of a split artifact; run it (or either of its graphs) instead");
  }
  sidecar_.check_contract();
  // Every run feeds [N, 3, input_height, input_width]; TensorRT gets that shape set before each run.
  if (options.input_height > 0 || options.input_width > 0) {
    sidecar_.use_input_size(options.input_height, options.input_width);
  }
  const std::string ext = lower_extension(model_path);
  if (sidecar_.split) {
    backend_ = make_split_backend(sidecar_, options.backend);
  } else if (ext == ".onnx") {
    backend_ = make_onnxruntime_backend(model_path, sidecar_, options.backend);
  } else if (ext == ".engine" || ext == ".plan" || ext == ".trt") {
    backend_ = make_tensorrt_backend(model_path, sidecar_, options.backend);
  } else {
    throw Error(model_path + ": unknown model type (expected .onnx, or .engine/.plan/.trt for TensorRT)");
  }
}

std::string Detector::class_name(std::int64_t label) const {
  if (label >= 0 && label < static_cast<std::int64_t>(sidecar_.classes.size())) return sidecar_.classes[label];
  return std::to_string(label);
}

std::vector<Detection> Detector::detect(const Image& image, double threshold) {
  return detect_all({&image}, threshold).front();
}

std::vector<std::vector<Detection>> Detector::detect(const std::vector<Image>& images, double threshold) {
  std::vector<const Image*> pointers;
  for (const Image& image : images) pointers.push_back(&image);
  return detect_all(pointers, threshold);
}

std::vector<std::vector<Detection>> Detector::detect_all(const std::vector<const Image*>& images, double threshold) {
  std::int64_t batch = sidecar_.fixed_batch();
  if (batch == 0) {
    batch = static_cast<std::int64_t>(images.size());
    if (options_.max_batch > 0) batch = std::min<std::int64_t>(batch, options_.max_batch);
    if (backend_->max_batch() > 0) batch = std::min(batch, backend_->max_batch());
    batch = std::max<std::int64_t>(batch, 1);
  }
  std::vector<std::vector<Detection>> results;
  for (std::size_t start = 0; start < images.size(); start += static_cast<std::size_t>(batch)) {
    const std::size_t end = std::min(images.size(), start + static_cast<std::size_t>(batch));
    const std::vector<const Image*> chunk(images.begin() + static_cast<std::ptrdiff_t>(start),
                                          images.begin() + static_cast<std::ptrdiff_t>(end));
    for (auto& r : run_batch(chunk, batch, threshold)) results.push_back(std::move(r));
  }
  return results;
}

std::vector<std::vector<Detection>> Detector::run_batch(const std::vector<const Image*>& images, std::int64_t batch,
                                                        double threshold) {
  const int h = sidecar_.input_height, w = sidecar_.input_width;
  const int n = static_cast<int>(images.size());
  // A fixed-batch artifact gets its last run padded with blank images, whose results are dropped.
  if (sidecar_.fixed_batch() == 0) batch = n;
  TensorMap inputs;
  Tensor pixels = Tensor::floats({batch, 3, h, w});
  const std::size_t per_image = static_cast<std::size_t>(3) * h * w;
  for (int i = 0; i < n; ++i) {
    if (images[i]->width <= 0 || images[i]->height <= 0) throw Error("empty image");
    preprocess_into(*images[i], h, w, pixels.f32.data() + i * per_image);
  }
  inputs["images"] = std::move(pixels);
  if (sidecar_.head == "detections") {
    Tensor sizes = Tensor::int64s({batch, 2});
    for (std::int64_t i = 0; i < batch; ++i) {
      sizes.i64[i * 2] = i < n ? images[i]->width : w;
      sizes.i64[i * 2 + 1] = i < n ? images[i]->height : h;
    }
    inputs["orig_target_sizes"] = std::move(sizes);
  }

  const TensorMap outputs = backend_->run(inputs);
  std::vector<std::vector<Detection>> results;
  if (sidecar_.head == "raw") {
    const Tensor& logits = output(outputs, "logits", 3, batch);
    const Tensor& boxes = output(outputs, "pred_boxes", 3, batch);
    const int q = static_cast<int>(logits.shape[1]), c = static_cast<int>(logits.shape[2]);
    if (boxes.shape[1] != q || boxes.shape[2] != 4) throw Error("pred_boxes does not match logits");
    std::vector<std::pair<int, int>> sizes;
    for (const Image* image : images) sizes.emplace_back(image->width, image->height);
    results = postprocess_raw(logits.f32.data(), boxes.f32.data(), n, q, c, sizes, threshold, options_.top_k);
  } else {
    const Tensor& labels = output(outputs, "labels", 2, batch);
    const Tensor& boxes = output(outputs, "boxes", 3, batch);
    const Tensor& scores = output(outputs, "scores", 2, batch);
    const int k = static_cast<int>(labels.shape[1]);
    if (scores.shape[1] != k || boxes.shape[1] != k || boxes.shape[2] != 4) {
      throw Error("labels, boxes and scores disagree in size");
    }
    for (int i = 0; i < n; ++i) {
      results.push_back(filter_detections(labels.i64.data() + static_cast<std::size_t>(i) * k,
                                          boxes.f32.data() + static_cast<std::size_t>(i) * k * 4,
                                          scores.f32.data() + static_cast<std::size_t>(i) * k, k, threshold));
    }
  }
  return results;
}

}  // namespace rtdetr
