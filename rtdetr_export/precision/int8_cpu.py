"""INT8 for CPU runtimes (ONNX Runtime, OpenVINO): the Q/DQ layout their graph optimisers fuse into integer kernels.

The TensorRT recipe (int8.py) puts Q/DQ on layer inputs only and leaves everything else float, because TensorRT
places output quantization itself. ONNX Runtime's CPU provider cannot fuse that: a DequantizeLinear -> Conv with
a float output stays a float Conv after a dequantize, so the file runs slower than FP32 (measured 0.77x on r18vd).
Its QDQ fusion (QDQ -> QLinearConv) needs the layer's input, weight *and output* quantized, and its x86 kernels
(u8 x s8 VNNI dot products) want uint8 activations: int8 activations measured 0.99x of FP32, uint8 1.84x.

So this is ONNX Runtime's stock ``quantize_static`` in QDQ format with its own defaults for a CPU: asymmetric
uint8 activations, per-channel symmetric int8 weights, int32 biases, outputs quantized. Op types by measurement
(r18vd discrete, 2 threads, docs/precision.md): Conv alone 1.89x FP32, Conv + MatMul 1.95-2.02x (Gemm is the
same Linear layer in a static-batch export, fused into QGemm). What follows a quantized layer is quantized with
it when that keeps the tensor in uint8 (``FOLLOWERS``), because every float op between two integer layers costs
a DequantizeLinear and a QuantizeLinear over the whole tensor:
- the ReLU is folded into the layer's output quantization (the uint8 range's lower end);
- the encoder's SiLU, ``x * sigmoid(x)``, runs as QLinearSigmoid (a 256-entry table) and QLinearMul. In float it
  also reads its input through two DequantizeLinear, since ONNX Runtime gives each reader its own, which keeps it
  from fusing the pair into QuickGelu (measured: ~12 ms of 200 per r18vd image in DequantizeLinear, Sigmoid and
  Mul around the 80x80 CSP block alone); with the FPN's nearest Resize in uint8 too (it only copies codes) and
  the Concat that joins it, r18vd went from 2.21x (ReLU fold only) to 2.39x (+ SiLU) and 2.49x FP32 in one
  interleaved run on an idle 2-core Xeon;
- MaxPool and the residual Adds gave nothing measurable and stay as ONNX Runtime places them.
MatMuls the TensorRT recipe keeps float stay float here too (its default exclusions: heads, query selection,
attention sampling; activation x activation products), and so do per-head 3-D weights, for which ONNX Runtime
has no integer kernel (QLinearMatMul needs a scalar or 1-D zero point).

Whether the runtime really fuses it is measured, not assumed: ``fused_integer_ops`` asks ONNX Runtime for the
optimised graph it runs and counts the integer ops in it; the counts go into the recipe.
"""

from __future__ import annotations

import tempfile
from collections import Counter
from importlib.metadata import version
from pathlib import Path
from typing import Any

import numpy as np
import onnx

from rtdetr_export.artifact import load_onnx
from rtdetr_export.errors import RTDetrExportError
from rtdetr_export.onnx_graph import producers
from rtdetr_export.precision.int8 import (Int8Options, _Feeds, _quiet_quantizer, calibration_and_exclusions,
                                          excluded_nodes, qdq_coverage)

CPU_QUANTIZED_OPS = ("Conv", "MatMul", "Gemm", "Relu", "Sigmoid", "Mul", "Resize")
# Ops quantized only where they follow a quantized layer (directly or through other followers), never on their
# own: the ReLU folds into the layer's output range, SiLU's Sigmoid and Mul become a table and an integer
# product, and the FPN's nearest Resize copies uint8 codes. A Mul counts only as SiLU's (x * sigmoid(x)).
FOLLOWERS = ("Relu", "Sigmoid", "Mul", "Resize")
BATCHED_WEIGHT = "per-head 3-D MatMul weight: ONNX Runtime's integer MatMul takes a scalar or 1-D zero point"
# Default exclusions of this target only, so that one file runs right on both CPU runtimes. The bilinear samplers
# project the whole encoder memory (the Concat of the levels) to values; OpenVINO 2026.4's low-precision MatMul
# pass throws when that projection is quantized (it moves the levels' dequantization behind the Concat as a
# per-position [1, cells, 1] constant it then cannot broadcast; measured on the trained fixture). ``discrete``
# projects after sampling (another node name), so its files are unaffected.
CPU_DEFAULT_EXCLUSIONS = {
    "*/cross_attn/value_proj/*": "value projection of the whole memory: OpenVINO's low-precision MatMul pass "
                                 "fails on it quantized",
}
# OpenVINO 2026.4 computes an INT8 Conv with 8 output channels wrong on this CPU (the trained fixture's stem: AP
# 0.33 instead of ONNX Runtime's 0.63 on the same file, bisected to conv1_1 3->8 and conv1_2 8->8; conv1_3 8->16
# is right). Real RT-DETR stems have 32 or more channels, where this costs nothing.
MIN_INT8_CONV_CHANNELS = 16
NARROW_CONV = "Conv with {} output channels: OpenVINO computes narrow INT8 convolutions wrong"
# Integer kernels ONNX Runtime's CPU provider fuses Q/DQ groups into (onnx and com.microsoft domains).
FUSED_INTEGER_OPS = ("QLinearConv", "ConvInteger", "MatMulInteger", "QLinearMatMul", "QGemm",
                     "MatMulIntegerToFloat", "DynamicQuantizeMatMul", "QLinearAdd", "QLinearMul",
                     "QLinearSigmoid", "QLinearLeakyRelu", "QLinearConcat", "QLinearAveragePool",
                     "QLinearGlobalAveragePool")


def quantize_int8_cpu(model: onnx.ModelProto, feeds: list[dict[str, np.ndarray]], options: Int8Options,
                      op_types: tuple[str, ...] = CPU_QUANTIZED_OPS) -> tuple[onnx.ModelProto, dict[str, str]]:
    """The CPU-layout Q/DQ graph calibrated on ``feeds``, and the excluded nodes with their reasons."""
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static

    options.validate()
    if options.method == "entropy":
        # Our entropy ranges are symmetric (TensorRT's calibrator); asymmetric uint8 would waste half its codes.
        raise RTDetrExportError("--calib-method entropy is for --int8-target tensorrt; the cpu target takes "
                                "minmax or percentile")
    excluded = {name: why for name, why in excluded_nodes(model, options, CPU_DEFAULT_EXCLUSIONS).items()
                if _op_type(model, name) in op_types}
    if options.default_exclusions:
        excluded.update(narrow_convs(model, excluded))
    if "MatMul" in op_types:
        ranks = {t.name: len(t.dims) for t in model.graph.initializer}
        excluded.update({node.name: BATCHED_WEIGHT for node in model.graph.node if node.op_type == "MatMul"
                         and node.name not in excluded and ranks.get(node.input[1], 0) > 2})
    learned = [node.name for node in model.graph.node if node.op_type in op_types
               and node.op_type not in FOLLOWERS and node.name not in excluded]
    learned += followers(model, set(learned), tuple(op for op in FOLLOWERS if op in op_types))
    method = {"minmax": CalibrationMethod.MinMax, "percentile": CalibrationMethod.Percentile}[options.method]
    with tempfile.TemporaryDirectory(prefix="rtdetr-export-int8cpu-") as tmp, _quiet_quantizer():
        source, target = Path(tmp) / "fp32.onnx", Path(tmp) / "int8.onnx"
        onnx.save(model, str(source))
        try:
            quantize_static(str(source), str(target), _Feeds(feeds), quant_format=QuantFormat.QDQ,
                            op_types_to_quantize=list(op_types), nodes_to_quantize=learned, per_channel=True,
                            reduce_range=False,
                            activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
                            nodes_to_exclude=sorted(excluded), calibrate_method=method,
                            extra_options={"WeightSymmetric": True, "ActivationSymmetric": False})
        except (ValueError, RuntimeError) as exc:
            raise RTDetrExportError(f"INT8 calibration failed: {str(exc).splitlines()[0][:200]}") from None
        quantized = load_onnx(target)
    return quantized, excluded


def followers(model: onnx.ModelProto, layers: set[str], op_types: tuple[str, ...]) -> list[str]:
    """Nodes of ``op_types`` (``FOLLOWERS``) whose data input comes from a quantized layer in ``layers`` or from
    another such follower, in graph order; a Mul only as SiLU's product ``x * sigmoid(x)``."""
    made, quantized, out = producers(model), set(layers), []
    for node in model.graph.node:  # topological: a follower's producer was decided before it
        if node.op_type not in op_types:
            continue
        if node.op_type == "Mul":
            sigmoid = [made.get(name) for name in node.input]
            take = any(s is not None and s.op_type == "Sigmoid" and s.name in quantized
                       and s.input[0] == node.input[1 - i] for i, s in enumerate(sigmoid))
        else:
            # A Resize only copies codes when it reads the nearest cell; an interpolating one would round again.
            nearest = all(a.s == b"nearest" for a in node.attribute if a.name == "mode")
            take = getattr(made.get(node.input[0]), "name", None) in quantized and nearest
        if take:
            quantized.add(node.name)
            out.append(node.name)
    return out


def narrow_convs(model: onnx.ModelProto, excluded: dict[str, str]) -> dict[str, str]:
    """Convs with fewer than ``MIN_INT8_CONV_CHANNELS`` output channels -> why they stay float."""
    channels = {t.name: t.dims[0] for t in model.graph.initializer if len(t.dims) == 4}
    return {node.name: NARROW_CONV.format(channels[node.input[1]]) for node in model.graph.node
            if node.op_type == "Conv" and node.name not in excluded
            and channels.get(node.input[1], MIN_INT8_CONV_CHANNELS) < MIN_INT8_CONV_CHANNELS}


def _op_type(model: onnx.ModelProto, name: str) -> str:
    return next((node.op_type for node in model.graph.node if node.name == name), "")


def fused_integer_ops(model: onnx.ModelProto | str | Path, threads: int = 1) -> dict[str, int]:
    """Integer ops in the graph ONNX Runtime's CPU provider actually runs for ``model`` (after its QDQ fusion)."""
    import onnxruntime as ort

    data = model.SerializeToString() if isinstance(model, onnx.ModelProto) else str(model)
    with tempfile.TemporaryDirectory(prefix="rtdetr-export-ortopt-") as tmp:
        options = ort.SessionOptions()
        options.log_severity_level = 3
        options.intra_op_num_threads = threads
        # Extended: the level that holds the QDQ fusions; "all" adds layout rewrites that cannot be saved portably.
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED
        options.optimized_model_filepath = str(Path(tmp) / "optimized.onnx")
        ort.InferenceSession(data, options, providers=["CPUExecutionProvider"])
        optimized = load_onnx(options.optimized_model_filepath)
    counts = Counter(node.op_type for node in optimized.graph.node if node.op_type in FUSED_INTEGER_OPS)
    return dict(sorted(counts.items()))


def cpu_int8_recipe(options: Int8Options, excluded: dict[str, str], quantized: onnx.ModelProto,
                    calibration: dict[str, Any], op_types: tuple[str, ...],
                    fused: dict[str, int]) -> dict[str, Any]:
    """JSON-ready description of the CPU INT8 graph (stored in the provenance)."""
    coverage = {name: nodes for name, nodes in qdq_coverage(quantized).items()}
    quantized_ops = [n for n in quantized.graph.node if n.op_type in op_types and n.op_type not in FOLLOWERS]
    fed = set(coverage["quantized"])
    return {
        "target": "cpu",
        "library": f"onnxruntime.quantization.quantize_static (onnxruntime {version('onnxruntime')})",
        "format": "QDQ",
        "activations": "uint8, asymmetric per-tensor (x86 u8 x s8 integer dot products)",
        "weights": "int8, symmetric per-channel (Conv axis 0, MatMul last axis; Gemm as ONNX Runtime's QDQ "
                   "quantizer places it)",
        "per_channel": True,
        "quantized_ops": list(op_types),
        "output_quantization": "yes (what ONNX Runtime needs to fuse Q/DQ into QLinearConv / QLinearMatMul)",
        "followers": "ReLU, SiLU (Sigmoid, Mul) and nearest Resize after a quantized layer stay in uint8",
        "bias": "int32 (input scale x weight scale)",
        **calibration_and_exclusions(options, excluded, calibration, CPU_DEFAULT_EXCLUSIONS),
        "nodes": {"quantized": sum(n.name in fed for n in quantized_ops),
                  "float": sum(n.name not in fed for n in quantized_ops)},
        "onnxruntime_fused_integer_ops": fused,
    }
