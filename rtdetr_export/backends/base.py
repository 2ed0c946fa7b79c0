"""One small interface for every runtime: activate, infer(dict) -> dict, deactivate (as Polygraphy does)."""

from __future__ import annotations

from abc import ABC, abstractmethod

import numpy as np


class Runner(ABC):
    """Runs one artifact. Use as a context manager: ``with runner: outputs = runner.infer(feed)``."""

    name: str = "runner"
    # Milliseconds per stage of the last ``infer`` for a runner made of stages (a split artifact's graph 1, host
    # step, graph 2); empty for one that runs in one piece. Bench reports them beside the total.
    stage_ms: dict[str, float] = {}

    def activate(self) -> None:
        """Load the artifact and allocate what inference needs."""

    def deactivate(self) -> None:
        """Release what ``activate`` took."""

    @abstractmethod
    def infer(self, feed: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Run once; inputs and outputs are named numpy arrays."""

    def __enter__(self) -> "Runner":
        self.activate()
        return self

    def __exit__(self, *exc: object) -> None:
        self.deactivate()
