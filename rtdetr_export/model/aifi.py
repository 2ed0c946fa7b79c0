"""AIFI: attention-based intra-scale feature interaction on the stride-32 map."""

from __future__ import annotations

import torch
from torch import nn

from rtdetr_export.model.layers import SelfAttention, activation


def sincos_position_embedding(height: int, width: int, dim: int, temperature: float) -> torch.Tensor:
    """2-D sin-cos embedding [1, H*W, dim], row-major, laid out as [sin y | cos y | sin x | cos x].

    Matches transformers' layout for every map shape. The original code builds the grid as (w, h) and so
    transposes the embedding on non-square maps; on square maps the two agree exactly.
    """
    quarter = dim // 4
    omega = 1.0 / temperature ** (torch.arange(quarter, dtype=torch.float64) / quarter)
    grid_y, grid_x = torch.meshgrid(torch.arange(height, dtype=torch.float64),
                                    torch.arange(width, dtype=torch.float64), indexing="ij")
    emb_y = grid_y.flatten()[:, None] * omega[None]
    emb_x = grid_x.flatten()[:, None] * omega[None]
    emb = torch.cat([emb_y.sin(), emb_y.cos(), emb_x.sin(), emb_x.cos()], dim=1)
    return emb.to(torch.float32)[None]


def sincos_position_embedding_in_graph(height, width, dim: int, temperature: float) -> torch.Tensor:
    """``sincos_position_embedding`` computed for traced (height, width) in float32, as a dynamic-size graph does.

    Float32 because TensorRT has no float64 Sin/Cos; one sin and cos per row and per column (H + W of them, not
    H * W), then broadcast over the grid. Measured against the float64 table: 9e-7 apart on a 20 x 20 map
    (640 px), 2.4e-6 on 40 x 40 (1280 px), 6.7e-6 on 128 x 128 (4096 px).
    """
    quarter = dim // 4
    omega = (1.0 / temperature ** (torch.arange(quarter, dtype=torch.float64) / quarter)).to(torch.float32)
    emb_y = torch.arange(height, dtype=torch.float32)[:, None] * omega[None]
    emb_x = torch.arange(width, dtype=torch.float32)[:, None] * omega[None]
    rows = torch.cat([emb_y.sin(), emb_y.cos()], dim=1)[:, None, :].expand(-1, width, -1)
    cols = torch.cat([emb_x.sin(), emb_x.cos()], dim=1)[None, :, :].expand(height, -1, -1)
    return torch.cat([rows, cols], dim=2).reshape(1, height * width, dim)


class TransformerEncoderLayer(nn.Module):
    """Self-attention + FFN, post-norm by default (pre-norm with ``normalize_before``)."""

    def __init__(self, dim: int, heads: int, ffn_dim: int, act: str, normalize_before: bool, eps: float):
        super().__init__()
        self.normalize_before = normalize_before
        self.self_attn = SelfAttention(dim, heads)
        self.linear1 = nn.Linear(dim, ffn_dim)
        self.linear2 = nn.Linear(ffn_dim, dim)
        self.norm1 = nn.LayerNorm(dim, eps=eps)
        self.norm2 = nn.LayerNorm(dim, eps=eps)
        self.activation = activation(act)

    def forward(self, src: torch.Tensor, pos: torch.Tensor) -> torch.Tensor:
        residual = src
        if self.normalize_before:
            src = self.norm1(src)
        src = residual + self.self_attn(src, pos)
        if not self.normalize_before:
            src = self.norm1(src)
        residual = src
        if self.normalize_before:
            src = self.norm2(src)
        src = residual + self.linear2(self.activation(self.linear1(src)))
        if not self.normalize_before:
            src = self.norm2(src)
        return src


class AIFI(nn.Module):
    """A stack of encoder layers applied to one flattened feature map with a fixed position embedding."""

    def __init__(self, dim: int, heads: int, ffn_dim: int, act: str, num_layers: int, normalize_before: bool,
                 eps: float, temperature: float):
        super().__init__()
        self.dim = dim
        self.temperature = temperature
        self.layers = nn.ModuleList(
            TransformerEncoderLayer(dim, heads, ffn_dim, act, normalize_before, eps) for _ in range(num_layers))
        # Precomputed for the deploy input size so an export folds it into a constant.
        self.register_buffer("pos_embed", torch.zeros(1, 0, dim), persistent=False)
        self.map_size: tuple[int, int] = (0, 0)  # the (height, width) ``pos_embed`` was built for
        # True only in dynamic-size exports: the embedding is computed from the traced map shape every run.
        self.sizes_in_graph = False

    def set_map_size(self, height: int, width: int) -> None:
        """Precompute the position embedding for an (height, width) feature map."""
        self.map_size = (height, width)
        self.pos_embed = sincos_position_embedding(height, width, self.dim, self.temperature)

    def forward(self, feat: torch.Tensor) -> torch.Tensor:
        batch, channels, height, width = feat.shape
        if self.sizes_in_graph:
            pos = sincos_position_embedding_in_graph(height, width, self.dim, self.temperature).to(feat.device)
        elif self.map_size == (int(height), int(width)):
            pos = self.pos_embed
        else:
            pos = sincos_position_embedding(height, width, self.dim, self.temperature).to(feat.device)
        src = feat.flatten(2).transpose(1, 2)
        for layer in self.layers:
            src = layer(src, pos)
        return src.transpose(1, 2).reshape(batch, channels, height, width)
