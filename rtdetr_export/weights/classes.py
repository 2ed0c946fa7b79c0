"""How many classes a checkpoint detects, and their names: the score heads' shapes decide the count.

A ``config.json`` may say nothing about classes (transformers does not write ``id2label`` for its default two
labels) or say something the weights contradict (a fine-tune whose config was copied from the base model). The
score head is what the network computes, so its row count wins; names come from ``id2label`` where it has them
and fall back to ``class_<i>`` (COCO's names only for 80 classes with no names given, ``ModelConfig.class_names``).
"""

from __future__ import annotations

import warnings

import torch

from rtdetr_export.errors import RTDetrExportWarning
from rtdetr_export.model.config import ModelConfig

SCORE_HEAD = "decoder.dec_score_head.0.weight"


def head_classes(state: dict[str, torch.Tensor]) -> int | None:
    """Rows of the first decoder score head (our key names), or None when the checkpoint lacks it."""
    head = state.get(SCORE_HEAD)
    return int(head.shape[0]) if head is not None and head.dim() == 2 else None


def reconcile_classes(config: ModelConfig, state: dict[str, torch.Tensor], where: str) -> ModelConfig:
    """``config`` with the class count of the weights; a disagreeing ``id2label`` gives a one-line warning."""
    count = head_classes(state)
    if count is None:
        return config  # the strict load names the missing head
    id2label = config.id2label
    if id2label and len(id2label) != count:
        warnings.warn(f"{where}: config.json id2label names {len(id2label)} classes but the score head has {count}; "
                      f"using {count} classes (names from id2label where it has them, class_<i> otherwise)",
                      RTDetrExportWarning, stacklevel=3)
        id2label = {i: name for i, name in id2label.items() if i < count} or None
    if count == config.num_classes and id2label == config.id2label:
        return config
    return config.replace(num_classes=count, id2label=id2label)
