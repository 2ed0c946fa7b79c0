"""How deformable attention reads the encoder memory at its sampling points: one value, ``Sampler``.

Two questions hide in "the sampler", and older code kept them as two strings:
- *what* is computed: bilinear interpolation (RT-DETRv2's trained behaviour, ``decoder_method="default"``) or the
  nearest cell (``"discrete"``, the name users know from the original code and transformers);
- *how* bilinear reading is written in the graph: the GridSample op, or Gather plus arithmetic (the same numbers,
  tests/model/test_gather_bilinear.py).

A ``Sampler`` answers both at once, so nothing downstream recombines them: gather-nearest is ``discrete``;
gather-bilinear and gridsample-bilinear are two spellings of ``default``. Users still say ``--method`` and
``--bilinear-op``; ``Sampler.parse`` turns those into the one value, once.
"""

from __future__ import annotations

import enum

from rtdetr_export.errors import RTDetrExportError

METHODS = ("default", "discrete")
BILINEAR_OPS = ("gather", "gridsample")
# GridSample entered ONNX in opset 16; every other op our graphs use is in opset 13.
GRIDSAMPLE_OPSET = 16
MIN_OPSET = 13


class Sampler(str, enum.Enum):
    """What a graph reads sampling points with; the value is the name sidecars and ``inspect`` use."""

    GATHER_NEAREST = "gather-nearest"
    GATHER_BILINEAR = "gather-bilinear"
    GRIDSAMPLE_BILINEAR = "gridsample-bilinear"

    def __str__(self) -> str:
        return self.value

    @property
    def method(self) -> str:
        """The model's ``decoder_method`` this sampler computes: "discrete" (nearest) or "default" (bilinear)."""
        return "discrete" if self is Sampler.GATHER_NEAREST else "default"

    @property
    def bilinear_op(self) -> str | None:
        """How bilinear reading is written ("gather" or "gridsample"); None for the nearest-cell sampler."""
        return None if self is Sampler.GATHER_NEAREST else self.value.split("-")[0]

    @property
    def has_gridsample(self) -> bool:
        """Whether a graph with this sampler contains GridSample."""
        return self is Sampler.GRIDSAMPLE_BILINEAR

    @property
    def min_opset(self) -> int:
        return GRIDSAMPLE_OPSET if self.has_gridsample else MIN_OPSET

    @classmethod
    def parse(cls, method: str, bilinear_op: str | None = None) -> "Sampler":
        """The sampler the user's ``--method`` and ``--bilinear-op`` name (``bilinear_op`` None: the export
        default, gathers; ``discrete`` ignores it, as it never reads bilinearly)."""
        if method not in METHODS:
            raise RTDetrExportError(f"unknown method {method!r}; choose one of {', '.join(METHODS)}")
        if method == "discrete":
            return cls.GATHER_NEAREST
        op = bilinear_op or EXPORT_BILINEAR_OP
        if op not in BILINEAR_OPS:
            raise RTDetrExportError(f"unknown bilinear op {op!r}; choose one of {', '.join(BILINEAR_OPS)}")
        return cls(f"{op}-bilinear")

    @classmethod
    def reference(cls, method: str) -> "Sampler":
        """How the PyTorch reference reads: bilinear with grid_sample itself (the trained op), so every gather
        export is checked against it; nearest for ``discrete``."""
        return cls.GATHER_NEAREST if method == "discrete" else cls.GRIDSAMPLE_BILINEAR

    @classmethod
    def for_export(cls, method: str) -> "Sampler":
        """What an export writes when nobody says: gathers for both methods (docs/model.md, "Reading the sampling
        points", has the measurement behind it)."""
        return cls.parse(method, None)


# How ``default`` sampling is written in an export when nobody says.
EXPORT_BILINEAR_OP = "gather"
