"""DEIMv2's own parts: its norms and FFN compute what transformers' do, and its exported nodes are named after them."""

from __future__ import annotations

import pytest
import torch

from rtdetr_export.model.deimv2_decoder import RMSNorm, SwiGLUFFN
from rtdetr_export.model.parts import OTHER, part_of

transformers = pytest.importorskip("transformers")


def test_rms_norm_matches_transformers():
    from transformers.models.deimv2.modeling_deimv2 import Deimv2RMSNorm

    theirs = Deimv2RMSNorm(24)
    ours = RMSNorm(24)
    with torch.no_grad():
        theirs.weight.copy_(torch.linspace(0.5, 1.5, 24))
        ours.scale.copy_(theirs.weight)
    x = torch.randn(2, 7, 24, generator=torch.Generator().manual_seed(0)) * 3
    with torch.no_grad():
        assert float((ours(x) - theirs(x)).abs().max()) <= 1e-6


def test_the_packed_swiglu_matches_transformers_split_projections():
    from transformers.models.deimv2.modeling_deimv2 import Deimv2SwiGLUFFN

    theirs = Deimv2SwiGLUFFN(transformers.Deimv2Config(d_model=16, decoder_ffn_dim=40, decoder_attention_heads=4))
    ours = SwiGLUFFN(16, 20)
    with torch.no_grad():
        ours.w12.weight.copy_(torch.cat([theirs.gate_proj.weight, theirs.up_proj.weight]))
        ours.w12.bias.copy_(torch.cat([theirs.gate_proj.bias, theirs.up_proj.bias]))
        ours.w3.load_state_dict(theirs.down_proj.state_dict())
    x = torch.randn(3, 5, 16, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        assert float((ours(x) - theirs(x)).abs().max()) <= 1e-6


@pytest.mark.parametrize("node, label, pattern", [
    ("/model/decoder/layers.1/swish_ffn/w12/MatMul", "decoder layer 1 FFN (DEIMv2's SwiGLU)",
     "/model/decoder/layers.1/swish_ffn/*"),
    ("/model/decoder/layers.0/norm2/ReduceMean", "decoder layer 0 norms/residuals", "/model/decoder/layers.0/[An]*"),
    ("/model/encoder/fpn_block/cv2/cv2.0/conv1/conv/Conv", "encoder Lite fusion (fpn_block)",
     "/model/encoder/fpn_block/*"),
    ("/model/encoder/bi_fusion/conv/Conv", "encoder Lite pooling (bi_fusion)", "/model/encoder/bi_fusion/*"),
    ("/model/decoder/dec_bbox_head.0_2/Relu", "decoder layer 2 box refinement (shared head)",
     "/model/decoder/dec_bbox_head.0_2/*"),
])
def test_deimv2_node_names_map_to_deimv2_parts(node, label, pattern):
    assert part_of(node).label == label and part_of(node).pattern == pattern


@pytest.mark.slow  # one DEIMv2-Atto export (~5 s)
def test_every_node_of_a_lite_deimv2_graph_belongs_to_a_named_part():
    from rtdetr_export.export.torch_export import GraphOptions, export_graph
    from rtdetr_export.model import Sampler
    from rtdetr_export.weights import load_model

    model = load_model(preset="deimv2_atto")
    graph = export_graph(model, GraphOptions(batch=1, sampler=Sampler.parse("default", "gather"))).graph
    unnamed = [node.name for node in graph.graph.node if part_of(node.name) == OTHER]
    assert not unnamed, unnamed[:5]
    parts = {part_of(node.name).label for node in graph.graph.node}
    assert {"encoder Lite fusion (fpn_block)", "decoder layer 2 FFN (DEIMv2's SwiGLU)",
            "decoder layer 2 box refinement (shared head)"} <= parts
