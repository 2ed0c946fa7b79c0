"""Runners: one per runtime, behind the interface in ``base``."""

from rtdetr_export.backends.base import Runner
from rtdetr_export.backends.onnxruntime_runner import OnnxRuntimeRunner
from rtdetr_export.backends.torch_runner import TorchRunner

__all__ = ["OnnxRuntimeRunner", "Runner", "TorchRunner"]
