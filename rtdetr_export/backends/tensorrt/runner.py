"""A TensorRT engine as a runner: I/O bound by tensor name, device buffers are PyTorch CUDA tensors.

Uses the name-based API that TensorRT 10 introduced and 11 keeps (``num_io_tensors``, ``get_tensor_name``,
``get_tensor_mode``, ``set_input_shape``, ``set_tensor_address``, ``execute_async_v3``); no pycuda.
Optionally the enqueue is captured once into a CUDA graph and replayed (inputs are copied into the
captured buffers, so the batch shape must stay the one captured).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from rtdetr_export.backends.base import Runner
from rtdetr_export.backends.tensorrt.builder import import_tensorrt
from rtdetr_export.errors import MissingDependencyError, RTDetrExportError


def cuda_device(index: int = 0) -> Any:
    """torch.device for the GPU, or MissingDependencyError when PyTorch sees no CUDA GPU."""
    import torch

    if not torch.cuda.is_available():
        raise MissingDependencyError("no CUDA GPU is visible to PyTorch (the TensorRT runner keeps its buffers in "
                                     "CUDA tensors): run on an NVIDIA GPU machine with a CUDA build of torch")
    return torch.device(f"cuda:{index}")


def shape_refused(name: str, shape: tuple[int, ...], profile: Any) -> str:
    """Why ``set_input_shape`` returned False: the shape against the profile's (min, opt, max)."""
    low, _, high = (tuple(int(d) for d in dims) for dims in profile)
    if len(shape) == len(low) and shape[1:] == low[1:] and not low[0] <= shape[0] <= high[0]:
        return (f"batch {shape[0]} is outside the engine's profile ({low[0]}..{high[0]}); rebuild with "
                f"--min-batch/--max-batch covering it")
    return f"input {name!r} of shape {list(shape)} is outside the engine's profile ({list(low)}..{list(high)})"


def output_shape(name: str, dims: Any) -> tuple[int, ...]:
    """An output's shape once the inputs are set; a -1 left means a data-dependent shape we do not allocate."""
    shape = tuple(int(d) for d in dims)
    if any(d < 0 for d in shape):
        raise RTDetrExportError(f"engine output {name!r} has a data-dependent shape {list(shape)} (-1 after the input "
                                "shapes were set); our graphs never make one, so this engine is not ours")
    return shape


class TensorRTRunner(Runner):
    """Runs a serialized engine (a path or the bytes) on one GPU."""

    name = "tensorrt"

    def __init__(self, engine: str | Path | bytes, device: int = 0, cuda_graph: bool = False):
        self.engine_data = engine
        self.device_index = device
        self.cuda_graph = cuda_graph
        self.engine = self.context = self.stream = None
        self.buffers: dict[str, Any] = {}
        self._graph = None
        self._graph_shapes: dict[str, tuple[int, ...]] | None = None

    def activate(self) -> None:
        import torch

        trt = import_tensorrt()
        self.device = cuda_device(self.device_index)
        data = self.engine_data if isinstance(self.engine_data, bytes) else Path(self.engine_data).read_bytes()
        self._logger = trt.Logger(trt.Logger.WARNING)
        self._runtime = trt.Runtime(self._logger)
        self.engine = self._runtime.deserialize_cuda_engine(data)
        if self.engine is None:
            raise RTDetrExportError("TensorRT cannot load this engine (built by another TensorRT version or GPU?)")
        self.context = self.engine.create_execution_context()
        self.stream = torch.cuda.Stream(self.device)
        names = [self.engine.get_tensor_name(i) for i in range(self.engine.num_io_tensors)]
        self.input_names = [n for n in names if self.engine.get_tensor_mode(n) == trt.TensorIOMode.INPUT]
        self.output_names = [n for n in names if self.engine.get_tensor_mode(n) == trt.TensorIOMode.OUTPUT]

    def deactivate(self) -> None:
        self._graph = None
        self.buffers = {}
        self.context = self.engine = self.stream = None

    def _torch_dtype(self, name: str) -> Any:
        import torch

        trt = import_tensorrt()
        numpy_dtype = np.dtype(trt.nptype(self.engine.get_tensor_dtype(name)))
        return torch.from_numpy(np.zeros(0, dtype=numpy_dtype)).dtype

    def bind(self, feed: dict[str, np.ndarray]) -> None:
        """Copy the inputs to the GPU, set their shapes and addresses, allocate the outputs."""
        import torch

        with torch.cuda.stream(self.stream):
            for name in self.input_names:
                if name not in feed:
                    raise RTDetrExportError(f"the engine needs input {name!r}")
                tensor = torch.from_numpy(np.ascontiguousarray(feed[name])).to(self.device, self._torch_dtype(name))
                self.buffers[name] = tensor
                if not self.context.set_input_shape(name, tuple(tensor.shape)):
                    raise RTDetrExportError(shape_refused(name, tuple(tensor.shape),
                                                          self.engine.get_tensor_profile_shape(name, 0)))
                self._set_address(name, tensor)
            for name in self.output_names:
                shape = output_shape(name, self.context.get_tensor_shape(name))
                tensor = torch.empty(shape, dtype=self._torch_dtype(name), device=self.device)
                self.buffers[name] = tensor
                self._set_address(name, tensor)

    def _set_address(self, name: str, tensor: Any) -> None:
        if not self.context.set_tensor_address(name, tensor.data_ptr()):
            raise RTDetrExportError(f"TensorRT rejected the device address of {name!r} (set_tensor_address "
                                    "returned false)")

    def execute(self) -> None:
        """Run once on the bound buffers (replaying the CUDA graph when enabled); does not wait."""
        if self._graph is not None:
            self._graph.replay()
        elif not self.context.execute_async_v3(self.stream.cuda_stream):
            raise RTDetrExportError("TensorRT execution failed (execute_async_v3 returned false)")

    def _capture(self) -> None:
        import torch

        self.execute()  # TensorRT finishes its lazy set-up on a first, uncaptured run
        self.stream.synchronize()
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph, stream=self.stream):
            captured = self.context.execute_async_v3(self.stream.cuda_stream)
        if not captured:
            raise RTDetrExportError("TensorRT execution failed while capturing the CUDA graph "
                                    "(execute_async_v3 returned false)")
        self._graph = graph
        self._graph_shapes = {n: tuple(self.buffers[n].shape) for n in self.input_names}

    def infer(self, feed: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        import torch

        shapes = {n: tuple(np.shape(feed[n])) for n in self.input_names if n in feed}
        if self._graph is not None and shapes == self._graph_shapes:
            with torch.cuda.stream(self.stream):
                for name in self.input_names:
                    self.buffers[name].copy_(torch.from_numpy(np.ascontiguousarray(feed[name])))
        else:
            self._graph = None
            self.bind(feed)
            if self.cuda_graph:
                self._capture()
        with torch.cuda.stream(self.stream):
            self.execute()
            outputs = {name: self.buffers[name].cpu() for name in self.output_names}
        self.stream.synchronize()
        return {name: value.numpy() for name, value in outputs.items()}

    def describe_io(self) -> list[dict[str, Any]]:
        """Name, mode, dtype and engine shape (-1: dynamic) of every I/O tensor."""
        trt = import_tensorrt()
        return [{"name": name, "mode": "input" if self.engine.get_tensor_mode(name) == trt.TensorIOMode.INPUT
                 else "output", "dtype": np.dtype(trt.nptype(self.engine.get_tensor_dtype(name))).name,
                 "shape": list(self.engine.get_tensor_shape(name))}
                for name in self.input_names + self.output_names]
