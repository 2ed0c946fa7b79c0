"""Detectors that look like RT-DETR but are not, recognised and refused in one line that names them.

D-FINE loads from transformers folders (``d_fine``) and original D-FINE / DEIM checkpoints, and DEIMv2's HGNetv2
sizes from transformers folders (``deimv2``) and original checkpoints, so none of them is refused here; DEIMv2's
DINOv3 sizes are, by name (folders here, original checkpoints in ``deimv2_original``, which reads their keys).
RF-DETR, Deformable DETR and DETR share names
and parts with RT-DETR (a ``decoder``, deformable attention, ``class_embed``), so loading one as RT-DETR fails late
with a long key-mismatch list that hides what the file is. Folders are recognised by ``config.json``
(``model_type`` / ``architectures``); checkpoints by key names only their architecture has. Checkpoints whose
pickle holds Python objects (RF-DETR and Deformable DETR save their ``argparse`` arguments beside the weights) are
recognised without unpickling: the key names are read off the pickle's opcodes, which runs nothing from the file.
"""

from __future__ import annotations

import pickletools
import re
import zipfile
from pathlib import Path
from typing import Any, Iterable

from rtdetr_export.errors import RTDetrExportError

SUPPORTED = ("supported are RT-DETR v1 and RT-DETRv2 with a ResNet-vd backbone: transformers rt_detr / rt_detr_v2 "
             "folders, original lyuwenyu/RT-DETR .pth checkpoints, or Hub model ids of those; and D-FINE as "
             "transformers d_fine folders or original D-FINE / DEIM-D-FINE .pth checkpoints; DEIM-RT-DETRv2 .pth "
             "checkpoints; DEIMv2's HGNetv2 sizes (Atto, Femto, Pico, N) as transformers deimv2 folders or "
             "original DEIMv2 .pth checkpoints")

# transformers model_type -> what the folder holds.
MODEL_TYPES = {
    "deformable_detr": "a Deformable DETR model",
    "detr": "a DETR model",
    "conditional_detr": "a Conditional DETR model",
    "dab-detr": "a DAB-DETR model",
    "rf_detr": "an RF-DETR model",
    "lw_detr": "an LW-DETR model",
}
ARCHITECTURES = {
    "DFineForObjectDetection": "d_fine", "Deimv2ForObjectDetection": "deimv2",
    "DeformableDetrForObjectDetection": "deformable_detr", "DetrForObjectDetection": "detr",
    "ConditionalDetrForObjectDetection": "conditional_detr", "DabDetrForObjectDetection": "dab-detr",
    "RfDetrForObjectDetection": "rf_detr", "LwDetrForObjectDetection": "lw_detr",
}
OURS = ("rt_detr", "rt_detr_v2", "d_fine", "deimv2")


def folder_model_type(config: dict[str, Any]) -> str | None:
    """``model_type`` of a config.json, or the one its ``architectures`` name when it has none."""
    model_type = config.get("model_type")
    if model_type is None:
        model_type = next((ARCHITECTURES[a] for a in config.get("architectures") or [] if a in ARCHITECTURES), None)
    return model_type


def refuse_foreign_config(config: dict[str, Any], where: Path) -> None:
    """Raise the one-line refusal if ``config.json`` is anything but RT-DETR v1/v2, D-FINE or DEIMv2 (HGNetv2)."""
    model_type = folder_model_type(config)
    backbone = (config.get("backbone_config") or {}).get("model_type")
    if model_type == "deimv2" and backbone == "dinov3_vit":
        raise RTDetrExportError(f"{where} holds a DEIMv2 model with a DINOv3 backbone (DEIMv2-S, M, L or X), which "
                                f"rtdetr-export does not convert; {SUPPORTED}")
    if model_type is None or model_type in OURS:
        return
    what = MODEL_TYPES.get(model_type, f"a {model_type!r} model")
    raise RTDetrExportError(f"{where} holds {what} (config.json model_type {model_type!r}), which rtdetr-export "
                            f"does not convert; {SUPPORTED}")


def _first(keys: Iterable[str], pattern: str) -> str | None:
    regex = re.compile(pattern)
    return next((k for k in sorted(keys) if regex.search(k)), None)


def identify_keys(keys: Iterable[str]) -> tuple[str, str] | None:
    """(what the checkpoint is, a key that shows it) for a look-alike's state-dict keys, else None."""
    keys = {k.removeprefix("module.") for k in keys}
    # LW-DETR's query embeddings; RF-DETR is LW-DETR with a DINOv2 backbone (``backbone.0.encoder``).
    if {"refpoint_embed.weight", "query_feat.weight"} <= keys:
        dinov2 = _first(keys, r"^backbone\.0\.encoder\.")
        return ("an RF-DETR checkpoint", dinov2) if dinov2 else ("an LW-DETR checkpoint", "refpoint_embed.weight")
    if found := _first(keys, r"^transformer\.(level_embed$|encoder\.layers\.\d+\.self_attn\.sampling_offsets\.)"):
        return "a Deformable DETR checkpoint", found
    if "query_embed.weight" in keys and (found := _first(keys, r"^transformer\.decoder\.")):
        return "a DETR checkpoint", found
    return None


def refuse_foreign_keys(keys: Iterable[str], where: Path) -> None:
    """Raise the one-line refusal if ``keys`` are a look-alike's state dict."""
    found = identify_keys(keys)
    if found:
        what, evidence = found
        raise RTDetrExportError(f"{where} is {what} (it has {evidence}), not RT-DETR; {SUPPORTED}")


def pickled_strings(path: Path) -> set[str]:
    """Every string constant in a torch zip checkpoint's pickle, read from the opcodes without unpickling."""
    try:
        with zipfile.ZipFile(path) as archive:
            name = next((n for n in archive.namelist() if n.endswith("data.pkl")), None)
            data = archive.read(name) if name else b""
    except (zipfile.BadZipFile, OSError):
        return set()
    strings: set[str] = set()
    try:
        for _, arg, _ in pickletools.genops(data):
            if isinstance(arg, str):
                strings.add(arg)
    except (ValueError, EOFError):  # a damaged pickle: what was read before the damage still tells
        pass
    return strings
