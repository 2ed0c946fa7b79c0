"""INT8 for OpenVINO with NNCF (``nncf.quantize``), the quantizer OpenVINO users reach for, on the IR itself.

Two recipes (``NNCF_RECIPES``):

- ``rtdetr`` (default): NNCF's transformer mode (``model_type=TRANSFORMER``: SmoothQuant, its attention-aware
  quantizer placement) with an ignored scope that keeps float the parts our own INT8 recipes keep float
  (precision/int8.py ``DEFAULT_EXCLUSIONS``: query selection, the encoder's and decoder's score and box heads, the
  query position head, deformable attention's sampling offsets and attention weights, and every activation x
  activation MatMul: self-attention's QK^T and its softmax x V). OpenVINO's ONNX front end names each operation
  after the ONNX node it came from, so the same name patterns find them in the IR, and model/parts.py names the
  part each belongs to (the recipe records the ignored operations per part). Two settings differ from NNCF's
  defaults, both measured on the trained fixture (docs/precision.md, "OpenVINO IR and NNCF INT8"):
  - activation ranges are the minimum and maximum over all calibration images (``RangeEstimatorParametersSet.
    MINMAX``, what our Q/DQ recipes' ``minmax`` calibration takes), not NNCF's mean of each image's extremes
    (``MEAN_MINMAX``), which clips the activations that only some images reach: -0.0071 -> -0.0036 AP;
  - the full bias correction (``fast_bias_correction=False``), which corrects each quantized layer's output
    mean on the calibration images through the already-quantized layers before it, not NNCF's fast one, which
    looks at each layer alone: -0.0036 -> +0.0004 AP (it costs calibration time: r18vd at 640 on 64 images,
    113 s instead of 63 s on the 2-core AVX-512 EPYC).
- ``default``: ``nncf.quantize`` with NNCF's defaults and nothing ignored: what a user tries first.

The quantized IR carries FakeQuantize operations on the inputs of the layers NNCF quantized (weights stored int8);
``float_layers`` reads an IR back and says which Convolution/MatMul layers have none, so a test can prove the
ignored scope held.
"""

from __future__ import annotations

import contextlib
import fnmatch
import io
import logging
from collections import Counter
from importlib.metadata import version
from typing import Any, Callable, Iterator

import numpy as np

from rtdetr_export.errors import MissingDependencyError, RTDetrExportError
from rtdetr_export.model.parts import part_of
from rtdetr_export.precision.int8 import ATTENTION_MATMUL, DEFAULT_EXCLUSIONS

NNCF_RECIPES = ("rtdetr", "default")
QUANTIZABLE = ("Convolution", "MatMul", "GroupConvolution")  # the layers NNCF puts FakeQuantize in front of
# Operations a weight passes through on its way to a layer (OpenVINO's weight decompression and layout ops).
_WEIGHT_PATH = ("Convert", "Reshape", "Transpose", "Unsqueeze", "Squeeze", "Multiply", "Subtract")


def _nncf():
    try:
        import nncf
    except ImportError:
        raise MissingDependencyError("NNCF INT8 needs nncf: pip install nncf (or the openvino extra)") from None
    return nncf


@contextlib.contextmanager
def _quiet(nncf) -> Iterator[None]:
    """Silence NNCF's log lines and progress bars: stdout may be carrying --json output, and --quiet means quiet."""
    logger = logging.getLogger("nncf")
    level = logger.level
    nncf.set_log_level(logging.ERROR)
    try:
        with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
            yield
    finally:
        logger.setLevel(level)


def _is_constant(output) -> bool:
    """Whether a layer input is a weight: a Constant, possibly through decompression/layout ops."""
    node = output.get_node()
    while node.get_type_name() in _WEIGHT_PATH and node.get_type_name() not in ("Multiply", "Subtract"):
        node = node.input_value(0).get_node()
    return node.get_type_name() == "Constant"


def ignored_layers(model) -> dict[str, str]:
    """The ``rtdetr`` recipe's ignored scope for an IR converted from one of our ONNX files: operation name ->
    why it stays float (the INT8 recipes' default exclusion pattern, or the attention-matmul rule)."""
    out = {}
    for op in model.get_ordered_ops():
        name = op.get_friendly_name()
        for pattern, reason in DEFAULT_EXCLUSIONS.items():
            if fnmatch.fnmatchcase(name, pattern):
                out[name] = f"{reason} ({pattern})"
                break
        else:
            if op.get_type_name() == "MatMul" and not any(_is_constant(op.input_value(i)) for i in range(2)):
                out[name] = ATTENTION_MATMUL
    return out


def quantize_nncf(model, feeds: list[dict[str, np.ndarray]], recipe: str = "rtdetr",
                  log: Callable[[str], None] = lambda message: None) -> tuple[Any, dict[str, Any]]:
    """``model`` (an ``openvino.Model``) quantized by NNCF on ``feeds`` (the IR's inputs, one per calibration image)
    with ``recipe``; and the recipe's description for the record (without the calibration's source)."""
    if recipe not in NNCF_RECIPES:
        raise RTDetrExportError(f"unknown NNCF recipe {recipe!r}; choose one of {', '.join(NNCF_RECIPES)}")
    nncf = _nncf()
    kwargs: dict[str, Any] = {}
    ignored: dict[str, str] = {}
    if recipe == "rtdetr":
        ignored = ignored_layers(model)
        from nncf.quantization.advanced_parameters import AdvancedQuantizationParameters
        from nncf.quantization.range_estimator import RangeEstimatorParametersSet

        kwargs = {"model_type": nncf.ModelType.TRANSFORMER, "ignored_scope": nncf.IgnoredScope(names=sorted(ignored)),
                  "fast_bias_correction": False, "advanced_parameters": AdvancedQuantizationParameters(
                      activations_range_estimator_params=RangeEstimatorParametersSet.MINMAX)}
    log(f"quantizing with NNCF ({recipe} recipe{f', {len(ignored)} operations kept float' if ignored else ''}) "
        f"on {len(feeds)} calibration images")
    try:
        with _quiet(nncf):
            quantized = nncf.quantize(model, nncf.Dataset(feeds), subset_size=len(feeds), **kwargs)
    except (RuntimeError, ValueError) as exc:  # nncf's own errors derive from these
        raise RTDetrExportError(f"NNCF INT8 failed: {str(exc).splitlines()[0][:200]}") from None
    parts = Counter(part_of(name).label for name in ignored)
    floats = float_layers(quantized)
    layers = [op.get_friendly_name() for op in quantized.get_ordered_ops() if op.get_type_name() in QUANTIZABLE]
    return quantized, {
        "library": f"nncf.quantize (nncf {version('nncf')}, openvino {version('openvino')})",
        "recipe": recipe,
        "model_type": "transformer" if recipe == "rtdetr" else None,
        "preset": "NNCF's default for the model type",
        "activation_ranges": "min/max over all calibration images" if recipe == "rtdetr" else
                             "NNCF's default (mean of each image's min/max)",
        "bias_correction": "full" if recipe == "rtdetr" else "NNCF's default (fast)",
        "subset_size": len(feeds),
        "ignored_scope": {"parts": dict(sorted(parts.items())), "operations": dict(sorted(ignored.items()))},
        "nodes": {"quantized": len(layers) - len(floats), "float": len(floats),
                  "fake_quantize": sum(op.get_type_name() == "FakeQuantize" for op in quantized.get_ordered_ops())},
    }


def _fed_by_fake_quantize(output) -> bool:
    """Whether a layer input comes from a FakeQuantize or an int8-stored weight (through decompression ops)."""
    node = output.get_node()
    while True:
        kind = node.get_type_name()
        if kind == "FakeQuantize":
            return True
        if kind == "Constant":
            return node.get_element_type().get_type_name() in ("i8", "u8", "i4", "u4")
        if kind not in _WEIGHT_PATH:
            return False
        node = node.input_value(0).get_node()


def float_layers(model) -> list[str]:
    """Convolution/MatMul layers of an IR (an ``openvino.Model``) none of whose inputs is quantized."""
    return [op.get_friendly_name() for op in model.get_ordered_ops() if op.get_type_name() in QUANTIZABLE
            and not any(_fed_by_fake_quantize(op.input_value(i)) for i in range(op.get_input_size()))]
