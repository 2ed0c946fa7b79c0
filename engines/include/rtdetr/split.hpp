// A split artifact (rtdetr-export onnx --split): MODEL.encoder.onnx, MODEL.decoder.onnx and their sidecar
// MODEL.json, run as one model: graph 1 on ONNX Runtime, the host step (rtdetr/host_step.hpp), graph 2, and for the
// detections head the host step's top-k; the outputs are those of the single file of the same head.
#pragma once

#include <map>
#include <memory>
#include <string>

#include "rtdetr/backend.hpp"
#include "rtdetr/sidecar.hpp"

namespace rtdetr {

// The split sidecar `model_path` opens, as rtdetr_export.artifact.split_sidecar resolves it: a .json file is the
// sidecar itself; a split graph names its sidecar in its ONNX metadata (rtdetr_export.sidecar, beside the graph).
// Empty for any other file, including one whose metadata cannot be read (the single-file path reports that).
std::string split_sidecar_for(const std::string& model_path);
// The same from a graph's metadata (read_onnx_metadata): its sidecar beside `model_path`, or empty when the
// metadata is not a split part's; a one-line rtdetr::Error when it is one but names no usable file.
std::string split_sidecar_named(const std::map<std::string, std::string>& metadata, const std::string& model_path);

struct SplitGraphPaths {
  std::string encoder;
  std::string decoder;
};

// Both graphs beside the sidecar, once each exists and has the sha256 the sidecar recorded; otherwise a one-line
// rtdetr::Error naming the file (missing, or from another export).
SplitGraphPaths check_split_graphs(const Sidecar& sidecar);

// Checks the graphs (check_split_graphs), loads both on ONNX Runtime (each checked against its io in the sidecar)
// and returns a backend that takes and gives the whole model's tensors (Sidecar::inputs/outputs).
std::unique_ptr<Backend> make_split_backend(const Sidecar& sidecar, const BackendOptions& options);

}  // namespace rtdetr
