"""What ``rtdetr-export bench`` exposes as flags, validated before any work starts."""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from rtdetr_export.backends.openvino_runner import PRECISION_HINTS
from rtdetr_export.bench.targets import BACKENDS, DEFAULT_BACKENDS, DEVICES
from rtdetr_export.bench.timing import Rounds
from rtdetr_export.errors import RTDetrExportError
from rtdetr_export.model.heads import HEADS


@dataclass
class BenchOptions:
    """Everything ``rtdetr-export bench`` exposes as flags."""

    artifacts: list[str] = field(default_factory=list)
    model_path: str | None = None
    preset: str | None = None
    method: str | None = None
    image_size: int | tuple[int, int] | None = None
    backends: list[str] = field(default_factory=lambda: list(DEFAULT_BACKENDS))
    device: str = "cpu"
    batches: list[int] = field(default_factory=lambda: [1])
    warmup: int = 2
    iters: int | None = 10
    seconds: float | None = None
    e2e_iters: int | None = None  # None: a third of the model-only rounds, at least 2
    threads: int | None = None
    images: str | None = None
    head: str = "raw"
    top_k: int = 300
    peer: bool = False
    note: str | None = None
    openvino: list[str] = field(default_factory=lambda: ["f32", "bf16"])  # precision hints of the openvino rows
    settle_ms: float = Rounds.settle_ms  # pause before each call while several runners take turns (bench/timing.py)

    def validate(self) -> None:
        """Raise RTDetrExportError for values no benchmark can use."""
        unknown = [b for b in self.backends if b not in BACKENDS]
        if unknown or not self.backends:
            raise RTDetrExportError(f"unknown backend {unknown[0]!r}; choose from {', '.join(BACKENDS)}"
                                    if unknown else "no backend given")
        unknown = [hint for hint in self.openvino if hint not in PRECISION_HINTS]
        if unknown or not self.openvino:
            raise RTDetrExportError(f"unknown OpenVINO precision {unknown[0]!r}; choose from "
                                    f"{', '.join(PRECISION_HINTS)}" if unknown else "--openvino: no hint given")
        if self.device not in DEVICES:
            raise RTDetrExportError(f"unknown device {self.device!r}; choose from {', '.join(DEVICES)}")
        if not self.batches or any(b < 1 for b in self.batches):
            raise RTDetrExportError(f"batch sizes must be positive, got {self.batches}")
        if self.warmup < 0:
            raise RTDetrExportError(f"--warmup must be >= 0, got {self.warmup}")
        if self.seconds is not None and self.seconds <= 0:
            raise RTDetrExportError(f"--seconds must be positive, got {self.seconds}")
        if self.seconds is None and (self.iters is None or self.iters < 1):
            raise RTDetrExportError(f"--iters must be >= 1, got {self.iters}")
        if self.e2e_iters is not None and self.e2e_iters < 0:
            raise RTDetrExportError(f"--e2e-iters must be >= 0, got {self.e2e_iters}")
        if self.threads is not None and self.threads < 1:
            raise RTDetrExportError(f"--threads must be >= 1, got {self.threads}")
        if self.settle_ms < 0:
            raise RTDetrExportError(f"--settle-ms must be >= 0, got {self.settle_ms}")
        if self.head not in HEADS:
            raise RTDetrExportError(f"unknown head {self.head!r}; choose one of {', '.join(HEADS)}")
        if self.device == "cuda" and not torch.cuda.is_available():
            raise RTDetrExportError("--device cuda: PyTorch sees no CUDA device on this machine")


def parse_batches(text: str) -> list[int]:
    """'1,4' -> [1, 4]; anything but positive integers is an error."""
    try:
        values = [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise RTDetrExportError(f"--batch takes comma-separated positive integers, got {text!r}") from None
    if not values or any(v < 1 for v in values):
        raise RTDetrExportError(f"--batch takes comma-separated positive integers, got {text!r}")
    return list(dict.fromkeys(values))
