"""transformers ``DFineForObjectDetection`` oracles with the architecture of our D-FINE presets.

The oracle is made well-conditioned exactly as the RT-DETRv2 ones are (conftest.perturb_: seeded noise on every
parameter, BatchNorm statistics calibrated on a separate batch, then jittered). transformers freezes the backbone's
BatchNorms by default (a module perturb_ cannot calibrate, which would leave HGNetv2's random activations
uncalibrated); the oracle is built with ordinary BatchNorms instead. Both compute ``(x - mean) / sqrt(var + 1e-5)
* weight + bias`` in eval mode and save the same keys, so what is tested (the folder's weights through our loader)
is unchanged. Weights transformers zero-initialises get unit-scale values first (``wake_zero_initialised_``), and
BatchNorm variances are floored afterwards (``VARIANCE_FLOOR``: why, below).
``up`` and ``reg_scale`` are parameters in transformers, so the noise moves them off 0.5 and 4 too.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import torch

from conftest import make_images, perturb_
from rtdetr_export.model.dfine_config import DFineConfig, dfine_preset


def hf_dfine_config(preset_name: str, method: str = "default", num_labels: int = 80):
    """A transformers ``DFineConfig`` with the architecture of our ``preset_name`` (``dfine_n`` ...)."""
    import transformers

    ours: DFineConfig = dfine_preset(preset_name)
    backbone = transformers.HGNetV2Config(
        stem_channels=list(ours.hgnet_stem_channels), stage_in_channels=list(ours.hgnet_stage_in_channels),
        stage_mid_channels=list(ours.hgnet_stage_mid_channels),
        stage_out_channels=list(ours.hgnet_stage_out_channels),
        stage_num_blocks=list(ours.hgnet_stage_num_blocks), stage_downsample=list(ours.hgnet_stage_downsample),
        stage_light_block=list(ours.hgnet_stage_light_block), stage_kernel_size=list(ours.hgnet_stage_kernel_size),
        stage_numb_of_layers=list(ours.hgnet_stage_layers), use_learnable_affine_block=ours.hgnet_use_lab,
        hidden_sizes=list(ours.hgnet_stage_out_channels), depths=list(ours.hgnet_stage_num_blocks),
        embedding_size=ours.hgnet_stem_channels[-1], out_indices=[i + 1 for i in ours.backbone_return_stages])
    return transformers.DFineConfig(
        backbone_config=backbone, freeze_backbone_batch_norms=False, num_labels=num_labels,
        decoder_method=method, encoder_in_channels=list(ours.backbone_out_channels),
        feat_strides=list(ours.feat_strides), encode_proj_layers=list(ours.encode_proj_layers),
        encoder_hidden_dim=ours.encoder_hidden_dim, encoder_ffn_dim=ours.encoder_ffn_dim,
        hidden_expansion=ours.hidden_expansion, depth_mult=ours.depth_mult, d_model=ours.d_model,
        decoder_in_channels=list(ours.resolved_decoder_in_channels), num_feature_levels=ours.num_feature_levels,
        decoder_n_points=list(ours.decoder_n_points), decoder_layers=ours.decoder_layers,
        decoder_ffn_dim=ours.decoder_ffn_dim, reg_scale=ours.reg_scale, eval_idx=ours.eval_idx)


# Weights transformers initialises to zero (or nearly: its box heads' last layers, the LQE's, the gates, the
# deformable offsets and weights). With only perturb_'s N(0, 0.02) noise on them, every edge distribution is
# nearly uniform, boxes stay at their initial estimate and FDR, LQE and the gates would barely be exercised.
ZERO_INITIALISED = re.compile(r"(bbox_embed\.\d+\.layers\.2|reg_conf\.layers\.1|gateway\.gate|sampling_offsets|"
                              r"attention_weights)\.weight$")


@torch.no_grad()
def wake_zero_initialised_(model: torch.nn.Module, seed: int) -> None:
    """Give ZERO_INITIALISED weights seeded N(0, 1 / fan_in) values: outputs of unit scale, peaked distributions."""
    g = torch.Generator().manual_seed(seed)
    for name, param in model.named_parameters():
        if ZERO_INITIALISED.search(name):
            param.copy_(torch.randn(param.shape, generator=g) / param.shape[1] ** 0.5)


def build_oracle(preset_name: str, calibration_size: tuple[int, int]) -> Any:
    """A perturbed transformers D-FINE (default sampler) in eval mode."""
    import transformers

    with torch.random.fork_rng():  # transformers' own init draws from the global generator
        torch.manual_seed(0)
        model = transformers.DFineForObjectDetection(hf_dfine_config(preset_name)).eval()
    wake_zero_initialised_(model, seed=4321)
    calibration = make_images(*calibration_size, seed=97)
    perturb_(model, seed=1234, calibration=calibration, forward=lambda x: model(pixel_values=x))
    floor_batchnorm_variance_(model, VARIANCE_FLOOR)
    with torch.no_grad():
        model.model.enc_score_head.weight.mul_(SELECTION_SPREAD)
    return model.eval()


# Query selection keeps the 300 best of D-FINE-N's 2000 encoder cells at 640x640; with transformers' init their
# scores lie so close that the 300th and 301st were 5e-6 to 1e-4 apart, under the comparator's tie margin (1e-4,
# conftest.TIE_EPS), so any harmless reordering of tied queries could not be told from a changed selection. Scaling
# the encoder score head widens every gap (and every rounding error, ~3e-6 -> ~3e-5) tenfold; the real-size tests
# also pick images whose gap clears the margin (test_dfine_parity.py).
SELECTION_SPREAD = 10.0


# HGNetv2 with transformers' init leaves many channels nearly dead after ReLU: calibrated variances down to 2e-4
# (median 0.065 in D-FINE-N). Normalising such a channel multiplies the float32 rounding of the sums behind it by up
# to ~70, so transformers itself strayed from its own float64 run by 1.7e-4 in encoder scores (1.1e-4 in logits,
# D-FINE-N at 256x320): two correct float32 implementations could not agree to 1e-4. With variances floored at 0.1
# the same measurement gives 2.9e-6 (scores) and 3.5e-6 (logits).
VARIANCE_FLOOR = 0.1


@torch.no_grad()
def floor_batchnorm_variance_(model: torch.nn.Module, floor: float) -> None:
    """Raise every BatchNorm running variance below ``floor`` to it (a gain of at most 1 / sqrt(floor))."""
    for module in model.modules():
        if isinstance(module, torch.nn.BatchNorm2d):
            module.running_var.clamp_(min=floor)


def save_oracle(model: Any, folder: Path) -> Path:
    """``save_pretrained`` into ``folder/model``; returns that folder."""
    model.save_pretrained(folder / "model")
    return folder / "model"
