"""INT8 with explicit Q/DQ, calibrated with ONNX Runtime's static quantizer, placed the way TensorRT wants it.

Recipe (docs/precision.md): symmetric INT8 activations (zero point 0) and per-channel symmetric INT8
weights on the inputs of Conv, MatMul and Gemm only; no Q/DQ on their outputs (TensorRT fuses bias, residual
add and activation into the INT8 kernel and places the output quantization itself); biases stay float.
Parts whose error reaches the detections directly stay float by default (``DEFAULT_EXCLUSIONS``).
"""

from __future__ import annotations

import contextlib
import fnmatch
import io
import logging
import tempfile
from dataclasses import dataclass
from importlib.metadata import version
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import onnx

from rtdetr_export.artifact import load_onnx
from rtdetr_export.artifact.options import CALIBRATION_METHODS
from rtdetr_export.errors import RTDetrExportError
from rtdetr_export.onnx_graph import consumers, producers, topological_sort

QUANTIZED_OPS = ("Conv", "MatMul", "Gemm")

# Name patterns (fnmatch on node names) of layers kept in float, with the reason each is sensitive.
DEFAULT_EXCLUSIONS = {
    "*/enc_score_head/*": "query selection: encoder class scores pick the 300 queries",
    "*/enc_output/*": "query selection: the projection the selection scores read",
    "*/enc_bbox_head/*": "box head: initial boxes in logit space",
    "*/dec_score_head*": "score head: the output logits",
    "*/dec_bbox_head*": "box head: refinement deltas in logit space",
    "*/query_pos_head*": "reads box coordinates in [0, 1]; INT8 steps would be 1/127 of the image",
    "*/sampling_offsets/*": "deformable attention: sampling locations",
    "*/attention_weights/*": "deformable attention: softmax attention weights",
    # D-FINE's box and score heads (RT-DETR graphs have no such nodes)
    "*/pre_bbox_head/*": "box head: D-FINE's initial boxes in logit space",
    "*/decoder/MatMul*": "FDR integral: edge-bin probabilities x W(n), whose steps near 0 are far below one INT8 step "
                         "of its range",
    "*/lqe_layers*": "LQE: reads the top edge-bin probabilities and adds to the output logits",
}
ATTENTION_MATMUL = "activation x activation MatMul (QK^T and softmax x V attention-weight paths)"


@dataclass
class Int8Options:
    """What ``--int8`` exposes: calibration method and which layers stay float."""

    method: str = "minmax"
    exclude: tuple[str, ...] = ()
    default_exclusions: bool = True

    def validate(self) -> None:
        if self.method not in CALIBRATION_METHODS:
            raise RTDetrExportError(f"unknown calibration method {self.method!r}; choose one of "
                                    f"{', '.join(CALIBRATION_METHODS)}")


def excluded_nodes(model: onnx.ModelProto, options: Int8Options,
                   target_exclusions: dict[str, str] | None = None) -> dict[str, str]:
    """Conv/MatMul/Gemm nodes that stay float -> why (default patterns, with the ones a layout adds in
    ``target_exclusions``; attention matmuls; user patterns)."""
    initializers = {t.name for t in model.graph.initializer}
    made = producers(model)
    patterns = {**DEFAULT_EXCLUSIONS, **(target_exclusions or {})} if options.default_exclusions else {}
    patterns.update({p: "--int8-exclude" for p in options.exclude})
    out = {}
    for node in model.graph.node:
        if node.op_type not in QUANTIZED_OPS:
            continue
        for pattern, reason in patterns.items():
            if fnmatch.fnmatchcase(node.name, pattern):
                out[node.name] = f"{reason} ({pattern})"
                break
        else:
            constant = [name in initializers or (name in made and made[name].op_type == "Constant")
                        for name in node.input[:2]]
            if options.default_exclusions and node.op_type == "MatMul" and not any(constant):
                out[node.name] = ATTENTION_MATMUL
    for pattern in options.exclude:
        if not any(fnmatch.fnmatchcase(node.name, pattern) for node in model.graph.node):
            raise RTDetrExportError(f"--int8-exclude {pattern!r} matches no node of the graph "
                                    "(patterns are shell-style, e.g. '*/dec_score_head*')")
    return out


def isolate_float_readers(model: onnx.ModelProto, excluded: dict[str, str]) -> int:
    """Give readers that stay float their own copy (Identity) of every tensor a quantized layer reads.

    ONNX Runtime rewires every reader of a quantized tensor to its DequantizeLinear output, so an excluded
    layer or a residual Add sharing an input with a quantized Conv would silently read INT8-rounded values.
    After this, Q/DQ sit exactly on the inputs of the quantized layers. Returns the Identity count.
    """
    initializers = {t.name for t in model.graph.initializer}
    quantized = {n.name for n in model.graph.node if n.op_type in QUANTIZED_OPS and n.name not in excluded}
    readers = consumers(model)
    tensors = {name for n in model.graph.node if n.name in quantized for name in n.input[:2]
               if name and name not in initializers}
    added = 0
    for tensor in sorted(tensors):
        others = [n for n in readers.get(tensor, []) if n.name not in quantized]
        if not others:
            continue
        copy = f"{tensor}__float"
        model.graph.node.append(onnx.helper.make_node("Identity", [tensor], [copy], name=copy))
        for node in others:
            for i, name in enumerate(node.input):
                if name == tensor:
                    node.input[i] = copy
        added += 1
    topological_sort(model)
    return added


def batched_weights(model: onnx.ModelProto, excluded: dict[str, str]) -> list[str]:
    """Constant MatMul weights of rank > 2 (one matrix per head); these are quantized per tensor.

    ONNX per-axis quantization has a single axis, and ONNX Runtime's CPU kernel takes per-channel
    parameters only for 2-D weights, so a per-head [H, K, N] weight gets one symmetric scale.
    """
    ranks = {t.name: len(t.dims) for t in model.graph.initializer}
    return sorted({node.input[1] for node in model.graph.node if node.op_type == "MatMul" and
                   node.name not in excluded and ranks.get(node.input[1], 0) > 2})


class _Feeds:
    """ONNX Runtime's CalibrationDataReader protocol over a list of feeds."""

    def __init__(self, feeds: list[dict[str, np.ndarray]]):
        self._it = iter(feeds)

    def get_next(self) -> dict[str, np.ndarray] | None:
        return next(self._it, None)

    def rewind(self) -> None:  # part of the protocol; one pass is all we make
        pass


@contextlib.contextmanager
def _quiet_quantizer() -> Iterator[None]:
    """Silence the quantizer's progress prints and log records: stdout may be carrying --json output."""
    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            yield
    finally:
        root.setLevel(level)


def quantize_int8(model: onnx.ModelProto, feeds: list[dict[str, np.ndarray]],
                  options: Int8Options) -> tuple[onnx.ModelProto, dict[str, str]]:
    """The Q/DQ graph calibrated on ``feeds``, and the excluded nodes with their reasons."""
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static

    options.validate()
    excluded = excluded_nodes(model, options)
    work = onnx.ModelProto()
    work.CopyFrom(model)
    isolate_float_readers(work, excluded)
    method = {"minmax": CalibrationMethod.MinMax, "entropy": CalibrationMethod.Entropy,
              "percentile": CalibrationMethod.Percentile}[options.method]
    extra = {
        "ActivationSymmetric": True,            # zero point 0: TensorRT takes symmetric INT8 only
        "WeightSymmetric": True,
        "QuantizeBias": False,                  # TensorRT folds a float bias into the INT8 kernel
        "OpTypesToExcludeOutputQuantization": list(QUANTIZED_OPS),
        "QDQKeepRemovableActivations": True,    # keep ReLU explicit; TensorRT fuses it
        "DedicatedQDQPair": False,              # isolate_float_readers leaves only quantized readers to share it
        "QDQOpTypePerChannelSupportToAxis": {"MatMul": -1},  # the output channels of a [K, N] weight
        "TensorQuantOverrides": {name: [{"symmetric": True}] for name in batched_weights(work, excluded)},
    }
    with tempfile.TemporaryDirectory(prefix="rtdetr-export-int8-") as tmp, _quiet_quantizer():
        source, target = Path(tmp) / "fp32.onnx", Path(tmp) / "int8.onnx"
        onnx.save(work, str(source))
        if options.method == "entropy":
            # quantize_static builds its entropy calibrator with as many histogram bins as quantized bins
            # (128), which leaves a single candidate threshold: the min-max range. So the ranges come from
            # our own calibrator with TensorRT's histogram (2048 bins onto 128) and override the min-max.
            for name, peak in entropy_ranges(source, feeds, Path(tmp)).items():
                extra["TensorQuantOverrides"].setdefault(name, [{"rmin": np.float32(-peak), "rmax": np.float32(peak)}])
            method, feeds = CalibrationMethod.MinMax, feeds[:1]
        try:
            quantize_static(str(source), str(target), _Feeds(feeds), quant_format=QuantFormat.QDQ,
                            op_types_to_quantize=list(QUANTIZED_OPS), per_channel=True, reduce_range=False,
                            activation_type=QuantType.QInt8, weight_type=QuantType.QInt8,
                            nodes_to_exclude=sorted(excluded), calibrate_method=method, extra_options=extra)
        except (ValueError, RuntimeError) as exc:
            raise RTDetrExportError(f"INT8 calibration failed: {str(exc).splitlines()[0][:200]}") from None
        quantized = load_onnx(target)
    return quantized, excluded


def entropy_ranges(source: Path, feeds: list[dict[str, np.ndarray]], folder: Path) -> dict[str, float]:
    """Symmetric KL-divergence (entropy) range of every Conv/MatMul/Gemm input and output tensor."""
    from onnxruntime.quantization import CalibrationMethod, create_calibrator

    calibrator = create_calibrator(source, list(QUANTIZED_OPS), augmented_model_path=str(folder / "augmented.onnx"),
                                   calibrate_method=CalibrationMethod.Entropy,
                                   extra_options={"num_bins": 2048, "num_quantized_bins": 128, "symmetric": True})
    calibrator.collect_data(_Feeds(feeds))
    data = calibrator.compute_data()
    return {name: float(max(abs(np.asarray(r.range_value[0]).item()), abs(np.asarray(r.range_value[1]).item())))
            for name, r in data.items()}


def qdq_coverage(model: onnx.ModelProto) -> dict[str, list[str]]:
    """Conv/MatMul/Gemm nodes whose data and weight inputs both come from DequantizeLinear, and those not.

    A Cast between the DequantizeLinear and the layer (FP32 Q/DQ feeding an FP16 layer below opset 19) still
    counts as Q/DQ-fed.
    """
    made = producers(model)

    def dequantized(name: str) -> bool:
        node = made.get(name)
        while node is not None and node.op_type == "Cast":
            node = made.get(node.input[0])
        return node is not None and node.op_type == "DequantizeLinear"

    out: dict[str, list[str]] = {"quantized": [], "float": []}
    for node in model.graph.node:
        if node.op_type in QUANTIZED_OPS:
            fed = all(dequantized(name) for name in node.input[:2])
            out["quantized" if fed else "float"].append(node.name)
    return out


def int8_recipe(options: Int8Options, excluded: dict[str, str], quantized: onnx.ModelProto,
                calibration: dict[str, Any]) -> dict[str, Any]:
    """JSON-ready description of how the INT8 graph was made (stored in the provenance)."""
    coverage = qdq_coverage(quantized)
    return {
        "library": f"onnxruntime.quantization.quantize_static (onnxruntime {version('onnxruntime')})",
        "format": "QDQ",
        "activations": "int8, symmetric per-tensor (zero point 0)",
        "weights": "int8, symmetric per-channel (Conv axis 0, MatMul last axis; per-tensor for per-head 3-D "
                   "MatMul weights)",
        "quantized_ops": list(QUANTIZED_OPS),
        "output_quantization": "none (inputs only)",
        "bias": "float",
        **calibration_and_exclusions(options, excluded, calibration),
        "nodes": {"quantized": len(coverage["quantized"]), "float": len(coverage["float"])},
    }


def calibration_and_exclusions(options: Int8Options, excluded: dict[str, str], calibration: dict[str, Any],
                               target_exclusions: dict[str, str] | None = None) -> dict[str, Any]:
    """The recipe fields every INT8 layout records the same way: its calibration and what was kept float
    (``target_exclusions``: default patterns a layout adds to ``DEFAULT_EXCLUSIONS``)."""
    defaults = {**DEFAULT_EXCLUSIONS, **(target_exclusions or {})}
    return {"calibration": {**calibration, "method": options.method},
            "default_exclusions": defaults if options.default_exclusions else {},
            "user_exclusions": list(options.exclude),
            "excluded_nodes": dict(sorted(excluded.items()))}
