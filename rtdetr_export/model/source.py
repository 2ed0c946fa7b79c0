"""Where a model's weights came from, recorded in every artifact's provenance."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class WeightSource:
    """``format``: "transformers", "original", "random" (seeded, reproducible) or "in-memory" (a model built in
    Python whose weights no file names: its artifacts verify only with ``--model``)."""

    format: str
    path: str | None = None
    sha256: str | None = None
    seed: int | None = None


IN_MEMORY = WeightSource("in-memory")
