"""One entry point that builds our model from a preset, a transformers folder, an original .pth or a Hub id.

RT-DETR v1 and v2 load alike (``ModelConfig.version`` says which; DEIM's RT-DETRv2 is an RTDETRv2 too); D-FINE
loads from transformers folders (``dfine_folder``) and original D-FINE / DEIM-D-FINE checkpoints
(``dfine_original``) as a ``DFine``, which keeps RTDETRv2's interface, and DEIMv2 from transformers folders
(``deimv2_folder``) and original DEIMv2 checkpoints (``deimv2_original``) as a ``Deimv2``, a DFine with DEIMv2's
parts; look-alike detectors are refused by name
(``lookalikes``); the class count comes from the score heads (``classes``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from rtdetr_export.errors import RTDetrExportError
from rtdetr_export.files import file_sha256
from rtdetr_export.model import (HubRevision, ModelConfig, RTDETRv2, WeightSource, fuse_repvgg,
                                 preset as preset_config)
from rtdetr_export.model.deimv2_config import DEIMV2_PRESETS, deimv2_preset
from rtdetr_export.model.dfine_config import DFINE_PRESETS, dfine_preset
from rtdetr_export.weights.deimv2_folder import load_deimv2_folder
from rtdetr_export.weights.classes import reconcile_classes
from rtdetr_export.weights.dfine_folder import load_dfine_folder
from rtdetr_export.weights.hub import parse_hub_id, resolve_hub_id
from rtdetr_export.weights.lookalikes import folder_model_type
from rtdetr_export.weights.matching import load_strict
from rtdetr_export.weights.deimv2_original import is_deimv2_state, load_deimv2_checkpoint
from rtdetr_export.weights.dfine_original import is_dfine_state, load_dfine_checkpoint
from rtdetr_export.weights.original import infer_config, read_original_checkpoint, torch_load_weights, unwrap_state_dict
from rtdetr_export.weights.random_init import seeded_model
from rtdetr_export.weights.transformers_folder import (
    config_from_transformers, convert_transformers_state_dict, read_transformers_folder)


def load_model(model_path: str | Path | None = None, *, preset: str | None = None, method: str | None = None,
               image_size: int | tuple[int, int] | None = None, seed: int = 0,
               **overrides: Any) -> RTDETRv2:
    """Build the reference model in eval mode.

    ``model_path`` is a transformers folder, an original ``.pth`` or a Hub model id ``ORG/NAME[@REVISION]``
    (resolved through huggingface_hub: downloaded, or read from the local cache when offline); without it,
    ``preset`` (required then) with seeded random weights. ``method`` picks the deformable-attention sampler,
    ``image_size`` the deploy input size, ``overrides`` any other ModelConfig field. The model's ``.source``
    says where weights came from. A D-FINE folder or a ``dfine_*`` preset gives a ``DFine``, an RTDETRv2 with
    D-FINE's parts; a DEIMv2 folder or a ``deimv2_*`` preset a ``Deimv2``, a DFine with DEIMv2's.
    """
    changes = dict(overrides)
    if method is not None:
        changes["decoder_method"] = method
    if image_size is not None:
        changes["image_size"] = image_size
    if model_path is None:
        if preset is None:
            raise RTDetrExportError("load_model needs a model path (transformers folder, original .pth or Hub id "
                                    "ORG/NAME), or preset=NAME for seeded random weights")
        if preset in DFINE_PRESETS:
            return seeded_model(dfine_preset(preset, **changes), seed)
        if preset in DEIMV2_PRESETS:
            return seeded_model(deimv2_preset(preset, **changes), seed)
        return seeded_model(preset_config(preset, **changes), seed)

    path, hub = _locate(model_path)
    if path.is_dir():
        raw_config, raw_state, weights_file = read_transformers_folder(path)
        family = folder_model_type(raw_config)
        if family in ("d_fine", "deimv2"):
            name = "D-FINE" if family == "d_fine" else "DEIMv2"
            if preset is not None:
                raise RTDetrExportError(f"--preset does not apply to a {name} folder: its config.json says the size")
            source = WeightSource("transformers", str(weights_file), file_sha256(weights_file), hub=hub)
            load = load_dfine_folder if family == "d_fine" else load_deimv2_folder
            return load(raw_config, raw_state, weights_file, source, str(path if hub is None else hub.pinned_id),
                        changes)
        config = config_from_transformers(raw_config, where=path)
        state = convert_transformers_state_dict(raw_state)
        config = reconcile_classes(config, state, str(path if hub is None else hub.pinned_id))
        if preset is not None:
            config = preset_config(preset, num_classes=config.num_classes, id2label=config.id2label,
                                   version=config.version)
        fmt = "transformers"
    else:
        weights_file = path
        loaded = torch_load_weights(path)
        raw = unwrap_state_dict(loaded, path)
        if is_deimv2_state(raw):  # before D-FINE's check: DEIMv2 keeps D-FINE's LQE keys
            source = WeightSource("original", str(path), file_sha256(path), hub=hub)
            return load_deimv2_checkpoint(raw, path, preset, changes, source)
        if is_dfine_state(raw):
            source = WeightSource("original", str(path), file_sha256(path), hub=hub)
            return load_dfine_checkpoint(raw, path, preset, changes, source)
        state, version = read_original_checkpoint(path, raw)
        config = infer_config(state, preset_config(preset) if preset else None, version)
        fmt = "original"
    config = config.replace(**changes) if changes else config

    model = RTDETRv2(config, WeightSource(fmt, str(weights_file), file_sha256(weights_file), hub=hub))
    if any(k.endswith("bottlenecks.0.conv.weight") for k in state):
        fuse_repvgg(model)
    with torch.no_grad():
        load_strict(model, state, str(weights_file))
    return model.eval()


def _locate(model_path: str | Path) -> tuple[Path, HubRevision | None]:
    """The local file or folder ``model_path`` names; a Hub id that is not a local path is resolved first."""
    path = Path(model_path)
    if path.exists():
        return path, None
    hub_id = parse_hub_id(str(model_path))
    if hub_id is None:
        raise RTDetrExportError(f"{path} does not exist; pass a transformers model folder, an original .pth or a "
                                "Hub model id ORG/NAME[@REVISION]")
    return resolve_hub_id(*hub_id)


__all__ = ["WeightSource", "load_model", "ModelConfig", "file_sha256"]
