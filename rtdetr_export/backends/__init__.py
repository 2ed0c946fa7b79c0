"""Runners: one per runtime, behind the interface in ``base``. The bottom layer above the model: runners
run an artifact (or a module) and know nothing of exporting, verifying or reporting.

The names below load on first use: the Triton Python-backend model (serving/python_model.py) imports
``backends.onnxruntime_runner`` or ``backends.openvino_runner`` inside the server, where importing this package
must not drag in torch (``TorchRunner``) or onnx (the FP16 emulation).
"""

from importlib import import_module
from typing import Any

# name -> module that defines it (resolved by __getattr__)
_RUNNERS = {
    "Runner": "rtdetr_export.backends.base",
    "artifact_runner": "rtdetr_export.backends.artifact",
    "Fp16EmulationRunner": "rtdetr_export.backends.fp16_emulation",
    "OnnxRuntimeRunner": "rtdetr_export.backends.onnxruntime_runner",
    "SplitRunner": "rtdetr_export.backends.split_runner",
    "TorchRunner": "rtdetr_export.backends.torch_runner",
}

__all__ = list(_RUNNERS)


def __getattr__(name: str) -> Any:
    if name in _RUNNERS:
        return getattr(import_module(_RUNNERS[name]), name)
    raise AttributeError(f"module 'rtdetr_export.backends' has no attribute {name!r}")
