"""D-FINE's hybrid encoder: RT-DETRv2's, with lighter fusion blocks.

What is the same (imported): the input projections (``conv_bn``), AIFI on the coarsest map, the top-down then
bottom-up order of the fusion, CSP blocks of RepVGG units.
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

from rtdetr_export.model.aifi import AIFI
from rtdetr_export.model.ccfm import CSPRepLayer
from rtdetr_export.model.dfine_config import DFineConfig
from rtdetr_export.model.hybrid_encoder import conv_bn
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


class DFineHybridEncoder(nn.Module):
    """The backbone's maps -> as many fused maps of ``encoder_hidden_dim`` channels."""

    def __init__(self, config: DFineConfig):
        super().__init__()
        dim, eps = config.encoder_hidden_dim, config.batch_norm_eps
        levels = len(config.backbone_out_channels)
        self.encode_proj_layers = config.encode_proj_layers
        self.feat_strides = config.feat_strides
        self.input_proj = nn.ModuleList(conv_bn(ch, dim, eps) for ch in config.backbone_out_channels)
        self.encoder = nn.ModuleList(
            AIFI(dim, config.encoder_heads, config.encoder_ffn_dim, config.encoder_activation,
                 config.encoder_layers, config.normalize_before, config.layer_norm_eps, config.pe_temperature)
            for _ in config.encode_proj_layers)

        self.lateral_convs = nn.ModuleList(ConvNormLayer(dim, dim, 1, 1, eps=eps) for _ in range(levels - 1))
        self.fpn_blocks = nn.ModuleList(self.fusion_block(config) for _ in range(levels - 1))
        self.downsample_convs = nn.ModuleList(SCDown(dim, eps) for _ in range(levels - 1))
        self.pan_blocks = nn.ModuleList(self.fusion_block(config) for _ in range(levels - 1))

    def fusion_block(self, config: DFineConfig) -> nn.Module:
        """One fusion block of the top-down and bottom-up paths; it reads what ``fuse`` makes of two maps."""
        return RepNCSPELAN4(config.encoder_hidden_dim, config.hidden_expansion, config.csp_units, config.activation,
                            config.batch_norm_eps)

    def fuse(self, coarse: torch.Tensor, fine: torch.Tensor) -> torch.Tensor:
        """Two maps of one size -> a fusion block's input: D-FINE concatenates them."""
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

        # Top-down: the coarse map goes through the lateral conv, is upsampled and fused with the finer one.
        inner = [proj[-1]]
        for step, (lateral, fpn) in enumerate(zip(self.lateral_convs, self.fpn_blocks)):
            inner[0] = lateral(inner[0])
            up = nn.functional.interpolate(inner[0], scale_factor=2.0, mode="nearest")
            inner.insert(0, fpn(self.fuse(up, proj[-2 - step])))

        # Bottom-up: each fused map is downsampled and fused with the next coarser one.
        outs = [inner[0]]
        for step, (down, pan) in enumerate(zip(self.downsample_convs, self.pan_blocks)):
            outs.append(pan(self.fuse(down(outs[-1]), inner[step + 1])))
        return outs
