// Finding a split artifact's files and proving they belong together, before anything is loaded.
#include "rtdetr/split.hpp"

#include <algorithm>
#include <cctype>
#include <filesystem>
#include <tuple>
#include <utility>

#include <nlohmann/json.hpp>

#include "rtdetr/error.hpp"
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

}  // namespace

std::string split_sidecar_named(const std::map<std::string, std::string>& metadata, const std::string& model_path) {
  if (json_string(metadata, "format") != kPartFormat) return {};
  std::string sidecar = json_string(metadata, "sidecar");
  // Only the name counts, beside the graph (SplitPart.from_json keeps Path(...).name).
  sidecar = sidecar.substr(sidecar.find_last_of('/') == std::string::npos ? 0 : sidecar.find_last_of('/') + 1);
  // Control characters (a newline) would break the one-line messages that name the file.
  const bool control = std::any_of(sidecar.begin(), sidecar.end(),
                                   [](char ch) { return static_cast<unsigned char>(ch) < 0x20 || ch == 0x7f; });
  if (sidecar.empty() || sidecar == "." || sidecar == ".." || control) {
    throw Error(model_path + ": a split graph whose metadata names no usable sidecar");
  }
  return directory_of(model_path) + sidecar;
}

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
  return split_sidecar_named(metadata, model_path);
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


}  // namespace rtdetr
