"""The PyTorch reference as a runner that also reports what the comparator needs to judge a difference."""

from __future__ import annotations

import numpy as np
from rtdetr_export.backends.torch_runner import TorchRunner
from rtdetr_export.model import RTDETRv2
from rtdetr_export.model.heads import INPUTS, OUTPUTS, wrap
from rtdetr_export.verify.margins import record_rounding_margins

# Extra reference outputs, never produced by an artifact: the query behind each detection and, for the
# discrete sampler, each query's smallest rounding margin (verify/margins.py).
QUERY, MARGIN = "_query", "_margin"


class ReferenceRunner(TorchRunner):
    """Runs the model under a head in float32 and adds ``_query`` (detections) and ``_margin`` (discrete)."""

    name = "torch-reference"

    def __init__(self, model: RTDETRv2, head: str, top_k: int = 300, device: str = "cpu"):
        outputs = OUTPUTS[head] + ([QUERY] if head == "detections" else [])
        super().__init__(wrap(model, head, top_k, with_query=True), INPUTS[head], outputs, device)
        self.model = model

    def infer(self, feed: dict[str, np.ndarray], flip: np.ndarray | None = None) -> dict[str, np.ndarray]:
        """``flip`` [N, Q]: re-round each query's points within that many cells of a boundary the other way
        (negative: none; see margins.py)."""
        with record_rounding_margins(self.model, flip) as recorder:
            outputs = super().infer(feed)
        if recorder is not None and recorder.margin is not None:
            outputs[MARGIN] = recorder.as_numpy()
        return outputs
