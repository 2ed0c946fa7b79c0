"""The original DEIMv2 (HGNetv2 sizes), built from its own code (tests/fixtures/upstream/deimv2_engine/).

Constructor arguments are those of the released configs, written out here from Intellindust-AI-Lab/DEIMv2's YAML
files (not from our presets, so a wrong preset cannot agree with itself): ``configs/deimv2/deimv2_hgnetv2_n_coco.yml``
and ``deimv2_hgnetv2_{pico,femto,atto}_coco.yml`` over ``configs/base/deimv2.yml``. The random init is made well-conditioned as
the D-FINE / DEIM oracles' is (``upstream_dfine._condition``), with DEIMv2's own zero-initialised weights woken too.
"""

from __future__ import annotations

import re
import torch

import upstream_dfine
from upstream_dfine import UPSTREAM, _condition

# configs/base/deimv2.yml: what every size inherits (HybridEncoder and DEIMTransformer sections).
_BASE_ENCODER = dict(in_channels=[512, 1024, 2048], feat_strides=[8, 16, 32], hidden_dim=256, use_encoder_idx=[2],
                     num_encoder_layers=1, nhead=8, dim_feedforward=1024, dropout=0.0, enc_act="gelu", expansion=1.0,
                     depth_mult=1, act="silu", version="deim", csp_type="csp2", fuse_op="sum")
_BASE_DECODER = dict(feat_channels=[256, 256, 256], feat_strides=[8, 16, 32], hidden_dim=256, num_levels=3,
                     num_layers=6, eval_idx=-1, num_queries=300, num_denoising=100, label_noise_ratio=0.5,
                     box_noise_scale=1.0, reg_max=32, reg_scale=4, layer_scale=1, num_points=[3, 6, 3],
                     query_select_method="default", activation="silu", mlp_act="silu", dim_feedforward=2048)
# Per released size: (encoder class, HGNetv2 kwargs, encoder kwargs, DEIMTransformer kwargs), as the YAML sets them.
SIZES: dict[str, tuple[str, dict, dict, dict]] = {
    "N": ("HybridEncoder",
          dict(name="B0", return_idx=[2, 3], freeze_at=-1, freeze_norm=False, use_lab=True),
          {**_BASE_ENCODER, "in_channels": [512, 1024], "feat_strides": [16, 32], "hidden_dim": 128,
           "use_encoder_idx": [1], "dim_feedforward": 512, "expansion": 0.34, "depth_mult": 0.5, "version": "dfine"},
          {**_BASE_DECODER, "feat_channels": [128, 128], "feat_strides": [16, 32], "hidden_dim": 128, "num_levels": 2,
           "num_points": [6, 6], "num_layers": 3, "dim_feedforward": 512}),
    # The Lite encoder's section names only its own arguments (LiteEncoder takes none of HybridEncoder's others).
    "Pico": ("LiteEncoder",
             dict(name="Pico", return_idx=[2], freeze_at=-1, freeze_norm=False, use_lab=True),
             dict(in_channels=[512], feat_strides=[16], hidden_dim=112, expansion=0.34, depth_mult=0.5, act="silu"),
             {**_BASE_DECODER, "feat_channels": [112, 112], "feat_strides": [16, 32], "hidden_dim": 112,
              "num_levels": 2, "num_points": [4, 2], "num_layers": 3, "num_queries": 200, "dim_feedforward": 320,
              "share_bbox_head": True, "use_gateway": False}),
    "Femto": ("LiteEncoder",
              dict(name="Femto", return_idx=[2], freeze_at=-1, freeze_norm=False, use_lab=True),
              dict(in_channels=[512], feat_strides=[16], hidden_dim=96, expansion=0.34, depth_mult=0.5, act="silu"),
              {**_BASE_DECODER, "feat_channels": [96, 96], "feat_strides": [16, 32], "hidden_dim": 96,
               "num_levels": 2, "num_points": [4, 2], "num_layers": 3, "num_queries": 150, "dim_feedforward": 256,
               "share_bbox_head": True, "use_gateway": False}),
    "Atto": ("LiteEncoder",
             dict(name="Atto", return_idx=[2], freeze_at=-1, freeze_norm=False, use_lab=True),
             dict(in_channels=[256], feat_strides=[16], hidden_dim=64, expansion=0.34, depth_mult=0.5, act="silu"),
             {**_BASE_DECODER, "feat_channels": [64, 64], "feat_strides": [16, 32], "hidden_dim": 64,
              "num_levels": 2, "num_points": [4, 2], "num_layers": 3, "num_queries": 100, "dim_feedforward": 160,
              "share_bbox_head": True, "use_gateway": False}),
}

# DEIMv2's zero-initialised weights beyond D-FINE's: the pre-box head's and encoder box head's last layers.
_ALSO_ZERO = re.compile(r"(pre_bbox_head\.layers\.2|enc_bbox_head\.layers\.2)\.weight$")


def build_upstream_deimv2(size: str, image_size: int, method: str = "default", num_classes: int = 80
                          ) -> torch.nn.Module:
    """The original DEIMv2 of a released ``size`` ("N", "Pico", "Femto", "Atto"), perturbed, in eval mode."""
    import sys
    if str(UPSTREAM) not in sys.path:
        sys.path.insert(0, str(UPSTREAM))
    from deimv2_engine.backbone.hgnetv2 import HGNetv2
    from deimv2_engine.deim.deim import DEIM
    from deimv2_engine.deim.deim_decoder import DEIMTransformer
    from deimv2_engine.deim.hybrid_encoder import HybridEncoder
    from deimv2_engine.deim.lite_encoder import LiteEncoder

    encoder_cls, backbone_kw, encoder_kw, decoder_kw = SIZES[size]
    encoder = {"HybridEncoder": HybridEncoder, "LiteEncoder": LiteEncoder}[encoder_cls]
    eval_size = [image_size, image_size]
    with torch.random.fork_rng():  # the original init draws from the global generator
        torch.manual_seed(0)
        model = DEIM(HGNetv2(**backbone_kw, pretrained=False),
                     encoder(**encoder_kw, eval_spatial_size=eval_size),
                     DEIMTransformer(**{**decoder_kw, "feat_strides": list(decoder_kw["feat_strides"])},
                                     num_classes=num_classes, cross_attn_method=method,
                                     eval_spatial_size=eval_size))
    g = torch.Generator().manual_seed(1234)
    with torch.no_grad():
        for name, param in model.named_parameters():
            if _ALSO_ZERO.search(name):
                param.copy_(torch.randn(param.shape, generator=g) / param.shape[1] ** 0.5)
    return _condition(model, image_size)


solver_checkpoint = upstream_dfine.solver_checkpoint
run_upstream = upstream_dfine.run_upstream
