"""The CPU candidates ``select`` compares: each names how its artifact is made and which runner (and precision hint)
runs it, so a new one is a few lines (a recipe if it needs a new file, a runtime if it needs a new runner).

Several candidates share one artifact (the FP32 file runs on ONNX Runtime and on OpenVINO under two hints): a
recipe is made once per run, whatever number of candidates name it. An artifact is an ONNX file or an OpenVINO IR
(MODEL.xml + MODEL.bin, the NNCF INT8 recipe's): ``ArtifactRecipe.suffix`` says which, so ``select`` knows before
the run which output files it may write.
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
    """How one artifact file is made; ``make`` writes it (verified, with its sidecar) and returns its path (an IR's
    .xml). ``requires``: the packages making it needs beyond the runtime's (NNCF), so a candidate whose recipe
    cannot be made here is a skipped row with the reason, as one whose runtime is missing."""

    name: str  # also the file's stem in the run's folder
    description: str
    make: Callable[[BuildContext], Path] = field(repr=False)
    suffix: str = ".onnx"  # ".onnx", or ".xml" for an OpenVINO IR
    requires: tuple[str, ...] = ()

    def unavailable(self) -> str | None:
        """Why this recipe cannot be made here (a package it needs is missing), None when it can."""
        return next(filter(None, (_missing(module) for module in self.requires)), None)


def _missing(module: str) -> str | None:
    try:
        importlib.import_module(module)
    except ImportError:
        return f"{module} is not installed (pip install {module})"
    return None


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


def openvino_int8_recipe(name: str, description: str, source: ArtifactRecipe, recipe: str = "rtdetr",
                         verify: bool = True) -> ArtifactRecipe:
    """A recipe that is one ``export_openvino`` with NNCF INT8 (``recipe``) of the FP32 file ``source`` makes
    (reused when the run made it already, as recipes are made in the candidates' order), calibrated as the INT8
    ONNX file is and verified (unless ``verify`` is False) on the held-out part of the calibration folder, under
    the hint the candidate runs with here: bf16 where the CPU computes bf16 natively, else f32."""
    def make(context: BuildContext) -> Path:
        from rtdetr_export.pipeline.openvino import OpenVinoExportOptions, cpu_facts, export_openvino

        made = context.folder / f"{source.name}{source.suffix}"
        onnx = made if made.exists() else source.make(context)
        hint = "bf16" if cpu_facts()[1] else "f32"
        path = context.folder / f"{name}.xml"
        export_openvino(onnx, path, OpenVinoExportOptions(
            precision="int8", recipe=recipe, calib_images=context.calib_images, calib_count=context.calib_count,
            hint=hint, verify=verify), model=context.model, log=lambda message: context.log(f"  {message}"))
        return path

    return ArtifactRecipe(name, description, make, ".xml", ("openvino", "nncf"))


def copy_recipe(name: str, description: str, source: str | Path) -> ArtifactRecipe:
    """A recipe that takes an artifact made elsewhere (a copy, with its sidecar, into the run's folder): an ONNX
    file, or an OpenVINO IR given its .xml (the .bin comes along)."""
    suffix = Path(source).suffix

    def make(context: BuildContext) -> Path:
        from rtdetr_export.artifact import ir_weights_path, sidecar_path

        path = context.folder / f"{name}{suffix}"
        shutil.copyfile(source, path)
        shutil.copyfile(sidecar_path(source), sidecar_path(path))
        if suffix == ".xml":
            shutil.copyfile(ir_weights_path(source), ir_weights_path(path))
        return path

    return ArtifactRecipe(name, description, make, suffix)


FP32 = export_recipe("fp32", "FP32 ONNX", lambda context: PrecisionOptions())
INT8_CPU = export_recipe("int8_cpu", "INT8 ONNX, --int8-target cpu", lambda context: PrecisionOptions(
    "int8", context.calib_images, context.calib_count, int8_target="cpu"))
NNCF_INT8 = openvino_int8_recipe("nncf_int8", "INT8 OpenVINO IR, NNCF rtdetr recipe", FP32)


def _openvino_capabilities() -> list[str]:
    import openvino as ov

    return list(ov.Core().get_property("CPU", "OPTIMIZATION_CAPABILITIES"))


@dataclass(frozen=True)
class Runtime:
    """A runner family with its settings: ONNX Runtime CPU, or OpenVINO CPU under a precision hint.

    ``native_bf16_only``: the bf16 hint only where the CPU computes bf16 natively (AVX-512 BF16, AMX), else f32;
    ``resolved`` turns it into the hint used here before anything runs, so rows and records name a real hint."""

    backend: str  # "onnxruntime" or "openvino"
    hint: str | None = None  # OpenVINO's inference precision hint (f32, bf16)
    native_bf16_only: bool = False
    why: str = ""  # set by ``resolved`` when it fell back to f32: what the row's note says

    @property
    def label(self) -> str:
        hint = "bf16 where native, else f32" if self.native_bf16_only else self.hint
        return f"{self.backend} {hint}" if hint else self.backend

    def unavailable(self) -> str | None:
        """Why this runtime cannot run here (its package is missing), None when it can."""
        return _missing({"onnxruntime": "onnxruntime", "openvino": "openvino"}[self.backend])

    def resolved(self) -> "Runtime":
        """The runtime with its hint as used on this CPU (itself unless ``native_bf16_only``; call it only where
        the runtime is available)."""
        if not self.native_bf16_only:
            return self
        capabilities = _openvino_capabilities()
        if "BF16" in capabilities:
            return Runtime(self.backend, "bf16")
        return Runtime(self.backend, "f32", why=f"this CPU has no BF16 (OpenVINO's CPU capabilities: "
                                                f"{', '.join(capabilities)}): runs (and was verified) under the f32 "
                                                "hint; the bf16 hint where the CPU has BF16")

    def note(self) -> str | None:
        """What a reader must know about this runtime's numbers here: OpenVINO's bf16 hint on a CPU without BF16
        (what its CPU plugin reports) runs float32, so its row measures f32 again; a bf16-where-native runtime
        that fell back to f32 says so."""
        if self.why:
            return self.why
        if self.backend != "openvino" or self.hint != "bf16":
            return None
        capabilities = _openvino_capabilities()
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

    def unavailable(self) -> str | None:
        """Why this candidate cannot be measured here: its runtime's or its recipe's package is missing."""
        return self.runtime.unavailable() or self.artifact.unavailable()

    def resolved(self) -> "Candidate":
        """The candidate with its runtime's hint as used on this CPU (Runtime.resolved)."""
        runtime = self.runtime.resolved()
        return self if runtime is self.runtime else Candidate(self.name, self.artifact, runtime)


ONNXRUNTIME = Runtime("onnxruntime")
OPENVINO_F32, OPENVINO_BF16 = Runtime("openvino", "f32"), Runtime("openvino", "bf16")
OPENVINO_NATIVE = Runtime("openvino", "bf16", native_bf16_only=True)

# Baseline first: the AP budget counts from the first candidate (ONNX Runtime on the FP32 file).
CPU_CANDIDATES = (
    Candidate("ort-fp32", FP32, ONNXRUNTIME),
    Candidate("ort-int8", INT8_CPU, ONNXRUNTIME),
    Candidate("ov-f32:fp32", FP32, OPENVINO_F32),
    Candidate("ov-bf16:fp32", FP32, OPENVINO_BF16),
    Candidate("ov-f32:int8", INT8_CPU, OPENVINO_F32),
    Candidate("ov-bf16:int8", INT8_CPU, OPENVINO_BF16),
    Candidate("ov-nncf", NNCF_INT8, OPENVINO_NATIVE),
)
