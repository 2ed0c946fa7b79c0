"""RT-DETRv2 decoder: input projection, query selection, deformable-attention layers, iterative box refinement."""

from __future__ import annotations

from collections import OrderedDict

import torch
from torch import nn

from rtdetr_export.model.config import ModelConfig
from rtdetr_export.model.deformable_attention import MSDeformableAttention
from rtdetr_export.model.hybrid_encoder import conv_bn
from rtdetr_export.model.layers import MLP, SelfAttention, activation
from rtdetr_export.model.query_selection import CellAnchors, SelectionObserver, select_queries
from rtdetr_export.model.sampler import Sampler


def inverse_sigmoid(x: torch.Tensor, eps: float = 1e-5) -> torch.Tensor:
    """log(x / (1 - x)) with both terms clamped away from zero."""
    x = x.clamp(0, 1)
    return torch.log(x.clamp(min=eps) / (1 - x).clamp(min=eps))


class TransformerDecoderLayer(nn.Module):
    """Self-attention among queries, deformable cross-attention into the encoder memory, FFN; post-norm."""

    def __init__(self, config: ModelConfig):
        super().__init__()
        dim, eps = config.d_model, config.layer_norm_eps
        self.self_attn = SelfAttention(dim, config.decoder_heads)
        self.norm1 = nn.LayerNorm(dim, eps=eps)
        self.cross_attn = MSDeformableAttention(dim, config.decoder_heads, config.decoder_n_points,
                                                Sampler.reference(config.decoder_method), config.decoder_offset_scale)
        self.norm2 = nn.LayerNorm(dim, eps=eps)
        self.linear1 = nn.Linear(dim, config.decoder_ffn_dim)
        self.activation = activation(config.decoder_activation)
        self.linear2 = nn.Linear(config.decoder_ffn_dim, dim)
        self.norm3 = nn.LayerNorm(dim, eps=eps)

    def forward(self, target: torch.Tensor, reference_boxes: torch.Tensor, memory: torch.Tensor,
                spatial_shapes: list[tuple[int, int]], query_pos: torch.Tensor) -> torch.Tensor:
        target = self.norm1(target + self.self_attn(target, query_pos))
        target = self.norm2(target + self.cross_attn(target + query_pos, reference_boxes, memory, spatial_shapes))
        return self.norm3(target + self.linear2(self.activation(self.linear1(target))))


class TransformerDecoder(nn.Module):
    """The stack of decoder layers (its own module so checkpoint keys read ``decoder.decoder.layers``)."""

    def __init__(self, config: ModelConfig):
        super().__init__()
        self.layers = nn.ModuleList(TransformerDecoderLayer(config) for _ in range(config.decoder_layers))


class RTDETRDecoder(CellAnchors, nn.Module):
    """From the encoder's maps to class logits [B, Q, C] and boxes [B, Q, 4] (cxcywh in [0, 1])."""

    def __init__(self, config: ModelConfig):
        super().__init__()
        dim, eps = config.d_model, config.batch_norm_eps
        self.num_queries = config.num_queries
        self.eval_layer = config.eval_layer
        # Set only through ``RTDETRv2.observe_selection`` (verification); None otherwise, and in every export.
        self.selection_observer: SelectionObserver | None = None

        in_channels = config.resolved_decoder_in_channels
        self.input_proj = nn.ModuleList(conv_bn(ch, dim, eps) for ch in in_channels)
        ch = in_channels[-1]
        for _ in range(config.num_feature_levels - len(in_channels)):
            self.input_proj.append(conv_bn(ch, dim, eps, kernel_size=3, stride=2))
            ch = dim

        self.decoder = TransformerDecoder(config)
        if config.num_denoising > 0:
            # Training-only; kept so checkpoints load strictly and round-trip unchanged.
            self.denoising_class_embed = nn.Embedding(config.num_classes + 1, dim, padding_idx=config.num_classes)
        if config.learn_initial_query:
            self.tgt_embed = nn.Embedding(config.num_queries, dim)
        act = config.mlp_activation
        self.query_pos_head = MLP(4, 2 * dim, dim, 2, act) if config.query_pos_layers == 2 else \
            MLP(4, dim, dim, config.query_pos_layers, act)
        self.enc_output = nn.Sequential(OrderedDict([
            ("proj", nn.Linear(dim, dim)), ("norm", nn.LayerNorm(dim, eps=config.layer_norm_eps))]))
        self.enc_score_head = nn.Linear(dim, config.num_classes)
        self.enc_bbox_head = MLP(dim, dim, 4, 3, act)
        self.dec_score_head = nn.ModuleList(nn.Linear(dim, config.num_classes) for _ in range(config.decoder_layers))
        self.dec_bbox_head = nn.ModuleList(MLP(dim, dim, 4, 3, act) for _ in range(config.decoder_layers))

        self.init_cell_anchors(config)

    def _flatten_levels(self, feats: list[torch.Tensor]) -> tuple[torch.Tensor, list[tuple[int, int]]]:
        levels = [proj(feat) for proj, feat in zip(self.input_proj, feats)]
        for proj in self.input_proj[len(feats):]:
            levels.append(proj(feats[-1] if len(levels) == len(feats) else levels[-1]))
        # Plain ints bake each level's shape into a static export; a dynamic-size export keeps the traced sizes so
        # every shape-derived value (anchors, split points, clamps) stays a graph computation.
        shapes = [(level.shape[2], level.shape[3]) if self.sizes_in_graph else
                  (int(level.shape[2]), int(level.shape[3])) for level in levels]
        memory = torch.cat([level.flatten(2).transpose(1, 2) for level in levels], dim=1)
        return memory, shapes

    def encode_cells(self, feats: list[torch.Tensor]) -> tuple[torch.Tensor, ...]:
        """Everything before query selection: the encoder memory [B, N, D], every cell's query target
        (``enc_output``) [B, N, D] and class logits [B, N, C], and the anchors [1, N, 4] (logit space)."""
        memory, shapes = self._flatten_levels(feats)
        anchors, valid = self.cell_anchors(shapes, memory.device)
        output_memory = self.enc_output(valid.to(memory.dtype) * memory)
        return memory, output_memory, self.enc_score_head(output_memory), anchors, shapes

    def decode(self, target: torch.Tensor, reference_logits: torch.Tensor, memory: torch.Tensor,
               shapes: list[tuple[int, int]]) -> tuple[torch.Tensor, torch.Tensor]:
        """Everything after query selection: the selected queries' targets [B, K, D] and reference boxes
        [B, K, 4] (logit space) refined through the decoder layers over ``memory`` -> logits, boxes."""
        if hasattr(self, "tgt_embed"):
            target = self.tgt_embed.weight.unsqueeze(0).expand(memory.shape[0], -1, -1)
        # Iterative refinement: each layer predicts a delta on the previous boxes in logit space.
        boxes = torch.sigmoid(reference_logits)
        for i, layer in enumerate(self.decoder.layers[: self.eval_layer + 1]):
            target = layer(target, boxes, memory, shapes, self.query_pos_head(boxes))
            boxes = torch.sigmoid(self.dec_bbox_head[i](target) + inverse_sigmoid(boxes))
        logits = self.dec_score_head[self.eval_layer](target)
        return logits, boxes

    def forward(self, feats: list[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        memory, output_memory, enc_logits, anchors, shapes = self.encode_cells(feats)
        # Query selection: score every encoder cell, keep the top-k as initial queries and boxes.
        targets, reference_logits = select_queries(output_memory, enc_logits, anchors, self.num_queries,
                                                   self.enc_bbox_head, self.selection_observer)
        return self.decode(targets, reference_logits, memory, shapes)
