#include "rtdetr/split.hpp"

#include <algorithm>
#include <cctype>
#include <filesystem>
#include <map>

#include <nlohmann/json.hpp>

#include "rtdetr/error.hpp"
#include "rtdetr/host_step.hpp"
#include "rtdetr/onnx_metadata.hpp"
#include "rtdetr/sha256.hpp"

namespace rtdetr {

namespace {

const char* const kMetadataPrefix = "rtdetr_export.";  // rtdetr_export.artifact.files.PREFIX
const char* const kPartFormat = "rtdetr-export/onnx-split-part";

std::string directory_of(const std::string& path) {
  const auto slash = path.find_last_of('/');
  return slash == std::string::npos ? std::string() : path.substr(0, slash + 1);
}

std::string lower_extension(const std::string& path) {
  std::string ext = std::filesystem::path(path).extension().string();
  std::transform(ext.begin(), ext.end(), ext.begin(),
                 [](unsigned char ch) { return static_cast<char>(std::tolower(ch)); });
  return ext;
}

// A metadata value is JSON (embed_split_part writes json.dumps of each field); only a JSON string counts.
std::string json_string(const std::map<std::string, std::string>& metadata, const std::string& key) {
  const auto it = metadata.find(kMetadataPrefix + key);
  if (it == metadata.end()) return {};
  const nlohmann::json value = nlohmann::json::parse(it->second, nullptr, /*allow_exceptions=*/false);
  return value.is_string() ? value.get<std::string>() : std::string();
}

// The sidecar's view of one graph: what the ONNX Runtime backend checks the graph's own inputs and outputs against.
Sidecar graph_view(const Sidecar& sidecar, const SplitGraphInfo& graph) {
  Sidecar view = sidecar;
  view.inputs = graph.inputs;
  view.outputs = graph.outputs;
  return view;
}

class SplitBackend : public Backend {
 public:
  SplitBackend(const Sidecar& sidecar, const SplitGraphPaths& paths, const BackendOptions& options)
      : encoder_(make_onnxruntime_backend(paths.encoder, graph_view(sidecar, sidecar.encoder), options)),
        decoder_(make_onnxruntime_backend(paths.decoder, graph_view(sidecar, sidecar.decoder), options)),
        num_queries_(sidecar.num_queries),
        detections_(sidecar.head == "detections"),
        top_k_(sidecar.top_k) {}

  // rtdetr_export.backends.SplitRunner's name: the same three steps.
  std::string name() const override { return "onnxruntime-split"; }

  TensorMap run(const TensorMap& inputs) override {
    const auto images = inputs.find("images");
    if (images == inputs.end()) throw Error("no value for model input images");
    const TensorMap cells = encoder_->run({{"images", images->second}});
    const auto logits = cells.find("cell_logits");
    if (logits == cells.end()) throw Error("host step: graph 1 produced no cell_logits");
    const std::vector<std::int64_t> index = host_step::select_cells(logits->second, num_queries_);
    TensorMap raw = decoder_->run(host_step::gather_queries(cells, index, num_queries_));
    if (!detections_) return raw;
    const auto sizes = inputs.find("orig_target_sizes");
    if (sizes == inputs.end()) throw Error("no value for model input orig_target_sizes");
    if (!raw.count("logits") || !raw.count("pred_boxes")) throw Error("graph 2 produced no logits or pred_boxes");
    return host_step::top_detections(raw.at("logits"), raw.at("pred_boxes"), sizes->second, top_k_);
  }

 private:
  std::unique_ptr<Backend> encoder_;
  std::unique_ptr<Backend> decoder_;
  std::int64_t num_queries_;
  bool detections_;
  std::int64_t top_k_;
};

}  // namespace

std::string split_sidecar_for(const std::string& model_path) {
  const std::string ext = lower_extension(model_path);
  if (ext == ".json") return model_path;
  if (ext != ".onnx") return {};
  std::map<std::string, std::string> metadata;
  try {
    metadata = read_onnx_metadata_file(model_path);
  } catch (const Error&) {
    return {};  // not a readable ONNX file: loading it as a single file says so
  }
  if (json_string(metadata, "format") != kPartFormat) return {};
  std::string sidecar = json_string(metadata, "sidecar");
  // Only the name counts, beside the graph (SplitPart.from_json keeps Path(...).name).
  sidecar = sidecar.substr(sidecar.find_last_of('/') == std::string::npos ? 0 : sidecar.find_last_of('/') + 1);
  const bool control = std::any_of(sidecar.begin(), sidecar.end(),
                                   [](char ch) { return static_cast<unsigned char>(ch) < 0x20 || ch == 0x7f; });
  if (sidecar.empty() || sidecar == "." || sidecar == ".." || control) {
    throw Error(model_path + ": a split graph whose metadata names no usable sidecar");
  }
  return directory_of(model_path) + sidecar;
}

SplitGraphPaths check_split_graphs(const Sidecar& sidecar) {
  const std::string folder = directory_of(sidecar.path);
  const std::string name = sidecar.path.substr(folder.size());
  SplitGraphPaths paths{folder + sidecar.encoder.file, folder + sidecar.decoder.file};
  // Both exist before either digest is taken: a missing file is the likelier mistake and the cheaper check.
  for (const auto& [part, path] : {std::pair<const char*, const std::string&>{"encoder", paths.encoder},
                                   std::pair<const char*, const std::string&>{"decoder", paths.decoder}}) {
    std::error_code ec;
    if (!std::filesystem::is_regular_file(path, ec)) {
      throw Error(path + ": the " + part + " graph of " + name + " is missing; copy both graphs with the sidecar, "
                  "or export again with --split");
    }
  }
  for (const auto& [part, path, want] :
       {std::tuple<const char*, const std::string&, const std::string&>{"encoder", paths.encoder,
                                                                        sidecar.encoder.sha256},
        std::tuple<const char*, const std::string&, const std::string&>{"decoder", paths.decoder,
                                                                        sidecar.decoder.sha256}}) {
    if (file_sha256(path) != want) {
      throw Error(path + " is not the " + part + " graph " + name + " was written with (sha256 differs): both "
                  "graphs and the sidecar must come from one export");
    }
  }
  return paths;
}

std::unique_ptr<Backend> make_split_backend(const Sidecar& sidecar, const BackendOptions& options) {
  return std::make_unique<SplitBackend>(sidecar, check_split_graphs(sidecar), options);
}

}  // namespace rtdetr
