#include "rtdetr/sidecar.hpp"

#include <algorithm>
#include <cmath>
#include <fstream>
#include <limits>
#include <sstream>
#include <tuple>
#include <utility>

#include <nlohmann/json.hpp>

#include "rtdetr/error.hpp"
#include "rtdetr/host_step.hpp"

namespace rtdetr {

namespace {

using Json = nlohmann::json;

const char* const kFormatPrefix = "rtdetr-export/";
const char* const kSplitFormat = "rtdetr-export/onnx-split";  // rtdetr_export.artifact.records.fields.SPLIT_FORMAT
// Sidecar schema versions this reader understands (rtdetr_export.artifact.READABLE_SCHEMAS): 1 and 2 describe
// fixed-size files, 3 adds input_size_range, 4 always records the sampler.
constexpr std::int64_t kNewestSchema = 4;

const char* type_name(const Json& value) {
  switch (value.type()) {
    case Json::value_t::null: return "null";
    case Json::value_t::boolean: return "a boolean";
    case Json::value_t::string: return "a string";
    case Json::value_t::array: return "an array";
    case Json::value_t::object: return "an object";
    case Json::value_t::binary: return "binary data";
    case Json::value_t::discarded: return "nothing";
    default: return "a number";
  }
}

// nlohmann's parse messages quote the bytes read last, which may be anything; a one-line message in plain ASCII
// keeps a terminal and a log reader safe.
std::string printable(const std::string& text) {
  static const char kHex[] = "0123456789abcdef";
  std::string out;
  for (const char ch : text) {
    const auto byte = static_cast<unsigned char>(ch);
    if (byte >= 0x20 && byte < 0x7f) {
      out += ch;
    } else {
      out += "\\x";
      out += kHex[byte >> 4];
      out += kHex[byte & 15];
    }
  }
  return out;
}

[[noreturn]] void wrong_type(const std::string& what, const char* wanted, const Json& got) {
  throw Error(what + " should be " + wanted + ", found " + type_name(got));
}

// Typed access: every read checks the type first, so no nlohmann exception can come out of a well-formed document.
const Json* member(const Json& object, const char* key) {
  if (!object.is_object()) return nullptr;
  const auto it = object.find(key);
  return it == object.end() ? nullptr : &*it;
}

const Json& require(const Json& object, const char* key, const std::string& what) {
  const Json* value = member(object, key);
  if (!value) throw Error(what + " is missing");
  return *value;
}

const std::string& as_string(const Json& value, const std::string& what) {
  if (!value.is_string()) wrong_type(what, "a string", value);
  return value.get_ref<const std::string&>();
}

const Json::array_t& as_array(const Json& value, const std::string& what) {
  if (!value.is_array()) wrong_type(what, "an array", value);
  return value.get_ref<const Json::array_t&>();
}

// An integer in [low, high]. Python writes integers as such; an integral float (320.0) is accepted as before.
std::int64_t as_int(const Json& value, const std::string& what, std::int64_t low, std::int64_t high) {
  std::int64_t v = 0;
  if (value.is_number_unsigned()) {
    const std::uint64_t u = value.get<std::uint64_t>();
    if (u > static_cast<std::uint64_t>(high)) throw Error(what + " out of range");
    v = static_cast<std::int64_t>(u);
  } else if (value.is_number_integer()) {
    v = value.get<std::int64_t>();
  } else if (value.is_number_float()) {
    const double d = value.get<double>();
    // The range test comes first: converting an out-of-range double to an integer is undefined behaviour.
    if (!(d >= static_cast<double>(low) && d <= static_cast<double>(high))) throw Error(what + " out of range");
    if (std::floor(d) != d) throw Error(what + " should be an integer");
    v = static_cast<std::int64_t>(d);
  } else {
    wrong_type(what, "an integer", value);
  }
  if (v < low || v > high) throw Error(what + " out of range");
  return v;
}

std::vector<TensorInfo> read_tensors(const Json& list, const std::string& what) {
  std::vector<TensorInfo> out;
  for (const Json& item : as_array(list, what)) {
    const Json* name = member(item, "name");
    const Json* shape = member(item, "shape");
    const Json* dtype = member(item, "dtype");
    if (!name || !shape || !dtype) throw Error(what + " entries need name, shape and dtype");
    TensorInfo info;
    info.name = as_string(*name, "io name");
    info.dtype = as_string(*dtype, "io dtype");
    for (const Json& dim : as_array(*shape, "io shape")) {
      // The exporter writes symbolic dimensions by name ("batch") and fixed ones as integers.
      info.shape.push_back(dim.is_number() ? as_int(dim, "io dimension", 0, std::numeric_limits<std::int32_t>::max())
                                           : -1);
    }
    out.push_back(std::move(info));
  }
  return out;
}

std::string size_text(int height, int width) { return std::to_string(height) + "x" + std::to_string(width); }

// [height, width] of input_size or of one end of input_size_range.
std::pair<int, int> read_size(const Json& value, const std::string& what) {
  const auto& hw = as_array(value, what);
  if (hw.size() != 2) throw Error(what + " should be [height, width]");
  const int height = static_cast<int>(as_int(hw[0], what, 1, 16384));
  const int width = static_cast<int>(as_int(hw[1], what, 1, 16384));
  return {height, width};
}

// Sidecars before schema 4 may lack "sampler": it follows from the method and, for "default", from
// export.bilinear_op (absent before that option existed, when default sampling was always GridSample);
// rtdetr_export.export.torch_export.sampler is the same rule.
std::string derive_sampler(const std::string& method, const Json& exp) {
  if (method == "discrete") return "gather-nearest";
  const Json* op = member(exp, "bilinear_op");
  if (!op || op->is_null()) return "gridsample-bilinear";
  const std::string& name = as_string(*op, "export.bilinear_op");
  if (name != "gather" && name != "gridsample") throw Error("unknown export.bilinear_op \"" + name + "\"");
  return name + "-bilinear";
}

// graphs.<part> of a split sidecar. The file is a name beside the sidecar; the Python reader keeps only its last
// component (pathlib's .name), and so does this, so that neither opens a file elsewhere.
SplitGraphInfo read_split_graph(const Json& graphs, const char* part) {
  const std::string where = std::string("graphs.") + part;
  const Json& graph = require(graphs, part, where);
  if (!graph.is_object()) wrong_type(where, "an object", graph);
  SplitGraphInfo out;
  const std::string& file = as_string(require(graph, "file", where + ".file"), where + ".file");
  out.file = file.substr(file.find_last_of('/') == std::string::npos ? 0 : file.find_last_of('/') + 1);
  // Control characters (a newline) would break the one-line messages that name the file.
  const bool control = std::any_of(out.file.begin(), out.file.end(),
                                   [](char ch) { return static_cast<unsigned char>(ch) < 0x20 || ch == 0x7f; });
  if (out.file.empty() || out.file == "." || out.file == ".." || control) {
    throw Error(where + ".file should be a file name");
  }
  out.sha256 = as_string(require(graph, "sha256", where + ".sha256"), where + ".sha256");
  const Json& io = require(graph, "io", where + ".io");
  out.inputs = read_tensors(require(io, "inputs", where + ".io.inputs"), where + ".io.inputs");
  out.outputs = read_tensors(require(io, "outputs", where + ".io.outputs"), where + ".io.outputs");
  return out;
}

const TensorInfo* find_tensor(const std::vector<TensorInfo>& list, const std::string& name) {
  for (const TensorInfo& t : list) {
    if (t.name == name) return &t;
  }
  return nullptr;
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

void Sidecar::check_contract() const {
  const Sidecar& s = *this;
  const std::vector<std::string> inputs = s.head == "raw" ? std::vector<std::string>{"images"}
                                                          : std::vector<std::string>{"images", "orig_target_sizes"};
  const std::vector<std::string> outputs = s.head == "raw" ? std::vector<std::string>{"logits", "pred_boxes"}
                                                           : std::vector<std::string>{"labels", "boxes", "scores"};
  for (const std::string& name : inputs) {
    if (!s.input(name)) throw Error(s.path + ": the " + s.head + " head needs an input named " + name);
  }
  for (const std::string& name : outputs) {
    if (!s.output(name)) throw Error(s.path + ": the " + s.head + " head needs an output named " + name);
  }
  const TensorInfo& images = *s.input("images");
  // A dynamic-size file's height and width are symbolic (-1); a fixed one's are input_size.
  const std::int64_t want_h = s.dynamic_size() ? -1 : s.input_height, want_w = s.dynamic_size() ? -1 : s.input_width;
  if (images.shape.size() != 4 || images.shape[1] != 3 || images.shape[2] != want_h || images.shape[3] != want_w) {
    throw Error(s.path + ": io.inputs images should be [N, 3, " + (want_h < 0 ? std::string("height") :
                std::to_string(want_h)) + ", " + (want_w < 0 ? std::string("width") : std::to_string(want_w)) +
                "] as input_size" + (s.dynamic_size() ? "_range" : "") + " says");
  }
  if (s.split) check_split_contract();
  if (s.head == "raw" && s.output("logits")->shape.size() == 3 && s.output("logits")->shape[2] > 0 &&
      s.output("logits")->shape[2] != static_cast<std::int64_t>(s.classes.size())) {
    throw Error(s.path + ": logits have " + std::to_string(s.output("logits")->shape[2]) + " classes but the sidecar "
                "names " + std::to_string(s.classes.size()));
  }
}

void Sidecar::check_split_contract() const {
  // The names model/split.py gives the cut (CELL_OUTPUTS, QUERY_INPUTS) and the decoder's raw outputs.
  const std::pair<const SplitGraphInfo*, std::vector<std::vector<std::string>>> parts[] = {
      {&encoder, {{"images"}, {"memory", "cell_targets", "cell_logits", "cell_box_logits"}}},
      {&decoder, {{"memory", "query_targets", "reference_logits"}, {"logits", "pred_boxes"}}}};
  for (const auto& [graph, names] : parts) {
    const char* part = graph == &encoder ? "encoder" : "decoder";
    for (int side = 0; side < 2; ++side) {
      for (const std::string& name : names[side]) {
        if (!find_tensor(side == 0 ? graph->inputs : graph->outputs, name)) {
          throw Error(path + ": the split's " + part + " graph needs " + (side == 0 ? "an input" : "an output") +
                      " named " + name);
        }
      }
    }
  }
  const TensorInfo& targets = *find_tensor(decoder.inputs, "query_targets");
  if (targets.shape.size() != 3 || (targets.shape[1] >= 0 && targets.shape[1] != num_queries)) {
    throw Error(path + ": the decoder's query_targets should be [N, " + std::to_string(num_queries) +
                ", D] as model.config.num_queries says");
  }
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
  return parse(buffer.str(), sidecar_path);
}

Sidecar Sidecar::parse(const std::string& text, const std::string& sidecar_path) {
  // Without exceptions the parser returns a "discarded" value on malformed input; the exception form is used
  // for its message (line, column and what was expected), which is one line.
  Json root;
  try {
    root = Json::parse(text);
  } catch (const Json::exception& e) {
    throw Error(sidecar_path + ": not a readable sidecar (" + printable(e.what()) + ")");
  }
  const Json* format = member(root, "format");
  if (!format || !format->is_string() || format->get_ref<const std::string&>().rfind(kFormatPrefix, 0) != 0) {
    throw Error(sidecar_path + ": not an rtdetr-export sidecar (no \"format\": \"rtdetr-export/...\")");
  }
  // Version 1 files did not always say so; rtdetr_export.artifact reads a missing version as 1 too.
  const Json* schema = member(root, "schema_version");
  std::int64_t version = 1;
  try {
    if (schema) version = as_int(*schema, "schema_version", 1, std::numeric_limits<std::int32_t>::max());
  } catch (const Error& e) {
    throw Error(sidecar_path + ": not a readable sidecar (" + e.what() + ")");
  }
  if (version > kNewestSchema) {
    throw Error(sidecar_path + ": sidecar schema version " + std::to_string(version) + " is newer than these engines "
                "read (1-" + std::to_string(kNewestSchema) + "); rebuild them from a newer rtdetr-export");
  }

  Sidecar out;
  out.path = sidecar_path;
  out.format = format->get<std::string>();
  try {
    const Json* size = member(root, "input_size");
    const Json* classes = member(root, "classes");
    const Json* precision = member(root, "precision");
    const Json* method = member(root, "method");
    const Json* io = member(root, "io");
    const Json* exp = member(root, "export");
    if (!size || !classes || !io || !exp) throw Error("missing input_size, classes, io or export");
    std::tie(out.input_height, out.input_width) = read_size(*size, "input_size");
    // Schema 3: a dynamic-size file's range ({"min", "opt", "max"}); absent (older sidecars) or null when fixed.
    const Json* range = member(root, "input_size_range");
    if (range && !range->is_null()) {
      const Json* low = member(*range, "min");
      const Json* high = member(*range, "max");
      if (!low || !high) throw Error("input_size_range needs min and max");
      std::tie(out.min_height, out.min_width) = read_size(*low, "input_size_range.min");
      std::tie(out.max_height, out.max_width) = read_size(*high, "input_size_range.max");
      if (out.min_height > out.input_height || out.input_height > out.max_height ||
          out.min_width > out.input_width || out.input_width > out.max_width) {
        throw Error("input_size is outside input_size_range");
      }
    }
    for (const Json& name : as_array(*classes, "classes")) out.classes.push_back(as_string(name, "class name"));
    out.precision = precision && precision->is_string() ? precision->get<std::string>() : "fp32";
    // Sidecars without a method predate the discrete sampler: their graphs sample with "default".
    out.method = method && method->is_string() ? method->get<std::string>() : "default";
    const Json* sampler = member(root, "sampler");
    if (sampler) {
      out.sampler = as_string(*sampler, "sampler");
      if (out.sampler != "gather-nearest" && out.sampler != "gather-bilinear" && out.sampler != "gridsample-bilinear") {
        throw Error("unknown sampler \"" + out.sampler + "\"");
      }
    } else if (version >= 4) {
      throw Error("sampler is missing (schema 4 always records it)");
    } else {
      out.sampler = derive_sampler(out.method, *exp);
    }
    out.head = as_string(require(*exp, "head", "export.head"), "export.head");
    if (out.head != "raw" && out.head != "detections") throw Error("unknown export.head \"" + out.head + "\"");
    const Json* top_k = member(*exp, "top_k");
    out.top_k = top_k && !top_k->is_null() ? static_cast<int>(as_int(*top_k, "export.top_k", 0, 1 << 24)) : 0;
    const Json* ins = member(*io, "inputs");
    const Json* outs = member(*io, "outputs");
    if (!ins || !outs) throw Error("io needs inputs and outputs");
    out.inputs = read_tensors(*ins, "io.inputs");
    out.outputs = read_tensors(*outs, "io.outputs");
    if (out.format == kSplitFormat) {
      out.split = true;
      const Json& graphs = require(root, "graphs", "graphs");
      out.encoder = read_split_graph(graphs, "encoder");
      out.decoder = read_split_graph(graphs, "decoder");
      const Json& host = require(root, "host_step", "host_step");
      out.host_step = static_cast<int>(as_int(require(host, "version", "host_step.version"), "host_step.version", 1,
                                              std::numeric_limits<std::int32_t>::max()));
      const Json& config = require(require(root, "model", "model"), "config", "model.config");
      out.num_queries = static_cast<int>(as_int(require(config, "num_queries", "model.config.num_queries"),
                                                "model.config.num_queries", 1, 1 << 20));
    }
  } catch (const Error& e) {
    // The message may quote a value from the file (an unknown head or sampler), newlines and all.
    throw Error(sidecar_path + ": incomplete sidecar (" + printable(e.what()) + ")");
  }
  // A complete sidecar, but for a host step other than the one compiled here: running it could select other
  // queries than the graphs were verified with.
  if (out.split && out.host_step != host_step::kVersion) {
    throw Error(sidecar_path + ": host step version " + std::to_string(out.host_step) + " is not the one these "
                "engines implement (" + std::to_string(host_step::kVersion) + "); rebuild them from the "
                "rtdetr-export that wrote the artifact");
  }
  return out;
}

}  // namespace rtdetr
