"""The split export (``rtdetr-export onnx --split``): graph 1 -> host query selection -> graph 2.

Neither graph holds the ops edge runtimes lack; the three steps on ONNX Runtime equal the PyTorch reference within
the FP32 limits; the host step selects exactly what the single graph's TopK selects, ties included; and a split
artifact is one record whose files must all be there and belong together.
"""

from __future__ import annotations

import importlib.util
import shutil
from collections import Counter
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch

from rtdetr_export.artifact import GraphOptions, PrecisionOptions, SplitRecord, open_artifact
from rtdetr_export.backends.split_runner import SplitRunner
from rtdetr_export.errors import RTDetrExportError
from rtdetr_export.export.split_export import SPLIT_FORBIDDEN
from rtdetr_export.export.torch_export import export_graph, trace_to_onnx
from rtdetr_export.files import atomic_outputs
from rtdetr_export.imaging.host_step import gather_rows, select_queries, top_detections, top_k_indices
from rtdetr_export.model import Sampler, SizeRange
from rtdetr_export.model.heads import DetectionsHead
from rtdetr_export.model.query_selection import gather_rows as torch_gather_rows, select_topk
from rtdetr_export.pipeline import OnnxExportOptions, export_split
from rtdetr_export.pipeline import split as split_pipeline
from rtdetr_export.verify import compare_raw, thresholds_for
from rtdetr_export.verify.reference import ReferenceRunner
from rtdetr_export.weights import load_model
from tiers import costly
from micro import MICRO, MICRO_SIZE, micro_model

pytestmark = pytest.mark.xdist_group("split_export")

SIZE = MICRO_SIZE  # the micro model (tests/micro.py): 336 encoder cells, 30 queries, 4 classes


@pytest.fixture(scope="module")
def model():
    return micro_model()


@pytest.fixture(scope="module")
@costly
def artifact(model, tmp_path_factory):
    """One verified split export (dynamic batch, raw head) shared by the tests that only read it."""
    folder = tmp_path_factory.mktemp("split")
    return export_split(model, folder / "micro.onnx", OnnxExportOptions(dynamic_batch=True))


def census(path: Path) -> Counter:
    return Counter(node.op_type for node in onnx.load(str(path)).graph.node)


def test_the_export_writes_two_graphs_and_one_sidecar(artifact):
    folder = artifact.sidecar.parent
    assert sorted(p.name for p in folder.iterdir()) == ["micro.decoder.onnx", "micro.encoder.onnx", "micro.json"]
    record = open_artifact(artifact.sidecar)
    assert isinstance(record, SplitRecord)
    assert record.header.format == "rtdetr-export/onnx-split" and record.header.schema_version == 4
    assert (record.encoder.file, record.decoder.file) == ("micro.encoder.onnx", "micro.decoder.onnx")
    assert record.host_step == 1 and record.precision == "fp32"
    assert record.classes == list(record.model.config.class_names)
    assert record.encoder.io.input_names == ["images"]
    assert record.encoder.io.output_names == ["memory", "cell_targets", "cell_logits", "cell_box_logits"]
    assert record.decoder.io.input_names == ["memory", "query_targets", "reference_logits"]
    assert record.io.input_names == ["images"] and record.io.output_names == ["logits", "pred_boxes"]
    assert record.verification.passed and [run.batch for run in record.verification.runs] == [1, 4]
    # Either graph opens the same record.
    assert open_artifact(artifact.encoder).to_json() == record.to_json() == open_artifact(artifact.decoder).to_json()


@pytest.mark.slow
def test_neither_graph_holds_the_ops_edge_runtimes_lack(artifact, model):
    for path in (artifact.encoder, artifact.decoder):
        ops = census(path)
        assert not set(SPLIT_FORBIDDEN) & set(ops), f"{path.name}: {sorted(set(SPLIT_FORBIDDEN) & set(ops))}"
        assert ops == Counter(open_artifact(path).graphs[path.name.split(".")[1]].op_census)
    # The single graph of the same model does hold them: the census above is not vacuous.
    single = Counter(node.op_type for node in export_graph(model, GraphOptions()).graph.graph.node)
    assert single["TopK"] >= 1 and single["GatherElements"] >= 1
    assert census(artifact.decoder)["Gather"] >= 1  # the sampler's flat-index gathers


def assert_split_equals_the_reference(model, artifact, batch: int) -> None:
    """Graph 1 -> host step -> graph 2 on ONNX Runtime equals the PyTorch model within the FP32 limits, every query
    row in place, on a random batch."""
    feed = {"images": np.random.default_rng(batch).random((batch, 3, SIZE, SIZE), dtype=np.float32)}
    with SplitRunner(artifact.encoder, artifact.decoder, model.config.num_queries) as runner:
        split = runner.infer(feed)
    with ReferenceRunner(model, "raw") as reference:
        ref = reference.infer(feed)
    result = compare_raw(ref, split, thresholds_for("fp32"))
    assert result.failures == [] and result.reordered_rows == 0
    for name in ("logits", "pred_boxes"):
        assert split[name].shape == ref[name].shape
        assert result.outputs[name].value <= thresholds_for("fp32").max_abs


@pytest.mark.parametrize("batch", [1, 4])
def test_split_equals_the_reference(artifact, model, batch):
    assert_split_equals_the_reference(model, artifact, batch)


@pytest.mark.slow
@pytest.mark.parametrize("method, sampler", [("discrete", Sampler.GATHER_NEAREST),
                                             ("default", Sampler.GRIDSAMPLE_BILINEAR)])
def test_every_sampler_splits(tmp_path, method, sampler):
    model = load_model(preset="tiny", image_size=SIZE, method=method, **MICRO)
    result = export_split(model, tmp_path / "m.onnx", OnnxExportOptions(dynamic_batch=True, sampler=sampler))
    record = open_artifact(result.sidecar)
    assert record.sampler is sampler and record.verification.passed
    assert [run.batch for run in record.verification.runs] == [1, 4]
    assert ("GridSample" in census(result.decoder)) == sampler.has_gridsample
    assert "GridSample" not in census(result.encoder)


def _selection_graph(path: Path) -> Path:
    """The single graph's query selection alone (model/query_selection.py traced: ReduceMax, TopK, GatherElements),
    for ONNX Runtime to select with."""

    class Selection(torch.nn.Module):
        def forward(self, cell_logits, cell_targets, cell_box_logits):
            index = select_topk(cell_logits, 30)
            return index, torch_gather_rows(cell_targets, index), torch_gather_rows(cell_box_logits, index)

    inputs = (torch.zeros(2, 336, 4), torch.zeros(2, 336, 32), torch.zeros(2, 336, 4))
    graph = trace_to_onnx(Selection(), inputs, ["cell_logits", "cell_targets", "cell_box_logits"],
                          ["index", "query_targets", "reference_logits"], 17, dynamic_batch=True)
    assert {"TopK", "GatherElements"} <= {node.op_type for node in graph.graph.node}
    onnx.save(graph, str(path))
    return path


def _cells_with_ties(seed: int, k: int = 30) -> dict[str, np.ndarray]:
    """Seeded graph-1 outputs whose best class scores tie exactly at and around the top-k boundary (and, every
    fifth seed, on a coarse grid where ties are everywhere)."""
    rng = np.random.default_rng(seed)
    logits = rng.normal(size=(2, 336, 4)).astype(np.float32)
    if seed % 5 == 0:
        logits = np.round(logits * 2) / 2
    for b in range(2):
        best = np.sort(logits[b].max(-1))[::-1]
        tie = best[k - 1]  # the score of the last selected cell
        cells = rng.choice(336, size=int(rng.integers(2, 8)), replace=False)
        logits[b, cells] = np.minimum(logits[b, cells], tie)
        logits[b, cells, rng.integers(0, 4, size=len(cells))] = tie
    return {"memory": rng.normal(size=(2, 336, 32)).astype(np.float32),
            "cell_targets": rng.normal(size=(2, 336, 32)).astype(np.float32), "cell_logits": logits,
            "cell_box_logits": rng.normal(size=(2, 336, 4)).astype(np.float32)}


def test_host_selection_equals_the_graphs_topk_with_planted_ties(tmp_path):
    import onnxruntime as ort

    session = ort.InferenceSession(str(_selection_graph(tmp_path / "selection.onnx")))
    boundary_ties = 0
    for seed in range(50):
        cells = _cells_with_ties(seed)
        index, targets, boxes = session.run(None, {name: cells[name] for name in
                                                   ("cell_logits", "cell_targets", "cell_box_logits")})
        host = select_queries(cells, 30)
        np.testing.assert_array_equal(top_k_indices(cells["cell_logits"].max(-1), 30), index)
        np.testing.assert_array_equal(host["query_targets"], targets)
        np.testing.assert_array_equal(host["reference_logits"], boxes)
        scores = cells["cell_logits"].max(-1)
        kth = np.take_along_axis(scores, index[:, -1:], axis=1)
        # A tie across the boundary: a cell left out scores exactly what the last one kept scores.
        left_out = np.ones_like(scores, dtype=bool)
        np.put_along_axis(left_out, index, False, axis=1)
        boundary_ties += int(((scores == kth) & left_out).any(1).sum())
    assert boundary_ties >= 50  # the planted ties really straddle the boundary, in most images


def test_host_detections_equal_the_detections_head():
    rng = np.random.default_rng(0)
    logits = rng.normal(size=(3, 30, 4)).astype(np.float32)
    boxes = rng.random((3, 30, 4), dtype=np.float32)
    sizes = np.array([[640, 480], [128, 128], [1280, 720]], dtype=np.int64)

    class Raw(torch.nn.Module):
        def forward(self, images):
            return torch.from_numpy(logits), torch.from_numpy(boxes)

    labels, picked, scores = DetectionsHead(Raw(), 20)(torch.zeros(1), torch.from_numpy(sizes))
    host = top_detections(logits, boxes, sizes, 20)
    np.testing.assert_array_equal(host["labels"], labels.numpy())
    np.testing.assert_allclose(host["scores"], scores.numpy(), rtol=0, atol=1e-6)
    np.testing.assert_allclose(host["boxes"], picked.numpy(), rtol=0, atol=1e-3)  # pixels, float32 at 1280


def test_host_top_k_breaks_ties_by_the_lower_index():
    scores = np.array([[1.0, 3.0, 3.0, 2.0, 3.0]], dtype=np.float32)
    np.testing.assert_array_equal(top_k_indices(scores, 4), [[1, 2, 4, 3]])
    np.testing.assert_array_equal(gather_rows(np.arange(10).reshape(1, 5, 2), np.array([[4, 0]])),
                                  [[[8, 9], [0, 1]]])


def _copy(artifact, folder: Path) -> Path:
    folder.mkdir()
    for path in (artifact.encoder, artifact.decoder, artifact.sidecar):
        shutil.copy(path, folder / path.name)
    return folder


@pytest.mark.parametrize("opened", ["micro.json", "micro.encoder.onnx"])
def test_a_missing_graph_is_named_in_one_line(artifact, tmp_path, opened):
    folder = _copy(artifact, tmp_path / "copy")
    (folder / "micro.decoder.onnx").unlink()
    with pytest.raises(RTDetrExportError) as error:
        open_artifact(folder / opened)
    message = str(error.value)
    assert "micro.decoder.onnx" in message and "missing" in message and "\n" not in message


@pytest.mark.slow
def test_graphs_of_two_exports_are_refused(artifact, tmp_path):
    other = export_split(micro_model(seed=1), tmp_path / "micro.onnx", OnnxExportOptions(dynamic_batch=True,
                                                                                         verify=False))
    folder = _copy(artifact, tmp_path / "copy")
    shutil.copy(other.decoder, folder / "micro.decoder.onnx")  # same name, another export's graph
    for opened in ("micro.json", "micro.encoder.onnx", "micro.decoder.onnx"):
        with pytest.raises(RTDetrExportError) as error:
            open_artifact(folder / opened)
        message = str(error.value)
        assert "micro.decoder.onnx" in message and "sha256" in message and "\n" not in message


@pytest.mark.slow
def test_a_failed_export_writes_nothing(model, tmp_path, monkeypatch):
    def fail(*args, **kwargs):
        raise RTDetrExportError("verification failed: planted")

    monkeypatch.setattr(split_pipeline, "verify_split_graphs", fail)
    with pytest.raises(RTDetrExportError, match="planted"):
        export_split(model, tmp_path / "m.onnx", OnnxExportOptions())
    assert list(tmp_path.iterdir()) == []


def test_files_written_together_are_all_put_back_when_one_fails(tmp_path):
    first, second = tmp_path / "a.onnx", tmp_path / "b"
    first.write_text("old a")
    second.mkdir()  # no file can replace a folder: the second move fails after the first was made
    with pytest.raises(OSError):
        with atomic_outputs([first, second]) as (tmp_a, tmp_b):
            tmp_a.write_text("new a")
            tmp_b.write_text("new b")
    assert first.read_text() == "old a" and second.is_dir()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.onnx", "b"]  # no temporary left behind


@pytest.mark.parametrize("options, why", [
    (OnnxExportOptions(size_range=SizeRange((96, 96), (128, 128), (160, 160))), "fixed input size"),
    (OnnxExportOptions(precision=PrecisionOptions("fp32", calib_images="calib")), "--calib-images needs"),
])
def test_what_a_split_cannot_take_is_refused_before_any_work(model, tmp_path, options, why):
    with pytest.raises(RTDetrExportError, match=why):
        export_split(model, tmp_path / "m.onnx", options)
    assert list(tmp_path.iterdir()) == []


def test_verify_and_inspect_take_a_split_artifact(artifact):
    from click.testing import CliRunner

    from rtdetr_export.cli.main import main

    for opened in (artifact.sidecar, artifact.decoder):
        result = CliRunner().invoke(main, ["verify", str(opened)])
        assert result.exit_code == 0, result.output
        assert "onnxruntime-cpu-split" in result.output and result.output.rstrip().endswith("PASS")
    if importlib.util.find_spec("openvino") is not None:  # both graphs on OpenVINO, FP32 limits under f32
        result = CliRunner().invoke(main, ["verify", str(artifact.sidecar), "--openvino", "f32"])
        assert result.exit_code == 0, result.output
        assert "openvino-cpu-f32-split" in result.output and result.output.rstrip().endswith("PASS")
    result = CliRunner().invoke(main, ["inspect", str(artifact.encoder)])
    assert result.exit_code == 0, result.output
    assert "query selection on the host (host step v1)" in result.output
    assert "graph 1 (encoder)" in result.output and "graph 2 (decoder)" in result.output
    assert "TopK" not in result.output and "edited after export" not in result.output
    memory = open_artifact(artifact.sidecar).encoder.io["memory"]
    assert memory.shape == ("batch", 336, 32)  # static where it can be: 16x16 + 8x8 + 4x4 cells at 128 px, d_model 32


@pytest.mark.slow
def test_the_onnx_command_writes_a_split_artifact(tmp_path):
    import json

    from click.testing import CliRunner

    from rtdetr_export.cli.main import main

    output = tmp_path / "tiny.onnx"
    result = CliRunner().invoke(main, ["onnx", "--preset", "tiny", "--image-size", "320", "--split", "--json",
                                       "-o", str(output)])
    assert result.exit_code == 0, result.output
    record = json.loads(result.output[result.output.index("{"):])
    assert record["format"] == "rtdetr-export/onnx-split" and record["verification"]["passed"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["tiny.decoder.onnx", "tiny.encoder.onnx", "tiny.json"]
    again = CliRunner().invoke(main, ["onnx", "--preset", "tiny", "--image-size", "320", "--split", "-o", str(output)])
    assert again.exit_code != 0 and "already exists" in again.output and "--force" in again.output


@pytest.mark.slow
@pytest.mark.parametrize("sampler, head", [
    (Sampler.GATHER_BILINEAR, "detections"),   # what NPUs without GridSample take (RKNN; any sampler runs on LiteRT)
    (Sampler.GRIDSAMPLE_BILINEAR, "raw"),      # what ncnn takes (its decoder graph in the rank-4 GridSample layout)
], ids=["gather-detections", "gridsample-raw"])
def test_r18vd_split_equals_the_reference_at_640_with_the_sampler_each_target_needs(tmp_path, sampler, head):
    """Both samplers and both heads in two real-size exports (each export is minutes on 2 cores)."""
    model = load_model(preset="r18vd")
    result = export_split(model, tmp_path / "r18vd.onnx", OnnxExportOptions(dynamic_batch=True, head=head,
                                                                           sampler=sampler))
    runs = result.record.verification.runs
    assert [run.batch for run in runs] == [1, 4] and all(not run.failures for run in runs)
    for run in runs:
        assert run.kind == "tensor" and all(check.passed for check in run.outputs.values())
    for graph in (result.encoder, result.decoder):
        assert not set(SPLIT_FORBIDDEN) & set(census(graph)), (graph.name, sorted(census(graph)))


class HigherIndexFirst(SplitRunner):
    """A host step that orders exact ties the other way: stands for a runtime whose rounding keeps other cells among
    (near-)tied selection scores than the reference."""

    def select(self, cells):
        scores = cells["cell_logits"].max(-1)[:, ::-1]
        return scores.shape[1] - 1 - top_k_indices(scores, self.num_queries)


@pytest.mark.slow
def test_a_choice_among_tied_selection_scores_is_proven_not_refused(model, tmp_path):
    import copy

    from rtdetr_export.verify import VerificationPlan, verify_candidate

    tied = copy.deepcopy(model)
    with torch.no_grad():
        tied.decoder.enc_score_head.weight.zero_()  # every cell scores its class biases: all cells tie
    result = export_split(tied, tmp_path / "tied.onnx", OnnxExportOptions(verify=False))
    plan = VerificationPlan.for_graph(GraphOptions(), tied.config.image_size)
    runner = HigherIndexFirst(result.encoder, result.decoder, tied.config.num_queries)
    verification = verify_candidate(tied, runner, plan)
    run = verification.runs[0]
    assert verification.passed and run.reselected_queries == tied.config.num_queries
    # Without the proof the other cells are a plain failure: this verification is not vacuous.
    with runner:
        other = runner.infer(plan.feeds()[0])
    with ReferenceRunner(tied, "raw") as reference:
        assert compare_raw(reference.infer(plan.feeds()[0]), other, thresholds_for("fp32")).failures


# -- D-FINE: the same cut, host step, sidecar and runner; its graph 2 writes the LQE's top-k with Max/Min ----------
@pytest.fixture(scope="module")
@costly
def dfine_artifact(tmp_path_factory):
    """A verified split export of the micro D-FINE (tests/micro.py; dynamic batch, raw head, not simplified)."""
    from micro import micro_dfine_model

    model = micro_dfine_model()
    folder = tmp_path_factory.mktemp("dfine_split")
    return model, export_split(model, folder / "dfine.onnx", OnnxExportOptions(dynamic_batch=True, simplify=False))


def test_a_d_fine_model_splits_and_its_verification_passed(dfine_artifact):
    model, artifact = dfine_artifact
    record = open_artifact(artifact.sidecar)
    assert isinstance(record, SplitRecord) and type(record.model.config).__name__ == "DFineConfig"
    assert record.to_json()["model"]["family"] == "dfine"
    assert record.encoder.io.output_names == ["memory", "cell_targets", "cell_logits", "cell_box_logits"]
    assert record.decoder.io.input_names == ["memory", "query_targets", "reference_logits"]
    assert record.verification.passed and [run.batch for run in record.verification.runs] == [1, 4]


@pytest.mark.parametrize("batch", [1, 3])
def test_a_d_fine_split_equals_its_reference(dfine_artifact, batch):
    assert_split_equals_the_reference(*dfine_artifact, batch)


def test_d_fine_graphs_hold_no_topk_and_the_lqe_is_written_with_max_and_min(dfine_artifact, micro_dfine_fp32):
    model, artifact = dfine_artifact
    for path in (artifact.encoder, artifact.decoder):
        assert not set(SPLIT_FORBIDDEN) & set(census(path)), (path.name, sorted(census(path)))
    decoder = census(artifact.decoder)
    assert decoder["Max"] + decoder["Min"] == 58  # model/fdr.py top_values: k = 4 over 33 bins
    # The single file of the same architecture holds two TopK (query selection, LQE): the census is not vacuous.
    assert census(micro_dfine_fp32)["TopK"] == 2
    # The export wrote a copy: the model it was given still computes its LQE with TopK.
    assert not any(getattr(m, "topk_free", False) for m in model.modules())


def test_verify_and_inspect_take_a_d_fine_split_and_name_its_family(dfine_artifact):
    from click.testing import CliRunner

    from rtdetr_export.cli.main import main

    _, artifact = dfine_artifact
    result = CliRunner().invoke(main, ["verify", str(artifact.sidecar)])
    assert result.exit_code == 0, result.output
    assert "onnxruntime-cpu-split" in result.output and result.output.rstrip().endswith("PASS")
    result = CliRunner().invoke(main, ["inspect", str(artifact.sidecar)])
    assert result.exit_code == 0, result.output
    model_line = next(line for line in result.output.splitlines() if line.strip().startswith("model "))
    assert model_line.split()[1] == "D-FINE,", model_line  # the record's family, not "RT-DETRv2"
    assert "TopK" not in result.output


@pytest.mark.slow
@pytest.mark.parametrize("method, sampler", [("discrete", Sampler.GATHER_NEAREST),
                                             ("default", Sampler.GRIDSAMPLE_BILINEAR)])
def test_every_sampler_splits_d_fine(tmp_path, method, sampler):
    from micro import micro_dfine_model

    model = micro_dfine_model(decoder_method=method)
    result = export_split(model, tmp_path / "m.onnx", OnnxExportOptions(dynamic_batch=True, sampler=sampler,
                                                                       simplify=False))
    record = open_artifact(result.sidecar)
    assert record.sampler is sampler and record.verification.passed
    assert ("GridSample" in census(result.decoder)) == sampler.has_gridsample


@pytest.mark.slow
@pytest.mark.parametrize("preset_name", ["deimv2_atto", "deimv2_n"])
def test_deimv2_splits_where_d_fine_does(tmp_path, preset_name):
    """DEIMv2's decoder is D-FINE's with its own layers (model/deimv2_decoder.py), so the same cut holds: both
    layouts (Lite and hybrid) split, verify against PyTorch, and graph 2 writes its LQE with Max/Min."""
    model = load_model(preset=preset_name, seed=0, image_size=(320, 320), num_queries=100)
    result = export_split(model, tmp_path / "m.onnx", OnnxExportOptions(simplify=False))
    record = open_artifact(result.sidecar)
    assert record.to_json()["model"]["family"] == "deimv2" and record.verification.passed
    for path in (result.encoder, result.decoder):
        assert not set(SPLIT_FORBIDDEN) & set(census(path)), (path.name, sorted(census(path)))
    assert census(result.decoder)["Max"] > 0


@pytest.mark.slow
def test_the_onnx_command_splits_the_trained_d_fine_for_ncnn(tmp_path):
    """The trained D-FINE fixture through the CLI, as the edge rows export it (benchmarks/portability_fixture.py):
    simplified, gridsample-bilinear in the rank-4 layout, verified against PyTorch at its 320 px."""
    import json

    from click.testing import CliRunner

    from conftest import SHAPES_DFINE
    from rtdetr_export.cli.main import main

    output = tmp_path / "dfine.onnx"
    result = CliRunner().invoke(main, ["onnx", "--model", str(SHAPES_DFINE), "--split", "--bilinear-op",
                                       "gridsample", "--json", "-o", str(output)])
    assert result.exit_code == 0, result.output
    record = json.loads(result.output[result.output.index("{"):])
    assert record["format"] == "rtdetr-export/onnx-split" and record["verification"]["passed"]
    assert not set(SPLIT_FORBIDDEN) & set(census(tmp_path / "dfine.decoder.onnx"))
    assert "GridSample" in census(tmp_path / "dfine.decoder.onnx")


def test_verify_proves_a_split_artifact_again_from_its_sidecar(micro_split):
    """The fast tier's split (tests/micro.py, unsimplified): `rtdetr-export verify MODEL.json` runs graph 1, the
    host step and graph 2 again and judges them against the PyTorch model its record rebuilds."""
    import json

    from click.testing import CliRunner

    from rtdetr_export.cli.main import main

    result = CliRunner().invoke(main, ["verify", str(micro_split), "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.output)
    assert report["passed"] is True and report["candidate"] == "onnxruntime-cpu-split", report


@pytest.mark.parametrize("command", ["verify", "inspect"])
@pytest.mark.parametrize("case", ["missing", "mixed"])
def test_verify_and_inspect_refuse_a_split_whose_files_do_not_belong_together(broken_split, command, case):
    from click.testing import CliRunner

    from rtdetr_export.cli.main import main
    from split_cases import one_line_error

    sidecar, why = broken_split[case]
    before = sorted(p.name for p in sidecar.parent.iterdir())
    result = CliRunner().invoke(main, [command, str(sidecar.parent / "micro.encoder.onnx")])
    assert result.exit_code != 0
    line = one_line_error(result.output)
    assert str(sidecar.parent / "micro.decoder.onnx") in line and why in line
    assert sorted(p.name for p in sidecar.parent.iterdir()) == before
