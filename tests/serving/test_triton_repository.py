"""`rtdetr-export triton`: model repositories whose configs parse with Triton's own protobuf and state what the
artifact's sidecar states; bad input is one line and leaves nothing behind.

The artifacts here are tiny stand-ins carrying real provenance (a one-node ONNX graph with our metadata, an
engine file with its sidecar), so every backend and batch mode is covered in milliseconds without TensorRT.
"""

from __future__ import annotations

import json
from pathlib import Path

import onnx
import pytest
from click.testing import CliRunner
from onnx import TensorProto, helper

from rtdetr_export.artifact import (ENGINE_FORMAT, ONNX_FORMAT, EngineRecord, ExportRecord, Header, IODescription,
                                    ModelRecord, OnnxRecord, ProfileShape, SourceRecord, TensorSpec, embed_metadata,
                                    open_artifact, record_from_json, write_sidecar)
from rtdetr_export.cli import main
from rtdetr_export.model.config import preset
from rtdetr_export.model.sampler import Sampler

pytest.importorskip("tritonclient.grpc", reason="Triton configs need tritonclient: pip install -e '.[triton]'")

from rtdetr_export.serving import parse_config  # noqa: E402  (after the skip: it needs tritonclient)

CLASSES = ["cat", "dog", "cup"]
QUERIES = 7


def _io(batch, head: str) -> dict:
    inputs = [{"name": "images", "shape": [batch, 3, 64, 64], "dtype": "float32"}]
    if head == "raw":
        outputs = [{"name": "logits", "shape": [batch, QUERIES, len(CLASSES)], "dtype": "float32"},
                   {"name": "pred_boxes", "shape": [batch, QUERIES, 4], "dtype": "float32"}]
    else:
        inputs.append({"name": "orig_target_sizes", "shape": [batch, 2], "dtype": "int64"})
        outputs = [{"name": "labels", "shape": [batch, 5], "dtype": "int64"},
                   {"name": "boxes", "shape": [batch, 5, 4], "dtype": "float32"},
                   {"name": "scores", "shape": [batch, 5], "dtype": "float32"}]
    return {"inputs": inputs, "outputs": outputs}


def _record(batch, head: str, kind: type = OnnxRecord, **fields):
    """A real record of a tiny model served at 64x64 (``batch``: an int, or a name for a dynamic batch)."""
    dynamic = isinstance(batch, str)
    io = _io(batch, head)
    specs = {kind_: tuple(TensorSpec(v["name"], tuple(v["shape"]), v["dtype"]) for v in io[kind_])
             for kind_ in ("inputs", "outputs")}
    config = preset("tiny", num_classes=len(CLASSES), num_queries=QUERIES, image_size=64)
    return kind(header=Header.now(ONNX_FORMAT if kind is OnnxRecord else ENGINE_FORMAT),
                model=ModelRecord(SourceRecord("random", seed=0), config), sampler=Sampler.GATHER_BILINEAR,
                input_size=(64, 64), input_size_range=None, classes=list(CLASSES), precision="fp32",
                export=ExportRecord(opset=17, head=head, top_k=5, batch=None if dynamic else batch,
                                    dynamic_batch=dynamic),
                io=IODescription(specs["inputs"], specs["outputs"]), **fields)


def make_onnx(folder: Path, name: str, batch, head: str = "raw", sidecar: bool = True) -> Path:
    """A one-node graph with our record (its io is what the configs are made from)."""
    record = _record(batch, head)
    tensors = lambda specs: [helper.make_tensor_value_info(  # noqa: E731
        v.name, TensorProto.INT64 if v.dtype == "int64" else TensorProto.FLOAT, list(v.shape)) for v in specs]
    nodes = [helper.make_node("Identity", ["images"], [o.name]) for o in record.io.outputs]
    model = helper.make_model(helper.make_graph(nodes, "stand_in", tensors(record.io.inputs),
                                                tensors(record.io.outputs)))
    embed_metadata(model, record)
    path = folder / f"{name}.onnx"
    onnx.save(model, str(path))
    if sidecar:
        write_sidecar(path.with_suffix(".json"), record)
    return path


def make_engine(folder: Path, name: str, low: int, opt: int, high: int) -> Path:
    """An engine file and its sidecar as `rtdetr-export trt` writes them (profile, io, io_tensors)."""
    io = _record("batch" if high > low else high, "detections").io
    profile = {v.name: ProfileShape((low, *v.shape[1:]), (opt, *v.shape[1:]), (high, *v.shape[1:]))
               for v in io.inputs}
    io_tensors = [{"name": v.name, "dtype": v.dtype, "shape": [-1, *v.shape[1:]]} for v in io.inputs + io.outputs]
    record = _record("batch" if high > low else high, "detections", EngineRecord, profile=profile,
                     io_tensors=io_tensors)
    path = folder / f"{name}.engine"
    path.write_bytes(b"not a real plan")
    write_sidecar(Path(str(path) + ".json"), record)
    return path


def triton(*args) -> object:
    return CliRunner().invoke(main, ["triton", *map(str, args)])


def read_config(repo: Path, name: str):
    return parse_config((repo / name / "config.pbtxt").read_text())


def _tensors(entries) -> list[tuple]:
    from tritonclient.grpc import model_config_pb2 as pb

    return [(e.name, pb.DataType.Name(e.data_type), list(e.dims)) for e in entries]


@pytest.mark.parametrize("backend, platform, backend_field, model_file", [
    ("onnxruntime", "onnxruntime_onnx", "onnxruntime", "model.onnx"),
    ("openvino", "", "openvino", "model.onnx"),
    ("python", "", "python", "model.onnx"),
])
def test_dynamic_batch_onnx_configs_state_the_sidecar(tmp_path, backend, platform, backend_field, model_file):
    artifact = make_onnx(tmp_path, "det", "batch", "detections")
    result = triton(artifact, "-o", tmp_path / "repo", "--backend", backend, "--max-batch", 4, "--instances", 2,
                    "--quiet")
    assert result.exit_code == 0, result.output
    config = read_config(tmp_path / "repo", "det")
    assert (config.name, config.platform, config.backend) == ("det", platform, backend_field)
    assert config.max_batch_size == 4
    assert _tensors(config.input) == [("images", "TYPE_FP32", [3, 64, 64]), ("orig_target_sizes", "TYPE_INT64", [2])]
    assert _tensors(config.output) == [("labels", "TYPE_INT64", [5]), ("boxes", "TYPE_FP32", [5, 4]),
                                       ("scores", "TYPE_FP32", [5])]
    assert list(config.dynamic_batching.preferred_batch_size) == [2, 4]
    assert config.dynamic_batching.max_queue_delay_microseconds == 100
    assert [(g.count, g.kind) for g in config.instance_group] == [(2, 2)]  # KIND_CPU
    assert (tmp_path / "repo" / "det" / "1" / model_file).read_bytes() == artifact.read_bytes()
    assert (tmp_path / "repo" / "det" / "1" / "model.py").exists() == (backend == "python")
    parameters = {k[len("rtdetr_export."):]: json.loads(v.string_value) for k, v in config.parameters.items()}
    assert parameters["classes"] == CLASSES and parameters["export"]["head"] == "detections"
    assert parameters["format"] == ONNX_FORMAT and parameters["artifact"]["file"] == "det.onnx"
    assert parameters["sampler"] == "gather-bilinear" and parameters["role"] == "model"
    # The parameters are the artifact's record: it reads back as the record the file carries.
    record = json.loads(json.dumps(open_artifact(artifact).to_json()))
    assert {key: parameters[key] for key in record if key != "op_census"} == \
        {key: value for key, value in record.items() if key != "op_census"}


def test_static_batch_gets_max_batch_size_0_full_dims_and_a_warning(tmp_path):
    artifact = make_onnx(tmp_path, "raw1", 1)
    result = triton(artifact, "-o", tmp_path / "repo", "--quiet")
    assert result.exit_code == 0, result.output
    assert "static batch of 1" in result.stderr
    config = read_config(tmp_path / "repo", "raw1")
    assert config.max_batch_size == 0 and not config.HasField("dynamic_batching")
    assert _tensors(config.input) == [("images", "TYPE_FP32", [1, 3, 64, 64])]
    assert _tensors(config.output) == [("logits", "TYPE_FP32", [1, QUERIES, 3]), ("pred_boxes", "TYPE_FP32",
                                                                                   [1, QUERIES, 4])]


def test_engine_config_batches_within_its_profile_on_the_gpu(tmp_path):
    engine = make_engine(tmp_path, "det", 1, 4, 16)
    assert triton(engine, "-o", tmp_path / "repo", "--quiet").exit_code == 0
    config = read_config(tmp_path / "repo", "det")
    assert (config.platform, config.max_batch_size) == ("tensorrt_plan", 16)
    assert list(config.dynamic_batching.preferred_batch_size) == [2, 4, 8, 16]
    assert config.instance_group[0].kind == 1  # KIND_GPU
    assert (tmp_path / "repo" / "det" / "1" / "model.plan").read_bytes() == engine.read_bytes()
    too_big = triton(engine, "-o", tmp_path / "other", "--max-batch", 32)
    assert too_big.exit_code == 1 and "exceeds the engine profile's maximum batch 16" in too_big.stderr


def test_static_engine_gets_max_batch_size_0(tmp_path):
    engine = make_engine(tmp_path, "fixed", 2, 2, 2)
    assert triton(engine, "-o", tmp_path / "repo", "--quiet").exit_code == 0
    config = read_config(tmp_path / "repo", "fixed")
    assert config.max_batch_size == 0 and list(config.input[0].dims) == [2, 3, 64, 64]


@pytest.mark.parametrize("head", ["raw", "detections"])
def test_ensemble_chains_preprocessing_the_model_and_detections(tmp_path, head):
    artifact = make_onnx(tmp_path, "m", "batch", head)
    assert triton(artifact, "-o", tmp_path / "repo", "--backend", "python", "--ensemble", "--quiet").exit_code == 0
    ensemble = read_config(tmp_path / "repo", "m_ensemble")
    assert ensemble.platform == "ensemble" and ensemble.max_batch_size == 8
    assert _tensors(ensemble.input) == [("image", "TYPE_STRING", [1])]
    k = QUERIES if head == "raw" else 5
    assert _tensors(ensemble.output) == [("labels", "TYPE_INT64", [k]), ("boxes", "TYPE_FP32", [k, 4]),
                                         ("scores", "TYPE_FP32", [k])]
    steps = [s.model_name for s in ensemble.ensemble_scheduling.step]
    assert steps == (["m_preprocess", "m", "m_postprocess"] if head == "raw" else ["m_preprocess", "m"])
    pre = read_config(tmp_path / "repo", "m_preprocess")
    assert _tensors(pre.output) == [("images", "TYPE_FP32", [3, 64, 64]), ("orig_target_sizes", "TYPE_INT64", [2])]
    assert (tmp_path / "repo" / "m_preprocess" / "1" / "model.py").is_file()
    # The ensemble carries its model's whole record (a client reads the contract behind it) and names the model.
    parameters = {k[len("rtdetr_export."):]: json.loads(v.string_value) for k, v in ensemble.parameters.items()}
    assert parameters.pop("role") == "ensemble" and parameters.pop("inner_model") == "m"
    assert record_from_json(parameters).to_json() == \
        {k: v for k, v in open_artifact(artifact).to_json().items() if k != "op_census"} | {"op_census": {}}


def test_artifact_without_sidecar_is_one_line_and_writes_nothing(tmp_path):
    artifact = make_onnx(tmp_path, "bare", "batch", sidecar=False)
    result = triton(artifact, "-o", tmp_path / "repo")
    assert result.exit_code == 1 and result.stderr.count("\n") == 1
    assert "no sidecar bare.json" in result.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bare.onnx"]


def test_static_batch_with_max_batch_above_1_is_refused(tmp_path):
    artifact = make_onnx(tmp_path, "raw1", 1)
    result = triton(artifact, "-o", tmp_path / "repo", "--max-batch", 4)
    assert result.exit_code == 1 and result.stderr.count("\n") == 1
    assert "static batch of 1" in result.stderr and "--dynamic-batch" in result.stderr
    assert not (tmp_path / "repo").exists()


def test_existing_repository_needs_force_and_force_keeps_other_models(tmp_path):
    artifact = make_onnx(tmp_path, "m", "batch")
    repo = tmp_path / "repo"
    assert triton(artifact, "-o", repo, "--quiet").exit_code == 0
    (repo / "someone_elses").mkdir()
    before = (repo / "m" / "config.pbtxt").read_text()
    refused = triton(artifact, "-o", repo, "--max-batch", 2)
    assert refused.exit_code == 1 and "pass --force" in refused.stderr and refused.stderr.count("\n") == 1
    assert (repo / "m" / "config.pbtxt").read_text() == before
    assert triton(artifact, "-o", repo, "--max-batch", 2, "--force", "--quiet").exit_code == 0
    assert read_config(repo, "m").max_batch_size == 2
    assert sorted(p.name for p in repo.iterdir()) == ["m", "someone_elses"]
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []  # no staging folder left


def test_wrong_backend_for_the_artifact_is_one_line(tmp_path):
    onnx_file = make_onnx(tmp_path, "m", "batch")
    result = triton(onnx_file, "-o", tmp_path / "repo", "--backend", "tensorrt")
    assert result.exit_code == 1 and "build an engine with `rtdetr-export trt`" in result.stderr
    engine = make_engine(tmp_path, "e", 1, 1, 4)
    result = triton(engine, "-o", tmp_path / "repo", "--backend", "python")
    assert result.exit_code == 1 and "only --backend tensorrt serves it" in result.stderr
    assert not (tmp_path / "repo").exists()


def test_json_result_lists_every_model_written(tmp_path):
    artifact = make_onnx(tmp_path, "m", "batch")
    result = triton(artifact, "-o", tmp_path / "repo", "--backend", "python", "--ensemble", "--json")
    assert result.exit_code == 0, result.output
    written = json.loads(result.stdout)
    assert [(m["name"], m["role"]) for m in written["models"]] == [
        ("m", "model"), ("m_preprocess", "preprocess"), ("m_postprocess", "postprocess"), ("m_ensemble", "ensemble")]


def test_the_served_model_role_imports_its_runners_without_torch_or_onnx():
    """The Python-backend model imports rtdetr_export's runners inside the server; that Python may have neither
    torch nor onnx (NVIDIA's container with ``pip install --no-deps rtdetr-export``)."""
    import subprocess
    import sys

    probe = ("import sys\n"
             "from rtdetr_export.backends.onnxruntime_runner import OnnxRuntimeRunner\n"
             "from rtdetr_export.backends.openvino_runner import OpenVinoRunner\n"
             "print(sorted(m for m in ('torch', 'onnx') if m in sys.modules))\n")
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"


def test_the_triton_command_serves_a_d_fine_artifact_as_its_record_states(micro_dfine_fp32, tmp_path):
    """A D-FINE file (the micro D-FINE, tests/micro.py) through the command line: every role written, the model's
    config stating the D-FINE record's tensors (30 queries, 4 classes, 128x128, dynamic batch)."""
    result = triton(micro_dfine_fp32, "-o", tmp_path / "repo", "--backend", "python", "--ensemble", "--json")
    assert result.exit_code == 0, result.output
    assert [m["name"] for m in json.loads(result.stdout)["models"]] == [
        "dfine_fp32", "dfine_fp32_preprocess", "dfine_fp32_postprocess", "dfine_fp32_ensemble"]
    config = parse_config((tmp_path / "repo" / "dfine_fp32" / "config.pbtxt").read_text())
    record = open_artifact(micro_dfine_fp32)
    assert record.model.config.model_name == "D-FINE"
    assert [(t.name, list(t.dims)) for t in config.output] == [
        (spec.name, list(spec.shape[1:])) for spec in record.io.outputs] == [("logits", [30, 4]),
                                                                             ("pred_boxes", [30, 4])]
    assert [(t.name, list(t.dims)) for t in config.input] == [("images", [3, 128, 128])]
    assert config.max_batch_size == 8
