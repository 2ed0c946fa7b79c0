"""Where a model's weights came from, recorded in every artifact's provenance."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class HubRevision:
    """A Hugging Face Hub model the weights were resolved from: ``revision`` is the commit hash the files belong
    to (immutable), ``requested`` what the user asked for (a branch, tag or hash; "main" when none)."""

    repo_id: str
    revision: str
    requested: str = "main"

    @property
    def pinned_id(self) -> str:
        """``ORG/NAME@COMMIT``: resolves to exactly these files again."""
        return f"{self.repo_id}@{self.revision}"


@dataclass(frozen=True)
class WeightSource:
    """``format``: "transformers", "original", "random" (seeded, reproducible) or "in-memory" (a model built in
    Python whose weights no file names: its artifacts verify only with ``--model``). ``hub`` is set when the
    files came from a Hub model id; ``sha256`` is the weights file's digest either way."""

    format: str
    path: str | None = None
    sha256: str | None = None
    seed: int | None = None
    hub: HubRevision | None = None


IN_MEMORY = WeightSource("in-memory")
