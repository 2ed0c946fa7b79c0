"""Seeded random weights that give a working-looking detector: distinct, well-separated scores.

PyTorch's default init leaves many encoder cells with near-equal class scores, so the top-k query
selection flips on 1e-7 noise and no two runtimes agree. Drawing every tensor from its own generator,
seeded by its key, gives scores whose top-k is stable, and the same weights for the same key in any model.
"""

from __future__ import annotations

import math
import zlib

import torch
from torch import nn

from rtdetr_export.model import Deimv2, Deimv2Config, DFine, DFineConfig, ModelConfig, RTDETRv2, WeightSource


def seeded_tensor(key: str, shape: tuple[int, ...], seed: int = 0) -> torch.Tensor:
    """The deterministic float32 value for one state_dict entry (see the module docstring)."""
    g = torch.Generator().manual_seed(zlib.crc32(key.encode()) + seed)
    if key.endswith("running_var"):
        return 0.5 + torch.rand(shape, generator=g)
    if key.endswith("running_mean"):
        return 0.1 * torch.randn(shape, generator=g)
    if len(shape) >= 2:
        fan_in = math.prod(shape[1:])
        return torch.randn(shape, generator=g) / math.sqrt(fan_in)
    if key.endswith(".weight"):
        return 1.0 + 0.1 * torch.randn(shape, generator=g)
    return 0.05 * torch.randn(shape, generator=g)


@torch.no_grad()
def randomize_(model: nn.Module, seed: int = 0) -> nn.Module:
    """Overwrite every persistent float parameter and buffer of ``model`` with seeded values."""
    for key, tensor in model.state_dict().items():
        if tensor.is_floating_point():
            tensor.copy_(seeded_tensor(key, tuple(tensor.shape), seed))
    return model


def seeded_model(config: ModelConfig, seed: int = 0) -> RTDETRv2:
    """The model of ``config`` with seeded random weights: the same numbers for the same config and seed, so an
    artifact exported from it is verified later against the very same reference."""
    detector = Deimv2 if isinstance(config, Deimv2Config) else DFine if isinstance(config, DFineConfig) else RTDETRv2
    return randomize_(detector(config, WeightSource("random", seed=seed)), seed)
