"""HGNetv2 backbone (PP-HGNetV2, as D-FINE uses it): a two-branch stem, then stages of HG blocks.

An HG block runs a chain of convs, concatenates the input and every intermediate map, and squeezes the
concatenation back with two 1x1 convs (squeeze, excitation). "Light" blocks (the last two stages) make each conv a
1x1 followed by a depthwise kxk. With ``use_lab`` every activated conv ends in a learnable affine block
(one scale and one bias for the whole map). Module names follow Peterande/D-FINE's ``HGNetv2`` except that each
conv's BatchNorm is called ``norm`` (not ``bn``), so ``deploy.fold_batchnorm`` folds it like every other one.
"""

from __future__ import annotations

import torch
from torch import nn

from rtdetr_export.model.dfine_config import DFineConfig
from rtdetr_export.model.layers import ConvNormLayer


class LearnableAffine(nn.Module):
    """``scale * x + bias`` with one learned scalar each."""

    def __init__(self):
        super().__init__()
        self.scale = nn.Parameter(torch.ones(1))
        self.bias = nn.Parameter(torch.zeros(1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.scale * x + self.bias


class ConvBNAct(ConvNormLayer):
    """Conv -> BatchNorm -> ReLU (when ``act``) -> learnable affine (when ``act`` and ``use_lab``)."""

    def __init__(self, ch_in: int, ch_out: int, kernel_size: int, stride: int = 1, groups: int = 1,
                 act: bool = True, use_lab: bool = False):
        super().__init__(ch_in, ch_out, kernel_size, stride, act="relu" if act else None, groups=groups)
        self.lab = LearnableAffine() if act and use_lab else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.lab(super().forward(x))


class LightConvBNAct(nn.Module):
    """1x1 conv without activation, then a depthwise kxk conv with it."""

    def __init__(self, ch_in: int, ch_out: int, kernel_size: int, use_lab: bool):
        super().__init__()
        self.conv1 = ConvBNAct(ch_in, ch_out, 1, act=False, use_lab=use_lab)
        self.conv2 = ConvBNAct(ch_out, ch_out, kernel_size, groups=ch_out, use_lab=use_lab)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv2(self.conv1(x))


class StemBlock(nn.Module):
    """Stride-4 stem: a 3x3/2 conv, then a max-pool branch and a 2x2-conv branch side by side, fused by convs."""

    def __init__(self, ch_in: int, ch_mid: int, ch_out: int, use_lab: bool):
        super().__init__()
        self.stem1 = ConvBNAct(ch_in, ch_mid, 3, 2, use_lab=use_lab)
        self.stem2a = ConvBNAct(ch_mid, ch_mid // 2, 2, use_lab=use_lab)
        self.stem2b = ConvBNAct(ch_mid // 2, ch_mid, 2, use_lab=use_lab)
        self.stem3 = ConvBNAct(ch_mid * 2, ch_mid, 3, 2, use_lab=use_lab)
        self.stem4 = ConvBNAct(ch_mid, ch_out, 1, use_lab=use_lab)
        self.pool = nn.MaxPool2d(kernel_size=2, stride=1, ceil_mode=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # The 2x2 convs and the 2x2 pool keep the size through one extra row and column on the bottom right
        # (zeros for the convs; the ceil-mode pool reads a partial last window instead).
        x = nn.functional.pad(self.stem1(x), (0, 1, 0, 1))
        branch = self.stem2b(nn.functional.pad(self.stem2a(x), (0, 1, 0, 1)))
        return self.stem4(self.stem3(torch.cat([self.pool(x), branch], dim=1)))


class HGBlock(nn.Module):
    """A chain of convs whose input and outputs are concatenated and squeezed back by two 1x1 convs."""

    def __init__(self, ch_in: int, ch_mid: int, ch_out: int, layers: int, kernel_size: int, residual: bool,
                 light: bool, use_lab: bool):
        super().__init__()
        self.residual = residual
        self.layers = nn.ModuleList(
            LightConvBNAct(ch_in if i == 0 else ch_mid, ch_mid, kernel_size, use_lab) if light
            else ConvBNAct(ch_in if i == 0 else ch_mid, ch_mid, kernel_size, use_lab=use_lab)
            for i in range(layers))
        self.aggregation = nn.Sequential(
            ConvBNAct(ch_in + layers * ch_mid, ch_out // 2, 1, use_lab=use_lab),
            ConvBNAct(ch_out // 2, ch_out, 1, use_lab=use_lab))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        maps = [x]
        for layer in self.layers:
            maps.append(layer(maps[-1]))
        out = self.aggregation(torch.cat(maps, dim=1))
        return out + x if self.residual else out


class HGStage(nn.Module):
    """An optional depthwise 3x3/2 downsample, then HG blocks (all but the first residual)."""

    def __init__(self, config: DFineConfig, index: int):
        super().__init__()
        ch_in, ch_mid, ch_out = (config.hgnet_stage_in_channels[index], config.hgnet_stage_mid_channels[index],
                                 config.hgnet_stage_out_channels[index])
        use_lab = config.hgnet_use_lab
        # The downsample has no activation, so it never gets an affine block either.
        self.downsample = ConvBNAct(ch_in, ch_in, 3, 2, groups=ch_in, act=False) \
            if config.hgnet_stage_downsample[index] else nn.Identity()
        self.blocks = nn.Sequential(*[
            HGBlock(ch_in if i == 0 else ch_out, ch_mid, ch_out, config.hgnet_stage_layers[index],
                    config.hgnet_stage_kernel_size[index], i > 0, config.hgnet_stage_light_block[index], use_lab)
            for i in range(config.hgnet_stage_num_blocks[index])])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.blocks(self.downsample(x))


class HGNetV2(nn.Module):
    """HGNetv2 returning the maps of ``config.backbone_return_stages`` (strides 4, 8, 16, 32 for stages 0..3)."""

    def __init__(self, config: DFineConfig):
        super().__init__()
        self.stem = StemBlock(*config.hgnet_stem_channels, use_lab=config.hgnet_use_lab)
        self.stages = nn.ModuleList(HGStage(config, i) for i in range(len(config.hgnet_stage_in_channels)))
        self.return_stages = config.backbone_return_stages

    def forward(self, images: torch.Tensor) -> list[torch.Tensor]:
        x = self.stem(images)
        outs = []
        for i, stage in enumerate(self.stages):
            x = stage(x)
            if i in self.return_stages:
                outs.append(x)
        return outs
