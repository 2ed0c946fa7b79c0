"""ONNX Runtime as a runner (CPU by default; CUDA when asked and available)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from rtdetr_export.backends.base import Runner
from rtdetr_export.errors import RTDetrExportError


class OnnxRuntimeRunner(Runner):
    """Runs an ONNX file in an ``onnxruntime.InferenceSession``."""

    name = "onnxruntime"

    def __init__(self, path: str | Path, providers: list[str] | None = None, threads: int | None = None):
        self.path = Path(path)
        self.providers = providers or ["CPUExecutionProvider"]
        self.threads = threads
        self.session = None

    def activate(self) -> None:
        self.session = self.make_session(str(self.path))

    def make_session(self, model: str | bytes):
        """An InferenceSession on a path or serialized model, with this runner's threads and providers."""
        import onnxruntime as ort

        options = ort.SessionOptions()
        if self.threads:
            options.intra_op_num_threads = self.threads
        options.log_severity_level = 3
        try:
            return ort.InferenceSession(model, options, providers=self.providers)
        except Exception as exc:  # ORT raises its own exception types for unreadable or invalid models
            raise RTDetrExportError(f"{self.path}: ONNX Runtime cannot load it ({str(exc).splitlines()[0][:160]})") \
                from None

    def deactivate(self) -> None:
        self.session = None

    @property
    def active_providers(self) -> list[str]:
        """The execution providers the session really uses (ORT falls back to CPU without saying so)."""
        return list(self.session.get_providers()) if self.session is not None else []

    @property
    def input_names(self) -> list[str]:
        return [i.name for i in self.session.get_inputs()]

    def infer(self, feed: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        names = [o.name for o in self.session.get_outputs()]
        outputs = self.session.run(names, {k: feed[k] for k in self.input_names})
        return dict(zip(names, outputs))
