"""Deterministic, order-independent synthetic weights for a state-dict layout.

Every tensor is drawn from its own generator seeded with ``zlib.crc32(key)``, so the
value of a key depends only on its name and shape, never on iteration order or on
the global RNG. The fixtures under ``tests/fixtures/original/`` were produced by
loading these weights into the original RT-DETRv2 code; tests load the same weights
into our model to compare outputs.

Rules (float32 unless stated):

* ``...running_var``: ``0.5 + U[0, 1)``
* ``...running_mean``: ``0.1 * N(0, 1)``
* ``...num_batches_tracked``: ``tensor(0)`` (int64, shape ``()``)
* 1-D ``...weight`` (norm scales): ``1 + 0.1 * N(0, 1)``
* 1-D ``...bias`` / ``...in_proj_bias``: ``0.05 * N(0, 1)``
* tensors with >= 2 dims: ``N(0, 1) / sqrt(prod(shape[1:]))``
* any other 1-D tensor: ``0.05 * N(0, 1)``

Keys present in ``keep`` (buffers the model derives itself, such as anchors,
valid masks or ``num_points_scale``) are copied unchanged.
"""

from __future__ import annotations

import math
import zlib

import torch

__all__ = ["seeded_state_dict"]


def _seeded_tensor(key: str, shape: tuple[int, ...]) -> torch.Tensor:
    g = torch.Generator().manual_seed(zlib.crc32(key.encode()))
    if key.endswith("num_batches_tracked"):
        return torch.tensor(0, dtype=torch.int64)
    if key.endswith("running_var"):
        return 0.5 + torch.rand(shape, generator=g, dtype=torch.float32)
    randn = torch.randn(shape, generator=g, dtype=torch.float32)
    if key.endswith("running_mean"):
        return 0.1 * randn
    if len(shape) >= 2:
        return randn * (1.0 / math.sqrt(math.prod(shape[1:])))
    if len(shape) == 1 and key.endswith(".weight"):
        return 1.0 + 0.1 * randn
    return 0.05 * randn  # 1-D biases, in_proj_bias and any other 1-D tensor


def seeded_state_dict(
    shapes: dict[str, tuple[int, ...]],
    keep: dict[str, torch.Tensor] | None = None,
) -> dict[str, torch.Tensor]:
    """Return ``{key: tensor}`` for every key in ``shapes`` following the module rules.

    Args:
        shapes: state-dict key -> tensor shape.
        keep: tensors copied verbatim (cloned) instead of being generated.
    """
    keep = keep or {}
    out: dict[str, torch.Tensor] = {}
    for key, shape in shapes.items():
        if key in keep:
            out[key] = keep[key].detach().clone()
        else:
            out[key] = _seeded_tensor(key, tuple(int(s) for s in shape))
    return out
