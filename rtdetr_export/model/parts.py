"""Which part of RT-DETR (or D-FINE) an exported node belongs to, read from the module scope torch.onnx puts in
its name.

It lives with the model because the scopes are this package's module paths (``RTDETRv2.model.decoder...``).

Our export names nodes after the PyTorch module path (``/model/decoder/layers.0/cross_attn/...``), and the
precision passes keep that scope in every node they add (Q/DQ and casts are named after the tensor they
touch). So one table of scope patterns names the part, and the same scope, as a shell pattern, is the
``--keep-fp32`` / ``--int8-exclude`` flag that keeps the part in float.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

# (regex on the name, part label with {0}/{1} for the groups, shell pattern with the same groups). First match wins.
_SCOPES = [
    (r"/model/backbone/conv1/", "backbone stem", "/model/backbone/conv1/*"),
    (r"/model/backbone/pool/", "backbone stem max pool", "/model/backbone/pool/*"),  # ResNet's, after conv1
    # D-FINE's HGNetv2 backbone
    (r"/model/backbone/stem/", "backbone stem (HGNetv2)", "/model/backbone/stem/*"),
    (r"/model/backbone/stages\.(\d+)/", "backbone stage {0} (HGNetv2)", "/model/backbone/stages.{0}/*"),
    (r"/model/backbone/res_layers\.(\d+)/", "backbone stage {0}", "/model/backbone/res_layers.{0}/*"),
    (r"/model/encoder/input_proj\.(\d+)/", "encoder input projection {0}", "/model/encoder/input_proj.{0}/*"),
    (r"/model/encoder/encoder\.(\d+)/", "encoder AIFI {0} (intra-scale attention)", "/model/encoder/encoder.{0}/*"),
    (r"/model/encoder/(lateral_convs|fpn_blocks)\.(\d+)/", "encoder CCFM top-down {0}.{1}",
     "/model/encoder/{0}.{1}/*"),
    (r"/model/encoder/(downsample_convs|pan_blocks)\.(\d+)/", "encoder CCFM bottom-up {0}.{1}",
     "/model/encoder/{0}.{1}/*"),
    # DEIMv2's Lite encoder: pooled second level with GAP fusion, then one top-down and one bottom-up block
    (r"/model/encoder/(fpn_block|pan_block)/", "encoder Lite fusion ({0})", "/model/encoder/{0}/*"),
    (r"/model/encoder/(down_sample1|down_sample2|bi_fusion|pool)/", "encoder Lite pooling ({0})",
     "/model/encoder/{0}/*"),
    (r"/model/encoder/", "encoder CCFM resize/concat", "/model/encoder/[A-Z]*"),
    (r"/model/decoder/input_proj\.(\d+)/", "decoder input projection {0}", "/model/decoder/input_proj.{0}/*"),
    (r"/model/decoder/(enc_output|enc_score_head|enc_bbox_head)/", "query selection ({0})",
     "/model/decoder/{0}/*"),
    (r"/model/decoder/query_pos_head", "decoder query position head", "/model/decoder/query_pos_head*"),
    (r"/model/decoder/layers\.(\d+)/self_attn/", "decoder layer {0} self-attention",
     "/model/decoder/layers.{0}/self_attn/*"),
    (r"/model/decoder/layers\.(\d+)/cross_attn/", "decoder layer {0} cross-attention (deformable)",
     "/model/decoder/layers.{0}/cross_attn/*"),
    (r"/model/decoder/layers\.(\d+)/(linear1|linear2|activation)", "decoder layer {0} FFN",
     "/model/decoder/layers.{0}/linear*"),
    (r"/model/decoder/layers\.(\d+)/swish_ffn/", "decoder layer {0} FFN (DEIMv2's SwiGLU)",
     "/model/decoder/layers.{0}/swish_ffn/*"),
    (r"/model/decoder/layers\.(\d+)/gateway/", "decoder layer {0} gate (D-FINE's cross-attention residual)",
     "/model/decoder/layers.{0}/gateway/*"),
    (r"/model/decoder/layers\.(\d+)/", "decoder layer {0} norms/residuals", "/model/decoder/layers.{0}/[An]*"),
    # D-FINE's heads: localization quality (a softmax over each edge's bins, top-k, an MLP), the initial box
    (r"/model/decoder/lqe_layers\.(\d+)/", "decoder layer {0} LQE (localization quality)",
     "/model/decoder/lqe_layers.{0}/*"),
    (r"/model/decoder/pre_bbox_head/", "decoder initial box head (D-FINE)", "/model/decoder/pre_bbox_head/*"),
    # DEIMv2's shared FDR head (Lite sizes): one module called once per layer; torch.onnx numbers the later calls
    (r"/model/decoder/dec_bbox_head\.0_(\d+)/", "decoder layer {0} box refinement (shared head)",
     "/model/decoder/dec_bbox_head.0_{0}/*"),
    (r"/model/decoder/dec_bbox_head\.(\d+)/", "decoder layer {0} box refinement",
     "/model/decoder/dec_bbox_head.{0}/*"),
    (r"/model/decoder/dec_score_head\.(\d+)/", "decoder layer {0} score head", "/model/decoder/dec_score_head.{0}/*"),
    (r"/model/decoder/(TopK|ReduceMax|GatherElements|Gather)", "query selection (top-k)", "/model/decoder/{0}*"),
    # D-FINE's FDR: each layer's softmax over the edge bins and its integral under W(n) (a MatMul); RT-DETRv2's
    # decoder has neither op outside a submodule.
    (r"/model/decoder/(Softmax|MatMul)", "FDR edge distributions (softmax, integral)", "/model/decoder/{0}*"),
    (r"/model/decoder/[A-Z]", "box refinement (inverse sigmoid)", "/model/decoder/[A-Z]*"),
]
_COMPILED = [(re.compile(regex), label, pattern) for regex, label, pattern in _SCOPES]


@dataclass(frozen=True)
class Part:
    """A part of the model: its label and the shell pattern on node names that covers it."""

    label: str
    pattern: str


OTHER = Part("other (pre/post-processing)", "")


def part_of(name: str) -> Part:
    """The part a node (or tensor) name belongs to; OTHER when its name carries no model scope."""
    for regex, label, pattern in _COMPILED:
        found = regex.search(name)
        if found:
            return Part(label.format(*found.groups()), pattern.format(*found.groups()))
    return OTHER
