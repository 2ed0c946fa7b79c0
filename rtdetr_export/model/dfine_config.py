"""D-FINE configuration: RT-DETRv2's fields plus the HGNetv2 backbone, the FDR distribution and the LQE head.

``DFineConfig`` extends ``ModelConfig`` so everything that reads a config (input size, queries, classes, the
sampler, feature strides, class names) reads a D-FINE one unchanged. The ResNet-vd fields it inherits are unused.
Field names follow transformers' ``DFineConfig`` / ``HGNetV2Config`` (the latter with an ``hgnet_`` prefix).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from rtdetr_export.errors import RTDetrExportError
from rtdetr_export.model.config import ModelConfig

VARIANTS = ("D-FINE", "DEIM")

# HGNetv2 stage tables, from Peterande/D-FINE src/nn/backbone/hgnetv2.py (``HGNetv2.arch_configs``):
# stem channels (in, mid, out) and per stage (in, mid, out, blocks, downsample, light block, kernel, layers).
HGNET_ARCHS: dict[str, dict[str, Any]] = {
    "B0": {"stem": (3, 16, 16), "stages": [(16, 16, 64, 1, False, False, 3, 3), (64, 32, 256, 1, True, False, 3, 3),
                                           (256, 64, 512, 2, True, True, 5, 3), (512, 128, 1024, 1, True, True, 5, 3)]},
    "B1": {"stem": (3, 24, 32), "stages": [(32, 32, 64, 1, False, False, 3, 3), (64, 48, 256, 1, True, False, 3, 3),
                                           (256, 96, 512, 2, True, True, 5, 3), (512, 192, 1024, 1, True, True, 5, 3)]},
    "B2": {"stem": (3, 24, 32), "stages": [(32, 32, 96, 1, False, False, 3, 4), (96, 64, 384, 1, True, False, 3, 4),
                                           (384, 128, 768, 3, True, True, 5, 4),
                                           (768, 256, 1536, 1, True, True, 5, 4)]},
    "B3": {"stem": (3, 24, 32), "stages": [(32, 32, 128, 1, False, False, 3, 5), (128, 64, 512, 1, True, False, 3, 5),
                                           (512, 128, 1024, 3, True, True, 5, 5),
                                           (1024, 256, 2048, 1, True, True, 5, 5)]},
    "B4": {"stem": (3, 32, 48), "stages": [(48, 48, 128, 1, False, False, 3, 6), (128, 96, 512, 1, True, False, 3, 6),
                                           (512, 192, 1024, 3, True, True, 5, 6),
                                           (1024, 384, 2048, 1, True, True, 5, 6)]},
    "B5": {"stem": (3, 32, 64), "stages": [(64, 64, 128, 1, False, False, 3, 6), (128, 128, 512, 2, True, False, 3, 6),
                                           (512, 256, 1024, 5, True, True, 5, 6),
                                           (1024, 512, 2048, 2, True, True, 5, 6)]},
}


def hgnet(name: str, use_lab: bool, archs: dict[str, dict[str, Any]] = HGNET_ARCHS) -> dict[str, Any]:
    """DFineConfig fields of an HGNetv2 variant ("B0".."B5", or one of ``archs``)."""
    arch = archs[name]
    columns = list(zip(*arch["stages"]))
    return {"hgnet_stem_channels": arch["stem"], "hgnet_stage_in_channels": columns[0],
            "hgnet_stage_mid_channels": columns[1], "hgnet_stage_out_channels": columns[2],
            "hgnet_stage_num_blocks": columns[3], "hgnet_stage_downsample": columns[4],
            "hgnet_stage_light_block": columns[5], "hgnet_stage_kernel_size": columns[6],
            "hgnet_stage_layers": columns[7], "hgnet_use_lab": use_lab}


@dataclass
class DFineConfig(ModelConfig):
    """Architecture of one D-FINE detector (HGNetv2 backbone, D-FINE hybrid encoder, FDR decoder).

    Defaults are D-FINE-L's (configs/dfine/include/dfine_hgnetv2.yml with HGNetv2 B4), as transformers' are.
    """

    size: str | None = None  # "N", "S", "M", "L", "X" when the architecture is a released one
    # "D-FINE" or "DEIM" (ShihuaHuang95/DEIM: D-FINE's architecture, trained with SiLU where D-FINE has ReLU)
    variant: str = "D-FINE"

    # HGNetv2 backbone (B4 by default); stage indices in ``backbone_return_stages`` count from 0
    hgnet_stem_channels: tuple[int, ...] = (3, 32, 48)
    hgnet_stage_in_channels: tuple[int, ...] = (48, 128, 512, 1024)
    hgnet_stage_mid_channels: tuple[int, ...] = (48, 96, 192, 384)
    hgnet_stage_out_channels: tuple[int, ...] = (128, 512, 1024, 2048)
    hgnet_stage_num_blocks: tuple[int, ...] = (1, 1, 3, 1)
    hgnet_stage_downsample: tuple[bool, ...] = (False, True, True, True)
    hgnet_stage_light_block: tuple[bool, ...] = (False, False, True, True)
    hgnet_stage_kernel_size: tuple[int, ...] = (3, 3, 5, 5)
    hgnet_stage_layers: tuple[int, ...] = (6, 6, 6, 6)
    hgnet_use_lab: bool = False  # learnable affine blocks (scale, bias) after each activation

    # encoder: CCFM's blocks become RepNCSPELAN4 with round(3 * depth_mult) CSP units
    depth_mult: float = 1.0

    # decoder: fine-grained distribution refinement and localization-quality estimation
    max_num_bins: int = 32
    reg_scale: float = 4.0
    up: float = 0.5
    layer_scale: float = 1.0
    top_prob_values: int = 4
    lqe_hidden_dim: int = 64
    lqe_layers: int = 2

    def __post_init__(self) -> None:
        for name in ("hgnet_stem_channels", "hgnet_stage_in_channels", "hgnet_stage_mid_channels",
                     "hgnet_stage_out_channels", "hgnet_stage_num_blocks", "hgnet_stage_kernel_size",
                     "hgnet_stage_layers"):
            setattr(self, name, tuple(int(v) for v in getattr(self, name)))
        self.hgnet_stage_downsample = tuple(bool(v) for v in self.hgnet_stage_downsample)
        self.hgnet_stage_light_block = tuple(bool(v) for v in self.hgnet_stage_light_block)
        super().__post_init__()

    def validate(self) -> None:
        """ModelConfig's checks plus D-FINE's."""
        super().validate()
        problems = []
        stages = len(self.hgnet_stage_in_channels)
        if any(len(getattr(self, name)) != stages for name in (
                "hgnet_stage_mid_channels", "hgnet_stage_out_channels", "hgnet_stage_num_blocks",
                "hgnet_stage_downsample", "hgnet_stage_light_block", "hgnet_stage_kernel_size", "hgnet_stage_layers")):
            problems.append("the hgnet_stage_* lists must all have one entry per stage")
        if any(not 0 <= i < stages for i in self.backbone_return_stages):
            problems.append(f"backbone_return_stages {list(self.backbone_return_stages)} name stages outside "
                            f"0..{stages - 1}")
        problems.extend(self.level_problems())
        if self.learn_initial_query:
            problems.append("learn_initial_query is not a D-FINE configuration")
        if self.max_num_bins < 4 or self.max_num_bins % 2:
            problems.append(f"max_num_bins must be an even number >= 4, got {self.max_num_bins}")
        if self.query_pos_layers != 2:
            problems.append("D-FINE's query position head has 2 layers")
        if self.variant not in self.variants:
            problems.append(f"variant must be one of {self.variants}, got {self.variant!r}")
        if self.top_prob_values > self.max_num_bins + 1:
            problems.append("top_prob_values exceeds the number of bins")
        if problems:
            raise RTDetrExportError("invalid D-FINE config: " + "; ".join(problems))

    variants = VARIANTS  # what ``variant`` may say for this family

    def level_problems(self) -> list[str]:
        """What is wrong with the feature levels: extra decoder levels (a strided conv on the coarsest map) exist in
        no released D-FINE."""
        if self.num_feature_levels != len(self.feat_strides):
            return ["D-FINE needs one decoder level per encoder level (num_feature_levels == len(feat_strides))"]
        return []

    @property
    def backbone_out_channels(self) -> tuple[int, ...]:
        """Channels of the HGNetv2 stages handed to the encoder."""
        return tuple(self.hgnet_stage_out_channels[i] for i in self.backbone_return_stages)

    @property
    def csp_units(self) -> int:
        """RepVGG units in each CSP branch of a RepNCSPELAN4 block."""
        return round(3 * self.depth_mult)

    @property
    def model_name(self) -> str:
        """"D-FINE-N" .. "D-FINE-X" (or "DEIM-D-FINE-S" ...) for the released sizes, else "D-FINE"."""
        name = "DEIM-D-FINE" if self.variant == "DEIM" else "D-FINE"
        return f"{name}-{self.size}" if self.size else name


_THREE_LEVELS = {"backbone_return_stages": (1, 2, 3), "feat_strides": (8, 16, 32), "encode_proj_layers": (2,),
                 "num_feature_levels": 3, "decoder_n_points": (3, 6, 3), "decoder_ffn_dim": 1024}

# Released D-FINE sizes: Peterande/D-FINE configs/dfine/dfine_hgnetv2_{s,m,l,x}_coco.yml over
# configs/dfine/include/dfine_hgnetv2.yml, checked against the files (M at its final 4 layers, eval_idx -1). N follows
# dfine_hgnetv2_n_coco.yml as published (B0 returning stages 2-3, strides 16/32, hidden 128, FFN 512, 2 levels of 6
# points); that file was not among the copies checked, so N awaits a check against a released N checkpoint.
DFINE_PRESETS: dict[str, dict[str, Any]] = {
    "dfine_n": {**hgnet("B0", True), "size": "N", "backbone_return_stages": (2, 3), "feat_strides": (16, 32),
                "encode_proj_layers": (1,), "num_feature_levels": 2, "decoder_n_points": (6, 6),
                "encoder_hidden_dim": 128, "encoder_ffn_dim": 512, "hidden_expansion": 0.34, "depth_mult": 0.5,
                "d_model": 128, "decoder_ffn_dim": 512, "decoder_layers": 3},
    "dfine_s": {**hgnet("B0", True), **_THREE_LEVELS, "size": "S", "hidden_expansion": 0.5, "depth_mult": 0.34,
                "decoder_layers": 3},
    "dfine_m": {**hgnet("B2", True), **_THREE_LEVELS, "size": "M", "depth_mult": 0.67, "decoder_layers": 4},
    "dfine_l": {**hgnet("B4", False), **_THREE_LEVELS, "size": "L", "decoder_layers": 6},
    "dfine_x": {**hgnet("B5", False), **_THREE_LEVELS, "size": "X", "encoder_hidden_dim": 384,
                "encoder_ffn_dim": 2048, "decoder_in_channels": (384, 384, 384), "reg_scale": 8.0,
                "decoder_layers": 6},
}


# DEIM-D-FINE (ShihuaHuang95/DEIM configs/deim_dfine/deim_hgnetv2_{n,s,m,l,x}_coco.yml): D-FINE's sizes, with
# configs/base/deim.yml's ``activation: silu`` (decoder FFN and LQE) and ``mlp_act: silu`` (every MLP head).
# Nothing in the weights shows an activation, so these presets are how a DEIM checkpoint is told apart.
DEIM_ACTIVATIONS = {"variant": "DEIM", "decoder_activation": "silu", "mlp_activation": "silu"}
DFINE_PRESETS.update({f"deim_{name}": {**fields, **DEIM_ACTIVATIONS} for name, fields in list(DFINE_PRESETS.items())})


def dfine_preset(name: str, **overrides: Any) -> DFineConfig:
    """The config of a released D-FINE size (``dfine_n`` .. ``dfine_x``, DEIM's ``deim_dfine_n`` ..), with
    optional overrides."""
    if name not in DFINE_PRESETS:
        raise RTDetrExportError(f"unknown D-FINE preset {name!r}; choose one of: {', '.join(DFINE_PRESETS)}")
    return DFineConfig(**{**DFINE_PRESETS[name], **overrides})
