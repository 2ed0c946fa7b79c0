"""OpenVINO (CPU) as a runner, with an explicit inference-precision hint that is recorded, never implied.

OpenVINO picks bf16 by itself on CPUs that have it (AVX-512 BF16, AMX), so the hint is always set: ``f32``
runs the graph in float32, ``bf16`` in bfloat16 where OpenVINO deems it safe. An INT8 file (Q/DQ) runs its
quantized layers in integers whatever the hint. ``openvino`` is an optional extra: ``pip install openvino``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from rtdetr_export.backends.base import Runner
from rtdetr_export.errors import MissingDependencyError, RTDetrExportError

PRECISION_HINTS = ("f32", "bf16")


class OpenVinoRunner(Runner):
    """Runs an ONNX file, or an OpenVINO IR of ours (MODEL.xml), with OpenVINO on the CPU under ``precision_hint``
    (f32 or bf16).

    ``io_names`` (input names, output names), when the caller knows them, spares reading the file's graph: the
    Triton Python-backend model passes its config's names, which were written from the file's sidecar, and so
    runs without onnx (and the torch that ``artifact`` pulls in through the model's head names).
    """

    name = "openvino"

    def __init__(self, path: str | Path, precision_hint: str = "f32", threads: int | None = None,
                 io_names: tuple[list[str], list[str]] | None = None):
        if precision_hint not in PRECISION_HINTS:
            raise RTDetrExportError(f"unknown OpenVINO precision {precision_hint!r}; choose one of "
                                    f"{', '.join(PRECISION_HINTS)}")
        self.path, self.precision_hint, self.threads = Path(path), precision_hint, threads
        self.io_names = io_names
        self.name = f"openvino-{precision_hint}"
        self.compiled = None

    def activate(self) -> None:
        self.compiled = self.compile(str(self.path))
        # A port can carry several tensor names: when OpenVINO folds an FP16 file's first or last Cast, the tensor
        # behind it names the port too, and ``get_any_name`` may return that one. So ports keep the file's names.
        inputs, outputs = self.io_names or _graph_io_names(self.path)
        self.inputs = _by_name(list(self.compiled.inputs), inputs)
        self.outputs = _by_name(list(self.compiled.outputs), outputs)

    def compile(self, model):
        """``model`` (a file's path, or an ``openvino.Model`` read from it) compiled for the CPU with this runner's
        precision hint and threads: what ``infer`` runs, or a copy of it with more outputs (verify/selection.py)."""
        try:
            import openvino as ov
        except ImportError:
            raise MissingDependencyError("the OpenVINO runner needs openvino: pip install openvino") from None
        config = {"INFERENCE_PRECISION_HINT": self.precision_hint}
        if self.threads:
            config["INFERENCE_NUM_THREADS"] = self.threads
        try:
            return ov.Core().compile_model(model, "CPU", config)
        except RuntimeError as exc:
            raise RTDetrExportError(f"{self.path}: OpenVINO cannot compile it ({str(exc).splitlines()[0][:160]})") \
                from None

    def deactivate(self) -> None:
        self.compiled = None

    def infer(self, feed: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        result = self.compiled({port: feed[name] for name, port in self.inputs.items()})
        return {name: np.asarray(result[port]) for name, port in self.outputs.items()}


def _graph_io_names(path: Path) -> tuple[list[str], list[str]]:
    """The ONNX file's input and output names, in order (OpenVINO keeps the graph's order); an IR's from its
    record (the ONNX file's names, which OpenVINO's conversion keeps)."""
    # here: see the class docstring (io_names)
    from rtdetr_export.artifact import OPENVINO_SUFFIXES, io_description, load_onnx, open_artifact

    io = open_artifact(path).io if path.suffix.lower() in OPENVINO_SUFFIXES else io_description(load_onnx(path))
    return io.input_names, io.output_names


def _by_name(ports: list, names: list[str]) -> dict:
    """name -> the port that carries it (the port at the same position when none does)."""
    return {name: next((port for port in ports if name in port.get_names()), ports[index])
            for index, name in enumerate(names)}

