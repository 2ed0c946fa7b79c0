"""DEIMv2's encoders: D-FINE's hybrid encoder with summed fusion (N), and the Lite encoder (Atto, Femto, Pico).

What is the same as D-FINE (imported): the input projections, AIFI, the lateral 1x1 convs, SCDown, and the
GELAN fusion block's layout (split, two CSP + 3x3 conv stages in a row, concatenate, 1x1 merge).
What differs, and why (DEIMv2 trims the encoder further for the smallest sizes):
- two maps are fused by adding them, not concatenating them: the fusion block's first conv reads ``dim`` channels,
  not ``2 * dim`` (``fuse_op: sum``);
- the fusion block's CSP stages are RepC3 blocks (``CSPLayer2``: one 1x1 conv whose output is split into a shortcut
  and a RepVGG path, summed), not D-FINE's two-conv CSP blocks (``csp_type: csp2``);
- the Lite encoder has no attention at all: the one stride-16 backbone map is projected, average-pooled to stride
  32 and mixed with its global average (GAP fusion), then one top-down and one bottom-up fusion block give the two
  decoder levels.
Module names follow Intellindust-AI-Lab/DEIMv2's ``HybridEncoder`` and ``LiteEncoder`` (``cv1`` .. ``cv4``,
``down_sample1``, ``bi_fusion``), with every conv's BatchNorm called ``norm`` so ``deploy.py`` folds it.
"""

from __future__ import annotations

import torch
from torch import nn

from rtdetr_export.model.ccfm import RepVggBlock
from rtdetr_export.model.deimv2_config import Deimv2Config
from rtdetr_export.model.dfine_encoder import DFineHybridEncoder, RepNCSPELAN4
from rtdetr_export.model.hybrid_encoder import conv_bn
from rtdetr_export.model.layers import ConvNormLayer


class RepC3(nn.Module):
    """One 1x1 conv to twice the width, split in halves: ``first + RepVGG units(second)``. Signature as
    ``ccfm.CSPRepLayer``'s; ``expansion`` is 1 in every DEIMv2 block (no closing conv), and only that is built."""

    def __init__(self, ch_in: int, ch_out: int, units: int, expansion: float, act: str, eps: float):
        super().__init__()
        if expansion != 1.0:
            raise ValueError("DEIMv2's RepC3 blocks have expansion 1")
        self.conv1 = ConvNormLayer(ch_in, 2 * ch_out, 1, 1, act=act, eps=eps)
        self.bottlenecks = nn.Sequential(*[RepVggBlock(ch_out, act, eps) for _ in range(units)])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shortcut, path = self.conv1(x).chunk(2, dim=1)
        return shortcut + self.bottlenecks(path)


def fusion_block(config: Deimv2Config) -> RepNCSPELAN4:
    """GELAN over RepC3 blocks, reading one map's width (the two inputs were summed)."""
    dim = config.encoder_hidden_dim
    return RepNCSPELAN4(dim, config.hidden_expansion, config.csp_units, config.activation, config.batch_norm_eps,
                        ch_in=dim, csp=RepC3)


class Deimv2HybridEncoder(DFineHybridEncoder):
    """D-FINE's hybrid encoder with summed fusion and RepC3-based fusion blocks (DEIMv2-N)."""

    def fusion_block(self, config: Deimv2Config) -> nn.Module:  # type: ignore[override]
        return fusion_block(config)

    def fuse(self, coarse: torch.Tensor, fine: torch.Tensor) -> torch.Tensor:
        return coarse + fine


class LiteEncoder(nn.Module):
    """One stride-16 backbone map -> two fused maps (strides 16 and 32) of ``encoder_hidden_dim`` channels."""

    def __init__(self, config: Deimv2Config):
        super().__init__()
        dim, eps, act = config.encoder_hidden_dim, config.batch_norm_eps, config.activation
        self.input_proj = nn.ModuleList(conv_bn(ch, dim, eps) for ch in config.backbone_out_channels)
        # No AIFI: empty, so the detector's size hooks (which visit ``encoder.encoder``) find nothing to update.
        self.encoder = nn.ModuleList()
        self.pool = nn.AvgPool2d(kernel_size=3, stride=2, padding=1)
        self.down_sample1 = ConvNormLayer(dim, dim, 1, 1, act=act, eps=eps)
        self.down_sample2 = ConvNormLayer(dim, dim, 1, 1, act=act, eps=eps)
        self.bi_fusion = ConvNormLayer(dim, dim, 1, 1, act=act, eps=eps)
        self.fpn_block = fusion_block(config)
        self.pan_block = fusion_block(config)

    def set_image_size(self, height: int, width: int) -> None:
        """Nothing depends on the input size here."""

    def forward(self, feats: list[torch.Tensor]) -> list[torch.Tensor]:
        (fine,) = [proj(feat) for proj, feat in zip(self.input_proj, feats)]
        coarse = self.down_sample1(self.pool(fine))
        # GAP fusion: every cell of the coarse map sees the whole image's mean before a 1x1 conv.
        coarse = self.bi_fusion(coarse + nn.functional.adaptive_avg_pool2d(coarse, 1))
        fine = self.fpn_block(fine + nn.functional.interpolate(coarse, scale_factor=2.0, mode="nearest"))
        return [fine, self.pan_block(coarse + self.down_sample2(self.pool(fine)))]
