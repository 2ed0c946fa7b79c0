"""Exact ties in a top-k are ordered as ONNX TopK orders them (the lower index first), in eager PyTorch and in the
exported graph alike, for the decoder's query selection and the detections head.

torch.topk leaves the order of equal values unspecified; on CPU, for inputs of the model's sizes, it keeps another
subset of a tied group than ONNX Runtime does. The reference must choose what its export chooses.

Scores equal only up to float noise are another matter: each runtime's last bit decides. Verification then reads the
cells the ONNX file kept and proves them by re-running the reference with them (verify/selection.py).
"""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from click.testing import CliRunner
from torch import nn

from conftest import hf_v1_config
from rtdetr_export.cli import main
from rtdetr_export.export import GraphOptions, export_graph
from rtdetr_export.imaging.inputs import synthetic_images, verification_images
from rtdetr_export.model.query_selection import select_topk, topk_lower_index_first
from rtdetr_export.verify.selection import TIE_TOLERANCE, TiedSelection
from rtdetr_export.weights import load_model


class SelectQueries(nn.Module):
    def __init__(self, k: int):
        super().__init__()
        self.k = k

    def forward(self, scores: torch.Tensor) -> torch.Tensor:
        return select_topk(scores, self.k)


class TopDetections(nn.Module):
    def __init__(self, k: int):
        super().__init__()
        self.k = k

    def forward(self, scores: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return topk_lower_index_first(scores, self.k, dim=-1)


def _exported(module: nn.Module, example: torch.Tensor) -> ort.InferenceSession:
    buffer = io.BytesIO()
    torch.onnx.export(module, (example,), buffer, input_names=["x"], opset_version=17, dynamo=False)
    graph = onnx.load_from_string(buffer.getvalue())
    assert "TopK" in {node.op_type for node in graph.graph.node}  # the tie rule is the graph's own TopK
    return ort.InferenceSession(buffer.getvalue(), providers=["CPUExecutionProvider"])


def _planted_ties(shape: tuple[int, ...], k: int, seed: int) -> torch.Tensor:
    """Random scores where 40 cells per image share the value at rank k - 10: a tied group across the boundary."""
    g = torch.Generator().manual_seed(seed)
    scores = torch.randn(shape, generator=g)
    flat = scores.reshape(shape[0], -1)  # a view: the ties are planted in ``scores``
    for row in flat:
        boundary = torch.sort(row, descending=True).values[k - 10].clone()
        row[torch.randperm(row.numel(), generator=g)[:40]] = boundary
    return scores


@pytest.mark.parametrize("cells, k", [(2100, 50), (8400, 300)])
def test_query_selection_with_tied_scores_picks_what_onnx_runtime_picks(cells, k):
    # Ties planted in the best-class score, the value query selection ranks.
    scores = _planted_ties((3, cells, 1), k, seed=cells).expand(-1, -1, 5).contiguous()
    scores[..., :4] -= 1.0
    eager = SelectQueries(k)(scores).numpy()
    onnx_picked = _exported(SelectQueries(k), scores).run(None, {"x": scores.numpy()})[0]
    np.testing.assert_array_equal(eager, onnx_picked)
    best = scores.max(-1).values
    tied = best == best.gather(1, torch.from_numpy(eager[:, -1:]))
    assert 0 < int(tied.gather(1, torch.from_numpy(eager)).sum(1).min()) < int(tied.sum(1).min())  # boundary cut a group


def test_detections_top_k_with_tied_scores_orders_as_onnx_runtime():
    k = 300
    scores = torch.sigmoid(_planted_ties((2, 300 * 80), k, seed=7))
    eager_values, eager_index = TopDetections(k)(scores)
    onnx_values, onnx_index = _exported(TopDetections(k), scores).run(None, {"x": scores.numpy()})
    np.testing.assert_array_equal(eager_index.numpy(), onnx_index)
    np.testing.assert_array_equal(eager_values.numpy(), onnx_values)


def test_ties_keep_the_lower_index_first():
    values, index = topk_lower_index_first(torch.tensor([[1.0, 3.0, 2.0, 3.0, 2.0, 2.0]]), 4)
    assert index.tolist() == [[1, 3, 2, 4]] and values.tolist() == [[3.0, 3.0, 2.0, 2.0]]


@pytest.mark.slow
def test_the_exported_model_selects_with_one_top_k_per_head():
    """Eager tie-breaking does not reach the graph: query selection and the detections head are one TopK each."""
    model = load_model(preset="tiny")
    for head, count in (("raw", 1), ("detections", 2)):
        census = export_graph(model, GraphOptions(head=head, top_k=100)).op_census
        assert census["TopK"] == count
        assert not {"Loop", "If", "NonZero", "Sort"} & set(census)


def _constant_patches(images: np.ndarray, patch: int = 8) -> int:
    n, c, h, w = images.shape
    blocks = images[:, :, :h // patch * patch, :w // patch * patch].reshape(n, c, h // patch, patch, w // patch, patch)
    return int((np.ptp(blocks, axis=(3, 5)) == 0).all(axis=1).sum())


def test_verification_scenes_have_no_flat_patches():
    """A perfectly flat patch maps to identical encoder features, hence exactly tied selection scores; verification's
    synthetic scenes carry a camera's noise instead (calibration keeps the noiseless scenes its numbers came from)."""
    size = (320, 320)
    assert _constant_patches(synthetic_images(4, size, seed=0)) > 100  # the solid rectangles
    scenes, sizes = verification_images(4, size, seed=0)
    assert _constant_patches(scenes) == 0 and sizes == [size] * 4
    assert scenes.dtype == np.float32 and scenes.min() >= 0.0 and scenes.max() <= 1.0
    assert np.abs(scenes - synthetic_images(4, size, seed=0)).mean() < 0.02  # the same scenes, lightly noisy


# -- cells tied up to float noise: the candidate's choice, proven ---------------------------------------------------
def test_a_choice_differing_only_among_tied_scores_is_taken_and_counted():
    scores = torch.tensor([[5.0, 1.0, 1.0 + 2e-7, 1.0 - 3e-7, 0.0]])
    reference = torch.tensor([[0, 2]])  # the reference kept cell 2 (its score is higher by float noise)
    tied = TiedSelection(np.array([[0, 1]]))
    assert tied(scores, reference).tolist() == [[0, 1]] and tied.reselected == 1 and not tied.refused


def test_a_choice_differing_by_a_real_score_gap_is_refused():
    scores = torch.tensor([[5.0, 1.0, 1.001, 0.0]])
    tied = TiedSelection(np.array([[0, 1]]))
    assert tied(scores, torch.tensor([[0, 2]])).tolist() == [[0, 2]] and tied.refused


def _untrained_v1_folder(folder: Path) -> Path:
    """A transformers RT-DETR v1 (tiny) at its default init plus N(0, 0.02) noise on every parameter, no BatchNorm
    calibration: its coarsest level computes the same feature in every cell, so its selection scores tie up to
    float noise, and ONNX Runtime keeps other cells than PyTorch (verification failed with boxes 0.7-0.9 apart)."""
    transformers = pytest.importorskip("transformers")
    with torch.random.fork_rng():
        torch.manual_seed(0)
        model = transformers.RTDetrForObjectDetection(hf_v1_config("tiny")).eval()
    g = torch.Generator().manual_seed(1234)
    with torch.no_grad():
        for param in model.parameters():
            param.add_(0.02 * torch.randn(param.shape, generator=g))
    model.save_pretrained(folder)
    return folder


@pytest.mark.slow
@pytest.mark.parametrize("head", ["raw", "detections"])
def test_an_untrained_v1_with_noise_tied_selection_verifies_at_batch_4(head, tmp_path):
    folder = _untrained_v1_folder(tmp_path / "v1")
    model = load_model(folder, image_size=320)
    with torch.no_grad():
        images = torch.from_numpy(verification_images(4, (320, 320), seed=0)[0])
        captured = {}
        handle = model.decoder.enc_score_head.register_forward_hook(lambda m, i, o: captured.update(scores=o))
        model(images)
        handle.remove()
    best = captured["scores"].max(-1).values[0]
    kth = torch.sort(best, descending=True).values[model.config.num_queries - 1]
    assert int(((best - kth).abs() <= TIE_TOLERANCE).sum()) > 20  # many cells tied at the top-k boundary

    out = tmp_path / "v1.onnx"
    result = CliRunner().invoke(main, ["onnx", "--model", str(folder), "--image-size", "320", "--batch", "4",
                                       "--head", head, "--quiet", "-o", str(out)])
    assert result.exit_code == 0, result.output
    run = json.loads(out.with_suffix(".json").read_text())["verification"]["runs"][0]
    assert run["passed"] and run["batch"] == 4
    assert run["reselected_queries"] > 0  # ONNX Runtime did keep other tied cells; the re-run proved them


# -- D-FINE: the same proof (its decoder honours the observer; its LQE's TopKs are not the selection's) ---------------
def test_a_d_fine_decoder_selects_the_cells_the_observer_returns():
    from micro import MICRO_SIZE, micro_dfine_model

    model = micro_dfine_model()
    images = torch.from_numpy(verification_images(1, (MICRO_SIZE, MICRO_SIZE), seed=0)[0])
    with torch.no_grad():
        logits, boxes = model(images)
        # The same cells in reverse order: the decoder is equivariant to the order of its queries.
        with model.observe_selection(lambda scores, topk: topk.flip(1)):
            flipped_logits, flipped_boxes = model(images)
    assert float((flipped_logits - logits.flip(1)).abs().max()) <= 1e-5
    assert float((flipped_boxes - boxes.flip(1)).abs().max()) <= 1e-5
    assert model.decoder.selection_observer is None


def test_the_cells_a_d_fine_graph_selected_are_read_from_its_selection_top_k(micro_dfine_fp32):
    from micro import MICRO_SIZE, micro_dfine_model
    from rtdetr_export.backends import OnnxRuntimeRunner
    from rtdetr_export.verify.selection import candidate_selection

    graph = onnx.load(str(micro_dfine_fp32))
    assert sum(node.op_type == "TopK" for node in graph.graph.node) > 1  # the LQE's too
    images = verification_images(2, (MICRO_SIZE, MICRO_SIZE), seed=0)[0]
    model = micro_dfine_model()
    captured = {}
    model.decoder.enc_score_head.register_forward_hook(lambda m, i, o: captured.update(scores=o))
    with torch.no_grad():
        model(torch.from_numpy(images))
    with OnnxRuntimeRunner(micro_dfine_fp32) as runner:
        chosen = candidate_selection(runner, {"images": images})
    assert chosen is not None
    assert chosen.tolist() == select_topk(captured["scores"], model.config.num_queries).tolist()


@pytest.mark.slow  # one D-FINE-N export at 640 and its verification on ONNX Runtime and OpenVINO: ~30 s
def test_a_seeded_d_fine_n_at_640_with_tied_selection_verifies_by_re_selection(tmp_path):
    """D-FINE-N's seeded weights score many flat-background cells alike at 640 (40x40 + 20x20 cells): ONNX Runtime
    kept 7 other tied cells than PyTorch, and the export was refused (boxes 0.23 apart) until the verification
    could read the graph's selection and re-run D-FINE with it."""
    from rtdetr_export.pipeline import OnnxExportOptions, export_onnx

    record = export_onnx(load_model(preset="dfine_n", image_size=640), tmp_path / "dfine_n.onnx",
                         OnnxExportOptions(simplify=False)).record
    [run] = record.verification.runs
    assert record.verification.passed and run.reselected_queries > 0
    # OpenVINO keeps tied cells of its own (8 where ONNX Runtime kept 7, measured): read from the model it read,
    # proven the same way (it was refused before: logits 0.0065, boxes 0.099 apart).
    pytest.importorskip("openvino", reason="the OpenVINO half needs openvino (pip install openvino)")
    result = CliRunner().invoke(main, ["verify", str(tmp_path / "dfine_n.onnx"), "--openvino", "f32", "--json"])
    assert result.exit_code == 0, result.output
    [ov_run] = json.loads(result.stdout)["runs"]
    assert ov_run["passed"] and ov_run["reselected_queries"] > 0


@pytest.mark.parametrize("artifact", ["micro_dfine_fp32", "micro_ir"])
def test_the_cells_an_openvino_candidate_selected_are_read_from_the_model_it_read(artifact, request):
    """OpenVINO's choice is read as ONNX Runtime's (the selection TopK's indices, an output added to the model
    OpenVINO read, compiled under the candidate's hint), from an ONNX file and from an IR alike."""
    from micro import MICRO_SIZE, micro_dfine_model, micro_model
    from rtdetr_export.backends.openvino_runner import OpenVinoRunner
    from rtdetr_export.verify.selection import candidate_selection

    path = request.getfixturevalue(artifact)
    model = micro_dfine_model() if "dfine" in artifact else micro_model()
    images = verification_images(2, (MICRO_SIZE, MICRO_SIZE), seed=0)[0]
    captured = {}
    model.decoder.enc_score_head.register_forward_hook(lambda m, i, o: captured.update(scores=o))
    with torch.no_grad():
        model(torch.from_numpy(images))
    with OpenVinoRunner(path, "f32") as runner:
        chosen = candidate_selection(runner, {"images": images})
    assert chosen is not None and chosen.dtype == np.int64
    assert chosen.tolist() == select_topk(captured["scores"], model.config.num_queries).tolist()
