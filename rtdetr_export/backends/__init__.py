"""Runners: one per runtime, behind the interface in ``base``. The bottom layer above the model: runners
run an artifact (or a module) and know nothing of exporting, verifying or reporting."""

from rtdetr_export.backends.base import Runner
from rtdetr_export.backends.fp16_emulation import Fp16EmulationRunner
from rtdetr_export.backends.onnxruntime_runner import OnnxRuntimeRunner
from rtdetr_export.backends.torch_runner import TorchRunner

__all__ = ["Fp16EmulationRunner", "OnnxRuntimeRunner", "Runner", "TorchRunner"]
