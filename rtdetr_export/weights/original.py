"""Checkpoints of the original lyuwenyu/RT-DETR code: ``{'ema': {'module': state_dict}}`` or ``{'model': ...}``.

Both generations load: ``rtdetrv2_pytorch`` (v2) and ``rtdetr_pytorch`` (v1, also what ``rtdetrv2_pytorch`` writes
for its v1 configs). Their state dicts differ only in two unnamed ``nn.Sequential``s of v1, the encoder's input
projections (``encoder.input_proj.<i>.0/1``) and the decoder's encoder-output head (``decoder.enc_output.0/1``),
which v2 names ``conv``/``norm`` and ``proj``/``norm``; v2 also stores ``num_points_scale``, derived here.
"""

from __future__ import annotations

import math
import pickle
import re
from pathlib import Path
from typing import Any

import torch

from rtdetr_export.errors import RTDetrExportError
from rtdetr_export.model.config import PRESETS, ModelConfig
from rtdetr_export.weights.lookalikes import pickled_strings, refuse_foreign_keys


def torch_load_weights(path: Path) -> Any:
    """``torch.load`` restricted to tensors and plain containers: never runs code from the file."""
    try:
        return torch.load(str(path), map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        # A look-alike that pickled its training arguments (RF-DETR, Deformable DETR) is named, not just refused.
        refuse_foreign_keys(pickled_strings(path), path)
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else "unsupported object"
        raise RTDetrExportError(
            f"{path} holds Python objects other than weights ({first[:120]}); refusing to unpickle it. "
            "Save the state_dict alone (or use safetensors)") from None
    except Exception as exc:  # torch.load reports damaged or foreign files with many exception types
        lines = str(exc).strip().splitlines()
        why = lines[0][:120] if lines else type(exc).__name__
        raise RTDetrExportError(f"{path} is not a readable PyTorch checkpoint ({why})") from None


def unwrap_state_dict(obj: Any, path: Path) -> dict[str, torch.Tensor]:
    """The model weights inside an original checkpoint (RT-DETR, D-FINE and DEIM solvers all write the same
    wrappers): ``ema.module`` preferred, else ``model``, else bare; a ``module.`` prefix (DDP) removed."""
    if isinstance(obj, dict) and isinstance(obj.get("ema"), dict) and isinstance(obj["ema"].get("module"), dict):
        obj = obj["ema"]["module"]
    elif isinstance(obj, dict) and isinstance(obj.get("model"), dict):
        obj = obj["model"]
    if not isinstance(obj, dict) or not obj or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise RTDetrExportError(f"{path} holds no state_dict (expected {{'ema': {{'module': ...}}}}, "
                                "{'model': ...} or a plain state_dict)")
    return {k.removeprefix("module."): v for k, v in obj.items()}


def extract_state_dict(obj: Any, path: Path) -> dict[str, torch.Tensor]:
    """The RT-DETR (v1 or v2) weights inside an original checkpoint; a look-alike's is refused by name."""
    state = unwrap_state_dict(obj, path)
    refuse_foreign_keys(state, path)
    if not any(k.startswith("decoder.dec_score_head.") for k in state) or \
            not any(k.startswith("backbone.res_layers.") for k in state):
        raise RTDetrExportError(f"{path} is not an RT-DETR (v1 or v2) checkpoint with a ResNet-vd backbone "
                                f"(found keys like {', '.join(list(state)[:3])})")
    return state


def _count(state: dict[str, torch.Tensor], pattern: str) -> int:
    found = {m[1] for k in state if (m := re.match(pattern, k))}
    return len(found)


class _Shapes(dict):
    """Tensor shapes by key; a key the architecture is read from but absent is a user error, not a KeyError."""

    def __missing__(self, key: str) -> tuple[int, ...]:
        raise RTDetrExportError(f"checkpoint lacks {key}, which every RT-DETRv2 has; it is incomplete or "
                                "from another architecture")


# Fields the tensor shapes reveal but a released preset does not fix: a fine-tuned checkpoint may change them.
FREE_FIELDS = ("num_classes", "num_queries", "learn_initial_query", "num_denoising", "decoder_n_points",
               "image_size", "query_pos_layers", "mlp_activation", "decoder_activation")


# v1's unnamed Sequential children -> the names v2 (and our model) give them.
_V1_NAMES = [(re.compile(r"^(encoder\.input_proj\.\d+\.)([01])\."), ("conv", "norm")),
             (re.compile(r"^(decoder\.enc_output\.)([01])\."), ("proj", "norm"))]


def normalise_v1_names(state: dict[str, torch.Tensor]) -> tuple[dict[str, torch.Tensor], str]:
    """(state dict with v2 key names, "v1" or "v2"): a state dict in the v1 layout is renamed and called v1."""
    renamed, v1 = {}, False
    for key, value in state.items():
        for pattern, names in _V1_NAMES:
            if match := pattern.match(key):
                key = f"{match[1]}{names[int(match[2])]}." + key[match.end():]
                v1 = True
                break
        renamed[key] = value
    return renamed, "v1" if v1 else "v2"


def infer_config(state: dict[str, torch.Tensor], base: ModelConfig | None = None,
                 version: str = "v2") -> ModelConfig:
    """Architecture read off tensor shapes; what shapes cannot tell comes from ``base`` (a preset).

    With an explicit ``base`` only the fields a fine-tune may change are taken from the shapes; the rest
    stays the preset's, so a checkpoint of another size fails the strict load instead of silently
    turning into that size. ``version`` is what the key layout said (``normalise_v1_names``).
    """
    shape = _Shapes((k, tuple(v.shape)) for k, v in state.items())
    stages = _count(state, r"^backbone\.res_layers\.(\d+)\.")
    blocks = [_count(state, rf"^backbone\.res_layers\.{s}\.blocks\.(\d+)\.") for s in range(stages)]
    bottleneck = any(".branch2c." in k for k in state)
    widths = [shape[f"backbone.res_layers.{s}.blocks.0.branch2a.conv.weight"][0] for s in range(stages)]
    enc_dim = shape["encoder.input_proj.0.conv.weight"][0]
    d_model = shape["decoder.input_proj.0.conv.weight"][0]
    n_dec_in = _count(state, r"^decoder\.input_proj\.(\d+)\.")
    dec_in = [shape[f"decoder.input_proj.{i}.conv.weight"][1] for i in range(n_dec_in)
              if shape[f"decoder.input_proj.{i}.conv.weight"][2] == 1]
    csp = "encoder.fpn_blocks.0."
    fields: dict[str, Any] = dict(
        backbone_blocks=blocks,
        backbone_block="bottleneck" if bottleneck else "basic",
        backbone_stem_channels=shape["backbone.conv1.conv1_3.conv.weight"][0],
        backbone_widths=widths,
        encoder_hidden_dim=enc_dim,
        encoder_layers=_count(state, r"^encoder\.encoder\.0\.layers\.(\d+)\."),
        encoder_ffn_dim=shape["encoder.encoder.0.layers.0.linear1.weight"][0],
        hidden_expansion=shape[csp + "conv1.conv.weight"][0] / enc_dim,
        csp_blocks=_count(state, r"^encoder\.fpn_blocks\.0\.bottlenecks\.(\d+)\."),
        d_model=d_model,
        decoder_in_channels=dec_in,
        num_feature_levels=n_dec_in,
        decoder_layers=_count(state, r"^decoder\.decoder\.layers\.(\d+)\."),
        decoder_ffn_dim=shape["decoder.decoder.layers.0.linear1.weight"][0],
        num_classes=shape["decoder.dec_score_head.0.weight"][0],
        learn_initial_query="decoder.tgt_embed.weight" in state,
        num_denoising=100 if "decoder.denoising_class_embed.weight" in state else 0,
    )
    if "decoder.query_pos_head.layers.2.weight" in state:
        # DEIM's RT-DETRv2: its configs pair this head (query_pos_method as_reg) with SiLU heads and FFNs
        # (configs/base/rt_deim.yml), which the weights cannot show.
        fields.update(query_pos_layers=3, mlp_activation="silu", decoder_activation="silu")
    if fields["learn_initial_query"]:
        fields["num_queries"] = shape["decoder.tgt_embed.weight"][0]
    explicit = base is not None
    if base is None:
        base = _matching_preset(fields) or ModelConfig()
    heads = base.decoder_heads
    scale = state.get("decoder.decoder.layers.0.cross_attn.num_points_scale")
    if scale is not None:
        fields["decoder_n_points"] = _points_from_scale(scale)
    else:
        total = shape["decoder.decoder.layers.0.cross_attn.attention_weights.weight"][0] // heads
        fields["decoder_n_points"] = [total // n_dec_in] * n_dec_in if total % n_dec_in == 0 else base.decoder_n_points
    anchors = state.get("decoder.anchors")
    if anchors is not None and (size := _square_size(anchors.shape[1], base.level_strides)):
        fields["image_size"] = (size, size)
    if explicit:
        fields = {k: v for k, v in fields.items() if k in FREE_FIELDS}
        if len(fields["decoder_n_points"]) != base.num_feature_levels:
            fields.pop("decoder_n_points")  # another level count: the strict load names the mismatch
    fields["version"] = version
    try:
        return base.replace(**fields)
    except RTDetrExportError as exc:
        raise RTDetrExportError(f"checkpoint shapes give an impossible architecture ({exc})") from None


def _matching_preset(fields: dict[str, Any]) -> ModelConfig | None:
    # Released sizes differ in something visible in the shapes, except for what only the preset knows
    # (eval_idx of r50vd_m), so the first preset whose shape-visible fields agree supplies the rest.
    for name, values in PRESETS.items():
        candidate = ModelConfig(**values)
        if all(getattr(candidate, k) == (tuple(v) if isinstance(v, list) else v)
               for k, v in fields.items() if k in ("backbone_blocks", "backbone_block", "encoder_hidden_dim",
                                                   "hidden_expansion", "decoder_layers", "d_model")):
            return candidate
    return None


def _points_from_scale(scale: torch.Tensor) -> list[int]:
    points, values, i = [], scale.tolist(), 0
    while i < len(values):
        n = round(1 / values[i])
        points.append(n)
        i += n
    return points


def _square_size(cells: int, strides: tuple[int, ...]) -> int | None:
    size = math.sqrt(cells / sum(1 / s ** 2 for s in strides))
    return round(size) if abs(size - round(size)) < 1e-6 else None


def read_original_checkpoint(path: Path, loaded: Any = None) -> tuple[dict[str, torch.Tensor], str]:
    """(state dict with our key names and RepVGG-fused blocks normalised, "v1" or "v2") of an original .pth
    (``loaded``: what ``torch_load_weights`` already read from it)."""
    loaded = torch_load_weights(path) if loaded is None else loaded
    state, version = normalise_v1_names(extract_state_dict(loaded, path))
    # A deploy-converted RepVGG block carries its fused ``conv`` (and maybe the stale branches it was made
    # from); the original forward uses ``conv`` when present, so do we.
    fused = {k[: -len("conv.weight")] for k in state if re.search(r"bottlenecks\.\d+\.conv\.weight$", k)}
    for prefix in fused:
        for key in [k for k in state if k.startswith((prefix + "conv1.", prefix + "conv2."))]:
            del state[key]
    return state, version
