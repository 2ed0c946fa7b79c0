#include "rtdetr/sidecar.hpp"

#include <fstream>
#include <sstream>
#include <tuple>
#include <utility>

#include "rtdetr/error.hpp"
#include "rtdetr/json.hpp"

namespace rtdetr {

namespace {

const char* const kFormatPrefix = "rtdetr-export/";

std::vector<TensorInfo> read_tensors(const json::Value& list, const char* what) {
  std::vector<TensorInfo> out;
  for (const json::Value& item : list.as_array(what)) {
    TensorInfo info;
    const json::Value* name = item.find("name");
    const json::Value* shape = item.find("shape");
    const json::Value* dtype = item.find("dtype");
    if (!name || !shape || !dtype) throw Error(std::string(what) + " entries need name, shape and dtype");
    info.name = name->as_string("io name");
    info.dtype = dtype->as_string("io dtype");
    for (const json::Value& dim : shape->as_array("io shape")) {
      // The exporter writes symbolic dimensions by name ("batch") and fixed ones as integers.
      info.shape.push_back(dim.is_number() ? dim.as_int("io dimension") : -1);
    }
    out.push_back(std::move(info));
  }
  return out;
}

std::string size_text(int height, int width) { return std::to_string(height) + "x" + std::to_string(width); }

// [height, width] of input_size or of one end of input_size_range.
std::pair<int, int> read_size(const json::Value& value, const char* what) {
  const auto& hw = value.as_array(what);
  if (hw.size() != 2) throw Error(std::string(what) + " should be [height, width]");
  const int height = static_cast<int>(hw[0].as_int(what));
  const int width = static_cast<int>(hw[1].as_int(what));
  if (height <= 0 || width <= 0 || height > 16384 || width > 16384) throw Error(std::string(what) + " out of range");
  return {height, width};
}

std::string directory_part(const std::string& path) {
  const auto slash = path.find_last_of('/');
  return slash == std::string::npos ? std::string() : path.substr(0, slash + 1);
}

}  // namespace

void Sidecar::use_input_size(int height, int width) {
  if (!dynamic_size()) {
    if (height == input_height && width == input_width) return;
    throw Error(path + ": the model takes " + size_text(input_height, input_width) +
                " images only (a fixed-size export); drop the size or export with --dynamic-size");
  }
  if (height % 32 || width % 32) {
    throw Error("image size " + size_text(height, width) + ": height and width must be multiples of 32");
  }
  if (height < min_height || height > max_height || width < min_width || width > max_width) {
    throw Error("image size " + size_text(height, width) + " is outside the model's range " +
                size_text(min_height, min_width) + ".." + size_text(max_height, max_width) + " (opt " +
                size_text(input_height, input_width) + ")");
  }
  input_height = height;
  input_width = width;
}

std::int64_t Sidecar::fixed_batch() const {
  if (inputs.empty() || inputs.front().shape.empty()) return 0;
  return inputs.front().shape.front() > 0 ? inputs.front().shape.front() : 0;
}

const TensorInfo* Sidecar::input(const std::string& name) const {
  for (const TensorInfo& t : inputs) {
    if (t.name == name) return &t;
  }
  return nullptr;
}

const TensorInfo* Sidecar::output(const std::string& name) const {
  for (const TensorInfo& t : outputs) {
    if (t.name == name) return &t;
  }
  return nullptr;
}

std::string Sidecar::path_for(const std::string& model_path) {
  // The one rule, as rtdetr_export.artifact.sidecar_path: MODEL.onnx -> MODEL.json; any other artifact (a
  // TensorRT engine) -> MODEL.engine.json, so an engine and the ONNX file it was built from can share a name.
  const bool is_onnx = model_path.size() >= 5 && model_path.compare(model_path.size() - 5, 5, ".onnx") == 0;
  if (!is_onnx) return model_path + ".json";
  const std::string dir = directory_part(model_path);
  std::string base = model_path.substr(dir.size());
  // pathlib's with_suffix: a leading dot (".onnx") is a name, not a suffix.
  if (base.size() > 5) base.resize(base.size() - 5);
  return dir + base + ".json";
}

Sidecar Sidecar::load_for(const std::string& model_path) { return load(path_for(model_path)); }

Sidecar Sidecar::load(const std::string& sidecar_path) {
  std::ifstream file(sidecar_path, std::ios::binary);
  if (!file) {
    throw Error(sidecar_path + ": no sidecar next to the model; use an artifact exported by `rtdetr-export onnx` "
                "together with its .json file");
  }
  std::stringstream buffer;
  buffer << file.rdbuf();
  json::Value root;
  try {
    root = json::Value::parse(buffer.str());
  } catch (const Error& e) {
    throw Error(sidecar_path + ": not a readable sidecar (" + e.what() + ")");
  }
  const json::Value* format = root.find("format");
  if (!format || !format->is_string() || format->as_string("format").rfind(kFormatPrefix, 0) != 0) {
    throw Error(sidecar_path + ": not an rtdetr-export sidecar (no \"format\": \"rtdetr-export/...\")");
  }

  Sidecar out;
  out.path = sidecar_path;
  try {
    out.format = format->as_string("format");
    const json::Value* size = root.find("input_size");
    const json::Value* classes = root.find("classes");
    const json::Value* precision = root.find("precision");
    const json::Value* method = root.find("method");
    const json::Value* io = root.find("io");
    const json::Value* exp = root.find("export");
    if (!size || !classes || !io || !exp) throw Error("missing input_size, classes, io or export");
    std::tie(out.input_height, out.input_width) = read_size(*size, "input_size");
    // Schema 3: a dynamic-size file's range ({"min", "opt", "max"}); absent (older sidecars) or null when fixed.
    const json::Value* range = root.find("input_size_range");
    if (range && !range->is_null()) {
      const json::Value* low = range->find("min");
      const json::Value* high = range->find("max");
      if (!low || !high) throw Error("input_size_range needs min and max");
      std::tie(out.min_height, out.min_width) = read_size(*low, "input_size_range.min");
      std::tie(out.max_height, out.max_width) = read_size(*high, "input_size_range.max");
      if (out.min_height > out.input_height || out.input_height > out.max_height ||
          out.min_width > out.input_width || out.input_width > out.max_width) {
        throw Error("input_size is outside input_size_range");
      }
    }
    for (const json::Value& name : classes->as_array("classes")) out.classes.push_back(name.as_string("class name"));
    out.precision = precision && precision->is_string() ? precision->as_string("precision") : "fp32";
    out.method = method && method->is_string() ? method->as_string("method") : "";
    const json::Value* sampler = root.find("sampler");
    if (sampler && sampler->is_string()) {
      out.sampler = sampler->as_string("sampler");
    } else if (!out.method.empty()) {
      out.sampler = out.method == "discrete" ? "gather-nearest" : "gridsample-bilinear";
    }
    const json::Value* head = exp->find("head");
    if (!head) throw Error("export.head is missing");
    out.head = head->as_string("export.head");
    if (out.head != "raw" && out.head != "detections") throw Error("unknown export.head \"" + out.head + "\"");
    const json::Value* top_k = exp->find("top_k");
    out.top_k = top_k && !top_k->is_null() ? static_cast<int>(top_k->as_int("export.top_k")) : 0;
    const json::Value* ins = io->find("inputs");
    const json::Value* outs = io->find("outputs");
    if (!ins || !outs) throw Error("io needs inputs and outputs");
    out.inputs = read_tensors(*ins, "io.inputs");
    out.outputs = read_tensors(*outs, "io.outputs");
  } catch (const Error& e) {
    throw Error(sidecar_path + ": incomplete sidecar (" + e.what() + ")");
  }
  return out;
}

}  // namespace rtdetr
