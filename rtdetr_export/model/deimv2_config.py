"""DEIMv2 configuration: D-FINE's fields plus what DEIMv2 changes (Intellindust-AI-Lab/DEIMv2, HGNetv2 sizes).

``Deimv2Config`` extends ``DFineConfig`` (the HGNetv2 backbone, the FDR and LQE heads are D-FINE's) with:
- ``encoder_type``: "hybrid" (N: D-FINE's hybrid encoder with summed fusion and RepC3-style CSP blocks) or "lite"
  (Atto, Femto, Pico: no AIFI; one backbone map, a pooled second level, GAP fusion);
- ``use_gateway``: the gated cross-attention residual (N) or plain add & RMSNorm (the Lite sizes);
- ``share_bbox_head``: one FDR head for every decoder layer (the Lite sizes);
- ``lqe_activation``: the LQE MLP's activation, which transformers fixes to ReLU whatever the decoder's is.
Field names follow transformers' ``Deimv2Config`` where one exists. DINOv3 sizes (S to X) are not built.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from rtdetr_export.errors import RTDetrExportError
from rtdetr_export.model.dfine_config import DFineConfig, hgnet

ENCODER_TYPES = ("hybrid", "lite")

# DEIMv2's three-stage HGNetv2 variants for the Lite sizes (Intellindust-AI-Lab/DEIMv2 engine/backbone/hgnetv2.py,
# ``arch_configs``): same columns as dfine_config.HGNET_ARCHS.
LITE_HGNET_ARCHS: dict[str, dict[str, Any]] = {
    "Atto": {"stem": (3, 16, 16), "stages": [(16, 16, 64, 1, False, False, 3, 3), (64, 32, 256, 1, True, False, 3, 3),
                                             (256, 64, 256, 1, True, True, 3, 3)]},
    "Femto": {"stem": (3, 16, 16), "stages": [(16, 16, 64, 1, False, False, 3, 3),
                                              (64, 32, 256, 1, True, False, 3, 3),
                                              (256, 64, 512, 1, True, True, 5, 3)]},
    "Pico": {"stem": (3, 16, 16), "stages": [(16, 16, 64, 1, False, False, 3, 3), (64, 32, 256, 1, True, False, 3, 3),
                                             (256, 64, 512, 2, True, True, 5, 3)]},
}


@dataclass
class Deimv2Config(DFineConfig):
    """Architecture of one DEIMv2 detector with an HGNetv2 backbone. Fields DEIMv2 shares with D-FINE default to
    D-FINE-L's (as transformers' ``Deimv2Config`` does); ``deimv2_preset`` gives the released sizes."""

    variant: str = "DEIMv2"
    size: str | None = None  # "Atto", "Femto", "Pico", "N" when the architecture is a released one
    encoder_type: str = "hybrid"
    use_gateway: bool = True
    share_bbox_head: bool = False
    # transformers' Deimv2 runs its LQE, box and encoder-box MLPs with ReLU and only the query position head with
    # ``decoder_activation`` (SiLU in the converted checkpoints, hence this default; transformers' own is ReLU); the
    # original trains all of them with SiLU.
    lqe_activation: str = "relu"
    decoder_activation: str = "silu"
    # Where transformers' port and the original code compute differently (see deimv2_decoder.py): a checkpoint of
    # the original code runs as the original computes (``ORIGINAL_COMPUTATION``), a transformers folder as
    # transformers does.
    enc_output: bool = True  # transformers' Linear + LayerNorm before query selection; the original has none
    query_pos_per_layer: bool = True  # transformers recomputes the query position each layer; the original once

    variants = ("DEIMv2",)

    def level_problems(self) -> list[str]:
        """The hybrid encoder has one level per backbone map, as D-FINE; the Lite one adds a pooled level."""
        if self.encoder_type == "lite":
            if len(self.feat_strides) != 1 or self.num_feature_levels != 2:
                return ["DEIMv2's Lite encoder reads one backbone map and gives two levels "
                        "(len(feat_strides) == 1, num_feature_levels == 2)"]
            return []
        return super().level_problems()

    def validate(self) -> None:
        """DFineConfig's checks plus DEIMv2's."""
        super().validate()
        problems = []
        if self.encoder_type not in ENCODER_TYPES:
            problems.append(f"encoder_type must be one of {ENCODER_TYPES}, got {self.encoder_type!r}")
        if self.encoder_type == "lite" and self.encoder_layers:
            problems.append("DEIMv2's Lite encoder has no AIFI layers (encoder_layers must be 0)")
        if self.encoder_type == "lite" and self.resolved_decoder_in_channels != (self.encoder_hidden_dim,) * 2:
            problems.append("DEIMv2's Lite encoder gives two maps of encoder_hidden_dim channels")
        if self.decoder_ffn_dim % 2:
            problems.append("decoder_ffn_dim must be even (the SwiGLU FFN's hidden width is half of it)")
        if problems:
            raise RTDetrExportError("invalid DEIMv2 config: " + "; ".join(problems))

    @property
    def resolved_decoder_in_channels(self) -> tuple[int, ...]:
        if self.decoder_in_channels is not None:
            return self.decoder_in_channels
        return (self.encoder_hidden_dim,) * self.num_feature_levels

    @property
    def model_name(self) -> str:
        """"DEIMv2-Atto" .. "DEIMv2-N" for the released sizes, else "DEIMv2"."""
        return f"DEIMv2-{self.size}" if self.size else "DEIMv2"


# The original code's computation (Intellindust-AI-Lab/DEIMv2 engine/deim/deim_decoder.py): no enc_output, the
# query position embedding from the selected boxes only, SiLU in every MLP head (``mlp_act``) and the LQE
# (``activation``).
ORIGINAL_COMPUTATION: dict[str, Any] = {"enc_output": False, "query_pos_per_layer": False,
                                        "mlp_activation": "silu", "lqe_activation": "silu",
                                        "decoder_activation": "silu"}


def _lite(name: str, hidden: int, queries: int, ffn: int, side: int) -> dict[str, Any]:
    """A Lite size (configs/deimv2/deimv2_hgnetv2_{atto,femto,pico}_coco.yml over configs/base/deimv2.yml)."""
    return {**hgnet(name, True, LITE_HGNET_ARCHS), "size": name, "encoder_type": "lite",
            "backbone_return_stages": (2,), "feat_strides": (16,), "encoder_layers": 0, "encode_proj_layers": (),
            "encoder_hidden_dim": hidden, "hidden_expansion": 0.34, "depth_mult": 0.5, "d_model": hidden,
            "decoder_in_channels": (hidden, hidden), "num_feature_levels": 2, "decoder_n_points": (4, 2),
            "decoder_layers": 3, "num_queries": queries, "decoder_ffn_dim": ffn, "share_bbox_head": True,
            "use_gateway": False, "image_size": (side, side)}


# Released HGNetv2 sizes of DEIMv2: N from configs/deimv2/deimv2_hgnetv2_n_coco.yml (B0 returning stages 2-3,
# strides 16/32, hidden 128, FFN 512, two levels of 6 points), the Lite sizes from theirs, each at its eval size.
DEIMV2_PRESETS: dict[str, dict[str, Any]] = {
    "deimv2_atto": _lite("Atto", 64, 100, 160, 320),
    "deimv2_femto": _lite("Femto", 96, 150, 256, 416),
    "deimv2_pico": _lite("Pico", 112, 200, 320, 640),
    "deimv2_n": {**hgnet("B0", True), "size": "N", "backbone_return_stages": (2, 3), "feat_strides": (16, 32),
                 "encode_proj_layers": (1,), "num_feature_levels": 2, "decoder_n_points": (6, 6),
                 "encoder_hidden_dim": 128, "encoder_ffn_dim": 512, "hidden_expansion": 0.34, "depth_mult": 0.5,
                 "d_model": 128, "decoder_ffn_dim": 512, "decoder_layers": 3},
}


def deimv2_preset(name: str, **overrides: Any) -> Deimv2Config:
    """The config of a released DEIMv2 HGNetv2 size (``deimv2_atto`` .. ``deimv2_n``), with optional overrides."""
    if name not in DEIMV2_PRESETS:
        raise RTDetrExportError(f"unknown DEIMv2 preset {name!r}; choose one of: {', '.join(DEIMV2_PRESETS)}")
    return Deimv2Config(**{**DEIMV2_PRESETS[name], **overrides})
