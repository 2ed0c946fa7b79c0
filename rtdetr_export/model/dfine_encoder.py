"""D-FINE's hybrid encoder: RT-DETRv2's, with lighter fusion blocks.

What is the same (inherited from ``HybridEncoder``): the input projections, AIFI on the coarsest map, the
top-down then bottom-up order of the fusion, and the concatenation of two maps into a block; CSP blocks of RepVGG
units inside the new blocks.
What differs, and why (D-FINE trades encoder FLOPs for decoder accuracy):
- the fusion blocks are RepNCSPELAN4 (GELAN from YOLOv9: a split, two CSP branches each closed by a 3x3 conv,
  everything concatenated) instead of one CSP block; their depth is ``round(3 * depth_mult)``;
- the bottom-up downsample is SCDown (1x1 conv, then a depthwise 3x3/2 conv) instead of a dense 3x3/2 conv;
- the lateral 1x1 convs have no activation.
Module names follow Peterande/D-FINE's ``HybridEncoder`` (``cv1`` .. ``cv4``), so BatchNorm folding and RepVGG
fusion in ``deploy.py`` apply unchanged.
"""

from __future__ import annotations

import torch
from torch import nn

from rtdetr_export.model.ccfm import CSPRepLayer
from rtdetr_export.model.dfine_config import DFineConfig
from rtdetr_export.model.hybrid_encoder import HybridEncoder
from rtdetr_export.model.layers import ConvNormLayer


class RepNCSPELAN4(nn.Module):
    """Split a 1x1 conv's output in two halves; run one half through two (CSP + 3x3 conv) stages in a row; then
    concatenate both halves and both stages' outputs and merge them with a 1x1 conv."""

    def __init__(self, dim: int, expansion: float, units: int, act: str, eps: float, ch_in: int | None = None,
                 csp: type[nn.Module] = CSPRepLayer):
        # ``ch_in``: 2 * dim after D-FINE's concatenating fusion (DEIMv2 sums: dim); ``csp``: the CSP block type,
        # built as ``csp(ch_in, ch_out, units, expansion, act, eps)``.
        super().__init__()
        branch = round(expansion * dim // 2)
        self.half = dim
        self.cv1 = ConvNormLayer(2 * dim if ch_in is None else ch_in, 2 * dim, 1, 1, act=act, eps=eps)
        self.cv2 = nn.Sequential(csp(dim, branch, units, 1.0, act, eps),
                                 ConvNormLayer(branch, branch, 3, 1, act=act, eps=eps))
        self.cv3 = nn.Sequential(csp(branch, branch, units, 1.0, act, eps),
                                 ConvNormLayer(branch, branch, 3, 1, act=act, eps=eps))
        self.cv4 = ConvNormLayer(2 * dim + 2 * branch, dim, 1, 1, act=act, eps=eps)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        first, second = self.cv1(x).split((self.half, self.half), dim=1)
        branch1 = self.cv2(second)
        branch2 = self.cv3(branch1)
        return self.cv4(torch.cat([first, second, branch1, branch2], dim=1))


class SCDown(nn.Module):
    """Spatial-channel decoupled downsample: a 1x1 conv, then a depthwise 3x3 stride-2 conv, neither activated."""

    def __init__(self, dim: int, eps: float):
        super().__init__()
        self.cv1 = ConvNormLayer(dim, dim, 1, 1, eps=eps)
        self.cv2 = ConvNormLayer(dim, dim, 3, 2, eps=eps, groups=dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.cv2(self.cv1(x))


class DFineHybridEncoder(HybridEncoder):
    """RT-DETRv2's hybrid encoder with D-FINE's blocks (the module text says which and why)."""

    def lateral_conv(self, config: DFineConfig) -> nn.Module:  # type: ignore[override]
        """No activation: D-FINE's lateral convs are linear."""
        return ConvNormLayer(config.encoder_hidden_dim, config.encoder_hidden_dim, 1, 1, eps=config.batch_norm_eps)

    def fusion_block(self, config: DFineConfig) -> nn.Module:  # type: ignore[override]
        return RepNCSPELAN4(config.encoder_hidden_dim, config.hidden_expansion, config.csp_units, config.activation,
                            config.batch_norm_eps)

    def downsample_conv(self, config: DFineConfig) -> nn.Module:  # type: ignore[override]
        return SCDown(config.encoder_hidden_dim, config.batch_norm_eps)
