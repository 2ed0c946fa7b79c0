// The split artifact as one backend: graph 1, the host step, graph 2 (and the detections head's top-k).
#include "rtdetr/split.hpp"

#include "rtdetr/error.hpp"
#include "rtdetr/host_step.hpp"

namespace rtdetr {

namespace {

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

std::unique_ptr<Backend> make_split_backend(const Sidecar& sidecar, const BackendOptions& options) {
  return std::make_unique<SplitBackend>(sidecar, check_split_graphs(sidecar), options);
}

}  // namespace rtdetr
