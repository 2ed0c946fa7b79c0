"""DEIMv2's decoder: D-FINE's, with RMSNorm, a SwiGLU FFN, a deeper query position head and an optional gate.

What is the same as D-FINE (imported): query selection with ``enc_output``, the unprojected deformable
cross-attention and its three samplers, FDR boxes refined layer by layer from the first layer's box, LQE scores.
What differs, and why (DEIMv2 follows LLM-style blocks, which train faster and cost less at small widths):
- the three norms of a decoder layer are RMSNorms (no mean, no bias), the gate's norm too;
- the FFN is SwiGLU, ``w3(silu(a) * b)`` with ``[a, b] = w12(x)``, of half ``decoder_ffn_dim`` width;
- without ``use_gateway`` (the Lite sizes) the cross-attention residual is a plain add & RMSNorm;
- the query position head has three layers of ``d_model`` width (D-FINE: two of ``2 * d_model``), activated with
  ``decoder_activation``; the LQE MLP with ``lqe_activation``;
- with ``share_bbox_head`` (the Lite sizes) every layer refines its edges with one FDR head.
As transformers' ``Deimv2ForObjectDetection`` computes it by default, which this model is tested against. The
original code (Intellindust-AI-Lab/DEIMv2 engine/deim/deim_decoder.py) differs from transformers in three ways,
which this model follows with ``deimv2_config.ORIGINAL_COMPUTATION`` (checkpoints of the original code,
``weights/deimv2_original.py``; tested against that code): it has no ``enc_output`` (transformers' converter writes
an identity Linear and a default LayerNorm there, and the LayerNorm still normalises), it computes the query
position embedding once from the selected boxes instead of once per layer, and it activates every MLP head and the
LQE with SiLU.
Module names follow the original (``norm1``, ``swish_ffn.w12``/``w3``, RMSNorm's ``scale``).
"""

from __future__ import annotations

import torch
from torch import nn

from rtdetr_export.model.deimv2_config import Deimv2Config
from rtdetr_export.model.dfine_decoder import FP16_MAX, DFineDecoder, Gate, UnprojectedDeformableAttention
from rtdetr_export.model.fdr import LQE
from rtdetr_export.model.layers import MLP, SelfAttention
from rtdetr_export.model.sampler import Sampler

RMS_EPS = 1e-6  # both implementations' RMSNorm epsilon; not in any config


class RMSNorm(nn.Module):
    """``x / sqrt(mean(x^2) + eps) * scale`` over the last dimension."""

    def __init__(self, dim: int, eps: float = RMS_EPS):
        super().__init__()
        self.eps = eps
        self.scale = nn.Parameter(torch.ones(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.eps) * self.scale


class SwiGLUFFN(nn.Module):
    """``w3(silu(a) * b)`` with ``[a, b] = w12(x)`` (transformers splits w12 into gate_proj and up_proj)."""

    def __init__(self, dim: int, hidden: int):
        super().__init__()
        self.w12 = nn.Linear(dim, 2 * hidden)
        self.w3 = nn.Linear(hidden, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        gate, up = self.w12(x).chunk(2, dim=-1)
        return self.w3(nn.functional.silu(gate) * up)


class RMSGate(Gate):
    """D-FINE's gate with an RMSNorm."""

    def __init__(self, dim: int):
        super().__init__(dim)
        self.norm = RMSNorm(dim)


class Deimv2DecoderLayer(nn.Module):
    """Self-attention, deformable cross-attention (gated, or add & norm), SwiGLU FFN; RMSNorms throughout."""

    def __init__(self, config: Deimv2Config):
        super().__init__()
        dim = config.d_model
        self.use_gateway = config.use_gateway
        self.self_attn = SelfAttention(dim, config.decoder_heads)
        self.norm1 = RMSNorm(dim)
        self.cross_attn = UnprojectedDeformableAttention(dim, config.decoder_heads, config.decoder_n_points,
                                                         Sampler.reference(config.decoder_method),
                                                         config.decoder_offset_scale)
        if self.use_gateway:
            self.gateway = RMSGate(dim)
        else:
            self.norm2 = RMSNorm(dim)
        self.swish_ffn = SwiGLUFFN(dim, config.decoder_ffn_dim // 2)
        self.norm3 = RMSNorm(dim)

    def forward(self, target: torch.Tensor, reference_boxes: torch.Tensor, memory: torch.Tensor,
                spatial_shapes: list[tuple[int, int]], query_pos: torch.Tensor) -> torch.Tensor:
        target = self.norm1(target + self.self_attn(target, query_pos))
        attended = self.cross_attn(target + query_pos, reference_boxes, memory, spatial_shapes)
        target = self.gateway(target, attended) if self.use_gateway else self.norm2(target + attended)
        target = target + self.swish_ffn(target)
        # The original clamps to the float16 range before the norm (transformers does not): the same in float32.
        return self.norm3(target.clamp(-FP16_MAX, FP16_MAX))


class Deimv2Layers(nn.Module):
    """The decoder layers and their LQE heads (``decoder.decoder`` in checkpoints)."""

    def __init__(self, config: Deimv2Config):
        super().__init__()
        count = config.eval_layer + 1  # later layers never reach the output: not built
        self.layers = nn.ModuleList(Deimv2DecoderLayer(config) for _ in range(count))
        self.lqe_layers = nn.ModuleList(LQE(config.top_prob_values, config.max_num_bins, config.lqe_hidden_dim,
                                            config.lqe_layers, config.lqe_activation) for _ in range(count))


class Deimv2Decoder(DFineDecoder):
    """D-FINE's decoder with DEIMv2's layers, query position head and (optionally) one shared FDR head."""

    layers_type = Deimv2Layers

    def __init__(self, config: Deimv2Config):
        super().__init__(config)
        self.query_pos_head = MLP(4, config.d_model, config.d_model, 3, config.decoder_activation)
        self.share_bbox_head = config.share_bbox_head
        if self.share_bbox_head:
            self.dec_bbox_head = nn.ModuleList([self.dec_bbox_head[0]])
        self.query_pos_per_layer = config.query_pos_per_layer
        if not config.enc_output:
            self.enc_output = nn.Identity()

    def query_position(self, boxes: torch.Tensor, previous: torch.Tensor | None) -> torch.Tensor:
        """Per layer (transformers), or the first layer's for every layer (the original code)."""
        if previous is not None and not self.query_pos_per_layer:
            return previous
        return super().query_position(boxes, previous)

    def bbox_head(self, layer: int) -> nn.Module:
        return self.dec_bbox_head[0 if self.share_bbox_head else layer]
