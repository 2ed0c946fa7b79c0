"""A split artifact as one runner: graph 1 on a graph runner, the host step in numpy, graph 2 on a graph runner.

Its outputs are those of the single-file artifact with the same head, so the one verification loop, the comparator,
predict, eval and bench take it unchanged. The graphs run on whatever runs one ONNX file (ONNX Runtime by default;
the FP16 emulation or OpenVINO when asked), as Polygraphy composes runners rather than subclassing them.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Callable

import numpy as np

from rtdetr_export.backends.base import Runner
from rtdetr_export.backends.onnxruntime_runner import OnnxRuntimeRunner
from rtdetr_export.imaging.host_step import gather_queries, select_cells, top_detections

GraphRunner = Callable[[Path], Runner]  # one ONNX file -> the runner that runs it
SPLIT_STAGES = ("graph1", "host_step", "graph2")  # how bench names the three parts of one call


class SplitRunner(Runner):
    """Runs ``encoder`` (graph 1), selects ``num_queries`` queries on the host, runs ``decoder`` (graph 2); the
    detections head (``head="detections"``) then keeps the ``top_k`` best on the host too. ``encoder`` and
    ``decoder`` are runners, or paths that ``graph`` opens. ``stage_ms`` holds the last call's milliseconds per
    stage (``SPLIT_STAGES``), for bench."""

    def __init__(self, encoder: Runner | str | Path, decoder: Runner | str | Path, num_queries: int,
                 head: str = "raw", top_k: int = 300, graph: GraphRunner = OnnxRuntimeRunner):
        self.encoder = encoder if isinstance(encoder, Runner) else graph(Path(encoder))
        self.decoder = decoder if isinstance(decoder, Runner) else graph(Path(decoder))
        self.num_queries, self.head, self.top_k = num_queries, head, top_k
        self.name = f"{self.encoder.name}-split"
        self.stage_ms: dict[str, float] = {}

    def activate(self) -> None:
        self.encoder.activate()
        self.decoder.activate()

    def deactivate(self) -> None:
        self.encoder.deactivate()
        self.decoder.deactivate()

    @property
    def active_providers(self) -> list[str]:
        """Graph 1's execution providers (both graphs are opened alike)."""
        return list(getattr(self.encoder, "active_providers", []))

    @property
    def precision_hint(self) -> str | None:
        """The OpenVINO precision hint both graphs run under; None on other runtimes."""
        return getattr(self.encoder, "precision_hint", None)

    def select(self, cells: dict[str, np.ndarray]) -> np.ndarray:
        """The host step's query selection: the cells [B, num_queries] graph 2 decodes."""
        return select_cells(cells, self.num_queries)

    def selection(self, feed: dict[str, np.ndarray]) -> np.ndarray:
        """[B, num_queries] the encoder cells this artifact keeps for ``feed``, in its order (verification reads
        them to prove a choice among tied scores, verify/selection.py)."""
        return self.select(self.encoder.infer({"images": feed["images"]}))

    def infer(self, feed: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        clock = [time.perf_counter_ns()]
        cells = self.encoder.infer({"images": feed["images"]})
        clock.append(time.perf_counter_ns())
        queries = gather_queries(cells, self.select(cells))
        clock.append(time.perf_counter_ns())
        out = self.decoder.infer(queries)
        clock.append(time.perf_counter_ns())
        if self.head == "detections":
            out = top_detections(out["logits"], out["pred_boxes"], feed["orig_target_sizes"], self.top_k)
        clock.append(time.perf_counter_ns())
        # The detections head's top-k is host work too: it counts with the query selection.
        spans = [(b - a) / 1e6 for a, b in zip(clock, clock[1:])]
        self.stage_ms = dict(zip(SPLIT_STAGES, (spans[0], spans[1] + spans[3], spans[2])))
        return out
