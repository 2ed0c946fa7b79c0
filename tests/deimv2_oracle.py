"""transformers ``Deimv2ForObjectDetection`` oracles with the architecture of our DEIMv2 presets.

Made well-conditioned exactly as the D-FINE oracles are (tests/dfine_oracle.py: ordinary BatchNorms in the backbone,
zero-initialised weights woken, perturb_'s seeded noise and calibrated statistics, variances floored, the encoder
score head's spread widened), with DEIMv2's own zero-initialised weights woken too.
"""

from __future__ import annotations

import re
from typing import Any

import torch

from conftest import make_images, perturb_
from dfine_oracle import SELECTION_SPREAD, VARIANCE_FLOOR, floor_batchnorm_variance_
from rtdetr_export.model.deimv2_config import Deimv2Config, deimv2_preset

# transformers zero-initialises these (box heads' last layers, LQE's, the gates, deformable offsets and weights,
# the SwiGLU biases): without unit-scale values FDR, LQE and the gates would barely be exercised.
ZERO_INITIALISED = re.compile(r"(bbox_embed\.\d+\.layers\.2|reg_conf\.layers\.1|gateway\.gate|sampling_offsets|"
                              r"attention_weights|pre_bbox_head\.layers\.2|enc_bbox_head\.layers\.2)\.weight$")


def hf_deimv2_config(ours: Deimv2Config, method: str = "default", num_labels: int = 80):
    """A transformers ``Deimv2Config`` (with its ``HGNetV2Config``) with the architecture of our ``ours``."""
    import transformers

    backbone = transformers.HGNetV2Config(
        stem_channels=list(ours.hgnet_stem_channels), stage_in_channels=list(ours.hgnet_stage_in_channels),
        stage_mid_channels=list(ours.hgnet_stage_mid_channels),
        stage_out_channels=list(ours.hgnet_stage_out_channels),
        stage_num_blocks=list(ours.hgnet_stage_num_blocks), stage_downsample=list(ours.hgnet_stage_downsample),
        stage_light_block=list(ours.hgnet_stage_light_block), stage_kernel_size=list(ours.hgnet_stage_kernel_size),
        stage_numb_of_layers=list(ours.hgnet_stage_layers), use_learnable_affine_block=ours.hgnet_use_lab,
        hidden_sizes=list(ours.hgnet_stage_out_channels), depths=list(ours.hgnet_stage_num_blocks),
        embedding_size=ours.hgnet_stem_channels[-1],
        stage_names=["stem"] + [f"stage{i + 1}" for i in range(len(ours.hgnet_stage_in_channels))],
        out_indices=[i + 1 for i in ours.backbone_return_stages])
    return transformers.Deimv2Config(
        backbone_config=backbone, freeze_backbone_batch_norms=False, num_labels=num_labels,
        decoder_method=method, encoder_type=ours.encoder_type, encoder_in_channels=list(ours.backbone_out_channels),
        feat_strides=list(ours.feat_strides), encode_proj_layers=list(ours.encode_proj_layers) or [0],
        encoder_layers=ours.encoder_layers, encoder_hidden_dim=ours.encoder_hidden_dim,
        encoder_attention_heads=ours.encoder_heads, decoder_attention_heads=ours.decoder_heads,
        encoder_ffn_dim=ours.encoder_ffn_dim, hidden_expansion=ours.hidden_expansion, depth_mult=ours.depth_mult,
        d_model=ours.d_model, decoder_in_channels=list(ours.resolved_decoder_in_channels),
        num_feature_levels=ours.num_feature_levels, decoder_n_points=list(ours.decoder_n_points),
        decoder_layers=ours.decoder_layers, decoder_ffn_dim=ours.decoder_ffn_dim, num_queries=ours.num_queries,
        decoder_activation_function=ours.decoder_activation, reg_scale=ours.reg_scale, eval_idx=ours.eval_idx,
        use_gateway=ours.use_gateway, share_bbox_head=ours.share_bbox_head)


@torch.no_grad()
def wake_zero_initialised_(model: torch.nn.Module, seed: int) -> None:
    """Give ZERO_INITIALISED weights seeded N(0, 1 / fan_in) values: outputs of unit scale, peaked distributions."""
    g = torch.Generator().manual_seed(seed)
    for name, param in model.named_parameters():
        if ZERO_INITIALISED.search(name):
            param.copy_(torch.randn(param.shape, generator=g) / param.shape[1] ** 0.5)


def build_oracle(ours: Deimv2Config | str, calibration_size: tuple[int, int]) -> Any:
    """A perturbed transformers DEIMv2 (default sampler) in eval mode, for our config (or preset name)."""
    import transformers

    ours = deimv2_preset(ours) if isinstance(ours, str) else ours
    with torch.random.fork_rng():  # transformers' own init draws from the global generator
        torch.manual_seed(0)
        model = transformers.Deimv2ForObjectDetection(hf_deimv2_config(ours)).eval()
    wake_zero_initialised_(model, seed=4321)
    calibration = make_images(*calibration_size, seed=97)
    perturb_(model, seed=1234, calibration=calibration, forward=lambda x: model(pixel_values=x))
    floor_batchnorm_variance_(model, VARIANCE_FLOOR)
    with torch.no_grad():
        model.model.enc_score_head.weight.mul_(SELECTION_SPREAD)
    return model.eval()
