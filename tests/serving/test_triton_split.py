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
from rtdetr_export.errors import MissingDependencyError
from rtdetr_export.imaging import load_image, preprocess
from rtdetr_export.pipeline import Detector, OnnxExportOptions, export_onnx, export_split
from rtdetr_export.predict import predict_images
from rtdetr_export.verify import compare_raw, thresholds_for
from rtdetr_export.verify.compare import compare_detections
from rtdetr_export.verify.verification import box_scale

pytest.importorskip("tritonclient.grpc", reason="Triton configs need tritonclient: pip install -e '.[triton]'")

from rtdetr_export.backends.triton_runner import TritonRunner  # noqa: E402
from rtdetr_export.serving import TritonOptions, parse_config, write_repository  # noqa: E402
from rtdetr_export.serving.client import open_triton_detector  # noqa: E402
from rtdetr_export.serving.config import SERVED  # noqa: E402
from rtdetr_export.serving.load import run_load  # noqa: E402
from rtdetr_export.serving.server import LocalTriton, bundled_server, stub_site  # noqa: E402
from paths import ROOT, TESTS  # noqa: E402
from tiers import costly
from micro import MICRO, MICRO_SIZE

# One worker runs this module with the other server tests (--dist loadgroup): its exports are made once, and two
# servers on 2 cores at once would only slow each other down.
pytestmark = pytest.mark.xdist_group("triton_server")

SIZE, QUERIES, CLASSES, TOP_K = MICRO_SIZE, 30, 4, 20  # the micro model (tests/micro.py)
PHOTOS = TESTS / "data" / "images"
PHOTO_NAMES = ["astronaut.jpg", "cat_chelsea.jpg", "coffee_cup.jpg"]
TEMPLATE = ROOT / "rtdetr_export" / "serving" / "python_model.py"
THRESHOLD = 0.3


@pytest.fixture(scope="module")
def model():
    from rtdetr_export.weights import load_model

    return load_model(preset="tiny", image_size=SIZE, seed=0, **MICRO)


def _one_thread(graph):
    """Each graph of a local split runner on ONNX Runtime with one thread, as the served graphs run."""
    from rtdetr_export.backends import OnnxRuntimeRunner

    return OnnxRuntimeRunner(graph, threads=1)


def _options(head: str) -> OnnxExportOptions:
    # Verification of the split is tests/export/test_split_export.py's, simplification of its graphs too (an
    # unsimplified graph declares the same static axes: export/torch_export.with_static_output_dims); here the
    # files only need to be the export's.
    return OnnxExportOptions(dynamic_batch=True, head=head, top_k=TOP_K, verify=False, simplify=False)


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
@pytest.mark.parametrize("backend", ["onnxruntime", "openvino", "python"])
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
    assert parameters.pop("inner_model") == f"{name}_encoder"  # where the load test reads the batches formed
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


@pytest.mark.slow  # its own static-batch split export
def test_a_static_batch_split_gets_max_batch_size_0_in_every_step_and_a_warning(model, tmp_path):
    export_split(model, tmp_path / "fixed.onnx", OnnxExportOptions(head="detections", top_k=TOP_K, verify=False))
    repo = tmp_path / "repo"
    refused = triton(tmp_path / "fixed.json", "-o", repo, "--max-batch", 4)
    assert refused.exit_code == 1 and "static batch of 1" in refused.stderr and not repo.exists()
    result = triton(tmp_path / "fixed.json", "-o", repo, "--quiet")
    assert result.exit_code == 0, result.output
    assert "warning: fixed.json has a static batch of 1" in result.stderr
    ensemble = read_config(repo, "fixed")
    assert ensemble.max_batch_size == 0
    assert _tensors(ensemble.input) == [("images", "TYPE_FP32", [1, 3, SIZE, SIZE]),
                                        ("orig_target_sizes", "TYPE_INT64", [1, 2])]
    assert _tensors(ensemble.output)[0] == ("labels", "TYPE_INT64", [1, TOP_K])
    for step in ("encoder", "select", "decoder", "detections"):
        config = read_config(repo, f"fixed_{step}")
        assert config.max_batch_size == 0 and not config.HasField("dynamic_batching"), step
        assert all(list(t.dims)[0] == 1 for t in [*config.input, *config.output]), step


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


# ---- on a real tritonserver ----------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
@costly
def singles(model, tmp_path_factory):
    """The single-file artifact of each head, exported from the same model as ``splits``: {head: file}."""
    folder = tmp_path_factory.mktemp("single_artifacts")
    for head in ("raw", "detections"):
        export_onnx(model, folder / f"{head}.onnx", _options(head))
    return {head: folder / f"{head}.onnx" for head in ("raw", "detections")}


@pytest.fixture(scope="module")
@costly
def server(splits, singles, tmp_path_factory):
    """One repository: raw, detections (single files), raw_split, detections_split, and raw_split_ensemble (the
    JPEG ensemble over the served split). Python backend, ONNX Runtime with one thread, as the local runners."""
    try:
        bundled_server()
        stub_site()
    except MissingDependencyError as exc:
        pytest.skip(f"no usable tritonserver: {exc}")
    repository = tmp_path_factory.mktemp("triton_split") / "repo"
    options = dict(backend="python", threads=1, max_queue_delay_us=2000)
    write_repository([singles["raw"], singles["detections"], splits["detections"]], repository,
                     TritonOptions(**options))
    write_repository([splits["raw"]], repository, TritonOptions(**options, ensemble=True), force=True)
    local = LocalTriton(repository, stop_with_parent=True).start()
    yield local
    local.stop()


def _feed(head: str, batch: int) -> dict[str, np.ndarray]:
    pictures = [load_image(PHOTOS / name) for name in PHOTO_NAMES[:batch]]
    feed = {"images": np.concatenate([preprocess(p, (SIZE, SIZE)) for p in pictures])}
    if head == "detections":
        feed["orig_target_sizes"] = np.array([[p.width, p.height] for p in pictures], dtype=np.int64)
    return feed


def _served(server, model: str, feed: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    with TritonRunner(f"grpc://{server.grpc_url}", model) as remote:
        return remote.infer(feed)


@pytest.mark.slow
@pytest.mark.parametrize("batch", [1, 3])
@pytest.mark.parametrize("head", ["raw", "detections"])
def test_the_served_split_answers_exactly_as_the_local_split_runner(server, splits, head, batch):
    record = open_artifact(splits[head])
    feed = _feed(head, batch)
    served = _served(server, f"{head}_split", feed)
    folder = splits[head].parent
    with SplitRunner(folder / record.encoder.file, folder / record.decoder.file, QUERIES, head, TOP_K,
                     graph=_one_thread) as runner:
        local = runner.infer(feed)
    assert sorted(local) == sorted(record.io.output_names)
    for name in record.io.output_names:
        assert served[name] is not None, name
        assert (served[name].shape, served[name].dtype) == (local[name].shape, local[name].dtype), name
        # Exact: the same graphs on ONNX Runtime with one thread, and the same host step code (numpy 1.x in the
        # server's stub, this interpreter's numpy here: sorting, gathering and sigmoid agree bit for bit).
        np.testing.assert_array_equal(served[name], local[name], err_msg=name)


@pytest.mark.slow
@pytest.mark.parametrize("batch", [1, 3])
@pytest.mark.parametrize("head", ["raw", "detections"])
def test_the_served_split_equals_the_single_file_repository_within_fp32_limits(server, head, batch):
    feed = _feed(head, batch)
    single, split = _served(server, head, feed), _served(server, f"{head}_split", feed)
    assert sorted(split) == sorted(single) and all(value is not None for value in split.values())
    limits = thresholds_for("fp32")
    # Two graphs with the selection between them against one graph: the same model in float32, not the same ops.
    result = compare_raw(single, split, limits) if head == "raw" else \
        compare_detections(single, split, limits, box_scale(feed))
    assert result.failures == [] and result.reordered_rows == 0
    assert result.outputs and all(check.passed for check in result.outputs.values())


@pytest.mark.slow
@pytest.mark.parametrize("head", ["raw", "detections"])
def test_a_client_sees_the_single_files_model_config(server, head):
    import tritonclient.http as http

    client = http.InferenceServerClient(server.http_url)
    single, split = client.get_model_config(head), client.get_model_config(f"{head}_split")
    for field in ("input", "output", "max_batch_size"):
        assert split[field] == single[field], field
    assert client.get_model_metadata(f"{head}_split")["inputs"] == client.get_model_metadata(head)["inputs"]
    assert client.get_model_metadata(f"{head}_split")["outputs"] == client.get_model_metadata(head)["outputs"]


@pytest.mark.slow
@pytest.mark.parametrize("served_model", ["raw_split", "raw_split_ensemble"])
def test_served_split_predictions_equal_local_predict_with_the_split_runner(server, splits, tmp_path, served_model):
    assert isinstance(Detector.from_artifact(splits["raw"], _one_thread).runner, SplitRunner)
    photos = [PHOTOS / name for name in PHOTO_NAMES]
    local = predict_images(photos, Detector.from_artifact(splits["raw"], _one_thread), tmp_path / "local", THRESHOLD)
    detector = open_triton_detector(f"grpc://{server.grpc_url}", served_model)
    served = predict_images(photos, detector, tmp_path / "served", THRESHOLD)
    assert served.failures == [] and len(served.predictions["annotations"]) > 0
    assert served.predictions["annotations"] == local.predictions["annotations"]
    assert served.predictions["images"] == local.predictions["images"]


@pytest.mark.slow
@pytest.mark.parametrize("served_model", ["raw_split", "raw_split_ensemble"])
def test_the_load_test_reads_the_batches_graph_1_formed(server, served_model):
    pictures = [load_image(PHOTOS / name) for name in PHOTO_NAMES]
    result = run_load(f"grpc://{server.grpc_url}", served_model, pictures, clients=8, seconds=3.0)
    assert result.failed == 0 and result.aborted is None and result.requests > 0
    assert result.dynamic_batching is True
    # Every request went through graph 1 once: the batches it ran cover them (an ensemble's own count is empty).
    assert sum(size * count for size, count in result.batch_sizes.items()) >= result.requests
