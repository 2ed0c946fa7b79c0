"""One entry point that builds our RT-DETRv2 from a preset, a transformers folder or an original .pth."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from rtdetr_export.errors import RTDetrExportError
from rtdetr_export.files import file_sha256
from rtdetr_export.model import ModelConfig, RTDETRv2, WeightSource, fuse_repvgg, preset as preset_config
from rtdetr_export.weights.matching import load_strict
from rtdetr_export.weights.original import infer_config, read_original_checkpoint
from rtdetr_export.weights.random_init import randomize_
from rtdetr_export.weights.transformers_folder import (
    config_from_transformers, convert_transformers_state_dict, read_transformers_folder)


def load_model(model_path: str | Path | None = None, *, preset: str | None = None, method: str | None = None,
               image_size: int | tuple[int, int] | None = None, seed: int = 0,
               **overrides: Any) -> RTDETRv2:
    """Build the reference model in eval mode.

    ``model_path`` is a transformers folder or an original ``.pth``; without it, ``preset`` (required then)
    with seeded random weights. ``method`` picks the deformable-attention sampler, ``image_size`` the deploy
    input size, ``overrides`` any other ModelConfig field. The model's ``.source`` says where weights came from.
    """
    changes = dict(overrides)
    if method is not None:
        changes["decoder_method"] = method
    if image_size is not None:
        changes["image_size"] = image_size
    if model_path is None:
        if preset is None:
            raise RTDetrExportError("load_model needs a model path (transformers folder or original .pth), or "
                                    "preset=NAME for seeded random weights")
        return randomize_(RTDETRv2(preset_config(preset, **changes), WeightSource("random", seed=seed)), seed)

    path = Path(model_path)
    if not path.exists():
        raise RTDetrExportError(f"{path} does not exist; pass a transformers model folder or an original .pth")
    if path.is_dir():
        raw_config, raw_state, weights_file = read_transformers_folder(path)
        config = config_from_transformers(raw_config)
        if preset is not None:
            config = preset_config(preset, num_classes=config.num_classes, id2label=config.id2label)
        state = convert_transformers_state_dict(raw_state)
        fmt = "transformers"
    else:
        weights_file = path
        state = read_original_checkpoint(path)
        config = infer_config(state, preset_config(preset) if preset else None)
        fmt = "original"
    config = config.replace(**changes) if changes else config

    model = RTDETRv2(config, WeightSource(fmt, str(weights_file), file_sha256(weights_file)))
    if any(k.endswith("bottlenecks.0.conv.weight") for k in state):
        fuse_repvgg(model)
    with torch.no_grad():
        load_strict(model, state, str(weights_file))
    return model.eval()


__all__ = ["WeightSource", "load_model", "ModelConfig", "file_sha256"]
