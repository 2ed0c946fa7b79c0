"""The assembled D-FINE detector: HGNetv2 -> D-FINE hybrid encoder -> FDR decoder.

D-FINE (Peng et al., 2024) keeps RT-DETRv2's structure and contract and changes its parts: the backbone
(``hgnetv2``), the encoder's fusion blocks (``dfine_encoder``), the decoder's cross-attention residual and box
head (``dfine_decoder``, ``fdr``). The detector-level behaviour is RT-DETRv2's and is inherited from it: building
size-dependent constants for an input size, computing them in the graph for dynamic-size exports, choosing how
deformable attention reads its samples (``set_sampler``, ``decoder_method``), observing sampling locations.
Those methods touch only ``encoder.encoder`` (the AIFI stacks) and the decoder's deformable-attention layers,
which both detectors have under the same names.
"""

from __future__ import annotations

from torch import nn

from rtdetr_export.model.dfine_config import DFineConfig
from rtdetr_export.model.dfine_decoder import DFineDecoder
from rtdetr_export.model.dfine_encoder import DFineHybridEncoder
from rtdetr_export.model.hgnetv2 import HGNetV2
from rtdetr_export.model.rtdetr import RTDETRv2
from rtdetr_export.model.source import IN_MEMORY, WeightSource


class DFine(RTDETRv2):
    """D-FINE for inference. ``forward(images)`` -> (logits [B, Q, C], boxes [B, Q, 4] cxcywh in [0, 1]).

    ``images`` are RGB in [0, 1], NCHW float32, as for RTDETRv2. State-dict keys follow Peterande/D-FINE's names
    (BatchNorms as ``norm``); decoder layers after ``eval_idx`` are not built, since they never reach the output.
    """

    def __init__(self, config: DFineConfig, source: WeightSource = IN_MEMORY):
        # RTDETRv2's constructor builds ResNet-vd parts: this one builds D-FINE's under the same attribute names.
        nn.Module.__init__(self)
        self.config = config
        self.source = source
        self.backbone = HGNetV2(config)
        self.encoder = DFineHybridEncoder(config)
        self.decoder = DFineDecoder(config)
        self.set_image_size(*config.image_size)
        self.eval()
