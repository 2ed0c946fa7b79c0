"""The FLOPs of an ONNX graph at given input shapes: the multiply-adds of its convolutions and matrix products.

Convention (``CONVENTION``): 1 multiply-add = 2 FLOPs. Counted: Conv, ConvTranspose, MatMul and Gemm, and their
integer forms (ConvInteger, QLinearConv, MatMulInteger, QLinearMatMul), whose products are the same whatever the
element type, so an FP16 or INT8 file of a model counts what its FP32 file counts. Not counted: a bias add, and
every other op (elementwise, normalisation, softmax, pooling, resize, sampling, data movement); they are listed
by type with their node counts, and the output elements of the ones that compute are summed (``other_outputs``:
one FLOP per element would add that many), so a reader sees what the count leaves out. The same convention as
PyTorch's ``torch.utils.flop_counter`` (matmul and convolution only), which the tests count against.

Shapes come from ONNX Runtime's symbolic shape inference with the graph's inputs set to the shapes asked for:
unlike ``onnx.shape_inference`` it carries the batch dimension through the query selection's TopK and gathers,
where onnx's leaves it unknown. Why our own formulas and not onnx-tool's profiler (onnx-tool 1.0.1, tested on
these graphs): it adds each Conv's and Gemm's bias add to its multiply-adds, weighs elementwise ops by guessed
instruction costs (an Exp as 32 multiply-adds), and counts ConvTranspose over the output's elements times
``Cout / groups`` where the product is the input's elements times ``Cout / groups`` times the kernel.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import onnx

CONVENTION = ("1 multiply-add = 2 FLOPs; counted: the multiply-adds of Conv, ConvTranspose, MatMul and Gemm (and "
              "ConvInteger, QLinearConv, MatMulInteger, QLinearMatMul), bias adds excluded; not counted: every "
              "other op (elementwise, normalisation, softmax, pooling, resize, sampling, data movement)")
METHOD = "ONNX Runtime symbolic shape inference at the timed input shapes, per-op multiply-add formulas"

# Ops that move or reshape data and compute nothing: left out of ``other_outputs``.
DATA_MOVEMENT = frozenset({
    "Cast", "Concat", "Constant", "ConstantOfShape", "DepthToSpace", "Expand", "Flatten", "Gather", "GatherElements",
    "GatherND", "Identity", "NonZero", "Pad", "Range", "Reshape", "ScatterElements", "ScatterND", "Shape", "Size",
    "Slice", "SpaceToDepth", "Split", "Squeeze", "Tile", "Transpose", "Unsqueeze"})


@dataclass(frozen=True)
class FlopCount:
    """The FLOPs of one graph (or the graphs of one split artifact) at ``input_shapes``."""

    multiply_adds: dict[str, int]  # per counted op type
    input_shapes: dict[str, tuple[int, ...]]
    batch: int
    not_counted: dict[str, int] = field(default_factory=dict)  # op type -> nodes
    other_outputs: int = 0  # output elements of the uncounted ops that compute (not data movement)
    graphs: int = 1

    @property
    def flops(self) -> int:
        return 2 * sum(self.multiply_adds.values())

    @property
    def per_image(self) -> float:
        return self.flops / self.batch

    def __add__(self, other: "FlopCount") -> "FlopCount":
        """Two graphs run one after the other on the same batch (a split artifact's encoder and decoder)."""
        if other.batch != self.batch:
            raise ValueError(f"cannot add counts at batch {self.batch} and {other.batch}")
        return FlopCount(_merged(self.multiply_adds, other.multiply_adds), {**self.input_shapes, **other.input_shapes},
                         self.batch, _merged(self.not_counted, other.not_counted),
                         self.other_outputs + other.other_outputs, self.graphs + other.graphs)

    def to_json(self) -> dict[str, Any]:
        return {"flops": self.flops, "flops_per_image": self.per_image, "batch": self.batch,
                "input_shapes": {k: list(v) for k, v in self.input_shapes.items()},
                "multiply_adds": dict(self.multiply_adds), "not_counted": dict(self.not_counted),
                "other_outputs": self.other_outputs, "graphs": self.graphs, "convention": CONVENTION,
                "method": METHOD}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> "FlopCount":
        return cls({k: int(v) for k, v in data["multiply_adds"].items()},
                   {k: tuple(v) for k, v in data["input_shapes"].items()}, int(data["batch"]),
                   {k: int(v) for k, v in data.get("not_counted", {}).items()}, int(data.get("other_outputs", 0)),
                   int(data.get("graphs", 1)))


def _merged(a: dict[str, int], b: dict[str, int]) -> dict[str, int]:
    return {key: a.get(key, 0) + b.get(key, 0) for key in dict.fromkeys([*a, *b])}


def count_flops(model: onnx.ModelProto | str | Path, input_shapes: dict[str, tuple[int, ...]]) -> FlopCount:
    """Count the graph's FLOPs with its inputs at ``input_shapes`` (every graph input, e.g. ``{"images": (1, 3,
    640, 640)}``); ValueError when a shape is missing or a counted op's shape cannot be inferred."""
    if not isinstance(model, onnx.ModelProto):
        from rtdetr_export.artifact import load_onnx

        model = load_onnx(model)
    shapes = _inferred_shapes(model, input_shapes)
    multiply_adds: dict[str, int] = {}
    not_counted: dict[str, int] = {}
    other = 0
    for node in model.graph.node:
        formula = _FORMULAS.get(node.op_type)
        if formula is None:
            not_counted[node.op_type] = not_counted.get(node.op_type, 0) + 1
            if node.op_type not in DATA_MOVEMENT and node.output and node.output[0] in shapes:
                other += math.prod(shapes[node.output[0]])
            continue
        try:
            count = formula(node, shapes)
        except KeyError as missing:
            raise ValueError(f"no inferred shape for {missing} ({node.op_type} node {node.name!r})") from None
        multiply_adds[node.op_type] = multiply_adds.get(node.op_type, 0) + count
    first = next(iter(input_shapes.values()), (1,))
    return FlopCount(multiply_adds, {k: tuple(v) for k, v in input_shapes.items()}, int(first[0]) if first else 1,
                     dict(sorted(not_counted.items())), other)


def node_flops(model: onnx.ModelProto | str | Path, input_shapes: dict[str, tuple[int, ...]]) -> dict[str, int]:
    """The FLOPs of each counted node (``count_flops``'s convention), by node name: what a per-layer profile sets
    against each part's time."""
    if not isinstance(model, onnx.ModelProto):
        from rtdetr_export.artifact import load_onnx

        model = load_onnx(model)
    shapes = _inferred_shapes(model, input_shapes)
    return {node.name: 2 * _FORMULAS[node.op_type](node, shapes) for node in model.graph.node
            if node.op_type in _FORMULAS}


def _inferred_shapes(model: onnx.ModelProto, input_shapes: dict[str, tuple[int, ...]]) -> dict[str, tuple[int, ...]]:
    """name -> static shape of every tensor whose shape is known once the inputs have ``input_shapes``."""
    from onnxruntime.tools.symbolic_shape_infer import SymbolicShapeInference

    fixed = onnx.ModelProto()
    fixed.CopyFrom(model)
    del fixed.graph.value_info[:]  # a file's recorded shapes may hold the symbols we are replacing
    initializers = {i.name for i in fixed.graph.initializer}
    for graph_input in fixed.graph.input:
        if graph_input.name in initializers:
            continue
        if graph_input.name not in input_shapes:
            raise ValueError(f"no shape given for the graph input {graph_input.name!r}")
        dims = graph_input.type.tensor_type.shape.dim
        shape = input_shapes[graph_input.name]
        if len(dims) != len(shape):
            raise ValueError(f"{graph_input.name!r} has {len(dims)} dimensions, the shape given has {len(shape)}")
        for dim, size in zip(dims, shape):
            dim.Clear()
            dim.dim_value = int(size)
    # The class's own steps rather than its infer_shapes wrapper, which writes sym_shape_infer_temp.onnx into
    # the working directory when a shape stays unknown; an unknown shape is reported by count_flops instead.
    inference = SymbolicShapeInference(int_max=2 ** 31 - 1, auto_merge=True, guess_output_rank=False, verbose=0)
    inference._preprocess(fixed)
    while inference.run_:
        inference._infer_impl()
    shapes = {init.name: tuple(init.dims) for init in fixed.graph.initializer}
    for name, info in inference.known_vi_.items():
        dims = info.type.tensor_type.shape.dim
        if info.type.HasField("tensor_type") and all(d.HasField("dim_value") for d in dims):
            shapes[name] = tuple(d.dim_value for d in dims)
    return shapes


def _attribute(node: onnx.NodeProto, name: str, default: int) -> int:
    return next((a.i for a in node.attribute if a.name == name), default)


def _conv(node, shapes) -> int:
    # Y: [N, Cout, *spatial]; W: [Cout, Cin / groups, *kernel]: each output element is Cin / groups x kernel products.
    weight = 3 if node.op_type == "QLinearConv" else 1
    return math.prod(shapes[node.output[0]]) * math.prod(shapes[node.input[weight]][1:])


def _conv_transpose(node, shapes) -> int:
    # X: [N, Cin, *spatial]; W: [Cin, Cout / groups, *kernel]: each input element is scattered through Cout / groups
    # x kernel products (output padding and cropping change where they land, not how many there are).
    return math.prod(shapes[node.input[0]]) * math.prod(shapes[node.input[1]][1:])


def _matmul(node, shapes) -> int:
    # Y: [*batch, M, N] (numpy broadcasting); K: A's last dimension (QLinearMatMul's A is input 0 too).
    return math.prod(shapes[node.output[0]]) * shapes[node.input[0]][-1]


def _gemm(node, shapes) -> int:
    a = shapes[node.input[0]]
    return math.prod(shapes[node.output[0]]) * (a[0] if _attribute(node, "transA", 0) else a[1])


_FORMULAS = {"Conv": _conv, "ConvInteger": _conv, "QLinearConv": _conv, "ConvTranspose": _conv_transpose,
             "MatMul": _matmul, "MatMulInteger": _matmul, "QLinearMatMul": _matmul, "Gemm": _gemm}
