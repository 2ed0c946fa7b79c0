"""CCFM: CNN-based cross-scale feature fusion built from CSP blocks of RepVGG units."""

from __future__ import annotations

import torch
from torch import nn

from rtdetr_export.model.layers import ConvNormLayer, activation, folded_conv_bn


class RepVggBlock(nn.Module):
    """3x3 and 1x1 conv branches summed; ``fuse`` merges them into a single 3x3 conv for deployment."""

    def __init__(self, channels: int, act: str, eps: float):
        super().__init__()
        self.channels = channels
        self.conv1 = ConvNormLayer(channels, channels, 3, 1, padding=1, eps=eps)
        self.conv2 = ConvNormLayer(channels, channels, 1, 1, padding=0, eps=eps)
        self.act = activation(act)

    @property
    def fused(self) -> bool:
        return hasattr(self, "conv")

    def fuse(self) -> None:
        """Replace the two branches by one biased 3x3 conv with the same output (RepVGG re-param)."""
        if self.fused:
            return
        k3, b3 = _conv_bn_kernel(self.conv1)
        k1, b1 = _conv_bn_kernel(self.conv2)
        self.conv = nn.Conv2d(self.channels, self.channels, 3, 1, padding=1, bias=True)
        self.conv.weight.data = k3 + nn.functional.pad(k1, [1, 1, 1, 1])
        self.conv.bias.data = b3 + b1
        del self.conv1, self.conv2

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.conv(x) if self.fused else self.conv1(x) + self.conv2(x)
        return self.act(y)


def _conv_bn_kernel(layer: ConvNormLayer) -> tuple[torch.Tensor, torch.Tensor]:
    return folded_conv_bn(layer.conv, layer.norm)


class CSPRepLayer(nn.Module):
    """Cross-stage-partial block: one path through RepVGG units, one shortcut path, summed."""

    def __init__(self, ch_in: int, ch_out: int, num_blocks: int, expansion: float, act: str, eps: float):
        super().__init__()
        hidden = int(ch_out * expansion)
        self.conv1 = ConvNormLayer(ch_in, hidden, 1, 1, act=act, eps=eps)
        self.conv2 = ConvNormLayer(ch_in, hidden, 1, 1, act=act, eps=eps)
        self.bottlenecks = nn.Sequential(*[RepVggBlock(hidden, act, eps) for _ in range(num_blocks)])
        self.conv3 = ConvNormLayer(hidden, ch_out, 1, 1, act=act, eps=eps) if hidden != ch_out else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv3(self.bottlenecks(self.conv1(x)) + self.conv2(x))
