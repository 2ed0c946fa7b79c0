"""ResNet-vd backbone: three-conv stem and average-pool shortcuts (Bag of Tricks "D" variant)."""

from __future__ import annotations

from collections import OrderedDict

import torch
from torch import nn

from rtdetr_export.model.config import ModelConfig
from rtdetr_export.model.layers import ConvNormLayer, activation


class DownsamplePool(nn.Module):
    """2x2 average pool with stride 2 that rounds the output size up (``ceil_mode``), as the original does.

    On even-sized maps (every map of a 640x640 input) ceil mode changes nothing, so it is used only for odd
    sizes: an exported floor-mode pool runs in ONNX Runtime's blocked NCHWc layout, while a ceil-mode one
    makes it convert the map out of that layout and back around the pool.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        odd = bool(x.shape[-2] % 2 or x.shape[-1] % 2)
        return nn.functional.avg_pool2d(x, 2, 2, 0, ceil_mode=odd)


def _shortcut(ch_in: int, ch_out: int, stride: int, eps: float) -> nn.Module:
    # The "d" variant downsamples the identity path with an average pool before a 1x1 conv instead of
    # a strided 1x1 conv that would drop three quarters of the pixels.
    if stride == 2:
        return nn.Sequential(OrderedDict([
            ("pool", DownsamplePool()),
            ("conv", ConvNormLayer(ch_in, ch_out, 1, 1, eps=eps)),
        ]))
    return ConvNormLayer(ch_in, ch_out, 1, stride, eps=eps)


class BasicBlock(nn.Module):
    """Two 3x3 convs plus the identity (ResNet-18/34)."""

    expansion = 1

    def __init__(self, ch_in: int, width: int, stride: int, project: bool, act: str, eps: float):
        super().__init__()
        self.branch2a = ConvNormLayer(ch_in, width, 3, stride, act=act, eps=eps)
        self.branch2b = ConvNormLayer(width, width, 3, 1, eps=eps)
        if project:
            self.short = _shortcut(ch_in, width, stride, eps)
        self.act = activation(act)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        short = self.short(x) if hasattr(self, "short") else x
        return self.act(self.branch2b(self.branch2a(x)) + short)


class BottleNeck(nn.Module):
    """1x1 reduce, 3x3 (strided here in the "d" variant), 1x1 expand, plus the identity (ResNet-50/101)."""

    expansion = 4

    def __init__(self, ch_in: int, width: int, stride: int, project: bool, act: str, eps: float):
        super().__init__()
        self.branch2a = ConvNormLayer(ch_in, width, 1, 1, act=act, eps=eps)
        self.branch2b = ConvNormLayer(width, width, 3, stride, act=act, eps=eps)
        self.branch2c = ConvNormLayer(width, width * self.expansion, 1, 1, eps=eps)
        if project:
            self.short = _shortcut(ch_in, width * self.expansion, stride, eps)
        self.act = activation(act)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        short = self.short(x) if hasattr(self, "short") else x
        return self.act(self.branch2c(self.branch2b(self.branch2a(x))) + short)


class Stage(nn.Module):
    """A run of residual blocks; the first one changes width (and stride, except in the first stage)."""

    def __init__(self, block: type, ch_in: int, width: int, count: int, stride: int, act: str, eps: float):
        super().__init__()
        self.blocks = nn.ModuleList()
        for i in range(count):
            self.blocks.append(block(ch_in, width, stride if i == 0 else 1, i == 0, act, eps))
            ch_in = width * block.expansion

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for block in self.blocks:
            x = block(x)
        return x


class ResNetVd(nn.Module):
    """ResNet-vd returning the stride-8/16/32 feature maps."""

    def __init__(self, config: ModelConfig):
        super().__init__()
        act, eps, stem = config.backbone_activation, config.batch_norm_eps, config.backbone_stem_channels
        self.conv1 = nn.Sequential(OrderedDict([
            ("conv1_1", ConvNormLayer(3, stem // 2, 3, 2, act=act, eps=eps)),
            ("conv1_2", ConvNormLayer(stem // 2, stem // 2, 3, 1, act=act, eps=eps)),
            ("conv1_3", ConvNormLayer(stem // 2, stem, 3, 1, act=act, eps=eps)),
        ]))
        self.pool = nn.MaxPool2d(3, 2, 1)
        block = BottleNeck if config.backbone_block == "bottleneck" else BasicBlock
        self.res_layers = nn.ModuleList()
        ch_in = stem
        for i, (width, count) in enumerate(zip(config.backbone_widths, config.backbone_blocks)):
            self.res_layers.append(Stage(block, ch_in, width, count, 1 if i == 0 else 2, act, eps))
            ch_in = width * block.expansion
        self.return_stages = config.backbone_return_stages

    def forward(self, images: torch.Tensor) -> list[torch.Tensor]:
        x = self.pool(self.conv1(images))
        outs = []
        for i, stage in enumerate(self.res_layers):
            x = stage(x)
            if i in self.return_stages:
                outs.append(x)
        return outs
