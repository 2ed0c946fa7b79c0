// The metadata_props of an ONNX file, read without loading the model: a split artifact's graph names its sidecar
// there (rtdetr_export.artifact.embed_split_part), and the engines find the sidecar through it, as the Python side
// does, before any graph is loaded.
#pragma once

#include <istream>
#include <map>
#include <string>

namespace rtdetr {

// Key -> value of every metadata_props entry (ModelProto field 14; a repeated key keeps its last value, as
// onnx's Python reader does). Reads only the top-level fields and skips the rest (the graph, its weights).
// Throws rtdetr::Error (one line) when the bytes are not a protobuf message of that shape.
std::map<std::string, std::string> read_onnx_metadata(std::istream& in, const std::string& label);
std::map<std::string, std::string> read_onnx_metadata_file(const std::string& path);

}  // namespace rtdetr
