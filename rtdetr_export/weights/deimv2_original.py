"""Checkpoints of the original DEIMv2 code (Intellindust-AI-Lab/DEIMv2), HGNetv2 sizes -> our Deimv2.

The solver writes ``{'model': sd, 'ema': {'module': sd, 'updates': n}, ...}`` as D-FINE's does, so the state dict
is unwrapped and read as D-FINE checkpoints are (``original.unwrap_state_dict``, ``weights_only`` loading). DEIMv2
keeps D-FINE's LQE heads, so without a check of its own it would be taken for D-FINE and fail on the first key
D-FINE has and DEIMv2 lacks; it is recognised by keys only DEIMv2 has: the decoder's SwiGLU (``swish_ffn.w12``),
its RMSNorms (``.scale``) and the Lite encoder's GAP fusion (``bi_fusion.cv``).

Our keys are the original's, renamed as D-FINE's are (``dfine_original.rename_original_dfine``: HGNetv2's ``bn``),
plus the Lite encoder's: its pooled branches are unnamed ``nn.Sequential`` slots there (``down_sample1.1`` conv,
``.2`` BatchNorm) and the fusion conv sits in ``bi_fusion.cv``. A shared FDR head (the Lite sizes) is saved once
per layer under as many keys and kept once. The size is read off the widths, which differ between the four
released sizes (Atto 64, Femto 96, Pico 112 with the Lite encoder, N 128 with the hybrid one); everything else then
loads strictly against that size, so an incomplete checkpoint names what it lacks. The model computes as the
original code does (``deimv2_config.ORIGINAL_COMPUTATION``), not as transformers' port.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import torch

from rtdetr_export.errors import RTDetrExportError
from rtdetr_export.model.deimv2 import Deimv2
from rtdetr_export.model.deimv2_config import DEIMV2_PRESETS, ORIGINAL_COMPUTATION, deimv2_preset
from rtdetr_export.model.source import WeightSource
from rtdetr_export.weights.dfine_original import _PER_LAYER, rename_original_dfine, up_to_eval_layer
from rtdetr_export.weights.lookalikes import SUPPORTED
from rtdetr_export.weights.matching import load_strict
from rtdetr_export.weights.original import _square_size

_DEIMV2_KEY = re.compile(r"\.swish_ffn\.w12\.|^decoder\.decoder\.layers\.\d+\.norm1\.scale$|^encoder\.bi_fusion\.cv\.")
# DINOv3STAs (engine/backbone/dinov3_adapter.py): the ViT under ``dinov3``, the spatial prior module ``sta``.
_DINOV3_KEY = re.compile(r"^backbone\.(dinov3|sta)\.")
_LITE_RENAMES = [(re.compile(r"^encoder\.(down_sample[12])\.1\."), r"encoder.\1.conv."),
                 (re.compile(r"^encoder\.(down_sample[12])\.2\."), r"encoder.\1.norm."),
                 (re.compile(r"^encoder\.bi_fusion\.cv\."), "encoder.bi_fusion.")]
# (decoder width, Lite encoder) -> released size; each width belongs to one size.
_SIZES = {(DEIMV2_PRESETS[name]["d_model"], DEIMV2_PRESETS[name].get("encoder_type") == "lite"): name
          for name in DEIMV2_PRESETS}


def is_deimv2_state(state: dict[str, torch.Tensor]) -> bool:
    """Whether an (unwrapped) original checkpoint is a DEIMv2 one (any backbone)."""
    return any(_DEIMV2_KEY.search(k) or _DINOV3_KEY.match(k) for k in state)


def _refuse_dinov3(state: dict[str, torch.Tensor], path: Path) -> None:
    found = next((k for k in sorted(state) if _DINOV3_KEY.match(k)), None)
    if found:
        raise RTDetrExportError(f"{path} is a DEIMv2 checkpoint with a DINOv3 backbone (DEIMv2-S, M, L or X; it has "
                                f"{found}), which rtdetr-export does not convert; {SUPPORTED}")


def _released_size(state: dict[str, torch.Tensor], path: Path) -> str:
    head = state.get("decoder.enc_score_head.weight")
    if head is None:
        raise RTDetrExportError(f"{path} lacks decoder.enc_score_head.weight, which every DEIMv2 has; the checkpoint "
                                "is incomplete")
    lite = any(k.startswith("encoder.bi_fusion.") for k in state)
    key = (int(head.shape[1]), lite)
    if key not in _SIZES:
        raise RTDetrExportError(f"{path} is a DEIMv2 checkpoint of width {key[0]} with the "
                                f"{'Lite' if lite else 'hybrid'} encoder, which is none of the released HGNetv2 "
                                "sizes (Atto 64, Femto 96, Pico 112 Lite; N 128 hybrid)")
    return _SIZES[key]


def rename_original_deimv2(state: dict[str, torch.Tensor], where: str) -> dict[str, torch.Tensor]:
    """Original DEIMv2 keys -> ours (every layer kept, a shared FDR head under every layer's keys)."""
    out = {}
    for key, value in rename_original_dfine(state, where).items():
        for pattern, repl in _LITE_RENAMES:
            key = pattern.sub(repl, key, count=1)
        out[key] = value
    return out


def _keep_shared_head_once(state: dict[str, torch.Tensor], where: str) -> dict[str, torch.Tensor]:
    """Layer 0's FDR head; the others are the same module saved again, so they must not differ."""
    out = {}
    for key, value in state.items():
        layer = _PER_LAYER.match(key)
        if layer and layer[1] == "dec_bbox_head" and layer[2] != "0":
            first = "decoder.dec_bbox_head.0." + key[layer.end():]
            if first in state and not torch.equal(state[first], value):
                raise RTDetrExportError(f"{where}: {key} differs from {first}, but this size shares one FDR head "
                                        "between its layers; the checkpoint is damaged")
            continue
        out[key] = value
    return out


def load_deimv2_checkpoint(state: dict[str, torch.Tensor], path: Path, preset: str | None,
                           changes: dict[str, Any], source: WeightSource) -> Deimv2:
    """Our Deimv2 with an original DEIMv2 checkpoint's weights, computing as the original does, in eval mode."""
    _refuse_dinov3(state, path)
    if preset is not None and preset not in DEIMV2_PRESETS:
        raise RTDetrExportError(f"{path} is a DEIMv2 checkpoint; --preset {preset} is not a DEIMv2 preset "
                                f"(choose one of: {', '.join(DEIMV2_PRESETS)})")
    renamed = rename_original_deimv2(state, str(path))
    name = preset or _released_size(renamed, path)
    fields: dict[str, Any] = dict(ORIGINAL_COMPUTATION)
    if "decoder.dec_score_head.0.weight" in renamed:  # else load_strict names it
        fields["num_classes"] = int(renamed["decoder.dec_score_head.0.weight"].shape[0])
    fields["num_denoising"] = 100 if "decoder.denoising_class_embed.weight" in renamed else 0
    layers = {m[1] for k in renamed if (m := re.match(r"^decoder\.decoder\.layers\.(\d+)\.", k))}
    fields["decoder_layers"] = len(layers) or DEIMV2_PRESETS[name]["decoder_layers"]  # eval_idx -1: the last
    config = deimv2_preset(name, **fields)
    anchors = renamed.get("decoder.anchors")
    if anchors is not None and (side := _square_size(anchors.shape[1], config.level_strides)):
        config = config.replace(image_size=(side, side))
    config = config.replace(**changes) if changes else config
    if config.share_bbox_head:
        renamed = _keep_shared_head_once(renamed, str(path))
    kept = up_to_eval_layer(renamed, config.eval_layer)
    model = Deimv2(config, source)
    with torch.no_grad():
        load_strict(model, kept, str(path))
    return model.eval()

