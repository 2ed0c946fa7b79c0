"""Model configuration: every field that changes what RT-DETR (v1 or v2) computes at inference, plus presets."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from rtdetr_export.errors import RTDetrExportError
from rtdetr_export.model.sampler import METHODS

STRIDE = 32  # the coarsest feature stride of every preset: input sides must be multiples of it
MIN_SIDE = 64  # below this the stride-32 map is a single cell and the third decoder level (stride 32) has 1-2 cells
# RT-DETR v1 computes what v2 computes with the same number of sampling points on every level: one network
# serves both, and ``version`` records which one the weights were trained as (v1 was only ever trained with
# the bilinear sampler, so any other method changes a v1 model's outputs).
VERSIONS = ("v1", "v2")


@dataclass
class ModelConfig:
    """Architecture of one RT-DETRv2 detector (ResNet-vd backbone, hybrid encoder, deformable decoder).

    Field names follow transformers' ``RTDetrV2Config`` where one exists, so that a ``config.json`` reads
    across directly; ``decoder_n_points`` may be a per-level list and ``eval_idx`` picks the decoder layer
    whose head produces the output, which transformers cannot express. ``version`` is "v1" for RT-DETR (v1)
    weights, which need the same point count on every level.
    """

    version: str = "v2"
    num_classes: int = 80
    image_size: tuple[int, int] = (640, 640)  # (height, width) the deploy constants are built for

    # ResNet-vd backbone
    backbone_blocks: tuple[int, ...] = (3, 4, 6, 3)
    backbone_block: str = "bottleneck"  # "basic" (ResNet-18/34) or "bottleneck" (ResNet-50/101)
    backbone_stem_channels: int = 64
    backbone_widths: tuple[int, ...] = (64, 128, 256, 512)  # bottleneck stages output 4x this
    backbone_return_stages: tuple[int, ...] = (1, 2, 3)
    backbone_activation: str = "relu"

    # hybrid encoder: AIFI on the coarsest map, CCFM top-down + bottom-up fusion
    feat_strides: tuple[int, ...] = (8, 16, 32)
    encoder_hidden_dim: int = 256
    encoder_layers: int = 1
    encoder_heads: int = 8
    encoder_ffn_dim: int = 1024
    encoder_activation: str = "gelu"
    encode_proj_layers: tuple[int, ...] = (2,)
    pe_temperature: float = 10000.0
    normalize_before: bool = False
    hidden_expansion: float = 1.0
    csp_blocks: int = 3
    activation: str = "silu"

    # decoder
    d_model: int = 256
    decoder_in_channels: tuple[int, ...] | None = None  # None: the encoder's output width at every level
    num_queries: int = 300
    decoder_layers: int = 6
    decoder_heads: int = 8
    decoder_ffn_dim: int = 1024
    decoder_activation: str = "relu"
    # DEIM's RT-DETRv2 (ShihuaHuang95/DEIM configs/base/rt_deim.yml): SiLU in every MLP head (``mlp_act``) and a
    # three-layer query position head of width d_model (``query_pos_method: as_reg``) instead of two of 2 * d_model.
    mlp_activation: str = "relu"
    query_pos_layers: int = 2
    num_feature_levels: int = 3
    decoder_n_points: tuple[int, ...] = (4, 4, 4)
    decoder_offset_scale: float = 0.5
    decoder_method: str = "default"
    eval_idx: int = -1
    learn_initial_query: bool = False
    num_denoising: int = 100
    anchor_eps: float = 1e-2
    anchor_grid_size: float = 0.05

    layer_norm_eps: float = 1e-5
    batch_norm_eps: float = 1e-5
    id2label: dict[int, str] | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        self.image_size = _pair(self.image_size)
        if isinstance(self.decoder_n_points, int):
            self.decoder_n_points = (self.decoder_n_points,) * self.num_feature_levels
        for name in ("backbone_blocks", "backbone_widths", "backbone_return_stages", "feat_strides",
                     "encode_proj_layers", "decoder_n_points"):
            setattr(self, name, tuple(int(v) for v in getattr(self, name)))
        if self.decoder_in_channels is not None:
            self.decoder_in_channels = tuple(int(v) for v in self.decoder_in_channels)
        self.validate()

    def validate(self) -> None:
        """Raise RTDetrExportError when fields contradict each other."""
        problems = []
        if self.version not in VERSIONS:
            problems.append(f"version must be one of {VERSIONS}, got {self.version!r}")
        if self.version == "v1" and len(set(self.decoder_n_points)) > 1:
            problems.append(f"RT-DETR v1 samples the same number of points on every level, got "
                            f"{list(self.decoder_n_points)}")
        if self.query_pos_layers not in (2, 3):
            problems.append(f"query_pos_layers must be 2 (RT-DETR) or 3 (DEIM), got {self.query_pos_layers}")
        if self.decoder_method not in METHODS:
            problems.append(f"decoder_method must be one of {METHODS}, got {self.decoder_method!r}")
        if self.backbone_block not in ("basic", "bottleneck"):
            problems.append(f"backbone_block must be 'basic' or 'bottleneck', got {self.backbone_block!r}")
        if len(self.decoder_n_points) != self.num_feature_levels:
            problems.append(f"decoder_n_points has {len(self.decoder_n_points)} entries for "
                            f"{self.num_feature_levels} feature levels")
        if not -self.decoder_layers <= self.eval_idx < self.decoder_layers:
            problems.append(f"eval_idx {self.eval_idx} is outside the {self.decoder_layers} decoder layers")
        if self.d_model % self.decoder_heads or self.encoder_hidden_dim % self.encoder_heads:
            problems.append("hidden sizes must be divisible by the number of attention heads")
        if self.encoder_hidden_dim % 4:
            problems.append("encoder_hidden_dim must be divisible by 4 (2-D sin-cos position embedding)")
        if len(self.feat_strides) != len(self.backbone_return_stages):
            problems.append("feat_strides and backbone_return_stages must have the same length")
        h, w = self.image_size
        coarsest = max(self.feat_strides) * 2 ** max(0, self.num_feature_levels - len(self.feat_strides))
        if h <= 0 or w <= 0 or h % coarsest or w % coarsest:
            problems.append(f"image size {h}x{w} must be a positive multiple of {coarsest}")
        elif min(h, w) < MIN_SIDE:
            problems.append(f"image size {h}x{w}: height and width must be at least {MIN_SIDE}")
        if problems:
            raise RTDetrExportError("invalid model config: " + "; ".join(problems))

    # -- derived sizes -------------------------------------------------------------------------------
    @property
    def backbone_expansion(self) -> int:
        return 4 if self.backbone_block == "bottleneck" else 1

    @property
    def backbone_out_channels(self) -> tuple[int, ...]:
        """Channels of the feature maps the backbone hands to the encoder."""
        return tuple(self.backbone_widths[i] * self.backbone_expansion for i in self.backbone_return_stages)

    @property
    def resolved_decoder_in_channels(self) -> tuple[int, ...]:
        if self.decoder_in_channels is not None:
            return self.decoder_in_channels
        return (self.encoder_hidden_dim,) * len(self.feat_strides)

    @property
    def eval_layer(self) -> int:
        """Index of the decoder layer whose heads produce the model's output."""
        return self.eval_idx % self.decoder_layers

    @property
    def level_strides(self) -> tuple[int, ...]:
        """Stride of every decoder feature level (extra levels halve the coarsest map again)."""
        strides = list(self.feat_strides)
        while len(strides) < self.num_feature_levels:
            strides.append(strides[-1] * 2)
        return tuple(strides)

    @property
    def model_name(self) -> str:
        """"RT-DETRv1", "RT-DETRv2" or "DEIM-RT-DETRv2": what the weights were trained as (only DEIM trains the
        three-layer query position head)."""
        return f"{'DEIM-' if self.query_pos_layers == 3 else ''}RT-DETR{self.version}"

    @property
    def class_names(self) -> list[str]:
        """Class names in logit order: ``id2label`` when given, else COCO's 80 names."""
        if self.id2label:
            return [self.id2label.get(i, f"class_{i}") for i in range(self.num_classes)]
        from rtdetr_export.imaging.labels import COCO_CLASSES

        if self.num_classes == len(COCO_CLASSES):
            return list(COCO_CLASSES)
        return [f"class_{i}" for i in range(self.num_classes)]

    def replace(self, **changes: Any) -> "ModelConfig":
        """A copy with some fields changed (validated again)."""
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict that ``ModelConfig.from_dict`` reads back."""
        out = dataclasses.asdict(self)
        if self.id2label is not None:
            out["id2label"] = {str(k): v for k, v in self.id2label.items()}
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "ModelConfig":
        """Inverse of ``to_dict``; unknown keys are an error so typos do not pass silently."""
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise RTDetrExportError(f"unknown model config fields: {', '.join(unknown)}")
        data = dict(data)
        if data.get("id2label") is not None:
            data["id2label"] = {int(k): v for k, v in data["id2label"].items()}
        return cls(**data)


def parse_image_size(text: str | int | tuple[int, int]) -> tuple[int, int]:
    """(height, width) from "640" (square) or "HxW" (e.g. "736x1280"); sides must be multiples of 32, at least 64."""
    if isinstance(text, (int, tuple)):
        height, width = _pair(text)
    else:
        parts = str(text).lower().replace(" ", "").split("x")
        if len(parts) not in (1, 2) or not all(p.isdigit() for p in parts):
            raise RTDetrExportError(f"image size {text!r} is not N or HxW (e.g. 640 or 736x1280)")
        height, width = int(parts[0]), int(parts[-1])
    if height % STRIDE or width % STRIDE:
        raise RTDetrExportError(f"image size {height}x{width}: height and width must be multiples of {STRIDE}")
    if min(height, width) < MIN_SIDE:
        raise RTDetrExportError(f"image size {height}x{width}: height and width must be at least {MIN_SIDE}")
    return height, width


@dataclass(frozen=True)
class SizeRange:
    """The input sizes a dynamic-size export takes: every (height, width) with min <= size <= max on each side;
    ``opt`` is the size it is built, verified and (in TensorRT) tuned for, and what consumers run by default."""

    min: tuple[int, int]
    opt: tuple[int, int]
    max: tuple[int, int]

    def __post_init__(self) -> None:
        for name in ("min", "opt", "max"):
            object.__setattr__(self, name, parse_image_size(tuple(getattr(self, name))))
        for side, axis in (("height", 0), ("width", 1)):
            low, opt, high = self.min[axis], self.opt[axis], self.max[axis]
            if not low <= high:
                raise RTDetrExportError(f"size range: min {size_text(self.min)} exceeds max {size_text(self.max)} "
                                        f"in {side}")
            if not low <= opt <= high:
                raise RTDetrExportError(f"size range: opt {size_text(self.opt)} is outside min {size_text(self.min)}"
                                        f" .. max {size_text(self.max)} in {side}")

    def contains(self, size: tuple[int, int]) -> bool:
        return all(self.min[i] <= size[i] <= self.max[i] for i in (0, 1))

    def __str__(self) -> str:
        return f"{size_text(self.min)}..{size_text(self.max)} (opt {size_text(self.opt)})"

    def to_json(self) -> dict[str, list[int]]:
        return {"min": list(self.min), "opt": list(self.opt), "max": list(self.max)}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> "SizeRange":
        return cls(tuple(data["min"]), tuple(data["opt"]), tuple(data["max"]))


def size_text(size: tuple[int, int]) -> str:
    """(480, 640) -> "480x640"."""
    return f"{size[0]}x{size[1]}"


def _pair(value: Any) -> tuple[int, int]:
    if isinstance(value, int):
        return (value, value)
    h, w = value
    return (int(h), int(w))


def _resnet(depth: int) -> dict[str, Any]:
    blocks = {18: (2, 2, 2, 2), 34: (3, 4, 6, 3), 50: (3, 4, 6, 3), 101: (3, 4, 23, 3)}[depth]
    return {"backbone_blocks": blocks, "backbone_block": "basic" if depth < 50 else "bottleneck"}


# Released RT-DETRv2 sizes, checked against lyuwenyu/RT-DETR rtdetrv2_pytorch/configs/rtdetrv2/*.yml. The released
# v1 sizes (rtdetr_pytorch/configs/rtdetr/rtdetr_*_6x_coco.yml) have the same fields: pass version="v1".
PRESETS: dict[str, dict[str, Any]] = {
    "r18vd": {**_resnet(18), "hidden_expansion": 0.5, "decoder_layers": 3, "eval_idx": -1},
    "r34vd": {**_resnet(34), "hidden_expansion": 0.5, "decoder_layers": 4, "eval_idx": -1},
    "r50vd_m": {**_resnet(50), "hidden_expansion": 0.5, "decoder_layers": 6, "eval_idx": 2},
    "r50vd": {**_resnet(50), "hidden_expansion": 1.0, "decoder_layers": 6, "eval_idx": -1},
    "r101vd": {**_resnet(101), "hidden_expansion": 1.0, "decoder_layers": 6, "eval_idx": -1,
               "encoder_hidden_dim": 384, "encoder_ffn_dim": 2048},
    # Small enough for unit tests to run in a second; same code paths as the real sizes.
    "tiny": {"backbone_blocks": (1, 1, 1, 1), "backbone_block": "basic", "hidden_expansion": 0.5,
             "encoder_hidden_dim": 64, "encoder_heads": 4, "encoder_ffn_dim": 128, "d_model": 64,
             "decoder_heads": 4, "decoder_ffn_dim": 128, "decoder_layers": 2, "num_queries": 50,
             "image_size": (320, 320)},
}


def preset(name: str, **overrides: Any) -> ModelConfig:
    """The config of a named preset (``r18vd``, ``r50vd``, ..., ``tiny``), with optional overrides."""
    if name not in PRESETS:
        raise RTDetrExportError(f"unknown preset {name!r}; choose one of: {', '.join(PRESETS)}")
    return ModelConfig(**{**PRESETS[name], **overrides})
