"""Checkpoints of the original D-FINE (Peterande/D-FINE) and DEIM-D-FINE (ShihuaHuang95/DEIM) code -> our DFine.

Both write ``{'model': state_dict, 'ema': {'module': state_dict, 'updates': n}, 'date': ..., 'last_epoch': ...}``
(their solvers' ``state_dict``), so they are unwrapped like RT-DETR checkpoints (``original.unwrap_state_dict``).
Our key names are the original's except in three places: HGNetv2's BatchNorms are ``bn`` there (``norm`` here, so
``deploy.fold_batchnorm`` folds them like every other), the encoder's SCDown sits in a one-element
``nn.Sequential`` (``downsample_convs.<i>.0.``), and the decoder registers ``up`` / ``reg_scale`` twice (on the
transformer and on its ``TransformerDecoder``: one parameter, two keys). The original keeps every decoder layer;
those after ``eval_idx`` never reach the output and are dropped, as for transformers folders.

The architecture is read off tensor shapes. Two things are not in the weights: how many queries are selected
(300 in every released config) and the activations. DEIM trains D-FINE's architecture with SiLU in the decoder's
FFN, the LQE and every MLP head where D-FINE has ReLU; its checkpoints have exactly D-FINE's keys and shapes. So
a ``deim_dfine_*`` preset says DEIM, a ``dfine_*`` preset says D-FINE, and without one the file name decides: DEIM's
released files are named ``deim_*.pth``, D-FINE's ``dfine_*.pth``.
"""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path
from typing import Any

import torch

from rtdetr_export.errors import RTDetrExportError
from rtdetr_export.model.dfine import DFine
from rtdetr_export.model.dfine_config import DEIM_ACTIVATIONS, DFINE_PRESETS, DFineConfig, dfine_preset
from rtdetr_export.model.source import WeightSource
from rtdetr_export.weights.matching import load_strict
from rtdetr_export.weights.original import _points_from_scale, _square_size

# Keys only D-FINE's decoder has (DEIM-D-FINE's too): LQE heads, FDR's constants, the cross-attention gates.
_DFINE_KEY = re.compile(r"(^|\.)lqe_layers\.|^decoder\.(up|reg_scale)$|\.gateway\.gate\.")
_PER_LAYER = re.compile(r"^decoder\.(decoder\.layers|decoder\.lqe_layers|dec_score_head|dec_bbox_head)\.(\d+)\.")
_DUPLICATES = ("decoder.decoder.up", "decoder.decoder.reg_scale")
# What a fine-tune may change without changing the architecture, and FDR's stored constants: taken from the
# weights even with a preset.
_FREE_FIELDS = ("num_classes", "num_denoising", "image_size", "up", "reg_scale")


def is_dfine_state(state: dict[str, torch.Tensor]) -> bool:
    """Whether an (unwrapped) original checkpoint is a D-FINE / DEIM-D-FINE one."""
    return any(_DFINE_KEY.search(k) for k in state)


class _Shapes(dict):
    """Tensor shapes by key; a missing key is a user error naming it, not a KeyError."""

    def __missing__(self, key: str) -> tuple[int, ...]:
        raise RTDetrExportError(f"checkpoint lacks {key}, which every D-FINE has; it is incomplete or from "
                                "another architecture")


def rename_original_dfine(state: dict[str, torch.Tensor], where: str) -> dict[str, torch.Tensor]:
    """Original D-FINE keys -> ours (every layer kept); a deploy-converted checkpoint is refused."""
    if any(".conv_bn_fused." in k for k in state):
        raise RTDetrExportError(f"{where} was converted with the original deploy() (it has conv_bn_fused "
                                "weights); load the training checkpoint it was made from instead")
    out: dict[str, torch.Tensor] = {}
    for key, value in state.items():
        if key in _DUPLICATES:
            continue
        if key.startswith("backbone."):
            key = key.replace(".bn.", ".norm.")
        key = re.sub(r"^(encoder\.downsample_convs\.\d+)\.0\.", r"\1.", key)
        out[key] = value
    for duplicate in _DUPLICATES:  # one parameter saved under two names: they cannot disagree
        original = "decoder." + duplicate.rsplit(".", 1)[1]
        if duplicate in state and original in state and not torch.equal(state[duplicate], state[original]):
            raise RTDetrExportError(f"{where}: {duplicate} differs from {original}; the checkpoint is damaged")
    return out


def _count(state: dict[str, Any], pattern: str) -> int:
    return len({m[1] for k in state if (m := re.match(pattern, k))})


def _backbone_fields(state: dict[str, torch.Tensor], shape: _Shapes) -> dict[str, Any]:
    """DFineConfig's hgnet_* fields from the HGNetv2 weights."""
    columns: dict[str, list[Any]] = {k: [] for k in ("in", "mid", "out", "blocks", "down", "light", "kernel",
                                                     "layers")}
    for s in range(_count(state, r"^backbone\.stages\.(\d+)\.")):
        block = f"backbone.stages.{s}.blocks.0."
        light = block + "layers.0.conv1.conv.weight" in state
        first = shape[block + ("layers.0.conv1.conv.weight" if light else "layers.0.conv.weight")]
        columns["in"].append(first[1])
        columns["mid"].append(first[0])
        columns["out"].append(shape[block + "aggregation.1.conv.weight"][0])
        columns["blocks"].append(_count(state, rf"^backbone\.stages\.{s}\.blocks\.(\d+)\."))
        columns["down"].append(f"backbone.stages.{s}.downsample.conv.weight" in state)
        columns["light"].append(light)
        columns["kernel"].append(shape[block + ("layers.0.conv2.conv.weight" if light else "layers.0.conv.weight")][-1])
        columns["layers"].append(_count(state, rf"^backbone\.stages\.{s}\.blocks\.0\.layers\.(\d+)\."))
    stem = shape["backbone.stem.stem1.conv.weight"]
    return {"hgnet_stem_channels": (stem[1], stem[0], shape["backbone.stem.stem4.conv.weight"][0]),
            "hgnet_stage_in_channels": columns["in"], "hgnet_stage_mid_channels": columns["mid"],
            "hgnet_stage_out_channels": columns["out"], "hgnet_stage_num_blocks": columns["blocks"],
            "hgnet_stage_downsample": columns["down"], "hgnet_stage_light_block": columns["light"],
            "hgnet_stage_kernel_size": columns["kernel"], "hgnet_stage_layers": columns["layers"],
            "hgnet_use_lab": any(k.startswith("backbone.") and k.endswith(".lab.scale") for k in state)}


def _encoder_fields(state: dict[str, torch.Tensor], shape: _Shapes, stage_out: list[int]) -> dict[str, Any]:
    levels = _count(state, r"^encoder\.input_proj\.(\d+)\.")
    widths = [shape[f"encoder.input_proj.{i}.conv.weight"][1] for i in range(levels)]
    if any(w not in stage_out for w in widths):
        raise RTDetrExportError(f"encoder input widths {widths} are not HGNetv2 stage widths {stage_out}")
    stages = [stage_out.index(w) for w in widths]
    dim = shape["encoder.input_proj.0.conv.weight"][0]
    branch = shape["encoder.fpn_blocks.0.cv2.0.conv1.conv.weight"][0]
    units = _count(state, r"^encoder\.fpn_blocks\.0\.cv2\.0\.bottlenecks\.(\d+)\.")
    return {"backbone_return_stages": stages, "feat_strides": [2 ** (s + 2) for s in stages],
            "num_feature_levels": levels, "encoder_hidden_dim": dim,
            "encoder_layers": _count(state, r"^encoder\.encoder\.0\.layers\.(\d+)\."),
            "encoder_ffn_dim": shape["encoder.encoder.0.layers.0.linear1.weight"][0],
            # Released sizes are matched on these; otherwise the smallest values that rebuild the same shapes.
            "hidden_expansion": 2 * branch / dim, "depth_mult": units / 3}


def _decoder_fields(state: dict[str, torch.Tensor], shape: _Shapes) -> dict[str, Any]:
    layer = "decoder.decoder.layers.0."
    scale = state.get(layer + "cross_attn.num_points_scale")
    if scale is None:
        raise RTDetrExportError(f"checkpoint lacks {layer}cross_attn.num_points_scale, which every original "
                                "D-FINE checkpoint has (it gives the sampling points per level)")
    points = _points_from_scale(scale)
    d_model = shape["decoder.enc_output.proj.weight"][0]
    levels = _count(state, r"^encoder\.input_proj\.(\d+)\.")
    projected = "decoder.input_proj.0.conv.weight" in state
    reg_conf = shape["decoder.decoder.lqe_layers.0.reg_conf.layers.0.weight"]
    return {"d_model": d_model, "decoder_n_points": points,
            "decoder_heads": shape[layer + "cross_attn.attention_weights.weight"][0] // sum(points),
            "decoder_in_channels": [shape["decoder.input_proj.0.conv.weight"][1] if projected else
                                    shape["encoder.input_proj.0.conv.weight"][0]] * levels,
            "decoder_layers": _count(state, r"^decoder\.decoder\.layers\.(\d+)\."),
            "decoder_ffn_dim": shape[layer + "linear1.weight"][0],
            "max_num_bins": shape["decoder.dec_bbox_head.0.layers.2.weight"][0] // 4 - 1,
            "reg_scale": float(state["decoder.reg_scale"].reshape(-1)[0]),
            "up": float(state["decoder.up"].reshape(-1)[0]),
            "top_prob_values": reg_conf[1] // 4 - 1, "lqe_hidden_dim": reg_conf[0],
            "lqe_layers": _count(state, r"^decoder\.decoder\.lqe_layers\.0\.reg_conf\.layers\.(\d+)\."),
            "num_classes": shape["decoder.dec_score_head.0.weight"][0],
            "num_denoising": 100 if "decoder.denoising_class_embed.weight" in state else 0}


def _image_size(state: dict[str, torch.Tensor], strides: list[int]) -> int | None:
    anchors = state.get("decoder.anchors")
    return _square_size(anchors.shape[1], tuple(strides)) if anchors is not None else None


def infer_dfine_config(state: dict[str, torch.Tensor], base: DFineConfig | None, deim: bool) -> DFineConfig:
    """The architecture the (renamed) weights have; with a preset ``base``, only the fields a fine-tune changes."""
    shape = _Shapes((k, tuple(v.shape)) for k, v in state.items())
    fields = _backbone_fields(state, shape)
    fields.update(_encoder_fields(state, shape, list(fields["hgnet_stage_out_channels"])))
    fields.update(_decoder_fields(state, shape))
    fields["encode_proj_layers"] = [fields["num_feature_levels"] - 1] * _count(state, r"^encoder\.encoder\.(\d+)\.")
    if size := _image_size(state, fields["feat_strides"]):
        fields["image_size"] = (size, size)
    if base is not None:
        return base.replace(**{k: v for k, v in fields.items() if k in _FREE_FIELDS})
    variant = DEIM_ACTIVATIONS if deim else {}
    try:
        config = DFineConfig(**{**fields, **variant})
    except RTDetrExportError as exc:
        raise RTDetrExportError(f"checkpoint shapes give an impossible D-FINE architecture ({exc})") from None
    for name in (n for n in DFINE_PRESETS if n.startswith("deim_") == deim):
        released = dfine_preset(name)
        if _signature(released) == _signature(config):
            # The released size's own values for what shapes only bound (expansion, depth).
            return released.replace(**{k: v for k, v in fields.items() if k in _FREE_FIELDS})
    return config


# Fields a checkpoint does not fix, or fixes only through the shapes they give (compared as those shapes).
_NOT_SHAPES = {"num_classes", "id2label", "image_size", "decoder_method", "size", "num_denoising", "version",
               "hidden_expansion", "depth_mult", "decoder_in_channels", "variant", "decoder_activation",
               "mlp_activation", "up", "reg_scale"}  # FDR's constants: loaded as they are, sizes differ in shapes


def _signature(config: DFineConfig) -> dict[str, Any]:
    """What of ``config`` the weights' shapes (and FDR constants) determine."""
    fields = {k: v for k, v in dataclasses.asdict(config).items() if k not in _NOT_SHAPES}
    return {**fields, "branch": round(config.hidden_expansion * config.encoder_hidden_dim // 2),
            "units": config.csp_units, "decoder_in_channels": config.resolved_decoder_in_channels}


def up_to_eval_layer(state: dict[str, torch.Tensor], eval_layer: int) -> dict[str, torch.Tensor]:
    """``state`` without the decoder layers (and their heads) after ``eval_layer``: the original keeps them, but
    they never reach the output."""
    return {key: value for key, value in state.items()
            if not ((layer := _PER_LAYER.match(key)) and int(layer[2]) > eval_layer)}


def load_dfine_checkpoint(state: dict[str, torch.Tensor], path: Path, preset: str | None,
                          changes: dict[str, Any], source: WeightSource) -> DFine:
    """Our DFine (or DEIM-D-FINE) with an original checkpoint's weights, in eval mode."""
    if preset is not None and preset not in DFINE_PRESETS:
        raise RTDetrExportError(f"{path} is a D-FINE checkpoint; --preset {preset} is not a D-FINE preset "
                                f"(choose one of: {', '.join(DFINE_PRESETS)})")
    renamed = rename_original_dfine(state, str(path))
    base = dfine_preset(preset) if preset else None
    config = infer_dfine_config(renamed, base, deim="deim" in path.name.lower())
    config = config.replace(**changes) if changes else config
    kept = up_to_eval_layer(renamed, config.eval_layer)
    model = DFine(config, source)
    with torch.no_grad():
        load_strict(model, kept, str(path))
    return model.eval()
