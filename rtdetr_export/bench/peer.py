"""The natural alternative export path, run beside ours on the same weights: the peer row of a benchmark.

transformers' ``RTDetrV2ForObjectDetection`` (``DFineForObjectDetection`` for a D-FINE) -> ``torch.onnx.export``
(the TorchScript exporter, the same opset and dynamic batch axis as ours) -> onnxslim, as a user would do without
this tool. Both models come from one transformers folder (``save_pretrained``), so they compute the same function
and the report's parity numbers check that.

transformers is a test dependency, not a runtime one: importing this module without it raises
MissingDependencyError, and nothing else in the package imports it at module level.
"""

from __future__ import annotations

import contextlib
import copy
from importlib.metadata import version
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import onnx
import torch
from torch import nn

from rtdetr_export.backends.base import Runner
from rtdetr_export.errors import MissingDependencyError, RTDetrExportError
from rtdetr_export.model import Deimv2Config, DFineConfig, ModelConfig
from rtdetr_export.export.torch_export import simplify as slim, trace_to_onnx
from rtdetr_export.imaging.inputs import synthetic_images

try:
    import transformers
except ImportError:
    raise MissingDependencyError("the peer comparison needs transformers: pip install transformers") from None

PEER_OPSET = 17
DFINE_VARIANCE_FLOOR = 0.1  # random_transformers_model: the smallest BatchNorm variance of a D-FINE peer


def unsupported_reason(config: ModelConfig) -> str | None:
    """Why transformers cannot express ``config`` (None when it can)."""
    if config.eval_layer != config.decoder_layers - 1:
        return f"transformers always outputs the last decoder layer; this model outputs layer {config.eval_layer}"
    if isinstance(config, Deimv2Config):
        if config.share_bbox_head:
            # save_pretrained keeps the shared head under one index and from_pretrained leaves the shared module at
            # other values (transformers 5.25): the peer would not compute what the folder holds.
            return "transformers cannot read back a DEIMv2 with a shared FDR head (share_bbox_head: the Lite sizes " \
                   f"Atto, Femto, Pico) from its own folder; this model is {config.model_name}"
        if not (config.enc_output and config.query_pos_per_layer):
            return f"transformers' DEIMv2 cannot compute as the original code does (no enc_output, the query " \
                   f"position once); this model ({config.model_name}) is from an original checkpoint"
        if config.mlp_activation != "relu" or config.lqe_activation != "relu":
            return f"transformers' DEIMv2 has ReLU box and LQE heads; this model ({config.model_name}) has " \
                   f"{config.mlp_activation} / {config.lqe_activation}"
        return None
    if isinstance(config, DFineConfig):
        # transformers' D-FINE takes per-level point counts, but its MLP heads are ReLU only (no ``mlp_act``), and
        # a D-FINE folder says nothing of the variant: a DEIM-D-FINE saved there would load back as D-FINE.
        if config.variant != "D-FINE" or config.mlp_activation != "relu":
            return f"transformers' D-FINE has ReLU MLP heads; this model ({config.model_name}) has " \
                   f"{config.mlp_activation}"
        return None
    if len(set(config.decoder_n_points)) != 1:
        return "transformers has one point count for all levels; this model has " \
               f"{list(config.decoder_n_points)}"
    if config.csp_blocks != 3:
        return "transformers' CSP blocks have 3 RepVGG units"
    return None


def peer_class(config: Any) -> Any:
    """transformers' detector class for a transformers config (ours or one read from a folder)."""
    if isinstance(config, Deimv2Config) or getattr(config, "model_type", None) == "deimv2":
        return transformers.Deimv2ForObjectDetection
    if isinstance(config, DFineConfig) or getattr(config, "model_type", None) == "d_fine":
        return transformers.DFineForObjectDetection
    return transformers.RTDetrV2ForObjectDetection


def transformers_dfine_config(config: DFineConfig) -> Any:
    """A transformers ``DFineConfig`` (with its ``HGNetV2Config``) with the architecture of our ``config``.

    The backbone's BatchNorms are ordinary ones (``freeze_backbone_batch_norms=False``): the frozen kind computes
    the same in eval mode and saves the same keys, but random_transformers_model could not calibrate it.
    """
    backbone = transformers.HGNetV2Config(
        stem_channels=list(config.hgnet_stem_channels), stage_in_channels=list(config.hgnet_stage_in_channels),
        stage_mid_channels=list(config.hgnet_stage_mid_channels),
        stage_out_channels=list(config.hgnet_stage_out_channels),
        stage_num_blocks=list(config.hgnet_stage_num_blocks), stage_downsample=list(config.hgnet_stage_downsample),
        stage_light_block=list(config.hgnet_stage_light_block),
        stage_kernel_size=list(config.hgnet_stage_kernel_size), stage_numb_of_layers=list(config.hgnet_stage_layers),
        use_learnable_affine_block=config.hgnet_use_lab, hidden_sizes=list(config.hgnet_stage_out_channels),
        depths=list(config.hgnet_stage_num_blocks), embedding_size=config.hgnet_stem_channels[-1],
        out_indices=[i + 1 for i in config.backbone_return_stages])  # transformers counts the stem as stage 0
    return transformers.DFineConfig(
        backbone_config=backbone, freeze_backbone_batch_norms=False, id2label=dict(enumerate(config.class_names)),
        encoder_in_channels=list(config.backbone_out_channels), feat_strides=list(config.feat_strides),
        encoder_hidden_dim=config.encoder_hidden_dim, encoder_layers=config.encoder_layers,
        encoder_attention_heads=config.encoder_heads, encoder_ffn_dim=config.encoder_ffn_dim,
        encoder_activation_function=config.encoder_activation, encode_proj_layers=list(config.encode_proj_layers),
        positional_encoding_temperature=int(config.pe_temperature), normalize_before=config.normalize_before,
        hidden_expansion=config.hidden_expansion, activation_function=config.activation,
        depth_mult=config.depth_mult, d_model=config.d_model,
        decoder_in_channels=list(config.resolved_decoder_in_channels), num_queries=config.num_queries,
        decoder_layers=config.decoder_layers, decoder_attention_heads=config.decoder_heads,
        decoder_ffn_dim=config.decoder_ffn_dim, decoder_activation_function=config.decoder_activation,
        num_feature_levels=config.num_feature_levels, decoder_n_points=list(config.decoder_n_points),
        decoder_offset_scale=config.decoder_offset_scale, decoder_method=config.decoder_method,
        eval_idx=config.eval_idx, num_denoising=config.num_denoising, anchor_image_size=list(config.image_size),
        layer_scale=config.layer_scale, max_num_bins=config.max_num_bins, reg_scale=config.reg_scale, up=config.up,
        top_prob_values=config.top_prob_values, lqe_hidden_dim=config.lqe_hidden_dim, lqe_layers=config.lqe_layers,
        layer_norm_eps=config.layer_norm_eps, batch_norm_eps=config.batch_norm_eps)


def transformers_deimv2_config(config: Deimv2Config) -> Any:
    """A transformers ``Deimv2Config`` with the architecture of our ``config``: D-FINE's fields (the same
    ``HGNetV2Config``) plus DEIMv2's encoder type, gate and shared-head switches."""
    dfine = transformers_dfine_config(config).to_dict()
    fields = {key: dfine[key] for key in dfine if key not in ("model_type", "transformers_version", "architectures")}
    return transformers.Deimv2Config(**{
        **fields, "backbone_config": transformers_dfine_config(config).backbone_config,
        "encoder_type": config.encoder_type, "use_gateway": config.use_gateway,
        "share_bbox_head": config.share_bbox_head,
        # the Lite encoder has no AIFI; transformers reads encode_proj_layers only when encoder_layers > 0
        "encode_proj_layers": list(config.encode_proj_layers) or [0]})


def transformers_config(config: ModelConfig) -> Any:
    """A transformers ``RTDetrV2Config`` (``DFineConfig`` for a D-FINE) with the architecture of our ``config``."""
    reason = unsupported_reason(config)
    if reason:
        raise RTDetrExportError(f"no transformers equivalent: {reason}")
    if isinstance(config, Deimv2Config):
        return transformers_deimv2_config(config)
    if isinstance(config, DFineConfig):
        return transformers_dfine_config(config)
    expansion = config.backbone_expansion
    backbone = transformers.RTDetrResNetConfig(
        depths=list(config.backbone_blocks), hidden_sizes=[w * expansion for w in config.backbone_widths],
        layer_type=config.backbone_block, embedding_size=config.backbone_stem_channels,
        hidden_act=config.backbone_activation, out_indices=[s + 1 for s in config.backbone_return_stages])
    return transformers.RTDetrV2Config(
        backbone_config=backbone, id2label=dict(enumerate(config.class_names)),
        encoder_in_channels=list(config.backbone_out_channels), feat_strides=list(config.feat_strides),
        encoder_hidden_dim=config.encoder_hidden_dim, encoder_layers=config.encoder_layers,
        encoder_attention_heads=config.encoder_heads, encoder_ffn_dim=config.encoder_ffn_dim,
        encoder_activation_function=config.encoder_activation, encode_proj_layers=list(config.encode_proj_layers),
        positional_encoding_temperature=int(config.pe_temperature), normalize_before=config.normalize_before,
        hidden_expansion=config.hidden_expansion, activation_function=config.activation, d_model=config.d_model,
        decoder_in_channels=list(config.resolved_decoder_in_channels), num_queries=config.num_queries,
        decoder_layers=config.decoder_layers, decoder_attention_heads=config.decoder_heads,
        decoder_ffn_dim=config.decoder_ffn_dim, decoder_activation_function=config.decoder_activation,
        num_feature_levels=config.num_feature_levels, decoder_n_levels=config.num_feature_levels,
        decoder_n_points=config.decoder_n_points[0], decoder_offset_scale=config.decoder_offset_scale,
        decoder_method=config.decoder_method, learn_initial_query=config.learn_initial_query,
        num_denoising=config.num_denoising, anchor_image_size=list(config.image_size),
        layer_norm_eps=config.layer_norm_eps, batch_norm_eps=config.batch_norm_eps)


@torch.no_grad()
def random_transformers_model(config: ModelConfig, seed: int = 1234) -> Any:
    """A transformers model with well-conditioned seeded random weights (as the tests' oracles have).

    transformers' own init ties class scores (query selection would be arbitrary), so every parameter gets
    N(0, 0.02) noise, BatchNorm statistics are calibrated on a synthetic batch, then jittered. D-FINE's
    zero-initialised weight matrices (the last layers of its box and LQE heads, the gates, the sampling offsets
    and weights) first get N(0, 1 / fan_in): with the noise alone every edge distribution would be nearly uniform
    and FDR, LQE and the gates would barely change the outputs the parity rows compare.
    """
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        model = peer_class(config)(transformers_config(config)).eval()
    g = torch.Generator().manual_seed(seed)
    if isinstance(config, DFineConfig):
        for param in model.parameters():
            if param.dim() == 2 and not param.any():
                param.copy_(torch.randn(param.shape, generator=g) / param.shape[1] ** 0.5)
    for param in model.parameters():
        param.add_(0.02 * torch.randn(param.shape, generator=g))
    norms = [m for m in model.modules() if isinstance(m, nn.BatchNorm2d)]
    for m in norms:
        m.reset_running_stats()
        m.momentum = None  # cumulative average: after one batch the statistics are that batch's
        m.train()
    calibration = torch.from_numpy(synthetic_images(2, config.image_size, seed=97))
    model(pixel_values=calibration)
    for m in norms:
        m.momentum = 0.1
        m.eval()
        m.running_var.mul_(0.5 + torch.rand(m.running_var.shape, generator=g))
        m.running_mean.add_(0.1 * m.running_var.sqrt() * torch.randn(m.running_mean.shape, generator=g))
        if isinstance(config, DFineConfig):
            # HGNetv2 leaves channels nearly dead after ReLU (calibrated variances down to ~2e-4); normalising one
            # multiplies the float32 rounding behind it ~70-fold, past the FP32 parity limit between two correct
            # runs of the same weights. Floored at 0.1, the gain is at most ~3.
            m.running_var.clamp_(min=DFINE_VARIANCE_FLOOR)
    return model.eval()


@contextlib.contextmanager
def _no_progress_bars() -> Iterator[None]:
    # transformers draws progress bars on stderr; progress is ours to print (or not, with --quiet).
    hf_logging = transformers.utils.logging
    was_enabled = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        if was_enabled:
            hf_logging.enable_progress_bar()


def save_transformers_model(model: Any, folder: str | Path) -> Path:
    """``save_pretrained`` into ``folder``; returns it."""
    with _no_progress_bars():
        model.save_pretrained(str(folder))
    return Path(folder)


def load_transformers_model(folder: str | Path, method: str | None = None) -> Any:
    """``RTDetrV2ForObjectDetection.from_pretrained(folder)`` (``DFineForObjectDetection`` for a D-FINE folder) in
    eval mode, with sampler ``method`` if given.

    The sampler is not a weight: the folder's config names one, and the peer must run the one ours runs.
    """
    overrides = {"decoder_method": method} if method else {}
    try:
        with _no_progress_bars():
            detector = peer_class(transformers.AutoConfig.from_pretrained(str(folder)))
            return detector.from_pretrained(str(folder), **overrides).eval()
    except (OSError, ValueError) as exc:
        raise RTDetrExportError(f"{folder}: transformers cannot load it ({str(exc).splitlines()[0][:160]})") \
            from None


class _RawOutputs(nn.Module):
    """transformers' output object -> (logits, pred_boxes), the raw head's contract."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        out = self.model(pixel_values=images)
        return out.logits, out.pred_boxes


def export_peer_onnx(model: Any, output: str | Path, image_size: tuple[int, int], opset: int = PEER_OPSET,
                     dynamic_batch: bool = True, simplify: bool = True) -> dict[str, Any]:
    """Export the transformers model the plain way; returns what was done (exporter, simplifier, nodes)."""
    module = _RawOutputs(copy.deepcopy(model)).eval()
    images = torch.rand(2 if dynamic_batch else 1, 3, *image_size, generator=torch.Generator().manual_seed(0))
    graph = trace_to_onnx(module, (images,), ["images"], ["logits", "pred_boxes"], opset, dynamic_batch)
    simplifier = None
    if simplify:
        graph, simplifier = slim(graph)
    onnx.save(graph, str(output))
    return {"path": str(output), "exporter": "torch.onnx (TorchScript)", "opset": opset, "simplifier": simplifier,
            "dynamic_batch": dynamic_batch, "nodes": len(graph.graph.node),
            "transformers": version("transformers")}


class TransformersRunner(Runner):
    """transformers' model run eagerly in PyTorch (the peer's PyTorch row), raw head outputs."""

    name = "transformers"

    def __init__(self, model: Any, device: str = "cpu", precision: str = "fp32"):
        self.model, self.device, self.precision = model, device, precision
        self.dtype = {"fp32": torch.float32, "fp16": torch.float16}[precision]

    def activate(self) -> None:
        self.model.to(self.device, self.dtype)

    @torch.no_grad()
    def infer(self, feed: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        images = torch.from_numpy(np.ascontiguousarray(feed["images"])).to(self.device, self.dtype)
        out = self.model(pixel_values=images)
        return {"logits": out.logits.float().cpu().numpy(), "pred_boxes": out.pred_boxes.float().cpu().numpy()}
