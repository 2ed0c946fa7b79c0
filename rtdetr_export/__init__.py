"""rtdetr-export: turn a trained RT-DETRv2 into deployment artifacts you can trust.

The public API, importable from here (loaded on first use, so ``import rtdetr_export`` stays light)::

    import rtdetr_export as rx
    model = rx.load_model("path/to/hf_folder")            # or rx.load_model(preset="r18vd") for random weights
    result = rx.export_onnx(model, "model.onnx", rx.OnnxExportOptions(dynamic_batch=True))
    report = rx.verify_artifact("model.onnx", "path/to/hf_folder")
    ir = rx.export_openvino("model.onnx", "model.xml", rx.OpenVinoExportOptions(precision="int8"))  # NNCF INT8
    detector = rx.open_detector("model.onnx")              # or rx.open_detector(model)
    record = rx.open_artifact("model.onnx")                # what the file is: a typed record (its sidecar)
"""

from importlib import import_module
from typing import Any

from rtdetr_export.errors import RTDetrExportError

__version__ = "0.1.0"

# name -> module that defines it: the top layer's API, resolved lazily (see __getattr__).
_API = {
    "load_model": "rtdetr_export.weights",
    "RTDETRv2": "rtdetr_export.model",
    "ModelConfig": "rtdetr_export.model",
    "OnnxExportOptions": "rtdetr_export.pipeline",
    "ExportResult": "rtdetr_export.pipeline",
    "export_onnx": "rtdetr_export.pipeline",
    "OpenVinoExportOptions": "rtdetr_export.pipeline",
    "export_openvino": "rtdetr_export.pipeline",
    "verify_artifact": "rtdetr_export.pipeline",
    "Detector": "rtdetr_export.pipeline",
    "open_detector": "rtdetr_export.pipeline",
    "PrecisionOptions": "rtdetr_export.artifact",
    "GraphOptions": "rtdetr_export.artifact",
    "open_artifact": "rtdetr_export.artifact",
    "OnnxRecord": "rtdetr_export.artifact",
    "EngineRecord": "rtdetr_export.artifact",
    "OpenVinoRecord": "rtdetr_export.artifact",
    "Sampler": "rtdetr_export.model",
    "Verification": "rtdetr_export.verify",
    "predict_images": "rtdetr_export.predict",
    "load_image": "rtdetr_export.imaging",
    "BenchOptions": "rtdetr_export.bench",
    "run_benchmark": "rtdetr_export.bench",
    "SelectOptions": "rtdetr_export.select",
    "select_artifact": "rtdetr_export.select",
}

__all__ = ["RTDetrExportError", "__version__", *_API]


def __getattr__(name: str) -> Any:
    if name in _API:
        return getattr(import_module(_API[name]), name)
    raise AttributeError(f"module 'rtdetr_export' has no attribute {name!r}")
