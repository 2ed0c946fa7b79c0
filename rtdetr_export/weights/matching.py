"""Strict state_dict loading: every key accounted for, or one clear error that lists what is wrong."""

from __future__ import annotations

import re

import torch
from torch import nn

from rtdetr_export.errors import RTDetrExportError

# Buffers that the model derives from its config; checkpoints may or may not carry them.
DERIVED = re.compile(r"(num_batches_tracked|num_points_scale|n_points_scale|(^|\.)anchors|(^|\.)valid_mask)$")


def _abbreviate(keys: list[str], limit: int = 4) -> str:
    shown = ", ".join(keys[:limit])
    return shown + (f", ... ({len(keys) - limit} more)" if len(keys) > limit else "")


def load_strict(model: nn.Module, state_dict: dict[str, torch.Tensor], source: str) -> None:
    """Load ``state_dict`` into ``model``; missing, unexpected or mis-shaped keys raise RTDetrExportError."""
    expected = model.state_dict()
    given = {k: v for k, v in state_dict.items() if not (DERIVED.search(k) and k not in expected)}
    missing = sorted(k for k in expected if k not in given and not DERIVED.search(k))
    unexpected = sorted(k for k in given if k not in expected)
    mismatched = sorted(f"{k} {tuple(given[k].shape)} vs {tuple(v.shape)}"
                        for k, v in expected.items() if k in given and given[k].shape != v.shape)
    problems = []
    if missing:
        problems.append(f"{len(missing)} missing keys ({_abbreviate(missing)})")
    if unexpected:
        problems.append(f"{len(unexpected)} unexpected keys ({_abbreviate(unexpected)})")
    if mismatched:
        problems.append(f"{len(mismatched)} shape mismatches ({_abbreviate(mismatched, 3)})")
    if problems:
        raise RTDetrExportError(
            f"{source} does not match the model architecture: {'; '.join(problems)}. "
            "Check --preset (or the folder's config.json) against the checkpoint")
    model.load_state_dict({k: v for k, v in given.items() if k in expected}, strict=False)
