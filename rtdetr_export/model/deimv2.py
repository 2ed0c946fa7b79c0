"""The assembled DEIMv2 detector with an HGNetv2 backbone: HGNetv2 -> DEIMv2 encoder -> DEIMv2 decoder.

DEIMv2 (Huang et al., 2025) keeps D-FINE's structure, contract and heads (FDR boxes, LQE scores) and changes the
encoder (``deimv2_encoder``: summed fusion, RepC3 blocks, the attention-free Lite encoder of the smallest sizes) and
the decoder layers (``deimv2_decoder``: RMSNorm, SwiGLU, optional gate, a shared FDR head). The backbone is D-FINE's
HGNetv2 (three-stage variants for Atto, Femto and Pico). The detector-level behaviour is D-FINE's, hence RT-DETRv2's:
input sizes, dynamic-size exports, samplers and the verification seams work unchanged. DEIMv2's larger sizes put
a DINOv3 ViT in front instead; they are not built here.
"""

from __future__ import annotations

from torch import nn

from rtdetr_export.model.deimv2_config import Deimv2Config
from rtdetr_export.model.deimv2_decoder import Deimv2Decoder
from rtdetr_export.model.deimv2_encoder import Deimv2HybridEncoder, LiteEncoder
from rtdetr_export.model.dfine import DFine
from rtdetr_export.model.hgnetv2 import HGNetV2
from rtdetr_export.model.source import IN_MEMORY, WeightSource


class Deimv2(DFine):
    """DEIMv2 for inference. ``forward(images)`` -> (logits [B, Q, C], boxes [B, Q, 4] cxcywh in [0, 1])."""

    def __init__(self, config: Deimv2Config, source: WeightSource = IN_MEMORY):
        # DFine's constructor builds D-FINE's parts: this one builds DEIMv2's under the same attribute names.
        nn.Module.__init__(self)
        self.config = config
        self.source = source
        self.backbone = HGNetV2(config)
        self.encoder = LiteEncoder(config) if config.encoder_type == "lite" else Deimv2HybridEncoder(config)
        self.decoder = Deimv2Decoder(config)
        self.set_image_size(*config.image_size)
        self.eval()
