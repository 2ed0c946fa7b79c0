// The JSON sidecar that `rtdetr-export` writes next to every artifact (MODEL.onnx -> MODEL.json; an engine: MODEL.engine.json).
//
// It is the engines' only source of truth about a model: input size, output contract (head), class names and
// tensor names/shapes. A TensorRT engine file carries no metadata of its own, so both backends rely on it.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace rtdetr {

struct TensorInfo {
  std::string name;
  std::vector<std::int64_t> shape;  // -1 where the export left a symbolic dimension (dynamic batch, height, width)
  std::string dtype;                // numpy spelling: "float32", "int64", ...
};

// One graph of a split artifact (format rtdetr-export/onnx-split): its file name beside the sidecar, the sha256 it
// was written with, and its own inputs and outputs.
struct SplitGraphInfo {
  std::string file;
  std::string sha256;
  std::vector<TensorInfo> inputs;
  std::vector<TensorInfo> outputs;
};

struct Sidecar {
  std::string path;     // where it was read from
  std::string format;   // "rtdetr-export/onnx", ...
  int input_height = 0;  // the size images are resized to: a fixed-size file's, or a dynamic-size file's opt
  int input_width = 0;    // (until use_input_size picks another within the range)
  // A dynamic-size artifact (a non-null "input_size_range"): the heights and widths it takes; all 0 when fixed.
  int min_height = 0, min_width = 0, max_height = 0, max_width = 0;
  std::vector<std::string> classes;
  std::string head;       // "raw" or "detections"
  int top_k = 0;          // detections head: K; 0 for the raw head
  std::string precision;  // "fp32", "fp16", ...
  std::string method;     // deformable sampler the model was exported with ("default" or "discrete")
  // How the graph reads sampling points: "gather-bilinear", "gridsample-bilinear" or "gather-nearest" (always
  // present from schema 4; older sidecars without it: derived from method and export.bilinear_op).
  std::string sampler;
  std::vector<TensorInfo> inputs;   // the whole model's contract (a split artifact: what graph 1 -> host step ->
  std::vector<TensorInfo> outputs;  // graph 2 takes and gives, as the single file of the same head)

  // A split artifact: two graphs and the host step between them (rtdetr/host_step.hpp); empty otherwise.
  bool split = false;
  SplitGraphInfo encoder;  // graph 1: images -> memory, cell_targets, cell_logits, cell_box_logits
  SplitGraphInfo decoder;  // graph 2: memory, query_targets, reference_logits -> logits, pred_boxes
  int host_step = 0;       // host_step.version
  int num_queries = 0;     // model.config.num_queries: the cells the host step selects

  bool dynamic_size() const { return max_height > 0; }
  // Run at (height, width) instead of input_size: only a dynamic-size artifact, within its range, multiples of
  // 32 (the model's coarsest stride); throws rtdetr::Error (one line) otherwise.
  void use_input_size(int height, int width);

  // Batch size fixed at export time, or 0 when the batch axis is dynamic.
  std::int64_t fixed_batch() const;
  const TensorInfo* input(const std::string& name) const;
  const TensorInfo* output(const std::string& name) const;

  // The head's tensor contract (docs/onnx-export.md): input/output names, images = [N, 3, H, W] as input_size
  // says, the logits' class count; for a split artifact also each graph's names and the query count. Checked once
  // so that a detector can index the outputs blindly.
  void check_contract() const;
  void check_split_contract() const;

  // Reads and validates a sidecar file; throws rtdetr::Error (one line) if it is missing or not ours.
  static Sidecar load(const std::string& sidecar_path);
  // The same from the file's text; `sidecar_path` only names it in messages.
  static Sidecar parse(const std::string& text, const std::string& sidecar_path);
  // MODEL.onnx -> MODEL.json, MODEL.engine -> MODEL.engine.json: rtdetr_export.artifact.sidecar_path's rule.
  static std::string path_for(const std::string& model_path);
  static Sidecar load_for(const std::string& model_path);
};

}  // namespace rtdetr
