"""Hugging Face transformers folders: config.json + model.safetensors (or pytorch_model.bin).

``rt_detr_v2`` folders are RT-DETRv2, ``rt_detr`` folders RT-DETR v1 (``RTDetrForObjectDetection``): the same
parameter names and the same config fields, less v2's sampler options (v1 samples bilinearly, 4 points a level).
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import torch

from rtdetr_export.errors import RTDetrExportError
from rtdetr_export.model.config import ModelConfig
from rtdetr_export.weights.lookalikes import refuse_foreign_config

WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin")


VERSION_OF_MODEL_TYPE = {"rt_detr": "v1", "rt_detr_v2": "v2", None: "v2"}


def config_from_transformers(data: dict[str, Any], image_size: tuple[int, int] | None = None,
                             where: Path = Path("config.json")) -> ModelConfig:
    """Our ModelConfig from the fields of a transformers ``RTDetrV2Config`` or ``RTDetrConfig`` (config.json).

    The class count is the config's; ``classes.reconcile_classes`` corrects it from the weights.
    """
    refuse_foreign_config(data, where)
    if data.get("model_type") not in VERSION_OF_MODEL_TYPE:  # D-FINE: weights/dfine_folder.py reads its config
        raise RTDetrExportError(f"{where} is a {data.get('model_type')!r} config, not RT-DETR v1/v2")
    version = VERSION_OF_MODEL_TYPE[data.get("model_type")]
    backbone = data.get("backbone_config") or {}
    if data.get("use_timm_backbone") or data.get("backbone") or backbone.get("model_type", "rt_detr_resnet") \
            != "rt_detr_resnet":
        raise RTDetrExportError("only the ResNet-vd backbone (rt_detr_resnet) is supported")
    if backbone.get("downsample_in_bottleneck") or backbone.get("downsample_in_first_stage"):
        raise RTDetrExportError("backbone_config is not a ResNet-vd (downsample_in_* must be false)")
    if data.get("with_box_refine") is False:
        raise RTDetrExportError("with_box_refine=false is not an RT-DETRv2 configuration")
    layer_type = backbone.get("layer_type", "bottleneck")
    expansion = 4 if layer_type == "bottleneck" else 1
    hidden_sizes = backbone.get("hidden_sizes", [256, 512, 1024, 2048])
    out_indices = backbone.get("out_indices", [2, 3, 4])
    id2label = data.get("id2label")
    num_classes = len(id2label) if id2label else data.get("num_labels", 80)
    size = data.get("anchor_image_size") or data.get("eval_size") or image_size or (640, 640)
    fields: dict[str, Any] = dict(
        version=version,
        num_classes=num_classes,
        image_size=size,
        backbone_blocks=backbone.get("depths", [3, 4, 6, 3]),
        backbone_block=layer_type,
        backbone_stem_channels=backbone.get("embedding_size", 64),
        backbone_widths=[h // expansion for h in hidden_sizes],
        backbone_return_stages=[i - 1 for i in out_indices],
        backbone_activation=backbone.get("hidden_act", "relu"),
        feat_strides=data.get("feat_strides", (8, 16, 32)),
        encoder_hidden_dim=data.get("encoder_hidden_dim", 256),
        encoder_layers=data.get("encoder_layers", 1),
        encoder_heads=data.get("encoder_attention_heads", 8),
        encoder_ffn_dim=data.get("encoder_ffn_dim", 1024),
        encoder_activation=data.get("encoder_activation_function", "gelu"),
        encode_proj_layers=data.get("encode_proj_layers", (2,)),
        pe_temperature=data.get("positional_encoding_temperature", 10000),
        normalize_before=data.get("normalize_before", False),
        hidden_expansion=data.get("hidden_expansion", 1.0),
        activation=data.get("activation_function", "silu"),
        d_model=data.get("d_model", 256),
        decoder_in_channels=data.get("decoder_in_channels"),
        num_queries=data.get("num_queries", 300),
        decoder_layers=data.get("decoder_layers", 6),
        decoder_heads=data.get("decoder_attention_heads", 8),
        decoder_ffn_dim=data.get("decoder_ffn_dim", 1024),
        decoder_activation=data.get("decoder_activation_function", "relu"),
        num_feature_levels=data.get("num_feature_levels", data.get("decoder_n_levels", 3)),
        decoder_n_points=data.get("decoder_n_points", 4),
        decoder_offset_scale=data.get("decoder_offset_scale", 0.5),
        decoder_method=data.get("decoder_method", "default") if version == "v2" else "default",
        eval_idx=data.get("eval_idx", -1),
        learn_initial_query=data.get("learn_initial_query", False),
        num_denoising=data.get("num_denoising", 100),
        layer_norm_eps=data.get("layer_norm_eps", 1e-5),
        batch_norm_eps=data.get("batch_norm_eps", 1e-5),
        id2label={int(k): v for k, v in id2label.items()} if id2label else None,
    )
    return ModelConfig(**fields)


# transformers 4.x spellings (also what save_pretrained still writes) -> 5.x spellings.
_V4_TO_V5 = [
    (re.compile(r"^model\.encoder\.encoder\.(\d+)\.layers\."), r"model.encoder.aifi.\1.layers."),
    (re.compile(r"\.self_attn\.out_proj\."), ".self_attn.o_proj."),
    (re.compile(r"\.layers\.(\d+)\.fc([12])\."), r".layers.\1.mlp.fc\2."),
]

_LAYER_RENAMES = {
    "encoder": [(".self_attn_layer_norm.", ".norm1."), (".final_layer_norm.", ".norm2.")],
    "decoder": [(".self_attn_layer_norm.", ".norm1."), (".encoder_attn_layer_norm.", ".norm2."),
                (".encoder_attn.", ".cross_attn."), (".final_layer_norm.", ".norm3.")],
    "common": [(".self_attn.o_proj.", ".self_attn.out_proj."), (".mlp.fc1.", ".linear1."),
               (".mlp.fc2.", ".linear2.")],
}

_PREFIXES = [
    (re.compile(r"^model\.backbone\.model\.embedder\.embedder\.(\d)\."),
     lambda m: f"backbone.conv1.conv1_{int(m[1]) + 1}."),
    (re.compile(r"^model\.backbone\.model\.encoder\.stages\.(\d+)\.layers\.(\d+)\.layer\.(\d)\."),
     lambda m: f"backbone.res_layers.{m[1]}.blocks.{m[2]}.branch2{'abc'[int(m[3])]}."),
    (re.compile(r"^model\.backbone\.model\.encoder\.stages\.(\d+)\.layers\.(\d+)\.shortcut\.1\."),
     lambda m: f"backbone.res_layers.{m[1]}.blocks.{m[2]}.short.conv."),
    (re.compile(r"^model\.backbone\.model\.encoder\.stages\.(\d+)\.layers\.(\d+)\.shortcut\."),
     lambda m: f"backbone.res_layers.{m[1]}.blocks.{m[2]}.short."),
    (re.compile(r"^model\.(encoder|decoder)_input_proj\.(\d+)\.([01])\."),
     lambda m: f"{m[1]}.input_proj.{m[2]}.{('conv', 'norm')[int(m[3])]}."),
    (re.compile(r"^model\.encoder\.aifi\.(\d+)\.layers\.(\d+)\."), lambda m: f"encoder.encoder.{m[1]}.layers.{m[2]}."),
    (re.compile(r"^model\.encoder\."), lambda m: "encoder."),
    (re.compile(r"^model\.enc_output\.([01])\."), lambda m: f"decoder.enc_output.{('proj', 'norm')[int(m[1])]}."),
    (re.compile(r"^model\.(enc_score_head|enc_bbox_head|denoising_class_embed)\."), lambda m: f"decoder.{m[1]}."),
    (re.compile(r"^model\.weight_embedding\."), lambda m: "decoder.tgt_embed."),
    (re.compile(r"^model\.decoder\.query_pos_head\."), lambda m: "decoder.query_pos_head."),
    (re.compile(r"^model\.decoder\.class_embed\."), lambda m: "decoder.dec_score_head."),
    (re.compile(r"^model\.decoder\.bbox_embed\."), lambda m: "decoder.dec_bbox_head."),
    (re.compile(r"^model\.decoder\.layers\.(\d+)\."), lambda m: f"decoder.decoder.layers.{m[1]}."),
]


def _rename(key: str) -> str:
    for pattern, repl in _V4_TO_V5:
        key = pattern.sub(repl, key)
    for pattern, repl in _PREFIXES:
        match = pattern.match(key)
        if match:
            key = repl(match) + key[match.end():]
            break
    else:
        return key  # left as is: strict matching reports it as unexpected
    if key.startswith("backbone."):
        key = key.replace(".convolution.", ".conv.").replace(".normalization.", ".norm.")
    section = "encoder" if key.startswith("encoder.encoder.") else "decoder" if key.startswith(
        "decoder.decoder.") else None
    if section:
        for old, new in _LAYER_RENAMES[section] + _LAYER_RENAMES["common"]:
            key = key.replace(old, new)
    return key


def convert_transformers_state_dict(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """transformers (v4 or v5 key spelling) -> our (= the original repository's) key names."""
    state = dict(state)
    # The top-level heads are tied copies of model.decoder's; use them only when the tied ones are absent.
    for key in [k for k in state if k.startswith(("class_embed.", "bbox_embed."))]:
        value = state.pop(key)
        state.setdefault("model.decoder." + key, value)
    out: dict[str, torch.Tensor] = {}
    qkv: dict[str, dict[str, torch.Tensor]] = {}
    for key, value in state.items():
        new = _rename(key)
        match = re.match(r"^(.*\.self_attn)\.([qkv])_proj\.(weight|bias)$", new)
        if match:
            qkv.setdefault(f"{match[1]}.in_proj_{match[3]}", {})[match[2]] = value
        else:
            out[new] = value
    for key, parts in qkv.items():
        if set(parts) != {"q", "k", "v"}:
            raise RTDetrExportError(f"incomplete attention projection for {key}: found only {sorted(parts)}")
        out[key] = torch.cat([parts["q"], parts["k"], parts["v"]], dim=0)
    return out


def read_transformers_folder(folder: Path) -> tuple[dict[str, Any], dict[str, torch.Tensor], Path]:
    """(config.json dict, raw state dict, weights file) of a transformers model folder."""
    config_file = folder / "config.json"
    if not config_file.is_file():
        raise RTDetrExportError(f"{folder} has no config.json; pass a transformers model folder or a .pth file")
    try:
        config = json.loads(config_file.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise RTDetrExportError(f"{config_file} is not valid JSON ({exc})") from None
    refuse_foreign_config(config, folder)  # before the weights: a look-alike is named, whatever files it has
    for name in WEIGHT_FILES:
        weights = folder / name
        if weights.is_file():
            break
    else:
        raise RTDetrExportError(f"{folder} has no {' or '.join(WEIGHT_FILES)}")
    if weights.suffix == ".safetensors":
        from safetensors import SafetensorError
        from safetensors.torch import load_file

        try:
            state = load_file(str(weights))
        except (SafetensorError, OSError, ValueError) as exc:
            raise RTDetrExportError(f"{weights} is not a readable safetensors file ({exc}); "
                                    "re-download or re-save it") from None
    else:
        from rtdetr_export.weights.original import torch_load_weights

        state = torch_load_weights(weights)
    return config, state, weights
