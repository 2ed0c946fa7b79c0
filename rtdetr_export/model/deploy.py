"""Deploy-time rewrites that leave outputs unchanged: RepVGG fusion and BatchNorm folding."""

from __future__ import annotations

import torch
from torch import nn

from rtdetr_export.model.ccfm import RepVggBlock
from rtdetr_export.model.layers import folded_conv_bn


def fuse_repvgg(model: nn.Module) -> int:
    """Merge every RepVGG block's 3x3 and 1x1 branches into one conv; returns how many were fused."""
    blocks = [m for m in model.modules() if isinstance(m, RepVggBlock) and not m.fused]
    for block in blocks:
        block.fuse()
    return len(blocks)


@torch.no_grad()
def fold_batchnorm(model: nn.Module) -> int:
    """Fold each BatchNorm that directly follows a conv into that conv's weights; returns the count."""
    folded = 0
    for module in list(model.modules()):
        conv, norm = getattr(module, "conv", None), getattr(module, "norm", None)
        if not (isinstance(conv, nn.Conv2d) and isinstance(norm, nn.BatchNorm2d)):
            continue
        kernel, bias = folded_conv_bn(conv, norm)
        fused = nn.Conv2d(conv.in_channels, conv.out_channels, conv.kernel_size, conv.stride, conv.padding,
                          conv.dilation, conv.groups, bias=True)
        fused.weight.copy_(kernel)
        fused.bias.copy_(bias)
        module.conv, module.norm = fused, nn.Identity()
        folded += 1
    return folded


def prepare_for_deploy(model: nn.Module) -> nn.Module:
    """Fuse RepVGG branches and fold BatchNorms in place (eval mode); returns the model."""
    model.eval()
    fuse_repvgg(model)
    fold_batchnorm(model)
    return model
