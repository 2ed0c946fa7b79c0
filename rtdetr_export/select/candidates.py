"""The CPU candidates ``select`` compares: each names how its artifact is made and which runner (and precision hint)
runs it, so a new one is a few lines (a recipe if it needs a new file, a runtime if it needs a new runner).

Several candidates share one artifact (the FP32 file runs on ONNX Runtime and on OpenVINO under two hints): a
recipe is made once per run, whatever number of candidates name it.
"""

from __future__ import annotations

import importlib
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from rtdetr_export.artifact import PrecisionOptions
from rtdetr_export.backends import OnnxRuntimeRunner
from rtdetr_export.backends.openvino_runner import OpenVinoRunner
from rtdetr_export.backends.split_runner import GraphRunner
from rtdetr_export.model import RTDETRv2
from rtdetr_export.pipeline import OnnxExportOptions, export_onnx

Log = Callable[[str], None]


@dataclass(frozen=True)
class BuildContext:
    """What a recipe may use: the model, the folder the run's files go to, the images calibration reads and the
    images an FP32 file is verified on."""

    model: RTDETRv2
    folder: Path
    calib_images: str
    calib_count: int
    verify_images: str | None = None
    log: Log = field(default=lambda message: None, repr=False)


@dataclass(frozen=True)
class ArtifactRecipe:
    """How one artifact file is made; ``make`` writes it (verified, with its sidecar) and returns its path."""

    name: str  # also the file's stem in the run's folder
    description: str
    make: Callable[[BuildContext], Path] = field(repr=False)


def export_recipe(name: str, description: str, precision: Callable[[BuildContext], PrecisionOptions],
                  verify: bool = True) -> ArtifactRecipe:
    """A recipe that is one ``export_onnx`` of the model: dynamic batch (both timed batches run one file),
    verified as every export is (an FP32 file on ``verify_images``; FP16/INT8 on calibration's held-out images)
    unless ``verify`` is False (a latency-only run on random weights, whose INT8 detections mean nothing)."""
    def make(context: BuildContext) -> Path:
        options = precision(context)
        images = context.verify_images if options.target == "fp32" else None
        path = context.folder / f"{name}.onnx"
        export_onnx(context.model, path, OnnxExportOptions(dynamic_batch=True, verify=verify, images=images,
                                                           precision=options),
                    log=lambda message: context.log(f"  {message}"))
        return path

    return ArtifactRecipe(name, description, make)


def copy_recipe(name: str, description: str, source: str | Path) -> ArtifactRecipe:
    """A recipe that takes an artifact made elsewhere (a copy, with its sidecar, into the run's folder)."""
    def make(context: BuildContext) -> Path:
        from rtdetr_export.artifact import sidecar_path

        path = context.folder / f"{name}.onnx"
        shutil.copyfile(source, path)
        shutil.copyfile(sidecar_path(source), sidecar_path(path))
        return path

    return ArtifactRecipe(name, description, make)


FP32 = export_recipe("fp32", "FP32 ONNX", lambda context: PrecisionOptions())
INT8_CPU = export_recipe("int8_cpu", "INT8 ONNX, --int8-target cpu", lambda context: PrecisionOptions(
    "int8", context.calib_images, context.calib_count, int8_target="cpu"))


@dataclass(frozen=True)
class Runtime:
    """A runner family with its settings: ONNX Runtime CPU, or OpenVINO CPU under a precision hint."""

    backend: str  # "onnxruntime" or "openvino"
    hint: str | None = None  # OpenVINO's inference precision hint (f32, bf16)

    @property
    def label(self) -> str:
        return f"{self.backend} {self.hint}" if self.hint else self.backend

    def unavailable(self) -> str | None:
        """Why this runtime cannot run here (its package is missing), None when it can."""
        module = {"onnxruntime": "onnxruntime", "openvino": "openvino"}[self.backend]
        try:
            importlib.import_module(module)
        except ImportError:
            return f"{module} is not installed (pip install {module})"
        return None

    def note(self) -> str | None:
        """What a reader must know about this runtime's numbers here: OpenVINO's bf16 hint on a CPU without BF16
        (what its CPU plugin reports) runs float32, so its row measures f32 again."""
        if self.backend != "openvino" or self.hint != "bf16":
            return None
        import openvino as ov

        capabilities = list(ov.Core().get_property("CPU", "OPTIMIZATION_CAPABILITIES"))
        if "BF16" in capabilities:
            return None
        return (f"this CPU has no BF16 (OpenVINO's CPU capabilities: {', '.join(capabilities)}): the bf16 hint "
                "runs float32 here")

    def graph_runner(self, threads: int | None) -> GraphRunner:
        """The factory that opens one ONNX graph on this runtime (what ``artifact_runner`` takes)."""
        if self.backend == "openvino":
            return lambda path: OpenVinoRunner(path, self.hint or "f32", threads)
        return lambda path: OnnxRuntimeRunner(path, threads=threads)


@dataclass(frozen=True)
class Candidate:
    """One row of the comparison: an artifact run by a runtime."""

    name: str
    artifact: ArtifactRecipe
    runtime: Runtime


ONNXRUNTIME = Runtime("onnxruntime")
OPENVINO_F32, OPENVINO_BF16 = Runtime("openvino", "f32"), Runtime("openvino", "bf16")

# Baseline first: the AP budget counts from the first candidate (ONNX Runtime on the FP32 file).
CPU_CANDIDATES = (
    Candidate("ort-fp32", FP32, ONNXRUNTIME),
    Candidate("ort-int8", INT8_CPU, ONNXRUNTIME),
    Candidate("ov-f32:fp32", FP32, OPENVINO_F32),
    Candidate("ov-bf16:fp32", FP32, OPENVINO_BF16),
    Candidate("ov-f32:int8", INT8_CPU, OPENVINO_F32),
    Candidate("ov-bf16:int8", INT8_CPU, OPENVINO_BF16),
)
