"""How an artifact is asked for: the graph options and the precision options, as the API and the CLI take them.

They sit with the records because a record must rebuild them: an artifact's sidecar says how its graph was
traced and its precision made, and ``OnnxRecord.graph_options()`` / ``PrecisionRecipe.options()`` turn that back
into exactly these objects (debug-precision re-exports the FP32 graph of an INT8 file with them, the engine job
checks a file for TensorRT with them). export/ and precision/ import them from here.
"""

from __future__ import annotations

from dataclasses import dataclass

from rtdetr_export.errors import RTDetrExportError
from rtdetr_export.imaging import list_images
from rtdetr_export.model.config import SizeRange
from rtdetr_export.model.heads import HEADS
from rtdetr_export.model.sampler import Sampler

DEFAULT_OPSET = 17
MAX_OPSET = 20

PRECISIONS = ("fp32", "fp16", "int8")
CALIBRATION_METHODS = ("minmax", "entropy", "percentile")
# The runtime an INT8 file's Q/DQ layout is made for: TensorRT (Q/DQ on layer inputs) or CPU integer kernels.
INT8_TARGETS = ("tensorrt", "cpu")
# What an INT8 graph's unquantized layers run in: FP16 (the FP16 policy around the Q/DQ layers, what a TensorRT
# engine needs to be faster than FP16) or FP32 (every unquantized layer FP32, the conservative variant).
INT8_FLOATS = ("fp16", "fp32")
DEFAULT_CALIBRATION_COUNT = 16


@dataclass
class GraphOptions:
    """How the graph is traced: opset, batch (static or dynamic), input size (static, or dynamic over
    ``size_range``), head, top-k, sampler, simplification."""

    opset: int = DEFAULT_OPSET
    batch: int = 1
    dynamic_batch: bool = False
    head: str = "raw"
    top_k: int = 300
    simplify: bool = True
    # How the decoder reads its sampling points in the graph; None: the export default for the model's method
    # (``Sampler.for_export``). Its method must be the model's (``discrete`` needs a discrete model).
    sampler: Sampler | None = None
    # None: the input size is fixed (the model's image_size). A range: height and width are graph dimensions and
    # the model must be built at ``size_range.opt``.
    size_range: SizeRange | None = None

    @property
    def dynamic_size(self) -> bool:
        return self.size_range is not None

    @property
    def verification_batches(self) -> list[int]:
        """A dynamic batch is proven at 1 and 4; a static one at its size (the one rule every artifact follows)."""
        return [1, 4] if self.dynamic_batch else [self.batch]

    def sampler_for(self, method: str) -> Sampler:
        """The sampler an export of a ``method`` model writes with these options."""
        return self.sampler or Sampler.for_export(method)

    def validate(self, method: str, num_queries: int, num_classes: int) -> None:
        """Reject values no export of a ``method`` model can use, before any work is done."""
        if self.head not in HEADS:
            raise RTDetrExportError(f"unknown head {self.head!r}; choose one of {', '.join(HEADS)}")
        sampler = self.sampler_for(method)
        if sampler.method != method:
            raise RTDetrExportError(f"the {sampler} sampler computes --method {sampler.method}, but the model is "
                                    f"built for --method {method}")
        if not sampler.min_opset <= self.opset <= MAX_OPSET:
            why = " (GridSample needs opset 16; use --bilinear-op gather for older runtimes)" \
                if sampler.has_gridsample else ""
            raise RTDetrExportError(f"opset {self.opset} is not supported with the {sampler} sampler: use "
                                    f"{sampler.min_opset}..{MAX_OPSET}{why}")
        if self.batch < 1:
            raise RTDetrExportError(f"batch must be at least 1, got {self.batch}")
        if self.head == "detections" and not 1 <= self.top_k <= num_queries * num_classes:
            raise RTDetrExportError(f"top-k must be in 1..{num_queries * num_classes}, got {self.top_k}")


@dataclass
class PrecisionOptions:
    """Target precision and its calibration / exclusion settings (the CLI's precision flags)."""

    target: str = "fp32"
    calib_images: str | None = None
    calib_count: int = DEFAULT_CALIBRATION_COUNT
    calib_method: str = "minmax"
    int8_exclude: tuple[str, ...] = ()
    int8_default_exclusions: bool = True
    keep_fp32: tuple[str, ...] = ()
    int8_target: str = "tensorrt"  # the runtime the Q/DQ layout is made for: tensorrt or cpu (int8_cpu.py)
    # What an INT8 graph's unquantized layers run in (tensorrt target; the cpu target keeps them FP32).
    int8_float: str = "fp16"

    def validate(self) -> None:
        """Reject contradictory settings before any work is done."""
        self._validate_names()
        if self.calib_count < 1:
            raise RTDetrExportError(f"--calib-count must be at least 1, got {self.calib_count}")
        if self.target == "fp32" and self.calib_images is not None:
            raise RTDetrExportError("--calib-images needs --precision fp16 or int8 (fp32 uses no calibration)")
        self._validate_int8_flags()
        if self.keep_fp32 and not (self.target == "fp16" or (self.target == "int8" and self.int8_target == "tensorrt"
                                                              and self.int8_float == "fp16")):
            raise RTDetrExportError("--keep-fp32 applies to --precision fp16, and to int8 (tensorrt target) with "
                                    "--int8-float fp16")
        if self.calib_images is not None:
            list_images(self.calib_images)  # an empty or missing folder fails now, not after the export

    def _validate_names(self) -> None:
        for value, choices, what in ((self.target, PRECISIONS, "precision"),
                                     (self.calib_method, CALIBRATION_METHODS, "calibration method"),
                                     (self.int8_target, INT8_TARGETS, "INT8 target"),
                                     (self.int8_float, INT8_FLOATS, "--int8-float")):
            if value not in choices:
                raise RTDetrExportError(f"unknown {what} {value!r}; choose one of {', '.join(choices)}")

    def _validate_int8_flags(self) -> None:
        """The INT8-only flags are refused elsewhere, and the two INT8 layouts take different ones."""
        if self.target != "int8" and (self.int8_exclude or not self.int8_default_exclusions
                                         or self.calib_method != "minmax"):
            raise RTDetrExportError("--int8-exclude, --no-int8-default-exclusions and --calib-method apply "
                                    "to --precision int8 only")
        if self.target != "int8" and self.int8_target != "tensorrt":
            raise RTDetrExportError("--int8-target applies to --precision int8 only")
        if self.int8_target == "cpu" and self.calib_method == "entropy":
            raise RTDetrExportError("--calib-method entropy is for --int8-target tensorrt; the cpu target takes "
                                    "minmax or percentile")
        if self.target != "int8" and self.int8_float != "fp16":
            raise RTDetrExportError("--int8-float applies to --precision int8 only")
        if self.int8_target == "cpu" and self.int8_float != "fp16":
            raise RTDetrExportError("--int8-float applies to --int8-target tensorrt; the cpu target keeps float "
                                    "layers FP32")
