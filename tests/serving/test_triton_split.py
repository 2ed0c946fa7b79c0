"""`rtdetr-export triton` over a split artifact (`rtdetr-export onnx --split`): the repository serves it as the
ensemble NAME (graph 1 -> host step -> graph 2 [-> host top-k]) under the single file's name, inputs and outputs.

Fast: the configs written from a micro split export (the model of tests/export/test_split_export.py), and bad input.
Slow (a real tritonserver, Python backend with ONNX Runtime, one thread): the served split answers as the local split
runner and as the single-file repository of the same model, at batch 1 and 3, and through the JPEG ensemble.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from rtdetr_export.artifact import open_artifact, record_from_json
from rtdetr_export.backends.split_runner import SplitRunner
from rtdetr_export.cli import main
from rtdetr_export.pipeline import OnnxExportOptions, export_onnx, export_split

pytest.importorskip("tritonclient.grpc", reason="Triton configs need tritonclient: pip install -e '.[triton]'")

from rtdetr_export.serving import TritonOptions, parse_config, write_repository  # noqa: E402
from rtdetr_export.serving.config import SERVED  # noqa: E402
from paths import ROOT, TESTS  # noqa: E402

# ~0.4M parameters at 128 px: 336 encoder cells, 30 queries, 4 classes (as tests/export/test_split_export.py).
MICRO = dict(num_classes=4, backbone_stem_channels=16, backbone_widths=(16, 32, 64, 128), encoder_hidden_dim=32,
             encoder_ffn_dim=64, d_model=32, decoder_ffn_dim=64, num_queries=30)
SIZE, QUERIES, CLASSES, TOP_K = 128, 30, 4, 20
PHOTOS = TESTS / "data" / "images"
PHOTO_NAMES = ["astronaut.jpg", "cat_chelsea.jpg", "coffee_cup.jpg"]
TEMPLATE = ROOT / "rtdetr_export" / "serving" / "python_model.py"


@pytest.fixture(scope="module")
def model():
    from rtdetr_export.weights import load_model

    return load_model(preset="tiny", image_size=SIZE, seed=0, **MICRO)


def _options(head: str) -> OnnxExportOptions:
    # Verification of the split is tests/export/test_split_export.py's; here the files only need to be the export's.
    return OnnxExportOptions(dynamic_batch=True, head=head, top_k=TOP_K, verify=False)


@pytest.fixture(scope="module")
def splits(model, tmp_path_factory):
    """The split artifact of each head (dynamic batch): {head: sidecar}."""
    folder = tmp_path_factory.mktemp("split_artifacts")
    return {head: export_split(model, folder / f"{head}_split.onnx", _options(head)).sidecar
            for head in ("raw", "detections")}


def triton(*args) -> object:
    return CliRunner().invoke(main, ["triton", *map(str, args)])


def read_config(repo: Path, name: str):
    return parse_config((repo / name / "config.pbtxt").read_text())


def _tensors(entries) -> list[tuple]:
    from tritonclient.grpc import model_config_pb2 as pb

    return [(e.name, pb.DataType.Name(e.data_type), list(e.dims)) for e in entries]


def _parameters(config) -> dict:
    return {k[len("rtdetr_export."):]: json.loads(v.string_value) for k, v in config.parameters.items()}


def _maps(step) -> tuple[dict, dict]:
    return dict(step.input_map), dict(step.output_map)


@pytest.mark.parametrize("head", ["raw", "detections"])
@pytest.mark.parametrize("backend", ["onnxruntime", "python"])
def test_a_split_is_served_as_the_ensemble_of_its_graphs_and_host_step(splits, tmp_path, head, backend):
    sidecar = splits[head]
    record = open_artifact(sidecar)
    repo = tmp_path / "repo"
    # Given one graph: the sidecar and the other graph are found beside it; the name is the sidecar's stem.
    result = triton(sidecar.with_suffix(".encoder.onnx"), "-o", repo, "--backend", backend, "--max-batch", 4,
                    "--instances", 2, "--json")
    assert result.exit_code == 0, result.output
    name = f"{head}_split"
    host = ["detections"] if head == "detections" else []
    written = [(m["name"], m["role"], m["backend"], m["max_batch_size"]) for m in json.loads(result.stdout)["models"]]
    assert written == [(f"{name}_encoder", "encoder", backend, 4), (f"{name}_select", "select", "python", 4),
                       (f"{name}_decoder", "decoder", backend, 4)] + \
        [(f"{name}_{s}", s, "python", 4) for s in host] + [(name, "model", "ensemble", 4)]
    assert sorted(p.name for p in repo.iterdir()) == sorted(m[0] for m in written)

    # NAME: the single file's contract (images [+ orig_target_sizes] in, the head's outputs out), batched to 4.
    ensemble = read_config(repo, name)
    assert (ensemble.platform, ensemble.max_batch_size) == ("ensemble", 4)
    inputs = [("images", "TYPE_FP32", [3, SIZE, SIZE])]
    if head == "raw":
        outputs = [("logits", "TYPE_FP32", [QUERIES, CLASSES]), ("pred_boxes", "TYPE_FP32", [QUERIES, 4])]
    else:
        inputs.append(("orig_target_sizes", "TYPE_INT64", [2]))
        outputs = [("labels", "TYPE_INT64", [TOP_K]), ("boxes", "TYPE_FP32", [TOP_K, 4]),
                   ("scores", "TYPE_FP32", [TOP_K])]
    assert _tensors(ensemble.input) == inputs and _tensors(ensemble.output) == outputs
    cells = {k: k for k in ("cell_targets", "cell_logits", "cell_box_logits")}
    queries = {k: k for k in ("query_targets", "reference_logits")}
    raw = {"logits": "logits", "pred_boxes": "pred_boxes"}
    expected = [(f"{name}_encoder", {"images": "images"}, {"memory": "memory", **cells}),
                (f"{name}_select", cells, queries),
                (f"{name}_decoder", {"memory": "memory", **queries}, raw)]
    if head == "detections":
        expected.append((f"{name}_detections", {**raw, "orig_target_sizes": "orig_target_sizes"},
                         {k: k for k in ("labels", "boxes", "scores")}))
    assert [(s.model_name, *_maps(s)) for s in ensemble.ensemble_scheduling.step] == expected
    # Its parameters are the split's record with role "model": a client reads it as the artifact's model.
    parameters = _parameters(ensemble)
    assert parameters.pop("role") == "model" and parameters.pop("artifact")["file"] == sidecar.name
    assert parameters.pop("split_steps") == [step[0] for step in expected]
    assert record_from_json(parameters).to_json() == record.to_json()

    # The graphs: the files themselves, their own tensors, the single file's scheduling.
    for part, graph in record.graphs.items():
        config = read_config(repo, f"{name}_{part}")
        assert (config.platform, config.backend) == (SERVED[backend][1].get("platform", ""),
                                                     SERVED[backend][1]["backend"])
        assert [t[0] for t in _tensors(config.input)] == graph.io.input_names
        assert [t[0] for t in _tensors(config.output)] == graph.io.output_names
        assert (repo / f"{name}_{part}" / "1" / "model.onnx").read_bytes() == (sidecar.parent / graph.file).read_bytes()
        assert (repo / f"{name}_{part}" / "1" / "model.py").exists() == (backend == "python")
        assert _parameters(config)["role"] == part and _parameters(config)["artifact"]["sha256"] == graph.sha256
    encoder = read_config(repo, f"{name}_encoder")
    assert _tensors(encoder.output)[0] == ("memory", "TYPE_FP32", [336, 32])  # 16x16 + 8x8 + 4x4 cells, d_model 32
    for step in [f"{name}_{s}" for s in ("encoder", "select", "decoder", *host)]:
        config = read_config(repo, step)
        assert config.max_batch_size == 4 and list(config.dynamic_batching.preferred_batch_size) == [2, 4]
        assert [(g.count, g.kind) for g in config.instance_group] == [(2, 2)]  # KIND_CPU

    # The host step: our Python-backend model, which imports rtdetr_export.imaging.host_step.
    select = read_config(repo, f"{name}_select")
    assert select.backend == "python" and _parameters(select)["num_queries"] == QUERIES
    assert _tensors(select.input) == [("cell_targets", "TYPE_FP32", [336, 32]), ("cell_logits", "TYPE_FP32", [336, 4]),
                                      ("cell_box_logits", "TYPE_FP32", [336, 4])]
    assert _tensors(select.output) == [("query_targets", "TYPE_FP32", [QUERIES, 32]),
                                       ("reference_logits", "TYPE_FP32", [QUERIES, 4])]
    assert (repo / f"{name}_select" / "1" / "model.py").read_text() == TEMPLATE.read_text()
    if head == "detections":
        detections = read_config(repo, f"{name}_detections")
        assert _parameters(detections)["top_k"] == TOP_K and _tensors(detections.output) == outputs


def test_the_jpeg_ensemble_chains_the_served_split(splits, tmp_path):
    repo = tmp_path / "repo"
    result = triton(splits["raw"], "-o", repo, "--backend", "python", "--ensemble", "--quiet")
    assert result.exit_code == 0, result.output
    jpeg = read_config(repo, "raw_split_ensemble")
    assert [s.model_name for s in jpeg.ensemble_scheduling.step] == ["raw_split_preprocess", "raw_split",
                                                                     "raw_split_postprocess"]
    assert _parameters(jpeg)["inner_model"] == "raw_split"


@pytest.mark.parametrize("given", ["raw_split.json", "raw_split.encoder.onnx"])
def test_a_split_whose_decoder_graph_is_missing_is_one_line_and_writes_nothing(splits, tmp_path, given):
    folder = tmp_path / "copy"
    folder.mkdir()
    for path in splits["raw"].parent.glob("raw_split.*"):
        shutil.copy(path, folder / path.name)
    (folder / "raw_split.decoder.onnx").unlink()
    result = triton(folder / given, "-o", tmp_path / "repo")
    assert result.exit_code == 1 and result.stderr.count("\n") == 1 and "Traceback" not in result.output
    assert "raw_split.decoder.onnx" in result.stderr and "missing" in result.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["copy"]  # no repository, no staging folder


def test_tensorrt_for_a_split_is_one_line_and_writes_nothing(splits, tmp_path):
    result = triton(splits["raw"], "-o", tmp_path / "repo", "--backend", "tensorrt")
    assert result.exit_code == 1 and result.stderr.count("\n") == 1
    assert "raw_split.json is a split artifact" in result.stderr and "--backend onnxruntime" in result.stderr
    assert list(tmp_path.iterdir()) == []
