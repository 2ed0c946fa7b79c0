"""The rank-4 layout of the gridsample-bilinear cross-attention (``MSDeformableAttention.forward_rank4``).

The split export writes its decoder this way so ncnn, which holds at most 4 dimensions, runs it: the same
sampling, one GridSample per head and level, and the weighted sum over the points as a batched MatMul. These
tests hold it to the formulation every other export uses (``forward`` + ``attend_gridsample``).
"""

from __future__ import annotations

import onnx
import pytest
import torch
from torch import nn

from rtdetr_export.export.split_export import export_split_graphs
from rtdetr_export.model.deformable_attention import MSDeformableAttention
from rtdetr_export.model.sampler import Sampler
from rtdetr_export.pipeline import OnnxExportOptions
from rtdetr_export.weights import load_model
from tiers import costly

SHAPES = [(10, 12), (5, 6), (3, 3)]  # rectangular levels: x and y must not be swapped anywhere


def _layer(dtype: torch.dtype, seed: int = 0) -> MSDeformableAttention:
    torch.manual_seed(seed)
    layer = MSDeformableAttention(64, 4, (4, 3, 2), Sampler.GRIDSAMPLE_BILINEAR, offset_scale=0.5).to(dtype)
    # Larger offsets than a fresh init gives, so points land on borders and outside the maps (zero padding).
    nn.init.normal_(layer.sampling_offsets.weight, std=0.5)
    nn.init.normal_(layer.attention_weights.weight, std=0.3)
    return layer.eval().requires_grad_(False)


def _inputs(dtype: torch.dtype, batch: int = 2, queries: int = 30):
    g = torch.Generator().manual_seed(1)
    query = torch.randn(batch, queries, 64, generator=g, dtype=dtype)
    boxes = torch.rand(batch, queries, 4, generator=g, dtype=dtype) * 0.8 + 0.1
    memory = torch.randn(batch, sum(h * w for h, w in SHAPES), 64, generator=g, dtype=dtype)
    return query, boxes, memory


def _both(layer: MSDeformableAttention, query, boxes, memory) -> tuple[torch.Tensor, torch.Tensor]:
    """(``forward`` as every other export writes it, ``forward_rank4``), both before ``output_proj``."""
    projection, layer.output_proj = layer.output_proj, nn.Identity()
    try:
        layer.rank4_layout = False
        old = layer(query, boxes, memory, SHAPES)
        layer.rank4_layout = True
        new = layer(query, boxes, memory, SHAPES)
    finally:
        layer.output_proj, layer.rank4_layout = projection, False
    return old, new


def test_rank4_layout_computes_the_same_numbers_in_float64():
    old, new = _both(_layer(torch.float64), *_inputs(torch.float64))
    assert old.shape == new.shape == (2, 30, 64)
    assert torch.allclose(new, old, rtol=0, atol=1e-12), (new - old).abs().max()


def test_rank4_layout_differs_in_float32_only_by_the_rounding_of_its_sum():
    layer = _layer(torch.float32)
    query, boxes, memory = _inputs(torch.float32)
    old, new = _both(layer, query, boxes, memory)
    # Both sum the same products w_p * v_p over the P points, in another order; each sum's rounding error is at
    # most (P - 1) * eps * sum |w_p * v_p| <= (P - 1) * eps * max |v| (the softmax weights of a head sum to 1).
    points = sum(layer.num_points)
    bound = 2 * (points - 1) * torch.finfo(torch.float32).eps * layer.value_proj(memory).abs().max()
    assert (new - old).abs().max() <= bound


def test_an_observer_reads_through_the_layout_every_other_export_uses():
    """An observer sees [B, Q, heads, points, 2] locations, which the rank-4 layout never builds."""
    layer = _layer(torch.float32)
    query, boxes, memory = _inputs(torch.float32)
    seen = []
    layer.location_observer = lambda loc, h, w: seen.append(loc.shape) or loc
    layer.rank4_layout = True
    layer(query, boxes, memory, SHAPES)
    assert [tuple(s) for s in seen] == [(2, 30, 4, p, 2) for p in (4, 3, 2)]


@pytest.fixture(scope="module")
@costly  # a split export with the GridSample sampler (~5 s); the layout's numbers are checked fast below
def split_decoder() -> tuple[onnx.ModelProto, int]:
    """The tiny split's decoder graph, shapes inferred, and how many (head, level) reads its layers make."""
    model = load_model(preset="tiny")
    options = OnnxExportOptions(sampler=Sampler.GRIDSAMPLE_BILINEAR)
    graph = onnx.shape_inference.infer_shapes(export_split_graphs(model, options).decoder.graph)
    reads = sum(layer.num_heads * len(layer.num_points) for layer in model.decoder.modules()
                if isinstance(layer, MSDeformableAttention))
    return graph, reads


def test_the_split_decoder_holds_no_tensor_above_four_dimensions(split_decoder):
    split_decoder, reads = split_decoder
    ranks = {info.name: len(info.type.tensor_type.shape.dim) for info in split_decoder.graph.value_info
             if info.type.tensor_type.HasField("shape")}
    assert len(ranks) > 100  # shape inference reached the whole graph, so the check below covers it
    assert {name: rank for name, rank in ranks.items() if rank > 4} == {}
    # One GridSample per head and level in every layer: the layout's signature.
    assert sum(node.op_type == "GridSample" for node in split_decoder.graph.node) == reads


def test_the_whole_model_is_unchanged_by_the_layout():
    model = load_model(preset="tiny").eval()
    model.set_sampler(Sampler.GRIDSAMPLE_BILINEAR)
    images = torch.rand(1, 3, *model.config.image_size, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        logits, boxes = model(images)
        model.set_rank4_layout(True)
        logits4, boxes4 = model(images)
    assert (logits4 - logits).abs().max() < 1e-4 and (boxes4 - boxes).abs().max() < 1e-5
