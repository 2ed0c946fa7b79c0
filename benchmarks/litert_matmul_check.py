#!/usr/bin/env python3
"""Does LiteRT compute each MatMul of an ONNX file as the product of its own inputs? (docs/portability.md, D-FINE-N)

A .tflite that fails parity may differ for reasons a tensor comparison cannot separate (which queries a tied
selection kept, and what the converter got wrong after it). This check needs no reference: it makes the inputs and
the output of every batched MatMul (both operands computed, rank 3 or 4) graph outputs of a copy of the ONNX file,
converts the copy as benchmarks/portability.py's LiteRT worker does (onnx2tf, Erf pseudo-op, strict mode off,
float32, builtin ops), runs one synthetic scene, and compares LiteRT's output of each MatMul with the product of
LiteRT's own inputs, and with its transpose. It found onnx2tf 1.29.24 writing D-FINE-N's decoder layer 1 attention
scores transposed (square 300 x 300, so no shape check catches it).

    python benchmarks/litert_matmul_check.py MODEL.onnx --python build/portability/venv-tf/bin/python

The parent needs onnx and numpy (the project's environment); the worker runs in the LiteRT interpreter.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path


def probed_copy(model_path: Path, out: Path) -> list[dict]:
    """``out``: the ONNX file with each batched MatMul's inputs and output as graph outputs; the MatMuls found."""
    import onnx
    from onnx import shape_inference

    model = onnx.load(str(model_path))
    inferred = shape_inference.infer_shapes(model)
    info = {v.name: v for v in list(inferred.graph.value_info) + list(inferred.graph.output)}
    # Static dims as numbers (onnx2tf needs them), symbolic ones (a dynamic batch) by name.
    shape = lambda name: [d.dim_value if d.HasField("dim_value") else (d.dim_param or None)  # noqa: E731
                          for d in info[name].type.tensor_type.shape.dim]
    matmuls, exposed = [], {o.name for o in model.graph.output}
    for node in model.graph.node:
        names = [*node.input, node.output[0]]
        # Rank 3 and 4 only: a rank-5 tensor made a graph output may come back in another layout than the one the
        # converted MatMul read (measured: D-FINE-N's cross-attention sums "differ" by 0.6 while the layer's output
        # matches PyTorch), so only there does a difference prove the MatMul wrong.
        if node.op_type != "MatMul" or not all(n in info for n in names) or len(shape(node.input[0])) not in (3, 4):
            continue
        matmuls.append({"node": node.name, "a": node.input[0], "b": node.input[1], "out": node.output[0]})
        for name in names:
            if name not in exposed:
                model.graph.output.append(onnx.helper.make_tensor_value_info(name, onnx.TensorProto.FLOAT,
                                                                             shape(name)))
                exposed.add(name)
    onnx.save(model, str(out))
    return matmuls


def worker(model: Path, image: Path, out: Path) -> None:
    """In the LiteRT interpreter: convert, run, save every output by its ONNX name (outputs come in graph order)."""
    import numpy as np
    import onnx

    names = [o.name for o in onnx.load(str(model), load_external_data=False).graph.output]
    os.chdir(out)
    np.save("calibration_image_sample_data_20x128x128x3_float32.npy",
            np.random.default_rng(0).random((20, 128, 128, 3), dtype=np.float32))
    import onnx2tf
    import tensorflow as tf

    keras_model = onnx2tf.convert(input_onnx_file_path=str(model), output_folder_path="tf", non_verbose=True,
                                  disable_model_save=True, replace_to_pseudo_operators=["erf"],
                                  disable_strict_mode=True)
    converter = tf.lite.TFLiteConverter.from_keras_model(keras_model)
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS]
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_content=converter.convert())
    interpreter.allocate_tensors()
    interpreter.set_tensor(interpreter.get_input_details()[0]["index"], np.load(image).transpose(0, 2, 3, 1).copy())
    interpreter.invoke()
    values = [interpreter.get_tensor(d["index"]) for d in interpreter.get_output_details()]
    np.savez(out / "outputs.npz", **dict(zip(names, values)))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model", type=Path, nargs="?")
    parser.add_argument("--python", default=sys.executable, help="the LiteRT interpreter (onnx2tf, tensorflow)")
    parser.add_argument("--worker", nargs=3, metavar=("MODEL", "IMAGE", "OUT"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        worker(Path(args.worker[0]), Path(args.worker[1]), Path(args.worker[2]))
        return 0
    import numpy as np
    import onnx

    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from rtdetr_export.imaging.inputs import synthetic_images

    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        matmuls = probed_copy(args.model.resolve(), work / "probed.onnx")
        dims = [d.dim_value for d in onnx.load(str(args.model)).graph.input[0].type.tensor_type.shape.dim]
        np.save(work / "image.npy", synthetic_images(1, tuple(dims[2:]), seed=0))
        subprocess.run([args.python, __file__, "--worker", str(work / "probed.onnx"), str(work / "image.npy"),
                        str(work)], check=True, env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"},
                       stdout=subprocess.DEVNULL)
        got = np.load(work / "outputs.npz")
        rows = []
        for m in matmuls:
            product = got[m["a"]] @ got[m["b"]]
            rows.append({**m, "vs_product": float(np.abs(got[m["out"]] - product).max()),
                         "vs_transposed": float(np.abs(got[m["out"]] - np.swapaxes(product, -1, -2)).max())
                         if product.shape[-1] == product.shape[-2] else None})
    print(json.dumps(rows, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
