"""Hybrid encoder: input projections, AIFI on the coarsest map, then CCFM top-down and bottom-up fusion."""

from __future__ import annotations

from collections import OrderedDict

import torch
from torch import nn

from rtdetr_export.model.aifi import AIFI
from rtdetr_export.model.ccfm import CSPRepLayer
from rtdetr_export.model.config import ModelConfig
from rtdetr_export.model.layers import ConvNormLayer


def conv_bn(ch_in: int, ch_out: int, eps: float, kernel_size: int = 1, stride: int = 1) -> nn.Sequential:
    """A bias-free conv followed by BatchNorm, named ``conv``/``norm`` as in the original checkpoints."""
    return nn.Sequential(OrderedDict([
        ("conv", nn.Conv2d(ch_in, ch_out, kernel_size, stride, padding=(kernel_size - 1) // 2, bias=False)),
        ("norm", nn.BatchNorm2d(ch_out, eps=eps)),
    ]))


class HybridEncoder(nn.Module):
    """Turns the backbone's three maps into three fused maps of ``encoder_hidden_dim`` channels.

    AIFI on the coarsest map, then CCFM: top-down, then bottom-up fusion. A variant (D-FINE's) changes only the
    blocks: ``lateral_conv``, ``fusion_block``, ``downsample_conv``, and how two maps enter a block (``fuse``)."""

    def __init__(self, config: ModelConfig):
        super().__init__()
        dim, eps = config.encoder_hidden_dim, config.batch_norm_eps
        self.encode_proj_layers = config.encode_proj_layers
        self.feat_strides = config.feat_strides
        self.input_proj = nn.ModuleList(conv_bn(ch, dim, eps) for ch in config.backbone_out_channels)
        self.encoder = nn.ModuleList(
            AIFI(dim, config.encoder_heads, config.encoder_ffn_dim, config.encoder_activation,
                 config.encoder_layers, config.normalize_before, config.layer_norm_eps, config.pe_temperature)
            for _ in config.encode_proj_layers)
        steps = range(len(config.backbone_out_channels) - 1)
        self.lateral_convs = nn.ModuleList(self.lateral_conv(config) for _ in steps)
        self.fpn_blocks = nn.ModuleList(self.fusion_block(config) for _ in steps)
        self.downsample_convs = nn.ModuleList(self.downsample_conv(config) for _ in steps)
        self.pan_blocks = nn.ModuleList(self.fusion_block(config) for _ in steps)

    def lateral_conv(self, config: ModelConfig) -> nn.Module:
        """The top-down path's 1x1 conv on the coarser map."""
        return ConvNormLayer(config.encoder_hidden_dim, config.encoder_hidden_dim, 1, 1, act=config.activation,
                             eps=config.batch_norm_eps)

    def fusion_block(self, config: ModelConfig) -> nn.Module:
        """One fusion block of the top-down and bottom-up paths; it reads what ``fuse`` makes of two maps."""
        dim = config.encoder_hidden_dim
        return CSPRepLayer(2 * dim, dim, config.csp_blocks, config.hidden_expansion, config.activation,
                           config.batch_norm_eps)

    def downsample_conv(self, config: ModelConfig) -> nn.Module:
        """The bottom-up path's stride-2 conv."""
        return ConvNormLayer(config.encoder_hidden_dim, config.encoder_hidden_dim, 3, 2, act=config.activation,
                             eps=config.batch_norm_eps)

    def fuse(self, coarse: torch.Tensor, fine: torch.Tensor) -> torch.Tensor:
        """Two maps of one size -> a fusion block's input: their concatenation."""
        return torch.cat([coarse, fine], dim=1)

    def set_image_size(self, height: int, width: int) -> None:
        """Precompute AIFI position embeddings for this input size."""
        for aifi, level in zip(self.encoder, self.encode_proj_layers):
            stride = self.feat_strides[level]
            aifi.set_map_size(height // stride, width // stride)

    def forward(self, feats: list[torch.Tensor]) -> list[torch.Tensor]:
        proj = [layer(feat) for layer, feat in zip(self.input_proj, feats)]
        for aifi, level in zip(self.encoder, self.encode_proj_layers):
            proj[level] = aifi(proj[level])

        # CCFM top-down: the coarse map is laterally convolved, upsampled and fused with the finer one.
        inner = [proj[-1]]
        for step, (lateral, fpn) in enumerate(zip(self.lateral_convs, self.fpn_blocks)):
            inner[0] = lateral(inner[0])
            up = nn.functional.interpolate(inner[0], scale_factor=2.0, mode="nearest")
            inner.insert(0, fpn(self.fuse(up, proj[-2 - step])))

        # CCFM bottom-up: each fused map is downsampled and fused with the next coarser one.
        outs = [inner[0]]
        for step, (down, pan) in enumerate(zip(self.downsample_convs, self.pan_blocks)):
            outs.append(pan(self.fuse(down(outs[-1]), inner[step + 1])))
        return outs
