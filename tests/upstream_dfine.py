"""The original D-FINE and DEIM models, built from their own code (tests/fixtures/upstream/, vendored unchanged).

Constructor arguments are those of the released configs, written out here from the upstream YAML files (not from
our presets, so a wrong preset cannot agree with itself): Peterande/D-FINE
``configs/dfine/dfine_hgnetv2_{n,s}_coco.yml`` over ``include/dfine_hgnetv2.yml``; DEIM's ``configs/deim_dfine/deim_hgnetv2_{n,s}_coco.yml`` adds
``configs/base/deim.yml`` (``activation: silu``, ``mlp_act: silu``; unfrozen backbone BatchNorms). The random
init is made well-conditioned much as the transformers oracle's is (dfine_oracle.py): zero-initialised heads get
unit-scale weights, parameters get seeded noise, BatchNorm statistics are calibrated (not jittered: see
``calibrate_batchnorm_``) and floored, encoder scores are spread so the query selection has no near-ties.
"""

from __future__ import annotations

import re
import sys
from typing import Any

import torch

from conftest import DetectorOutputs, make_images
from dfine_oracle import SELECTION_SPREAD, VARIANCE_FLOOR, floor_batchnorm_variance_
from paths import TESTS
from rtdetr_export.model.query_selection import select_topk

UPSTREAM = TESTS / "fixtures" / "upstream"

# Per released size: (HGNetv2 kwargs, HybridEncoder kwargs, DFINETransformer kwargs), as the YAML sets them.
_BASE_ENCODER = dict(feat_strides=[8, 16, 32], hidden_dim=256, use_encoder_idx=[2], num_encoder_layers=1, nhead=8,
                     dim_feedforward=1024, dropout=0.0, enc_act="gelu", expansion=1.0, depth_mult=1, act="silu")
_BASE_DECODER = dict(feat_channels=[256, 256, 256], feat_strides=[8, 16, 32], hidden_dim=256, num_levels=3,
                     num_layers=6, eval_idx=-1, num_queries=300, num_denoising=100, label_noise_ratio=0.5,
                     box_noise_scale=1.0, reg_max=32, reg_scale=4, layer_scale=1, num_points=[3, 6, 3],
                     query_select_method="default")
SIZES: dict[str, tuple[dict, dict, dict]] = {
    "S": (dict(name="B0", return_idx=[1, 2, 3], freeze_at=-1, freeze_norm=False, use_lab=True),
          {**_BASE_ENCODER, "in_channels": [256, 512, 1024], "depth_mult": 0.34, "expansion": 0.5},
          {**_BASE_DECODER, "num_layers": 3}),
    "N": (dict(name="B0", return_idx=[2, 3], freeze_at=-1, freeze_norm=False, use_lab=True),
          {**_BASE_ENCODER, "in_channels": [512, 1024], "feat_strides": [16, 32], "hidden_dim": 128,
           "use_encoder_idx": [1], "dim_feedforward": 512, "expansion": 0.34, "depth_mult": 0.5},
          {**_BASE_DECODER, "feat_channels": [128, 128], "feat_strides": [16, 32], "hidden_dim": 128,
           "dim_feedforward": 512, "num_levels": 2, "num_layers": 3, "num_points": [6, 6]}),
}
DEIM_DECODER = dict(activation="silu", mlp_act="silu")  # configs/base/deim.yml

# Weights the original initialises to zero: with only small noise every edge distribution is nearly uniform and
# the gates, LQE and sampling offsets would barely be exercised.
ZERO_INITIALISED = re.compile(r"(dec_bbox_head\.\d+\.layers\.2|reg_conf\.layers\.1|gateway\.gate|"
                              r"sampling_offsets|attention_weights)\.weight$")


def _modules(deim: bool) -> tuple[Any, Any, Any, Any]:
    if str(UPSTREAM) not in sys.path:
        sys.path.insert(0, str(UPSTREAM))
    if deim:
        from deim_engine.backbone.hgnetv2 import HGNetv2
        from deim_engine.deim.deim import DEIM as Detector
        from deim_engine.deim.dfine_decoder import DFINETransformer
        from deim_engine.deim.hybrid_encoder import HybridEncoder
    else:
        from dfine_src.nn.backbone.hgnetv2 import HGNetv2
        from dfine_src.zoo.dfine.dfine import DFINE as Detector
        from dfine_src.zoo.dfine.dfine_decoder import DFINETransformer
        from dfine_src.zoo.dfine.hybrid_encoder import HybridEncoder
    return HGNetv2, HybridEncoder, DFINETransformer, Detector


def build_upstream(size: str, image_size: int, deim: bool = False, method: str = "default",
                   num_classes: int = 80) -> torch.nn.Module:
    """The original D-FINE (or DEIM-D-FINE) of a released ``size`` ("N", "S"), perturbed, in eval mode."""
    HGNetv2, HybridEncoder, DFINETransformer, Detector = _modules(deim)
    backbone_kw, encoder_kw, decoder_kw = SIZES[size]
    eval_size = [image_size, image_size]
    with torch.random.fork_rng():  # the original init draws from the global generator
        torch.manual_seed(0)
        model = Detector(
            HGNetv2(**backbone_kw, pretrained=False),
            HybridEncoder(**encoder_kw, eval_spatial_size=eval_size),
            DFINETransformer(**decoder_kw, **(DEIM_DECODER if deim else {}), num_classes=num_classes,
                             cross_attn_method=method, eval_spatial_size=eval_size))
    return _condition(model, image_size)


def _condition(model: torch.nn.Module, image_size: int) -> torch.nn.Module:
    """Wake zero-initialised heads, add seeded noise, calibrate and floor BatchNorms, spread encoder scores."""
    model.eval()
    g = torch.Generator().manual_seed(4321)
    with torch.no_grad():
        for name, param in model.named_parameters():
            if ZERO_INITIALISED.search(name):
                param.copy_(torch.randn(param.shape, generator=g) / param.shape[1] ** 0.5)
            elif param.is_floating_point():  # the original keeps reg_scale as an integer parameter
                param.add_(0.02 * torch.randn(param.shape, generator=g))
        calibrate_batchnorm_(model, make_images(image_size, seed=97))
        floor_batchnorm_variance_(model, VARIANCE_FLOOR)
        model.decoder.enc_score_head.weight.mul_(SELECTION_SPREAD)
    return model.eval()


@torch.no_grad()
def calibrate_batchnorm_(model: torch.nn.Module, calibration: torch.Tensor) -> None:
    """Every BatchNorm's running statistics := its input's statistics on ``calibration`` (one forward).

    Unlike conftest.perturb_, the statistics are not jittered afterwards: with this code's init the jitter
    compounds through the ~80 BatchNorms of HGNetv2 and the encoder (encoder outputs up to 48 instead of 4), and the
    float32 rounding of BatchNorm folding then moved query-selection scores by 6e-4, reordering queries that are
    not tied; without it the encoder outputs stay under 4.
    """
    norms = [m for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    for m in norms:
        m.reset_running_stats()
        m.momentum = None  # cumulative average: after one batch, the batch's statistics
        m.train()
    model(calibration)
    for m in norms:
        m.momentum = 0.1
        m.eval()


# DEIM-RT-DETRv2 r18vd: configs/deim_rtdetrv2/deim_r18vd_120e_coco.yml over rtdetrv2_r18vd_120e_coco.yml,
# ../base/rtdetrv2_r50vd.yml (``version: rt_detrv2`` encoder) and ../base/rt_deim.yml (as_reg, SiLU, unfrozen norms).
DEIM_RTDETRV2_R18 = (
    dict(depth=18, variant="d", return_idx=[1, 2, 3], num_stages=4, freeze_at=-1, freeze_norm=False),
    {**_BASE_ENCODER, "in_channels": [128, 256, 512], "expansion": 0.5, "version": "rt_detrv2"},
    dict(feat_channels=[256, 256, 256], feat_strides=[8, 16, 32], hidden_dim=256, num_levels=3, num_layers=3,
         num_queries=300, num_denoising=100, label_noise_ratio=0.5, box_noise_scale=1.0, eval_idx=-1,
         num_points=[4, 4, 4], query_select_method="default", query_pos_method="as_reg", activation="silu",
         mlp_act="silu"))


def build_upstream_deim_rtdetrv2(image_size: int, num_classes: int = 80) -> torch.nn.Module:
    """DEIM's RT-DETRv2 (r18vd), perturbed as ``build_upstream``'s models, in eval mode."""
    _modules(True)
    from deim_engine.backbone.presnet import PResNet
    from deim_engine.deim.deim import DEIM
    from deim_engine.deim.hybrid_encoder import HybridEncoder
    from deim_engine.deim.rtdetrv2_decoder import RTDETRTransformerv2

    backbone_kw, encoder_kw, decoder_kw = DEIM_RTDETRV2_R18
    eval_size = [image_size, image_size]
    with torch.random.fork_rng():
        torch.manual_seed(0)
        model = DEIM(PResNet(**backbone_kw, pretrained=False),
                     HybridEncoder(**encoder_kw, eval_spatial_size=eval_size),
                     RTDETRTransformerv2(**decoder_kw, num_classes=num_classes, eval_spatial_size=eval_size))
    return _condition(model, image_size)


def solver_checkpoint(model: torch.nn.Module) -> dict[str, Any]:
    """What the original solvers' ``state_dict()`` writes (``BaseSolver.state_dict``, ``ModelEMA.state_dict``)."""
    state = model.state_dict()
    return {"date": "2025-01-01T00:00:00", "last_epoch": 71, "model": state,
            "ema": {"module": state, "updates": 1000}}


@torch.no_grad()
def run_upstream(model: torch.nn.Module, images: torch.Tensor) -> DetectorOutputs:
    """The original model's outputs plus the encoder scores its query selection used (as conftest.run_ours)."""
    captured = {}
    handle = model.decoder.enc_score_head.register_forward_hook(lambda mod, inp, out: captured.update(enc=out))
    try:
        out = model(images)
    finally:
        handle.remove()
    logits, boxes = out["pred_logits"], out["pred_boxes"]
    best = captured["enc"].max(-1).values
    topk = select_topk(captured["enc"], logits.shape[1])
    return DetectorOutputs(logits, boxes, best.gather(1, topk), best)
