"""The assembled RT-DETRv2 detector: backbone -> hybrid encoder -> decoder."""

from __future__ import annotations

import torch
from torch import nn

from rtdetr_export.model.backbone import ResNetVd
from rtdetr_export.model.config import ModelConfig
from rtdetr_export.model.decoder import RTDETRDecoder
from rtdetr_export.model.hybrid_encoder import HybridEncoder


class RTDETRv2(nn.Module):
    """RT-DETRv2 for inference. ``forward(images)`` -> (logits [B, Q, C], boxes [B, Q, 4] cxcywh in [0, 1]).

    ``images`` are RGB in [0, 1], NCHW float32. The state_dict uses the original repository's key names,
    so an original checkpoint loads without renaming.
    """

    def __init__(self, config: ModelConfig):
        super().__init__()
        self.config = config
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

    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.decoder(self.encoder(self.backbone(images)))
