"""TensorRT 10.x / 11.x: engine builder, runner and latency timing (``tensorrt`` is imported only when used)."""

from rtdetr_export.backends.tensorrt.builder import (BuildOptions, build_serialized_engine, import_tensorrt,
                                                    profile_shapes)
from rtdetr_export.backends.tensorrt.runner import TensorRTRunner

__all__ = ["BuildOptions", "TensorRTRunner", "build_serialized_engine", "import_tensorrt", "profile_shapes"]
