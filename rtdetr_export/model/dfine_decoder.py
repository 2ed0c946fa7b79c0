"""D-FINE's decoder: RT-DETRv2's query selection and deformable decoder layers, with FDR boxes and LQE scores.

What is the same (imported): anchors and top-k query selection (``query_selection``), the query position head,
self-attention, multi-scale deformable attention with per-level points and its three samplers (GridSample,
gather-bilinear, discrete), BatchNorm'd input projections. Same by design: the two halves ``encode_cells`` (before
query selection) and ``decode`` (after it), RTDETRDecoder's methods, where the split export cuts (model/split.py says
what differs there).
What differs, and why:
- the cross-attention reads the encoder memory as it is: no value or output projection (D-FINE drops them; the
  gate below mixes the result in instead). The discrete sampler therefore gathers head-wide slices of memory rows
  here, where RT-DETRv2's projects after gathering whole rows (``attend_unprojected_nearest``);
- the cross-attention's residual goes through a gate, ``LayerNorm(g1 * residual + g2 * attended)`` with
  ``g = sigmoid(Linear([residual, attended]))``, instead of add & norm;
- the query position embedding is clamped to [-10, 10], and the FFN's sum to the float16 range before its norm;
- boxes: layer 0 predicts an initial box (``pre_bbox_head``, RT-DETRv2-style delta on the selected anchor); from
  then on every layer refines edge distributions around that initial box (``fdr``), its head reading its own
  output plus the previous layer's;
- the output logits get the LQE term (``fdr.LQE``).
Module names follow Peterande/D-FINE's ``DFINETransformer``.
"""

from __future__ import annotations

from collections import OrderedDict

import torch
from torch import nn

from rtdetr_export.model.decoder import inverse_sigmoid
from rtdetr_export.model.deformable_attention import MSDeformableAttention, nearest_cell
from rtdetr_export.model.dfine_config import DFineConfig
from rtdetr_export.model.fdr import LQE, distribution_offsets, edges_to_box, weighting_function
from rtdetr_export.model.hybrid_encoder import conv_bn
from rtdetr_export.model.layers import MLP, SelfAttention, activation
from rtdetr_export.model.query_selection import CellAnchors, SelectionObserver, select_queries
from rtdetr_export.model.sampler import Sampler

FP16_MAX = 65504.0  # the FFN clamps its sum to this before normalising, as trained


def attend_unprojected_nearest(self: MSDeformableAttention, memory: torch.Tensor, loc: torch.Tensor,
                               weights: torch.Tensor, spatial_shapes: list[tuple[int, int]]) -> torch.Tensor:
    """gather-nearest (``discrete``) without a value projection: gather each point's nearest cell, head_dim wide,
    for its own head; weight and sum them -> [B, Q, C]."""
    batch, num_queries, _, heads, points = loc.shape
    cells = memory.shape[1]
    index, start = [], 0
    for (h, w), level_loc in zip(spatial_shapes, loc.split(list(self.num_points), dim=4)):
        index.append(nearest_cell(*self.observe(level_loc, h, w), h, w) + start)
        start += h * w
    index = torch.cat(index, dim=3)  # [B, Q, heads, points]
    # One table of head_dim-wide rows, (image, cell, head) row-major: the [B, cells, C] memory as it lies.
    batch_offset = (torch.arange(batch, device=memory.device) * cells).reshape(batch, 1, 1, 1)
    head = torch.arange(heads, device=memory.device).reshape(1, 1, heads, 1)
    rows = memory.reshape(batch * cells * heads, self.head_dim)[((index + batch_offset) * heads + head).reshape(-1)]
    rows = rows.reshape(batch, num_queries, heads, points, self.head_dim)
    out = (weights.unsqueeze(-2) @ rows).squeeze(-2)  # [B, Q, heads, head_dim]
    return out.reshape(batch, num_queries, heads * self.head_dim)


class UnprojectedDeformableAttention(MSDeformableAttention):
    """MSDeformableAttention without value and output projections (identities), every sampler kept."""

    def __init__(self, dim: int, num_heads: int, num_points: tuple[int, ...], sampler: Sampler,
                 offset_scale: float):
        super().__init__(dim, num_heads, num_points, sampler, offset_scale)
        # The bilinear samplers call ``value_proj`` as a module, so an identity there is all they need.
        self.value_proj = nn.Identity()
        self.output_proj = nn.Identity()

    def attend_nearest(self, memory: torch.Tensor, loc: torch.Tensor, weights: torch.Tensor,
                       spatial_shapes: list[tuple[int, int]]) -> torch.Tensor:
        """RT-DETRv2's nearest reading projects the weighted rows afterwards; with no projection, each head reads
        its own head_dim-wide slice of the cell."""
        return attend_unprojected_nearest(self, memory, loc, weights, spatial_shapes)


class Gate(nn.Module):
    """LayerNorm(g1 * residual + g2 * update), the two gates from one linear layer over both."""

    def __init__(self, dim: int):
        super().__init__()
        self.gate = nn.Linear(2 * dim, 2 * dim)
        self.norm = nn.LayerNorm(dim)

    def forward(self, residual: torch.Tensor, update: torch.Tensor) -> torch.Tensor:
        g1, g2 = torch.sigmoid(self.gate(torch.cat([residual, update], dim=-1))).chunk(2, dim=-1)
        return self.norm(g1 * residual + g2 * update)


class DFineDecoderLayer(nn.Module):
    """Self-attention, gated deformable cross-attention, FFN."""

    def __init__(self, config: DFineConfig):
        super().__init__()
        dim, eps = config.d_model, config.layer_norm_eps
        self.self_attn = SelfAttention(dim, config.decoder_heads)
        self.norm1 = nn.LayerNorm(dim, eps=eps)
        self.cross_attn = UnprojectedDeformableAttention(dim, config.decoder_heads, config.decoder_n_points,
                                                         Sampler.reference(config.decoder_method),
                                                         config.decoder_offset_scale)
        self.gateway = Gate(dim)
        self.linear1 = nn.Linear(dim, config.decoder_ffn_dim)
        self.activation = activation(config.decoder_activation)
        self.linear2 = nn.Linear(config.decoder_ffn_dim, dim)
        self.norm3 = nn.LayerNorm(dim, eps=eps)

    def forward(self, target: torch.Tensor, reference_boxes: torch.Tensor, memory: torch.Tensor,
                spatial_shapes: list[tuple[int, int]], query_pos: torch.Tensor) -> torch.Tensor:
        target = self.norm1(target + self.self_attn(target, query_pos))
        target = self.gateway(target, self.cross_attn(target + query_pos, reference_boxes, memory, spatial_shapes))
        target = target + self.linear2(self.activation(self.linear1(target)))
        return self.norm3(target.clamp(-FP16_MAX, FP16_MAX))


class DFineLayers(nn.Module):
    """The decoder layers and their LQE heads (``decoder.decoder`` in checkpoints)."""

    def __init__(self, config: DFineConfig):
        super().__init__()
        count = config.eval_layer + 1  # later layers never reach the output: not built
        self.layers = nn.ModuleList(DFineDecoderLayer(config) for _ in range(count))
        # The LQE's MLP takes the decoder's activation (the original passes ``activation`` to it), not mlp_act.
        self.lqe_layers = nn.ModuleList(LQE(config.top_prob_values, config.max_num_bins, config.lqe_hidden_dim,
                                            config.lqe_layers, config.decoder_activation) for _ in range(count))


class DFineDecoder(CellAnchors, nn.Module):
    """From the encoder's maps to class logits [B, Q, C] and boxes [B, Q, 4] (cxcywh in [0, 1])."""

    layers_type: type[nn.Module] = DFineLayers  # the decoder layers and their LQE heads (a variant swaps them)

    def __init__(self, config: DFineConfig):
        super().__init__()
        dim, eps = config.d_model, config.batch_norm_eps
        self.num_queries = config.num_queries
        self.eval_layer = config.eval_layer
        self.max_num_bins = config.max_num_bins
        in_channels = config.resolved_decoder_in_channels
        # Projections only where the encoder's width differs from the decoder's (D-FINE-X); every level is
        # projected from the last level's width, as the original does.
        self.input_proj = nn.ModuleList(
            nn.Identity() if in_channels[-1] == dim else conv_bn(in_channels[-1], dim, eps) for _ in in_channels)

        self.decoder = self.layers_type(config)
        # FDR's two constants, stored in checkpoints (weighting function and box scale): loaded, never trained.
        self.register_buffer("up", torch.tensor([config.up]))
        self.register_buffer("reg_scale", torch.tensor([config.reg_scale]))
        count = config.eval_layer + 1
        if config.num_denoising > 0:
            # Training-only; kept so checkpoints load strictly.
            self.denoising_class_embed = nn.Embedding(config.num_classes + 1, dim, padding_idx=config.num_classes)
        act = config.mlp_activation
        self.query_pos_head = MLP(4, 2 * dim, dim, 2, act)
        self.enc_output = nn.Sequential(OrderedDict([
            ("proj", nn.Linear(dim, dim)), ("norm", nn.LayerNorm(dim, eps=config.layer_norm_eps))]))
        self.enc_score_head = nn.Linear(dim, config.num_classes)
        self.enc_bbox_head = MLP(dim, dim, 4, 3, act)
        self.pre_bbox_head = MLP(dim, dim, 4, 3, act)
        self.dec_score_head = nn.ModuleList(nn.Linear(dim, config.num_classes) for _ in range(count))
        self.dec_bbox_head = nn.ModuleList(MLP(dim, dim, 4 * (config.max_num_bins + 1), 3, act)
                                           for _ in range(count))

        self.init_cell_anchors(config)
        # As RTDETRDecoder: set only through ``RTDETRv2.observe_selection`` (verification's re-run with the cells an
        # artifact kept among tied scores); None otherwise, and in every export.
        self.selection_observer: SelectionObserver | None = None

    def bbox_head(self, layer: int) -> nn.Module:
        """Layer ``layer``'s FDR head (one per layer in D-FINE)."""
        return self.dec_bbox_head[layer]

    def query_position(self, boxes: torch.Tensor, previous: torch.Tensor | None) -> torch.Tensor:
        """The query position embedding for the next layer (D-FINE: from that layer's reference boxes)."""
        return self.query_pos_head(boxes).clamp(-10, 10)

    def _flatten_levels(self, feats: list[torch.Tensor]) -> tuple[torch.Tensor, list[tuple[int, int]]]:
        levels = [proj(feat) for proj, feat in zip(self.input_proj, feats)]
        shapes = [(level.shape[2], level.shape[3]) if self.sizes_in_graph else
                  (int(level.shape[2]), int(level.shape[3])) for level in levels]
        return torch.cat([level.flatten(2).transpose(1, 2) for level in levels], dim=1), shapes

    def encode_cells(self, feats: list[torch.Tensor]) -> tuple[torch.Tensor, ...]:
        """Everything before query selection, as ``RTDETRDecoder.encode_cells``: the memory [B, N, D], every cell's
        query target [B, N, D] and class logits [B, N, C], the anchors [1, N, 4] (logit space), the level shapes."""
        memory, shapes = self._flatten_levels(feats)
        anchors, valid = self.cell_anchors(shapes, memory.device)
        output_memory = self.enc_output(valid.to(memory.dtype) * memory)
        return memory, output_memory, self.enc_score_head(output_memory), anchors, shapes

    def decode(self, target: torch.Tensor, reference_logits: torch.Tensor, memory: torch.Tensor,
               shapes: list[tuple[int, int]]) -> tuple[torch.Tensor, torch.Tensor]:
        """Everything after query selection, as ``RTDETRDecoder.decode``: the selected queries' targets [B, K, D]
        and reference boxes [B, K, 4] (logit space) through the decoder layers over ``memory`` -> logits, boxes.
        The split's graph 2 (model/split.py) is this method."""
        layers = self.decoder
        project = weighting_function(self.max_num_bins, self.up, self.reg_scale)
        boxes = torch.sigmoid(reference_logits)
        position = None
        for i, layer in enumerate(layers.layers):
            position = self.query_position(boxes, position)
            update = layer(target, boxes, memory, shapes, position)
            if i == 0:
                initial = torch.sigmoid(self.pre_bbox_head(update) + inverse_sigmoid(boxes))
                corners = self.bbox_head(0)(update)
            else:
                # Each layer's head reads its output plus the previous layer's and adds to its bin logits.
                corners = corners + self.bbox_head(i)(update + target)
            boxes = edges_to_box(initial, distribution_offsets(corners, project), self.reg_scale)
            target = update
        logits = layers.lqe_layers[self.eval_layer](self.dec_score_head[self.eval_layer](target), corners)
        return logits, boxes

    def forward(self, feats: list[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        memory, output_memory, enc_logits, anchors, shapes = self.encode_cells(feats)
        # Query selection, as in RT-DETRv2.
        targets, reference_logits = select_queries(output_memory, enc_logits, anchors, self.num_queries,
                                                   self.enc_bbox_head, self.selection_observer)
        return self.decode(targets, reference_logits, memory, shapes)
