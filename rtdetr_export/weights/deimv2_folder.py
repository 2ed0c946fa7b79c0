"""transformers DEIMv2 folders (``model_type: deimv2``, ``Deimv2ForObjectDetection``) with an HGNetv2 backbone ->
our Deimv2.

Read as D-FINE folders are (``dfine_folder``): the config field by field (missing fields take transformers'
``Deimv2Config`` defaults, since ``save_pretrained`` writes only what differs from them), the size named when the
architecture is a released one, the weights renamed to the original code's keys, decoder layers after ``eval_idx``
dropped. What DEIMv2 adds: the backbone and its projections live under ``model.conv_encoder``; the SwiGLU FFN's
``gate_proj`` and ``up_proj`` are packed back into the original's ``w12``; RMSNorm weights are its ``scale``; a
shared FDR head (``share_bbox_head``) is kept once. DINOv3 folders are refused before this runs
(``lookalikes.refuse_foreign_config``).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import torch

from rtdetr_export.errors import RTDetrExportError
from rtdetr_export.model.deimv2 import Deimv2
from rtdetr_export.model.deimv2_config import DEIMV2_PRESETS, Deimv2Config
from rtdetr_export.model.source import WeightSource
from rtdetr_export.weights.classes import reconcile_classes
from rtdetr_export.weights.dfine_folder import _LAYER_PARTS, _backbone_fields, _pack_attention, checked_and_sized
from rtdetr_export.weights.matching import load_strict


def _refuse_unsupported(data: dict[str, Any]) -> None:
    if data.get("use_timm_backbone") or data.get("backbone"):
        raise RTDetrExportError("only transformers' own HGNetv2 backbone is supported for DEIMv2 (no timm backbone)")
    if data.get("encoder_fuse_op", "sum") != "sum":
        raise RTDetrExportError(f"DEIMv2 fuses encoder maps by summing them; encoder_fuse_op "
                                f"{data['encoder_fuse_op']!r} is not supported")
    if not data.get("encoder_has_trailing_conv", True):
        raise RTDetrExportError("encoder_has_trailing_conv=false is DEIMv2's DINOv3 encoder, which is not supported")
    if data.get("learn_initial_query") or data.get("with_box_refine") is False:
        raise RTDetrExportError("learn_initial_query / with_box_refine=false are not DEIMv2 configurations")


def config_from_deimv2(data: dict[str, Any]) -> Deimv2Config:
    """Our Deimv2Config from a transformers ``Deimv2Config`` dict (config.json); the class count is corrected
    from the weights afterwards (``classes.reconcile_classes``)."""
    _refuse_unsupported(data)
    id2label = data.get("id2label")
    defaults = Deimv2Config()
    get = lambda key, field=None: data.get(key, getattr(defaults, field or key))  # noqa: E731
    lite = data.get("encoder_type", "hybrid") == "lite"
    fields: dict[str, Any] = dict(
        _backbone_fields(data.get("backbone_config") or {}),
        num_classes=len(id2label) if id2label else data.get("num_labels", 80),
        id2label={int(k): v for k, v in id2label.items()} if id2label else None,
        image_size=data.get("anchor_image_size") or data.get("eval_size") or (640, 640),
        # transformers' defaults are D-FINE-L's hybrid encoder fields (DFineConfig's), except where noted
        feat_strides=get("feat_strides"), encoder_hidden_dim=get("encoder_hidden_dim"),
        encoder_layers=0 if lite else get("encoder_layers"),
        encoder_heads=get("encoder_attention_heads", "encoder_heads"), encoder_ffn_dim=get("encoder_ffn_dim"),
        encoder_activation=get("encoder_activation_function", "encoder_activation"),
        encode_proj_layers=() if lite else get("encode_proj_layers"),
        pe_temperature=get("positional_encoding_temperature", "pe_temperature"),
        normalize_before=get("normalize_before"), hidden_expansion=get("hidden_expansion"),
        activation=data.get("activation_function", "silu"), depth_mult=get("depth_mult"), d_model=get("d_model"),
        decoder_in_channels=data.get("decoder_in_channels", (256, 256, 256)), num_queries=get("num_queries"),
        decoder_layers=get("decoder_layers"), decoder_heads=get("decoder_attention_heads", "decoder_heads"),
        decoder_ffn_dim=get("decoder_ffn_dim"),
        decoder_activation=data.get("decoder_activation_function", "relu"),  # transformers' default, not ours
        num_feature_levels=get("num_feature_levels"), decoder_n_points=data.get("decoder_n_points", 4),
        decoder_offset_scale=get("decoder_offset_scale"), decoder_method=get("decoder_method"),
        eval_idx=get("eval_idx"), num_denoising=get("num_denoising"), layer_scale=get("layer_scale"),
        max_num_bins=get("max_num_bins"), reg_scale=get("reg_scale"), up=get("up"),
        top_prob_values=get("top_prob_values"), lqe_hidden_dim=get("lqe_hidden_dim"), lqe_layers=get("lqe_layers"),
        layer_norm_eps=get("layer_norm_eps"), batch_norm_eps=get("batch_norm_eps"),
        encoder_type="lite" if lite else "hybrid", use_gateway=get("use_gateway"),
        share_bbox_head=get("share_bbox_head"),
    )
    return checked_and_sized(Deimv2Config(**fields), data, DEIMV2_PRESETS)


# (pattern, replacement), the first match applied once per key.
_RENAMES = [(re.compile(p), r) for p, r in [
    (r"^model\.conv_encoder\.model\.embedder\.", "backbone.stem."),
    (r"^model\.conv_encoder\.model\.encoder\.stages\.", "backbone.stages."),
    (r"^model\.conv_encoder\.encoder_input_proj\.", "encoder.input_proj."),
    (r"^model\.encoder\.aifi\.(\d+)\.layers\.", r"encoder.encoder.\1.layers."),
    (r"^model\.encoder\.downsample_convs\.(\d+)\.conv([12])\.", r"encoder.downsample_convs.\1.cv\2."),
    (r"^model\.encoder\.down_conv([12])\.", r"encoder.down_sample\1."),  # the Lite encoder's
    (r"^model\.encoder\.bi_fusion_conv\.", "encoder.bi_fusion."),
    (r"^model\.encoder\.", "encoder."),
    (r"^model\.decoder_input_proj\.", "decoder.input_proj."),
    (r"^model\.enc_output\.0\.", "decoder.enc_output.proj."),
    (r"^model\.enc_output\.1\.", "decoder.enc_output.norm."),
    (r"^model\.(enc_score_head|enc_bbox_head|denoising_class_embed)\.", r"decoder.\1."),
    (r"^model\.decoder\.(layers|lqe_layers)\.", r"decoder.decoder.\1."),
    (r"^model\.decoder\.class_embed\.", "decoder.dec_score_head."),
    (r"^model\.decoder\.bbox_embed\.", "decoder.dec_bbox_head."),
    (r"^model\.decoder\.", "decoder."),
]]
# Inside a fusion block (transformers' RepNCSPELAN5 -> the original's RepNCSPELAN4 with CSPLayer2), first match.
_BLOCK = re.compile(r"^(encoder\.(?:fpn|pan)_blocks?(?:\.\d+)?\.)(.*)$")
_BLOCK_PARTS = [("csp_rep1.conv2.", "cv2.1."), ("csp_rep1.", "cv2.0."), ("csp_rep2.conv2.", "cv3.1."),
                ("csp_rep2.", "cv3.0."), ("conv1.", "cv1."), ("conv2.", "cv4.")]
_DECODER_PARTS = [(".self_attn_layer_norm.weight", ".norm1.scale"), (".encoder_attn_layer_norm.weight", ".norm2.scale"),
                  (".final_layer_norm.weight", ".norm3.scale"), (".gateway.norm.weight", ".gateway.norm.scale"),
                  (".encoder_attn.", ".cross_attn."), (".self_attn.o_proj.", ".self_attn.out_proj."),
                  (".mlp.down_proj.", ".swish_ffn.w3.")]
_PER_LAYER = re.compile(r"^decoder\.(decoder\.layers|decoder\.lqe_layers|dec_score_head|dec_bbox_head)\.(\d+)\.")


def _rename(key: str) -> str:
    for pattern, repl in _RENAMES:
        if pattern.match(key):
            key = pattern.sub(repl, key, count=1)
            break
    if key.startswith("backbone."):
        return key.replace(".convolution.", ".conv.").replace(".normalization.", ".norm.")
    if block := _BLOCK.match(key):
        prefix, rest = block.groups()
        old, new = next(((o, n) for o, n in _BLOCK_PARTS if rest.startswith(o)), ("", ""))
        return prefix + new + rest[len(old):]
    if key.startswith("encoder.encoder."):
        for old, new in _LAYER_PARTS["encoder"] + _LAYER_PARTS["common"]:
            key = key.replace(old, new)
    elif key.startswith("decoder.decoder.layers."):
        for old, new in _DECODER_PARTS:
            key = key.replace(old, new)
    return key


def _pack_swiglu(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """``mlp.gate_proj`` and ``mlp.up_proj`` -> the original's packed ``swish_ffn.w12`` ([gate; up])."""
    out: dict[str, torch.Tensor] = {}
    parts: dict[str, dict[str, torch.Tensor]] = {}
    for key, value in state.items():
        match = re.match(r"^(.*)\.mlp\.(gate|up)_proj\.(weight|bias)$", key)
        if match:
            parts.setdefault(f"{match[1]}.swish_ffn.w12.{match[3]}", {})[match[2]] = value
        else:
            out[key] = value
    for key, halves in parts.items():
        if set(halves) != {"gate", "up"}:
            raise RTDetrExportError(f"incomplete SwiGLU projection for {key}: found only {sorted(halves)}")
        out[key] = torch.cat([halves["gate"], halves["up"]], dim=0)
    return out


def convert_deimv2_state_dict(state: dict[str, torch.Tensor], config: Deimv2Config) -> dict[str, torch.Tensor]:
    """transformers DEIMv2 keys -> ours; modules of decoder layers after the output layer are left out, and a
    shared FDR head is kept once (transformers ties every layer's to layer 0's)."""
    state = dict(state)
    # The top-level heads are tied copies of model.decoder's; use them only when those are absent.
    for key in [k for k in state if k.startswith(("class_embed.", "bbox_embed."))]:
        state.setdefault("model.decoder." + key, state.pop(key))
    renamed = {}
    for key, value in state.items():
        new = _rename(key)
        layer = _PER_LAYER.match(new)
        if layer and config.share_bbox_head and layer[1] == "dec_bbox_head":
            # Every layer's head is one tensor; save_pretrained writes it under one index (the last, in 5.x).
            renamed["decoder.dec_bbox_head.0." + new[layer.end():]] = value
        elif not (layer and int(layer[2]) > config.eval_layer):
            renamed[new] = value
    return _pack_attention(_pack_swiglu(renamed))


def load_deimv2_folder(raw_config: dict[str, Any], raw_state: dict[str, torch.Tensor], weights_file: Path,
                       source: WeightSource, where: str, changes: dict[str, Any]) -> Deimv2:
    """Our Deimv2 with the folder's weights, in eval mode; ``changes`` are config fields to override (the sampler,
    the input size)."""
    config = config_from_deimv2(raw_config)
    state = convert_deimv2_state_dict(raw_state, config)
    config = reconcile_classes(config, state, where)
    config = config.replace(**changes) if changes else config
    model = Deimv2(config, source)
    with torch.no_grad():
        load_strict(model, state, str(weights_file))
    return model.eval()
