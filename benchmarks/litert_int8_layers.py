#!/usr/bin/env python3
"""Per-op error of graph 1's INT8 .tflite against its fp32 .tflite: where LiteRT's INT8 loses the fixture.

Run it in the LiteRT environment (onnx2tf==1.29.24; benchmarks/run_portability.sh makes it) after
``benchmarks/portability.py --fixture`` has written its work folder (graph 1's ONNX, val and calibration images):

    PY=build/portability/venv-tf/bin/python
    $PY benchmarks/litert_int8_layers.py --work build/portability/fixture --out build/litert-int8  # the matrix's int8
    $PY benchmarks/litert_int8_layers.py --work build/portability/fixture --out build/litert-int8-oiqt --oiqt

It converts graph 1 as the fixture's LiteRT worker does (onnx2tf -> Keras -> TFLiteConverter; INT8: full-integer,
the 64 calibration images as representative dataset; ``--oiqt``: onnx2tf's output_integer_quantized_tflite set),
runs both .tflite files on the first ``--images`` val images with every intermediate tensor kept
(``experimental_preserve_all_tensors``, LiteRT's builtin kernels for both, so no delegate fuses them away), and
prints, in execution order, each INT8 op's output dequantized against the fp32 tensor of the same name: Pearson
correlation, RMSE / std of the fp32 values, the fp32 values' max abs, and the INT8 tensor's scale. The table is
also written to OUT/layers.json. docs/portability.md quotes what it found.
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path


def convert(onnx_path: Path, calib, out: Path, oiqt: bool) -> tuple[Path, Path]:
    import numpy as np

    folder = out / "tf"
    folder.mkdir(parents=True, exist_ok=True)
    # onnx2tf test-runs the graph on sample images it downloads unless this file is in the working folder.
    np.save(folder / "calibration_image_sample_data_20x128x128x3_float32.npy",
            np.random.default_rng(0).random((20, 128, 128, 3), dtype=np.float32))
    cwd = os.getcwd()
    os.chdir(folder)
    try:
        import onnx2tf
        import tensorflow as tf

        keras_model = onnx2tf.convert(input_onnx_file_path=str(onnx_path), output_folder_path="tf", non_verbose=True,
                                      disable_model_save=True, replace_to_pseudo_operators=["erf"],
                                      disable_strict_mode=True, output_integer_quantized_tflite=oiqt)
        name = keras_model.inputs[0].name.split(":")[0]
        paths = []
        for precision in ("fp32", "int8"):
            converter = tf.lite.TFLiteConverter.from_keras_model(keras_model)
            if precision == "int8":
                converter.optimizations = [tf.lite.Optimize.DEFAULT]
                converter.representative_dataset = lambda: ({name: image.transpose(0, 2, 3, 1)} for image in calib)
                converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
            else:
                converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS]
            paths.append(out / f"graph1_{precision}.tflite")
            paths[-1].write_bytes(converter.convert())
    finally:
        os.chdir(cwd)
    return paths[0], paths[1]


def _interpreter(path: Path):
    from ai_edge_litert.interpreter import Interpreter, OpResolverType

    interpreter = Interpreter(model_path=str(path), num_threads=2, experimental_preserve_all_tensors=True,
                              experimental_op_resolver_type=OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES)
    interpreter.allocate_tensors()
    return interpreter


def _tensors(interpreter, image) -> dict:
    """Every float or quantized tensor after one run, dequantized, by name."""
    import numpy as np

    interpreter.set_tensor(interpreter.get_input_details()[0]["index"], image.transpose(0, 2, 3, 1))
    interpreter.invoke()
    values = {}
    for detail in interpreter.get_tensor_details():
        try:
            value = interpreter.get_tensor(detail["index"])
        except ValueError:  # tensors without data (the graph's constants folded away)
            continue
        scale, zero = detail["quantization"]
        if value.dtype in (np.int8, np.int16) and scale:
            values[detail["name"]] = (value.astype(np.float32) - zero) * scale
        elif value.dtype == np.float32:
            values[detail["name"]] = value.copy()
    return values


def compare(fp32: Path, int8: Path, images) -> list[dict]:
    import numpy as np

    reference, quantized = _interpreter(fp32), _interpreter(int8)
    pairs: dict[str, list] = {}
    for image in images:
        a, b = _tensors(reference, image), _tensors(quantized, image)
        for name, value in b.items():
            if name in a and a[name].shape == value.shape:
                pairs.setdefault(name, []).append((a[name].ravel().astype(np.float64), value.ravel()))
    details = {d["index"]: d for d in quantized.get_tensor_details()}
    rows = []
    for op in quantized._get_ops_details():  # the only API that lists ops with their tensors, in execution order
        for index in op["outputs"]:
            name = details[index]["name"]
            if name not in pairs:
                continue
            ref = np.concatenate([p[0] for p in pairs[name]])
            test = np.concatenate([p[1] for p in pairs[name]])
            spread = float(ref.std())
            rows.append({"op": int(op["index"]), "type": op["op_name"], "tensor": name,
                         "dtype": details[index]["dtype"].__name__, "scale": float(details[index]["quantization"][0]),
                         "corr": float(np.corrcoef(ref, test)[0, 1]) if spread > 0 and test.std() > 0 else None,
                         "rel_rmse": float(np.sqrt(np.mean((ref - test) ** 2)) / spread) if spread > 0 else None,
                         "ref_max_abs": float(np.abs(ref).max())})
    return rows


def main() -> int:
    import numpy as np

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--work", required=True, help="benchmarks/portability.py --fixture's work folder (fixture/)")
    parser.add_argument("--out", required=True, help="folder for the .tflite files and layers.json")
    parser.add_argument("--oiqt", action="store_true", help="set onnx2tf's output_integer_quantized_tflite")
    parser.add_argument("--images", type=int, default=4, help="val images compared")
    args = parser.parse_args()
    work, out = Path(args.work).resolve(), Path(args.out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    calib = np.load(work / "calib_images.npz")["images"]
    val = np.load(work / "val.npz")
    images = [val[k] for k in sorted(val.files)[: args.images]]
    fp32, int8 = convert(work / "models" / "fixture_split.encoder.onnx", calib, out, args.oiqt)
    rows = compare(fp32, int8, images)
    (out / "layers.json").write_text(json.dumps(rows, indent=1) + "\n")
    show = lambda v, f: "-" if v is None else format(v, f)  # noqa: E731
    for r in rows:
        print(f"{r['op']:4d} {r['type'][:20]:20s} corr {show(r['corr'], '7.4f')} "
              f"rel_rmse {show(r['rel_rmse'], '7.3f')} "
              f"max_abs {r['ref_max_abs']:9.3g} scale {r['scale']:9.3g} {r['dtype']:7s} {r['tensor'][:80]}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
