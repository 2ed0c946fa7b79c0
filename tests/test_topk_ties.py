"""Exact ties in a top-k are ordered as ONNX TopK orders them (the lower index first), in eager PyTorch and in the
exported graph alike, for the decoder's query selection and the detections head.

torch.topk leaves the order of equal values unspecified; on CPU, for inputs of the model's sizes, it keeps another
subset of a tied group than ONNX Runtime does. The reference must choose what its export chooses.
"""

from __future__ import annotations

import io

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from torch import nn

from rtdetr_export.export import GraphOptions, export_graph
from rtdetr_export.imaging.inputs import synthetic_images, verification_images
from rtdetr_export.model.query_selection import select_topk, topk_lower_index_first
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
