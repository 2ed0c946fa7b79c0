"""A split artifact as one runner: graph 1 on ONNX Runtime, the host step in numpy, graph 2 on ONNX Runtime.

Its outputs are those of the single-file artifact with the same head, so the one verification loop and the
comparator judge it unchanged.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from rtdetr_export.backends.base import Runner
from rtdetr_export.backends.onnxruntime_runner import OnnxRuntimeRunner
from rtdetr_export.imaging.host_step import gather_queries, select_cells, top_detections


class SplitRunner(Runner):
    """Runs ``encoder`` (graph 1), selects ``num_queries`` queries on the host, runs ``decoder`` (graph 2); the
    detections head (``head="detections"``) then keeps the ``top_k`` best on the host too."""

    name = "onnxruntime-split"

    def __init__(self, encoder: str | Path, decoder: str | Path, num_queries: int, head: str = "raw",
                 top_k: int = 300, providers: list[str] | None = None, threads: int | None = None):
        self.encoder = OnnxRuntimeRunner(encoder, providers, threads)
        self.decoder = OnnxRuntimeRunner(decoder, providers, threads)
        self.num_queries, self.head, self.top_k = num_queries, head, top_k

    def activate(self) -> None:
        self.encoder.activate()
        self.decoder.activate()

    def deactivate(self) -> None:
        self.encoder.deactivate()
        self.decoder.deactivate()

    def select(self, cells: dict[str, np.ndarray]) -> np.ndarray:
        """The host step's query selection: the cells [B, num_queries] graph 2 decodes."""
        return select_cells(cells, self.num_queries)

    def selection(self, feed: dict[str, np.ndarray]) -> np.ndarray:
        """[B, num_queries] the encoder cells this artifact keeps for ``feed``, in its order (verification reads
        them to prove a choice among tied scores, verify/selection.py)."""
        return self.select(self.encoder.infer({"images": feed["images"]}))

    def infer(self, feed: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        cells = self.encoder.infer({"images": feed["images"]})
        raw = self.decoder.infer(gather_queries(cells, self.select(cells)))
        if self.head == "raw":
            return raw
        return top_detections(raw["logits"], raw["pred_boxes"], feed["orig_target_sizes"], self.top_k)
