"""transformers D-FINE folders (``model_type: d_fine``, ``DFineForObjectDetection``) -> our DFine.

The config maps field by field onto ``DFineConfig`` (the backbone must be HGNetv2); the size is named when the
architecture is a released one. Weights are renamed to our (Peterande/D-FINE-style) keys; decoder layers after
``eval_idx`` are dropped, since they never reach the output (transformers builds ``decoder_layers - eval_idx - 1``
more than the original; with such an ``eval_idx`` its own forward fails, so no released size has one).
"""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path
from typing import Any

import torch

from rtdetr_export.errors import RTDetrExportError
from rtdetr_export.model.dfine import DFine
from rtdetr_export.model.dfine_config import DFINE_PRESETS, DFineConfig
from rtdetr_export.model.source import WeightSource
from rtdetr_export.weights.classes import reconcile_classes
from rtdetr_export.weights.matching import load_strict

# Fields a preset fixes that say nothing about the architecture.
_NOT_ARCHITECTURE = {"num_classes", "id2label", "image_size", "decoder_method", "size", "num_denoising", "version",
                     "decoder_in_channels"}  # compared resolved: None means the encoder's width


def _backbone_fields(backbone: dict[str, Any]) -> dict[str, Any]:
    """DFineConfig's hgnet_* fields from an ``HGNetV2Config`` dict, refusing what our HGNetV2 does not compute."""
    if backbone.get("model_type", "hgnet_v2") != "hgnet_v2":
        raise RTDetrExportError("only the HGNetv2 backbone is supported for D-FINE, got "
                                f"{backbone.get('model_type')!r}")
    if backbone.get("hidden_act", "relu") != "relu" or list(backbone.get("stem_strides", [2, 1, 1, 2, 1])) != \
            [2, 1, 1, 2, 1] or any(s != 2 for s in backbone.get("stage_downsample_strides", [2, 2, 2, 2])):
        raise RTDetrExportError("backbone_config is not a D-FINE HGNetv2 (ReLU, stem strides 2-1-1-2-1, "
                                "stage downsample stride 2)")
    defaults = DFineConfig()
    return {
        "hgnet_stem_channels": backbone.get("stem_channels", defaults.hgnet_stem_channels),
        "hgnet_stage_in_channels": backbone.get("stage_in_channels", defaults.hgnet_stage_in_channels),
        "hgnet_stage_mid_channels": backbone.get("stage_mid_channels", defaults.hgnet_stage_mid_channels),
        "hgnet_stage_out_channels": backbone.get("stage_out_channels", defaults.hgnet_stage_out_channels),
        "hgnet_stage_num_blocks": backbone.get("stage_num_blocks", defaults.hgnet_stage_num_blocks),
        "hgnet_stage_downsample": backbone.get("stage_downsample", defaults.hgnet_stage_downsample),
        "hgnet_stage_light_block": backbone.get("stage_light_block", defaults.hgnet_stage_light_block),
        "hgnet_stage_kernel_size": backbone.get("stage_kernel_size", defaults.hgnet_stage_kernel_size),
        "hgnet_stage_layers": backbone.get("stage_numb_of_layers", defaults.hgnet_stage_layers),
        "hgnet_use_lab": backbone.get("use_learnable_affine_block", False),
        # transformers counts the stem as stage 0
        "backbone_return_stages": [i - 1 for i in backbone.get("out_indices", [2, 3, 4])],
    }


def _refuse_unsupported(data: dict[str, Any]) -> None:
    if data.get("use_timm_backbone") or data.get("backbone"):
        raise RTDetrExportError("only transformers' own HGNetv2 backbone is supported for D-FINE (no timm backbone)")
    if data.get("with_box_refine") is False:
        raise RTDetrExportError("with_box_refine=false is not a D-FINE configuration")
    # transformers runs RepNCSPELAN4's own convs with SiLU and its CSP units with activation_function; D-FINE
    # trains both with SiLU, and our blocks use one activation.
    if data.get("activation_function", "silu") != "silu":
        raise RTDetrExportError("D-FINE's fusion blocks use SiLU; activation_function "
                                f"{data['activation_function']!r} is not supported")


def config_from_dfine(data: dict[str, Any]) -> DFineConfig:
    """Our DFineConfig from a transformers ``DFineConfig`` dict (config.json); the class count is corrected from
    the weights afterwards (``classes.reconcile_classes``)."""
    _refuse_unsupported(data)
    id2label = data.get("id2label")
    defaults = DFineConfig()
    get = lambda key, field=None: data.get(key, getattr(defaults, field or key))  # noqa: E731
    fields: dict[str, Any] = dict(
        _backbone_fields(data.get("backbone_config") or {}),
        num_classes=len(id2label) if id2label else data.get("num_labels", 80),
        id2label={int(k): v for k, v in id2label.items()} if id2label else None,
        image_size=data.get("anchor_image_size") or data.get("eval_size") or (640, 640),
        feat_strides=get("feat_strides"), encoder_hidden_dim=get("encoder_hidden_dim"),
        encoder_layers=get("encoder_layers"), encoder_heads=get("encoder_attention_heads", "encoder_heads"),
        encoder_ffn_dim=get("encoder_ffn_dim"), encoder_activation=get("encoder_activation_function",
                                                                       "encoder_activation"),
        encode_proj_layers=get("encode_proj_layers"), pe_temperature=get("positional_encoding_temperature",
                                                                         "pe_temperature"),
        normalize_before=get("normalize_before"), hidden_expansion=get("hidden_expansion"),
        depth_mult=get("depth_mult"), d_model=get("d_model"), decoder_in_channels=get("decoder_in_channels"),
        num_queries=get("num_queries"), decoder_layers=get("decoder_layers"),
        decoder_heads=get("decoder_attention_heads", "decoder_heads"), decoder_ffn_dim=get("decoder_ffn_dim"),
        decoder_activation=get("decoder_activation_function", "decoder_activation"),
        num_feature_levels=get("num_feature_levels"), decoder_n_points=data.get("decoder_n_points", 4),
        decoder_offset_scale=get("decoder_offset_scale"), decoder_method=get("decoder_method"),
        eval_idx=get("eval_idx"), learn_initial_query=get("learn_initial_query"),
        num_denoising=get("num_denoising"), layer_scale=get("layer_scale"), max_num_bins=get("max_num_bins"),
        reg_scale=get("reg_scale"), up=get("up"), top_prob_values=get("top_prob_values"),
        lqe_hidden_dim=get("lqe_hidden_dim"), lqe_layers=get("lqe_layers"), layer_norm_eps=get("layer_norm_eps"),
        batch_norm_eps=get("batch_norm_eps"),
    )
    return checked_and_sized(DFineConfig(**fields), data, DFINE_PRESETS)


def checked_and_sized(config: DFineConfig, data: dict[str, Any], presets: dict[str, dict[str, Any]]) -> DFineConfig:
    """``config`` (D-FINE's or a variant's, read from a folder's ``data``) with its released size named, after
    checking the folder's encoder_in_channels against the backbone's returned stages."""
    encoder_in = data.get("encoder_in_channels")
    if encoder_in is not None and tuple(encoder_in) != config.backbone_out_channels:
        raise RTDetrExportError(f"encoder_in_channels {list(encoder_in)} does not match the backbone's returned "
                                f"stages ({list(config.backbone_out_channels)})")
    return config.replace(size=released_size(config, presets))


def released_size(config: DFineConfig, presets: dict[str, dict[str, Any]] = DFINE_PRESETS) -> str | None:
    """The size ("N" .. "X" for D-FINE) of the preset in ``presets`` whose architecture ``config`` has, else None."""
    def architecture(c: DFineConfig) -> dict[str, Any]:
        fields = {k: v for k, v in dataclasses.asdict(c).items() if k not in _NOT_ARCHITECTURE}
        return {**fields, "decoder_in_channels": c.resolved_decoder_in_channels}

    mine = architecture(config)
    for fields in presets.values():
        reference = type(config)(**fields)
        if architecture(reference) == mine:
            return reference.size
    return None


# (pattern, replacement) applied in order, each at most once per key.
_RENAMES = [
    (r"^model\.backbone\.model\.embedder\.", "backbone.stem."),
    (r"^model\.backbone\.model\.encoder\.stages\.", "backbone.stages."),
    (r"^model\.encoder_input_proj\.(\d+)\.0\.", r"encoder.input_proj.\1.conv."),
    (r"^model\.encoder_input_proj\.(\d+)\.1\.", r"encoder.input_proj.\1.norm."),
    (r"^model\.encoder\.aifi\.(\d+)\.layers\.", r"encoder.encoder.\1.layers."),
    (r"^model\.encoder\.(fpn|pan)_blocks\.(\d+)\.conv1\.", r"encoder.\1_blocks.\2.cv1."),
    (r"^model\.encoder\.(fpn|pan)_blocks\.(\d+)\.csp_rep1\.", r"encoder.\1_blocks.\2.cv2.0."),
    (r"^model\.encoder\.(fpn|pan)_blocks\.(\d+)\.conv2\.", r"encoder.\1_blocks.\2.cv2.1."),
    (r"^model\.encoder\.(fpn|pan)_blocks\.(\d+)\.csp_rep2\.", r"encoder.\1_blocks.\2.cv3.0."),
    (r"^model\.encoder\.(fpn|pan)_blocks\.(\d+)\.conv3\.", r"encoder.\1_blocks.\2.cv3.1."),
    (r"^model\.encoder\.(fpn|pan)_blocks\.(\d+)\.conv4\.", r"encoder.\1_blocks.\2.cv4."),
    (r"^model\.encoder\.downsample_convs\.(\d+)\.conv([12])\.", r"encoder.downsample_convs.\1.cv\2."),
    (r"^model\.encoder\.", "encoder."),
    (r"^model\.decoder_input_proj\.(\d+)\.0\.", r"decoder.input_proj.\1.conv."),
    (r"^model\.decoder_input_proj\.(\d+)\.1\.", r"decoder.input_proj.\1.norm."),
    (r"^model\.enc_output\.0\.", "decoder.enc_output.proj."),
    (r"^model\.enc_output\.1\.", "decoder.enc_output.norm."),
    (r"^model\.(enc_score_head|enc_bbox_head|denoising_class_embed)\.", r"decoder.\1."),
    (r"^model\.decoder\.(layers|lqe_layers)\.", r"decoder.decoder.\1."),
    (r"^model\.decoder\.class_embed\.", "decoder.dec_score_head."),
    (r"^model\.decoder\.bbox_embed\.", "decoder.dec_bbox_head."),
    (r"^model\.decoder\.", "decoder."),
]
# Inside encoder / decoder layers. save_pretrained writes transformers 4.x spellings (``encoder.encoder.N``,
# ``fc1``/``fc2``, ``out_proj``), models in memory and 5.x files the 5.x ones (``aifi.N``, ``mlp.layers.0``/``1``,
# ``o_proj``): both read.
_LAYER_PARTS = {
    "encoder": [(".self_attn_layer_norm.", ".norm1."), (".final_layer_norm.", ".norm2.")],
    "decoder": [(".self_attn_layer_norm.", ".norm1."), (".encoder_attn.", ".cross_attn."),
                (".final_layer_norm.", ".norm3.")],
    "common": [(".self_attn.o_proj.", ".self_attn.out_proj."), (".mlp.layers.0.", ".linear1."),
               (".mlp.layers.1.", ".linear2."), (".fc1.", ".linear1."), (".fc2.", ".linear2.")],
}
_COMPILED = [(re.compile(p), r) for p, r in _RENAMES]
# Per-layer modules after the output layer: never evaluated, so not built.
_PER_LAYER = re.compile(r"^decoder\.(decoder\.layers|decoder\.lqe_layers|dec_score_head|dec_bbox_head)\.(\d+)\.")


def _rename(key: str) -> str:
    for pattern, repl in _COMPILED:
        if pattern.match(key):
            key = pattern.sub(repl, key, count=1)
            break
    if key.startswith("backbone."):
        return key.replace(".convolution.", ".conv.").replace(".normalization.", ".norm.")
    section = "encoder" if key.startswith("encoder.encoder.") else \
        "decoder" if key.startswith("decoder.decoder.layers.") else None
    if section:
        for old, new in _LAYER_PARTS[section] + _LAYER_PARTS["common"]:
            key = key.replace(old, new)
    return key


def _pack_attention(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """q/k/v projections -> the packed ``in_proj_weight`` / ``in_proj_bias`` our SelfAttention keeps."""
    out: dict[str, torch.Tensor] = {}
    parts: dict[str, dict[str, torch.Tensor]] = {}
    for key, value in state.items():
        match = re.match(r"^(.*\.self_attn)\.([qkv])_proj\.(weight|bias)$", key)
        if match:
            parts.setdefault(f"{match[1]}.in_proj_{match[3]}", {})[match[2]] = value
        else:
            out[key] = value
    for key, qkv in parts.items():
        if set(qkv) != {"q", "k", "v"}:
            raise RTDetrExportError(f"incomplete attention projection for {key}: found only {sorted(qkv)}")
        out[key] = torch.cat([qkv["q"], qkv["k"], qkv["v"]], dim=0)
    return out


def convert_dfine_state_dict(state: dict[str, torch.Tensor], eval_layer: int) -> dict[str, torch.Tensor]:
    """transformers D-FINE keys -> ours; modules of decoder layers after ``eval_layer`` are left out."""
    state = dict(state)
    # The top-level heads are tied copies of model.decoder's; use them only when those are absent.
    for key in [k for k in state if k.startswith(("class_embed.", "bbox_embed."))]:
        state.setdefault("model.decoder." + key, state.pop(key))
    renamed = {}
    for key, value in state.items():
        new = _rename(key)
        layer = _PER_LAYER.match(new)
        if layer and int(layer[2]) > eval_layer:
            continue
        renamed[new] = value
    return _pack_attention(renamed)


def load_dfine_folder(raw_config: dict[str, Any], raw_state: dict[str, torch.Tensor], weights_file: Path,
                      source: WeightSource, where: str, changes: dict[str, Any]) -> DFine:
    """Our DFine with the folder's weights, in eval mode; ``changes`` are ModelConfig fields to override
    (the sampler, the input size)."""
    config = config_from_dfine(raw_config)
    state = convert_dfine_state_dict(raw_state, config.eval_layer)
    config = reconcile_classes(config, state, where)
    config = config.replace(**changes) if changes else config
    model = DFine(config, source)
    with torch.no_grad():
        load_strict(model, state, str(weights_file))
    return model.eval()
