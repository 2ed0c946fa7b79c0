"""The assembled RT-DETRv2 detector: backbone -> hybrid encoder -> decoder."""

from __future__ import annotations

import contextlib
from typing import Iterator, Sequence

import torch
from torch import nn

from rtdetr_export.model.backbone import ResNetVd
from rtdetr_export.model.config import ModelConfig
from rtdetr_export.model.decoder import RTDETRDecoder
from rtdetr_export.model.deformable_attention import LocationObserver, MSDeformableAttention
from rtdetr_export.model.fdr import LQE
from rtdetr_export.model.hybrid_encoder import HybridEncoder
from rtdetr_export.model.query_selection import SelectionObserver
from rtdetr_export.model.sampler import Sampler
from rtdetr_export.model.source import IN_MEMORY, WeightSource


class RTDETRv2(nn.Module):
    """RT-DETRv2 for inference. ``forward(images)`` -> (logits [B, Q, C], boxes [B, Q, 4] cxcywh in [0, 1]).

    ``images`` are RGB in [0, 1], NCHW float32. The state_dict uses the original repository's key names,
    so an original checkpoint loads without renaming. ``source`` says where the weights came from (the loaders
    set it; a model built here and given a state dict is "in-memory").
    """

    def __init__(self, config: ModelConfig, source: WeightSource = IN_MEMORY):
        super().__init__()
        self.config = config
        self.source = source
        self.backbone = ResNetVd(config)
        self.encoder = HybridEncoder(config)
        self.decoder = RTDETRDecoder(config)
        self.set_image_size(*config.image_size)
        self.eval()

    @property
    def image_size(self) -> tuple[int, int]:
        return self.config.image_size

    def set_image_size(self, height: int, width: int) -> None:
        """Rebuild the constants (anchors, position embeddings) that depend on the input size."""
        self.config = self.config.replace(image_size=(height, width))
        self.encoder.set_image_size(height, width)
        self.decoder.set_image_size(height, width)

    def compute_sizes_in_graph(self, enabled: bool = True) -> None:
        """Compute anchors, the valid mask and AIFI's position embedding from the feature-map shapes on every run
        instead of using the constants built for ``image_size``: what a dynamic-size export traces. The same
        numbers at any size (the embedding in float32, ~1e-6 from the float64 table); a static export never sets it."""
        for module in (self.decoder, *self.encoder.encoder):  # the decoder's anchors, each AIFI's embedding
            module.sizes_in_graph = enabled

    @property
    def sampler(self) -> Sampler:
        """What the decoder reads sampling points with (model/sampler.py): the reference reads bilinearly with
        GridSample, or nearest cells for ``discrete``, until an export writes it otherwise."""
        layers = [m for m in self.decoder.modules() if isinstance(m, MSDeformableAttention)]
        return layers[0].sampler if layers else Sampler.reference(self.config.decoder_method)

    def set_sampler(self, sampler: Sampler) -> None:
        """Write bilinear sampling with GridSample or with Gather and arithmetic: the same math, so this changes
        the exported graph's ops, not what the model computes (a ``discrete`` model takes only gather-nearest)."""
        for layer in self.decoder.modules():
            if isinstance(layer, MSDeformableAttention):
                layer.set_sampler(sampler)

    def set_rank4_layout(self, enabled: bool = True) -> None:
        """Write the gridsample-bilinear cross-attention with tensors of at most 4 dimensions, batch leading
        (``MSDeformableAttention.forward_rank4``): the same numbers, one GridSample per head and level, for
        runtimes that hold no more dimensions (ncnn). Only exports change it; other samplers ignore it."""
        for layer in self.decoder.modules():
            if isinstance(layer, MSDeformableAttention):
                layer.rank4_layout = enabled

    def set_topk_free_heads(self, enabled: bool = True) -> None:
        """Write the heads after query selection with no TopK: D-FINE's LQE takes each edge distribution's top
        probabilities with Max/Min (``fdr.top_values``, the same numbers exactly); RT-DETRv2 has no such head. Only
        the split export sets it (its graph 2 holds no TopK); query selection itself is not changed."""
        for module in self.decoder.modules():
            if isinstance(module, LQE):
                module.topk_free = enabled

    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.decoder(self.encoder(self.backbone(images)))

    @contextlib.contextmanager
    def observe_sampling(self, observer: LocationObserver | Sequence[LocationObserver | None]) -> Iterator[None]:
        """Within the block, every decoder layer's cross-attention passes its sampling locations through
        ``observer(loc, height, width) -> loc`` before reading the memory (a sequence: one observer per decoder
        layer, in order; None leaves that layer alone). One of verification's two seams into the forward pass
        (rounding margins of the discrete sampler); exports never run with an observer."""
        layers = [m for m in self.decoder.modules() if isinstance(m, MSDeformableAttention)]
        observers = list(observer) if isinstance(observer, Sequence) else [observer] * len(layers)
        if len(observers) != len(layers):
            raise ValueError(f"{len(observers)} observers for {len(layers)} decoder layers")
        for layer, each in zip(layers, observers):
            layer.location_observer = each
        try:
            yield
        finally:
            for layer in layers:
                layer.location_observer = None

    @contextlib.contextmanager
    def observe_selection(self, observer: SelectionObserver) -> Iterator[None]:
        """Within the block, query selection passes (each cell's best-class score [B, cells], the cells it chose
        [B, k]) through ``observer`` and uses the cells it returns. Verification's seam to re-run the reference
        with the cells an artifact kept among scores tied up to float noise (verify/selection.py); exports never
        run with an observer."""
        self.decoder.selection_observer = observer
        try:
            yield
        finally:
            self.decoder.selection_observer = None
