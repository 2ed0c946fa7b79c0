"""Benchmark targets: one row per runtime configuration, each run through the shared Runner interface.

A requested backend that cannot run here becomes a target with ``skipped`` set to the reason, so the report
lists it instead of dropping it silently.
"""

from __future__ import annotations

import copy
import importlib
import importlib.util
from dataclasses import dataclass, field
from typing import Any, Callable

from torch import nn

from rtdetr_export.backends import OnnxRuntimeRunner, Runner, TorchRunner
from rtdetr_export.backends.openvino_runner import OpenVinoRunner
from rtdetr_export.bench.artifacts import Artifact
from rtdetr_export.errors import RTDetrExportError
from rtdetr_export.model.heads import INPUTS, OUTPUTS, wrap
from rtdetr_export.model import prepare_for_deploy

BACKENDS = ("torch", "torch-fp16", "torch-compile", "onnxruntime", "openvino", "tensorrt")
DEFAULT_BACKENDS = ("torch", "onnxruntime", "tensorrt")
DEVICES = ("cpu", "cuda")


@dataclass
class Target:
    """One benchmark row: how to make its runner, or why it cannot run."""

    name: str
    backend: str  # the family asked for with --backends: torch, onnxruntime, openvino or tensorrt
    precision: str
    device: str
    role: str = "ours"  # "ours", "peer" (the alternative export path) or "reference" (PyTorch eager FP32)
    artifact: Artifact | None = None
    make: Callable[[], Runner] | None = field(default=None, repr=False)
    skipped: str | None = None
    info: dict[str, Any] = field(default_factory=dict)

    def supports(self, batch: int) -> bool:
        return self.artifact is None or self.artifact.supports(batch)

    def to_json(self) -> dict[str, Any]:
        out = {"name": self.name, "backend": self.backend, "precision": self.precision, "device": self.device,
               "role": self.role, "artifact": self.artifact.to_json() if self.artifact else None,
               "status": "skipped" if self.skipped else "ok", **self.info}
        if self.skipped:
            out["reason"] = self.skipped
        return out


def parse_backends(text: str) -> list[str]:
    """'torch,onnxruntime' -> ['torch', 'onnxruntime']; unknown names are an error."""
    names = [n.strip() for n in text.split(",") if n.strip()]
    unknown = [n for n in names if n not in BACKENDS]
    if unknown or not names:
        raise RTDetrExportError(f"unknown backend {unknown[0]!r}; choose from {', '.join(BACKENDS)}" if unknown
                                else f"no backend given; choose from {', '.join(BACKENDS)}")
    return list(dict.fromkeys(names))


def expand_backends(names: list[str], device: str) -> list[str]:
    """'torch' on CUDA also means its FP16 and compiled variants (they are separate rows)."""
    out = []
    for name in names:
        out.append(name)
        if name == "torch" and device == "cuda":
            out += ["torch-fp16", "torch-compile"]
    return list(dict.fromkeys(out))


def torch_targets(names: list[str], model: nn.Module, head: str, top_k: int, device: str) -> list[Target]:
    """PyTorch eager FP32 (the deploy-fused model), and FP16 / torch.compile variants where asked."""
    fused = prepare_for_deploy(copy.deepcopy(model))
    variants = {"torch": ("fp32", False), "torch-fp16": ("fp16", False), "torch-compile": ("fp32", True)}
    targets = []
    for name in names:
        if name not in variants:
            continue
        precision, compiled = variants[name]
        label = f"torch-{'compile-' if compiled else ''}{precision}-{device}"
        target = Target(label, "torch", precision, device, role="reference" if name == "torch" else "ours",
                        info={"model": "rtdetr_export (deploy-fused)"})
        if precision == "fp16" and device != "cuda":
            target.skipped = "FP16 PyTorch is benchmarked on CUDA only (CPU half-precision kernels are slow paths)"
        else:
            module = fused if name == "torch" else copy.deepcopy(fused)
            target.make = lambda m=module, p=precision, c=compiled: TorchRunner(
                wrap(m, head, top_k), INPUTS[head], OUTPUTS[head], device, precision=p, compile=c)
        targets.append(target)
    return targets


def onnxruntime_target(artifact: Artifact, device: str, threads: int | None, role: str = "ours") -> Target:
    """ONNX Runtime on the CPU, or with the CUDA execution provider on ``--device cuda``."""
    import onnxruntime as ort

    target = Target(f"onnxruntime-{device}:{artifact.label}", "onnxruntime", artifact.precision, device, role,
                    artifact)
    providers = ["CPUExecutionProvider"]
    if device == "cuda":
        if "CUDAExecutionProvider" not in ort.get_available_providers():
            target.skipped = "this onnxruntime has no CUDAExecutionProvider (install onnxruntime-gpu)"
            return target
        providers = ["CUDAExecutionProvider", "CPUExecutionProvider"]
    target.info["providers"] = providers
    target.make = lambda: artifact.runner(lambda path: OnnxRuntimeRunner(path, providers=providers, threads=threads))
    return target


def openvino_target(artifact: Artifact, hint: str, device: str, threads: int | None, role: str = "ours") -> Target:
    """OpenVINO on the CPU under the precision ``hint``; its parity is judged as the hint makes it (an FP32 file
    under bf16 by the bf16 agreement limits; an IR as its verification judges it, by how its weights are stored).
    Skipped, with the reason, without the openvino package."""
    from rtdetr_export.artifact import OpenVinoRecord
    from rtdetr_export.pipeline.verification import judged_ir_precision
    from rtdetr_export.verify import judged_precision

    record = artifact.record
    judged = judged_ir_precision(artifact.precision, hint, record.runtime.weights) \
        if isinstance(record, OpenVinoRecord) else judged_precision(artifact.precision, hint)
    target = Target(f"openvino-{device}-{hint}:{artifact.label}", "openvino", judged, device, role, artifact,
                    info={"precision_hint": hint, "artifact_precision": artifact.precision})
    if device != "cpu":
        target.skipped = "OpenVINO is benchmarked on the CPU only (this run is --device cuda)"
    elif importlib.util.find_spec("openvino") is None:
        target.skipped = "openvino is not installed (pip install openvino)"
    else:
        target.make = lambda: artifact.runner(lambda path: OpenVinoRunner(path, hint, threads))
    return target


def _tensorrt_runner_class() -> type:
    module = importlib.import_module("rtdetr_export.backends.tensorrt.runner")
    named = getattr(module, "TensorRTRunner", None)
    if isinstance(named, type) and issubclass(named, Runner):
        return named
    for value in vars(module).values():
        if isinstance(value, type) and issubclass(value, Runner) and value.__module__ == module.__name__:
            return value
    raise ImportError("rtdetr_export.backends.tensorrt.runner defines no Runner class")


def tensorrt_targets(engines: list[Artifact], device: str) -> list[Target]:
    """One target per engine; a single skipped row when TensorRT cannot run here or no engine was given."""
    reason = None
    if device != "cuda":
        reason = "TensorRT needs a CUDA GPU (this run is --device cpu)"
    else:
        try:
            runner_class = _tensorrt_runner_class()
        except Exception as exc:  # ImportError, or tensorrt itself failing to load its libraries
            reason = f"TensorRT runner unavailable ({type(exc).__name__}: {str(exc).splitlines()[0][:120]})"
    if not engines:
        return [Target(f"tensorrt-{device}", "tensorrt", "-", device, skipped=reason or "no TensorRT engine among "
                       "the artifacts (pass a .engine file to benchmark one)")]
    targets = [Target(f"tensorrt-{device}:{e.label}", "tensorrt", e.precision, device, artifact=e) for e in engines]
    for target in targets:
        if reason:
            target.skipped = reason
        else:
            target.make = lambda path=target.artifact.path: runner_class(path)
    return targets
