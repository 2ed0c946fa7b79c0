#!/usr/bin/env python3
"""Measured edge deployment of the trained fixture: the single ONNX file and the split artifact on ncnn, RKNN
(rk3588, the toolkit's simulator) and LiteRT, in fp32 and INT8, judged by parity, agreement and fixture AP.

``benchmarks/portability.py --fixture`` runs this (``benchmarks/run_portability.sh --fixture`` installs the
converters); the rows go into ``portability.json`` under ``fixture`` and are rendered below the r18vd matrix.

For each row (runtime x artifact x precision) a worker in the runtime's interpreter converts the graph(s), runs
every val image of the fixture (graph 1 -> the project's host step, imaging/host_step.py -> graph 2 for the split),
and times image 0. The parent, in the project's environment, then judges the raw outputs exactly as the project
does elsewhere:

- parity: ``compare_outputs`` with the fp32 limits (verification's metric), on the first ``--parity-images``;
- agreement: ``compare_agreement`` (verification's detection agreement) over every val image, judged with the
  limits of the precision the runtime computed in (fp16 for RKNN's float mode, int8 for INT8);
- fixture AP: the raw outputs through ``postprocess`` (what ``Detector`` does) into COCO results, scored by
  ``coco_metrics`` (what ``rtdetr-export eval`` does), beside the PyTorch reference on the same images.

INT8 is calibrated with the images the project's INT8 exports use on the fixture (benchmarks/run_accuracy_cpu.sh):
64 images of the training split's generator, seed 7, never the val images. Graph 2 of the split is calibrated
with what graph 1 (ONNX Runtime) and the host step make of those images.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
# ``--fixture-model`` -> the trained fixture measured: RT-DETRv2's (the project's matrix) or D-FINE's, trained on the
# same shapes set (benchmarks/fixture/README.md), whose rows are kept apart (portability.py ``fixture_json``).
FIXTURE_MODELS = {"rtdetrv2": ROOT / "tests" / "data" / "fixture" / "rtdetrv2_shapes",
                  "dfine": ROOT / "tests" / "data" / "fixture" / "dfine_shapes"}
FIXTURE_VAL = ROOT / "tests" / "data" / "fixture" / "shapes_val"
OUTPUTS = ("logits", "pred_boxes")
CALIB = {"split": "train", "count": 64, "seed": 7}  # benchmarks/run_accuracy_cpu.sh's calibration set

# Runtime key -> target name and how it gets there.
RUNTIMES: dict[str, dict[str, str]] = {
    "onnxruntime": {"target": "ONNX Runtime CPU", "how": "the ONNX graph(s) as exported: the baseline"},
    "ncnn": {"target": "ncnn (via pnnx)",
             "how": "pnnx GRAPH.onnx inputshape=... fp16=0, then ncnn.Net with fp16/bf16 storage and arithmetic off; "
                    "every input and output Mat with its batch axis dropped"},
    "rknn": {"target": "RKNN rk3588 (simulator)",
             "how": "rknn-toolkit2 load_onnx -> build (float: fp16 on the NPU; INT8: do_quantization with the "
                    "calibration set) -> init_runtime() with no target, the toolkit's simulator on this CPU; its "
                    "latency is the simulator's, not the NPU's"},
    "litert": {"target": "LiteRT (via onnx2tf)",
               "how": "onnx2tf (Erf replaced by its builtin approximation, strict mode off, non-image inputs kept "
                      "as they are) -> Keras -> .tflite with builtin ops only; INT8: full-integer quantization "
                      "(TFLITE_BUILTINS_INT8, float input and output) with the calibration set as representative "
                      "dataset; run by ai_edge_litert's Interpreter (XNNPACK). `int8-oiqt`: the same with onnx2tf's "
                      "output_integer_quantized_tflite (-oiqt) set on graphs that take only images, which makes "
                      "onnx2tf pad the stem's max pool with 0 (exact after its ReLU) instead of float32's lowest "
                      "value, a value that sets the quantization range of the whole stem"},
}
# (runtime, artifact, precision) in matrix order. ``fp16`` is RKNN's float mode: the NPU computes in fp16.
ROWS = [
    ("onnxruntime", "single", "fp32"), ("onnxruntime", "split", "fp32"),
    ("ncnn", "single", "fp32"), ("ncnn", "split", "fp32"),
    ("rknn", "single", "fp16"), ("rknn", "split", "fp16"), ("rknn", "split", "int8"), ("rknn", "split", "int8+fp16"),
    ("litert", "single", "fp32"), ("litert", "single", "int8"), ("litert", "split", "fp32"),
    ("litert", "split", "int8"), ("litert", "split", "int8+fp32"),
    ("litert", "single", "int8-oiqt"), ("litert", "split", "int8-oiqt"), ("litert", "split", "int8-oiqt+fp32"),
]
# LiteRT's second INT8 recipe: the same full-integer quantization, with onnx2tf's output_integer_quantized_tflite
# (-oiqt) set. onnx2tf writes an ONNX MaxPool's padding as an explicit PadV2 with float32's lowest value, and the
# quantizer gives a Pad the scale of its input: the stem's max pool then gets a range of 3.4e38 and a scale of
# 1.3e36, which rounds the stem's activations (0..16) to 0 and everything after it is noise. With -oiqt onnx2tf
# pads with 0 instead, which is exact here: the stem's max pool reads a ReLU (checked by the worker).
LITERT_INT8 = ("int8", "int8-oiqt")
ARTIFACTS = {
    "single": "single file, `rtdetr-export onnx` (gather-bilinear)",
    "split": "split artifact, `rtdetr-export onnx --split --bilinear-op gridsample` (rank-4 decoder)",
}


# -- worker: the runtime's interpreter; numpy, onnx (for the graph's I/O), the runtime, and the host step ---------
def onnx_io(path: Path) -> tuple[list[tuple[str, list[int]]], list[tuple[str, list[int]]]]:
    """(inputs, outputs) of an ONNX graph as (name, static shape)."""
    import onnx

    graph = onnx.load(str(path), load_external_data=False).graph
    initializers = {i.name for i in graph.initializer}
    dims = lambda v: [d.dim_value for d in v.type.tensor_type.shape.dim]  # noqa: E731
    return ([(i.name, dims(i)) for i in graph.input if i.name not in initializers],
            [(o.name, dims(o)) for o in graph.output])


class ConversionError(RuntimeError):
    """The converter failed and left nothing to run."""


class _Graph:
    """One ONNX graph converted for a runtime: ``run(feeds) -> outputs``, both by the ONNX graph's names."""

    problem: str | None = None
    notes: list[str]

    def __init__(self, path: Path, work: Path, threads: int, precision: str, calib: list[dict] | None):
        self.inputs, self.outputs = onnx_io(path)
        self.notes = []


class _OrtGraph(_Graph):
    def __init__(self, path, work, threads, precision, calib):
        super().__init__(path, work, threads, precision, calib)
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.intra_op_num_threads, options.inter_op_num_threads = threads, 1
        self.session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])

    def run(self, feeds):
        return dict(zip([n for n, _ in self.outputs], self.session.run(None, feeds)))


class _NcnnGraph(_Graph):
    def __init__(self, path, work, threads, precision, calib):
        super().__init__(path, work, threads, precision, calib)
        import ncnn
        import pnnx

        self.ncnn = ncnn
        local = work / path.name  # pnnx writes next to its input
        if not local.exists():
            local.symlink_to(path.resolve())
        shapes = ",".join("[" + ",".join(map(str, shape)) + "]" for _, shape in self.inputs)
        proc = subprocess.run([pnnx.EXEC_PATH, local.name, f"inputshape={shapes}", "fp16=0"], cwd=work,
                              capture_output=True, text=True)
        (work / f"pnnx_{path.stem}.log").write_text(proc.stdout + proc.stderr)
        if proc.returncode != 0:
            raise ConversionError(f"pnnx exited with {proc.returncode}: " + (proc.stderr or proc.stdout)[-300:])
        param = work / (local.stem + ".ncnn.param")
        types = [line.split()[0] for line in param.read_text().splitlines()[2:] if line.strip()]
        # pnnx exits 0 even when it leaves ops it could not map; they stay as layer types ncnn does not have.
        missing = sorted({t for t in types if ncnn.create_layer(t) is None})
        if missing:
            self.problem = f"pnnx left {len(missing)} op type(s) ncnn has no layer for: {', '.join(missing)}"
        self.net = ncnn.Net()
        self.net.opt.num_threads = threads
        self.net.opt.use_fp16_packed = self.net.opt.use_fp16_storage = self.net.opt.use_fp16_arithmetic = False
        self.net.opt.use_bf16_storage = False
        # ncnn reports load errors only on file descriptor 2: read them from there.
        log = work / f"ncnn_load_{path.stem}.log"
        sys.stderr.flush()
        saved = os.dup(2)
        with open(log, "w+b") as capture:
            os.dup2(capture.fileno(), 2)
            try:
                status = self.net.load_param(str(param)) or self.net.load_model(str(param.with_suffix(".bin")))
            finally:
                sys.stderr.flush()
                os.dup2(saved, 2)
                os.close(saved)
        if status != 0:
            said = log.read_text(errors="replace").strip() or f"status {status}"
            raise ConversionError((self.problem + "; loading it anyway: " if self.problem else "") + said)

    def run(self, feeds):
        import numpy as np

        with self.net.create_extractor() as ex:
            # Every tensor of ours has its batch first and batch 1: ncnn Mats hold the rest (pnnx's own
            # *_ncnn.py marks some of our inputs "no batch axis", and fed that way graph 2 reads a wrong slice).
            for i, (name, _) in enumerate(self.inputs):
                ex.input(f"in{i}", self.ncnn.Mat(np.ascontiguousarray(feeds[name]), batch_index=0).clone())
            outputs = {}
            for i, (name, shape) in enumerate(self.outputs):
                status, mat = ex.extract(f"out{i}")
                value = np.array(mat.numpy(batch_index=0))
                if status != 0 or value.size != int(np.prod(shape)):
                    raise RuntimeError(f"ncnn extract of {name} (out{i}) returned status {status}, shape "
                                       f"{list(value.shape)}; the graph says {shape}")
                outputs[name] = value.reshape(shape)
        return outputs


class _RknnGraph(_Graph):
    def __init__(self, path, work, threads, precision, calib):
        super().__init__(path, work, threads, precision, calib)
        import numpy as np
        from rknn.api import RKNN

        self.rknn = RKNN(verbose=False)
        self.rknn.config(target_platform="rk3588")
        if self.rknn.load_onnx(model=str(path)) != 0:
            raise ConversionError("rknn load_onnx failed (the worker log has the toolkit's messages)")
        dataset = None
        if precision == "int8":
            folder = work / f"calib_{path.stem}"
            folder.mkdir(exist_ok=True)
            lines = []
            for i, feed in enumerate(calib):
                files = []
                for name, shape in self.inputs:
                    value = feed[name]
                    # As the graph takes it (NCHW images): the toolkit refuses NHWC arrays for an NCHW input.
                    files.append(folder / f"{i:03d}_{name}.npy")
                    np.save(files[-1], np.ascontiguousarray(value))
                lines.append(" ".join(str(f) for f in files))
            dataset = work / f"dataset_{path.stem}.txt"
            dataset.write_text("\n".join(lines) + "\n")
        if self.rknn.build(do_quantization=precision == "int8", dataset=str(dataset) if dataset else None) != 0:
            raise ConversionError("rknn build failed (the worker log has the toolkit's messages)")
        if self.rknn.init_runtime() != 0:  # no target: the simulator
            raise RuntimeError("rknn init_runtime (simulator) failed")

    def run(self, feeds):
        import numpy as np

        values = [np.ascontiguousarray(feeds[name]) for name, _ in self.inputs]
        # Images go in as NCHW, as the ONNX graph takes them; the split's [B, N, C] inputs as they are.
        layout = ["nchw"] * len(values) if any(v.ndim == 4 for v in values) else None
        outs = self.rknn.inference(inputs=values, data_format=layout)
        if outs is None:
            raise RuntimeError("rknn inference returned nothing (the worker log has the toolkit's messages)")
        return {name: np.asarray(o).reshape(shape) for (name, shape), o in zip(self.outputs, outs)}


class _LiteRtGraph(_Graph):
    # As benchmarks/portability.py's LiteRT worker: Erf has no builtin (FlexErf otherwise), strict mode off.
    onnx2tf_options = {"replace_to_pseudo_operators": ["erf"], "disable_strict_mode": True}

    @staticmethod
    def _check_zero_padding_is_exact(path: Path) -> None:
        """-oiqt pads every MaxPool with 0, which equals -inf padding only where the pooled input is >= 0."""
        import onnx

        graph = onnx.load(str(path), load_external_data=False).graph
        producers = {out: node for node in graph.node for out in node.output}
        for node in graph.node:
            pads = next((list(a.ints) for a in node.attribute if a.name == "pads"), [])
            if node.op_type == "MaxPool" and any(pads):
                source = producers.get(node.input[0])
                if source is None or source.op_type != "Relu":
                    raise ConversionError(f"int8-oiqt: MaxPool {node.name} reads "
                                          f"{source.op_type if source else 'a graph input'}, not a ReLU: onnx2tf's "
                                          "zero padding would change its output")

    def __init__(self, path, work, threads, precision, calib):
        super().__init__(path, work, threads, precision, calib)
        import numpy as np

        folder = work / f"tf_{path.stem}"
        folder.mkdir(exist_ok=True)
        # onnx2tf test-runs the graph on sample images it downloads unless this file is in the working folder.
        np.save(folder / "calibration_image_sample_data_20x128x128x3_float32.npy",
                np.random.default_rng(0).random((20, 128, 128, 3), dtype=np.float32))
        cwd = os.getcwd()
        os.chdir(folder)
        try:
            import onnx2tf
            import tensorflow as tf

            # Only the image input is NCHW; the split's other inputs ([B, N, C] rows) keep their layout.
            keep = [name for name, shape in self.inputs if len(shape) != 4]
            options = dict(self.onnx2tf_options)
            if precision == "int8-oiqt" and not keep:
                # Only graphs that take images alone: onnx2tf refuses -oiqt for other inputs without its own
                # calibration files, and graph 2 has no MaxPool for the option to change.
                self._check_zero_padding_is_exact(path)
                options["output_integer_quantized_tflite"] = True
            keras_model = onnx2tf.convert(input_onnx_file_path=str(path.resolve()), output_folder_path="tf",
                                          non_verbose=True, disable_model_save=True,
                                          keep_shape_absolutely_input_names=keep or None, **options)
            converter = tf.lite.TFLiteConverter.from_keras_model(keras_model)
            if precision in LITERT_INT8:
                names = [t.name.split(":")[0] for t in keras_model.inputs]

                # Keyed by input name: the converted model orders its inputs its own way (graph 2: query_targets
                # first), and a list in the Keras order feeds memory where it wants query_targets.
                def representative():
                    for feed in calib:
                        values = {name: feed[_match(name, feed)] for name in names}
                        values = {name: v.transpose(0, 2, 3, 1) if v.ndim == 4 else v for name, v in values.items()}
                        # One input: a list, which the calibrator feeds by position; a dict needs a signature, and
                        # D-FINE's Keras model converts without one ("model has 0 Signatures").
                        yield values if len(values) > 1 else list(values.values())

                converter.optimizations = [tf.lite.Optimize.DEFAULT]
                converter.representative_dataset = representative
                converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
            else:
                converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS]
            flatbuffer = converter.convert()
        except SystemExit as exc:  # onnx2tf calls sys.exit on some failures
            raise ConversionError(f"onnx2tf exited ({exc.code})") from None
        finally:
            os.chdir(cwd)
        tflite = work / f"{path.stem}_{precision}.tflite"
        tflite.write_bytes(flatbuffer)
        from ai_edge_litert.interpreter import Interpreter

        self.interpreter = Interpreter(model_path=str(tflite), num_threads=threads)
        try:
            self.interpreter.allocate_tensors()
        except RuntimeError as exc:
            # XNNPACK, LiteRT's default CPU delegate, refuses some INT8 graphs at prepare; LiteRT's own builtin
            # kernels still run them (slower): recorded as a note, and the row says so.
            from ai_edge_litert.interpreter import OpResolverType

            self.notes.append(f"XNNPACK could not prepare {tflite.name} ({_error(exc)['first_line']}); run with "
                              "LiteRT's builtin kernels, no delegate")
            self.interpreter = Interpreter(
                model_path=str(tflite), num_threads=threads,
                experimental_op_resolver_type=OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES)
        signature = self.interpreter.get_signature_list().get("serving_default")
        if signature is not None:
            self.signature_inputs, self.signature_outputs = signature["inputs"], signature["outputs"]
            self.runner = self.interpreter.get_signature_runner()
        else:
            # D-FINE's Keras model converts without a signature (benchmarks/portability.py says so too): its tensors
            # are fed and read through the interpreter, outputs in the graph's order (``run`` checks their shapes).
            self.runner = None
            self.notes.append(f"{tflite.name}: no signature; tensors read in the graph's order")
        self.notes.append(f"{tflite.name}: {tflite.stat().st_size} bytes")

    def run(self, feeds):
        import numpy as np

        if self.runner is None:
            return self._run_without_signature(feeds)
        call = {}
        for sig in self.signature_inputs:
            name = _match(sig, feeds)
            value = feeds[name]
            call[sig] = np.ascontiguousarray(value.transpose(0, 2, 3, 1) if value.ndim == 4 else value)
        result = self.runner(**call)
        outputs = {}
        for name, shape in self.outputs:
            value = np.asarray(result[_match(name, result)])
            if list(value.shape) != shape:
                raise RuntimeError(f"LiteRT output {name} has shape {list(value.shape)}, the graph {shape}")
            outputs[name] = value
        return outputs


    def _run_without_signature(self, feeds):
        import numpy as np

        details = self.interpreter.get_input_details()
        for detail in details:
            # onnx2tf names a tensor "serving_default_NAME:0" or NAME; with one input the name does not matter.
            plain = detail["name"].removeprefix("serving_default_").split(":")[0]
            value = feeds[self.inputs[0][0]] if len(details) == 1 else feeds[_match(plain, feeds)]
            value = value.transpose(0, 2, 3, 1) if value.ndim == 4 else value
            self.interpreter.set_tensor(detail["index"], np.ascontiguousarray(value))
        self.interpreter.invoke()
        outputs = {}
        for (name, shape), detail in zip(self.outputs, self.interpreter.get_output_details()):
            value = self.interpreter.get_tensor(detail["index"]).copy()
            if list(value.shape) != shape:
                raise RuntimeError(f"LiteRT output {detail['name']} has shape {list(value.shape)}, the graph's "
                                   f"{name} {shape}")
            outputs[name] = value
        return outputs


def _match(name: str, names) -> str:
    """The key of ``names`` that is ``name`` as a converter spells it (onnx2tf may sanitise names)."""
    if name in names:
        return name
    plain = lambda s: re.sub(r"[^0-9a-z]", "", s.lower())  # noqa: E731
    found = [n for n in names if plain(n) == plain(name)]
    if len(found) != 1:
        raise KeyError(f"{name!r} is none of {sorted(names)}")
    return found[0]


GRAPHS = {"onnxruntime": _OrtGraph, "ncnn": _NcnnGraph, "rknn": _RknnGraph, "litert": _LiteRtGraph}
TOOLS = {"onnxruntime": ("onnxruntime",), "ncnn": ("pnnx", "ncnn"), "rknn": ("rknn-toolkit2",),
         "litert": ("onnx2tf", "tensorflow", "ai-edge-litert")}


def _version(dist: str) -> str | None:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(dist)
    except PackageNotFoundError:
        return None


def _error(exc: BaseException | str) -> dict[str, str]:
    text = exc if isinstance(exc, str) else f"{type(exc).__name__}: {exc}"
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    if lines and "Traceback (most recent call last)" in lines[0]:
        # A toolkit that wraps its own traceback into the message (rknn-toolkit2): the error is its last line.
        lines = lines[-1:]
    diagnostics = [ln.split(" error: ", 1)[1] for ln in lines if " error: " in ln]  # MLIR names the op there
    first = diagnostics[0] if diagnostics else (lines[0] if lines else text)
    return {"first_line": first[:300], "detail": text.strip()[:2000]}


def worker_main(args: argparse.Namespace) -> int:
    """Convert the artifact's graph(s), run every val image, time image 0; result.json + outputs.npz."""
    import numpy as np

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    result: dict[str, Any] = {"runtime": args.runtime, "artifact": args.artifact, "precision": args.precision,
                              "converts": False, "runs": False, "error": None, "notes": [],
                              "tools": {t: _version(t) for t in TOOLS[args.runtime]}}
    images = np.load(args.images)
    images = [images[k] for k in sorted(images.files)]
    calib = {}
    for part in ("images", "decoder"):
        path = Path(args.calib) / f"calib_{part}.npz"
        if path.exists():
            data = np.load(path)
            calib[part] = [{k: data[k][i] for k in data.files} for i in range(len(data[data.files[0]]))]
    cls = GRAPHS[args.runtime]
    started = time.perf_counter()
    graphs = []
    try:
        if args.artifact == "split":
            from rtdetr_export.imaging.host_step import select_queries

            # "int8+fp16": graph 1 in INT8, graph 2 in the runtime's float mode.
            first, second = args.precision.split("+") if "+" in args.precision else (args.precision,) * 2
            graphs = [cls(Path(args.models[0]), out, args.threads, first, calib.get("images")),
                      cls(Path(args.models[1]), out, args.threads, second, calib.get("decoder"))]

            def infer(image):
                cells = graphs[0].run({"images": image})
                return graphs[1].run(select_queries(cells, args.num_queries))
        else:
            graphs = [cls(Path(args.models[0]), out, args.threads, args.precision, calib.get("images"))]

            def infer(image):
                return graphs[0].run({"images": image})
        problems = [g.problem for g in graphs if g.problem]
        result["converts"] = not problems
        if problems:
            result["error"] = {"stage": "convert", **_error("; ".join(problems))}
    except Exception as exc:  # noqa: BLE001 - every failure is a result to record
        result["error"] = {"stage": "convert", **_error(exc)}
    result["convert_seconds"] = round(time.perf_counter() - started, 1)
    result["notes"] = [n for g in graphs for n in g.notes]
    if len(graphs) == (2 if args.artifact == "split" else 1):
        try:
            outputs = [infer(image) for image in images]
            np.savez(out / "outputs.npz", **{f"{i:03d}/{name}": np.asarray(o[name], dtype=np.float32)
                                            for i, o in enumerate(outputs) for name in OUTPUTS})
            result["runs"] = True
            for _ in range(args.warmup):
                infer(images[0])
            load_before = os.getloadavg()[0]
            times = []
            for _ in range(args.runs):
                t0 = time.perf_counter()
                infer(images[0])
                times.append((time.perf_counter() - t0) * 1000)
            result["latency_ms"] = [round(t, 2) for t in times]
            result["load_during"] = [round(load_before, 2), round(os.getloadavg()[0], 2)]
        except Exception as exc:  # noqa: BLE001
            key = "error" if result["error"] is None else "run_error"
            result[key] = {"stage": "run", **_error(exc)}
    (out / "result.json").write_text(json.dumps(result, indent=2) + "\n")
    return 0


# -- parent: exports, data, reference, workers, judging ------------------------------------------------------------
def _median(values: list[float]) -> float:
    ordered = sorted(values)
    mid = len(ordered) // 2
    return ordered[mid] if len(ordered) % 2 else (ordered[mid - 1] + ordered[mid]) / 2


def _prepare(work: Path, args) -> dict[str, Any]:
    """Exports (verified), val images, calibration sets and the PyTorch reference's outputs."""
    import numpy as np

    from rtdetr_export.eval.dataset import read_coco
    from rtdetr_export.imaging import load_image, list_images, preprocess
    from rtdetr_export.imaging.host_step import select_queries
    from rtdetr_export.model.sampler import Sampler
    from rtdetr_export.model.split import CELL_OUTPUTS
    from rtdetr_export.pipeline import OnnxExportOptions, export_onnx
    from rtdetr_export.pipeline.split import export_split
    from rtdetr_export.verify.reference import ReferenceRunner
    from rtdetr_export.weights import load_model

    model = load_model(FIXTURE_MODELS[args.fixture_model])
    size = tuple(model.config.image_size)
    models = work / "models"
    models.mkdir(parents=True, exist_ok=True)
    single = models / "fixture.onnx"
    export_onnx(model, single, OnnxExportOptions(batch=1), force=True)
    split = export_split(model, models / "fixture_split.onnx",
                         OnnxExportOptions(batch=1, sampler=Sampler.GRIDSAMPLE_BILINEAR), force=True)
    dataset = read_coco(FIXTURE_VAL / "instances_val.json", FIXTURE_VAL / "images")
    entries = dataset.images[: args.val_images] if args.val_images else dataset.images
    pictures = [load_image(dataset.image_path(e)) for e in entries]
    images = [preprocess(p, size) for p in pictures]
    np.savez(work / "val.npz", **{f"{i:03d}": image for i, image in enumerate(images)})
    calib_dir = work / "calib"
    if not (calib_dir / "images").is_dir():
        subprocess.run([sys.executable, str(ROOT / "benchmarks/fixture/make_dataset.py"), "--split", CALIB["split"],
                        "--count", str(CALIB["count"]), "--seed", str(CALIB["seed"]), "--out", str(calib_dir)],
                       check=True, capture_output=True)
    calib = np.stack([preprocess(load_image(p), size) for p in list_images(calib_dir / "images")])
    np.savez(work / "calib_images.npz", images=calib)
    import onnxruntime as ort

    encoder = ort.InferenceSession(str(split.encoder), providers=["CPUExecutionProvider"])
    queries = [select_queries(dict(zip(CELL_OUTPUTS, encoder.run(None, {"images": image}))), model.config.num_queries)
               for image in calib]
    np.savez(work / "calib_decoder.npz", **{k: np.stack([q[k] for q in queries]) for k in queries[0]})
    runner = ReferenceRunner(model, "raw")
    runner.activate()
    reference = [runner.infer({"images": image}) for image in images]
    return {"model": model, "single": single, "split": (split.encoder, split.decoder), "dataset": dataset,
            "entries": entries, "sizes": [(p.height, p.width) for p in pictures], "images": images,
            "reference": reference, "runner": runner}


def _coco(prepared: dict[str, Any], outputs: list[dict[str, Any]]) -> dict[str, float]:
    """COCO stats of raw outputs, one per val image, as ``rtdetr-export eval`` scores a detector."""
    from rtdetr_export.eval.dataset import map_categories
    from rtdetr_export.eval.evaluate import MAX_DETECTIONS, coco_predictions
    from rtdetr_export.eval.metrics import coco_metrics
    from rtdetr_export.imaging import postprocess

    dataset, entries = prepared["dataset"], prepared["entries"]
    class_to_category = map_categories(dataset, prepared["model"].config.class_names)
    predictions = []
    for entry, size, out in zip(entries, prepared["sizes"], outputs):
        found = postprocess(out["logits"], out["pred_boxes"], [size], threshold=0.0, top_k=MAX_DETECTIONS)[0]
        predictions += coco_predictions(entry["id"], found, class_to_category)
    kept = {e["id"] for e in entries}
    truth = {**dataset.data, "images": entries,
             "annotations": [a for a in dataset.data["annotations"] if a["image_id"] in kept]}
    names = {int(c["id"]): c["name"] for c in dataset.categories}
    return {k: round(v, 4) for k, v in coco_metrics(truth, predictions, names).stats.items()}


def _judge(prepared: dict[str, Any], outputs: list[dict[str, Any]], precision: str, parity_images: int):
    import numpy as np

    from rtdetr_export.verify import compare_outputs, thresholds_for
    from rtdetr_export.verify.agreement import compare_agreement

    refs, images = prepared["reference"], prepared["images"]
    worst = {name: 0.0 for name in OUTPUTS}
    failures = []
    for ref, test, image in list(zip(refs, outputs, images))[:parity_images]:
        run = compare_outputs("raw", {"images": image}, ref, test, thresholds_for("fp32"), prepared["runner"])
        for name in OUTPUTS:
            worst[name] = max(worst[name], run.outputs[name].stats["max_abs"])
        failures += run.failures
    parity = {"images": min(parity_images, len(outputs)), "passed": not failures,
              "threshold": thresholds_for("fp32").max_abs,
              **{f"{name}_max_abs": float(f"{worst[name]:.4g}") for name in OUTPUTS}, "failures": failures[:4]}
    judged = "int8" if "int8" in precision else precision
    limits = thresholds_for("int8" if judged == "fp32" else judged)  # fp32 rows: shown, judged by parity
    stack = lambda rows: {n: np.concatenate([r[n] for r in rows]) for n in OUTPUTS}  # noqa: E731
    comparison = compare_agreement(stack(refs), stack(outputs), "raw", limits)
    agreement = {"limits": "int8" if judged == "fp32" else judged, "passed": not comparison.failures,
                 **{name: round(check.value, 4) for name, check in comparison.outputs.items()},
                 "images": len(outputs)}
    return parity, agreement


def _run_worker(key: str, artifact: str, precision: str, python: str, models: list[Path], work: Path,
                args) -> dict[str, Any]:
    out = work / f"{key}_{artifact}_{precision}"
    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)
    command = [python, str(Path(__file__).resolve()), "worker", "--runtime", key, "--artifact", artifact,
               "--precision", precision, "--models", *[str(m.resolve()) for m in models],
               "--images", str((work / "val.npz").resolve()), "--calib", str(work.resolve()),
               "--num-queries", str(args.num_queries), "--out", str(out.resolve()), "--runs", str(args.runs),
               "--warmup", str(args.warmup), "--threads", str(args.threads)]
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "OMP_NUM_THREADS": str(args.threads),
           "PYTHONPATH": str(ROOT)}  # the worker's host step is the project's (imaging/host_step.py, numpy only)
    started = time.perf_counter()
    try:
        proc = subprocess.run(command, capture_output=True, text=True, timeout=args.timeout, env=env)
        log = proc.stdout + proc.stderr
        (out / "worker.log").write_text(log)
        crashed = proc.returncode != 0 or not (out / "result.json").exists()
    except subprocess.TimeoutExpired:
        proc, log, crashed = None, "", True
    if crashed:
        tail = log.strip().splitlines()
        why = (f"worker timed out after {args.timeout} s" if proc is None else
               f"worker exited with {proc.returncode}" + (f": {tail[-1][:250]}" if tail else ""))
        return {"converts": False, "runs": False, "tools": {}, "notes": [],
                "error": {"stage": "worker", "first_line": why[:300], "detail": why}}
    result = json.loads((out / "result.json").read_text())
    result["wall_seconds"] = round(time.perf_counter() - started, 1)
    if key == "rknn":
        # The toolkit logs an error line per op it places on no NPU unit it knows ("Unkown op target"), then
        # runs the model anyway: counted, since such ops run on the CPU of the board.
        result["notes"].append(f"toolkit printed 'Unkown op target' {log.count('Unkown op target')} times")
    return result


def measure(args: argparse.Namespace, machine: dict[str, Any]) -> dict[str, Any]:
    import numpy as np

    from datetime import datetime, timezone

    work = Path(args.work) / "fixture"
    work.mkdir(parents=True, exist_ok=True)
    started = datetime.now(timezone.utc)
    print("[fixture] exports, val images, calibration sets, reference", flush=True)
    prepared = _prepare(work, args)
    args.num_queries = prepared["model"].config.num_queries
    reference_ap = _coco(prepared, prepared["reference"])
    data: dict[str, Any] = {
        "date": started.strftime("%Y-%m-%d"), "started_utc": started.strftime("%Y-%m-%dT%H:%M:%SZ"),
        "command": "benchmarks/run_portability.sh --fixture" + (
            "" if args.fixture_model == "rtdetrv2" else f" --fixture-model {args.fixture_model}"),
        "machine": machine,
        "model": {"path": str(FIXTURE_MODELS[args.fixture_model].relative_to(ROOT)), "input": list(prepared["model"].config.image_size),
                  "head": "raw", "batch": 1, "artifacts": ARTIFACTS},
        "settings": {"threads": args.threads, "runs": args.runs, "warmup": args.warmup,
                     "val_images": len(prepared["images"]), "parity_images": args.parity_images,
                     "calibration": {**CALIB, "images": "benchmarks/fixture/make_dataset.py"}},
        "reference": {"runtime": "PyTorch fp32", "AP": reference_ap},
        "runtimes": {k: dict(v) for k, v in RUNTIMES.items() if k in args.fixture_runtimes},
        "results": [],
    }
    for key, artifact, precision in ROWS:
        if key not in args.fixture_runtimes or (args.fixture_rows and
                                                 f"{key}/{artifact}/{precision}" not in args.fixture_rows):
            continue
        models = [prepared["single"]] if artifact == "single" else list(prepared["split"])
        print(f"[fixture] {RUNTIMES[key]['target']}, {artifact}, {precision}", flush=True)
        raw = _run_worker(key, artifact, precision, args.python.get(key, sys.executable), models, work, args)
        row: dict[str, Any] = {"target": RUNTIMES[key]["target"], "runtime": key, "artifact": artifact,
                               "precision": precision, "tools": raw.get("tools", {}), "converts": raw["converts"],
                               "runs": raw["runs"], "error": raw.get("error"), "notes": raw.get("notes", []),
                               "convert_seconds": raw.get("convert_seconds"),
                               "measured_utc": datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")}
        if raw.get("run_error"):
            row["run_error"] = raw["run_error"]
        if raw["runs"]:
            data_npz = np.load(work / f"{key}_{artifact}_{precision}" / "outputs.npz")
            outputs = [{n: data_npz[f"{i:03d}/{n}"] for n in OUTPUTS} for i in range(len(prepared["images"]))]
            row["parity"], row["agreement"] = _judge(prepared, outputs, precision, args.parity_images)
            row["AP"] = _coco(prepared, outputs)
            row["AP_delta"] = round(row["AP"]["AP"] - reference_ap["AP"], 4)
            times = raw["latency_ms"]
            row["latency_ms"] = {"median": round(_median(times), 1), "min": round(min(times), 1),
                                 "max": round(max(times), 1), "runs": len(times), "threads": args.threads,
                                 "load_average": raw.get("load_during")}
        data["results"].append(row)
        print("    " + _summary(row), flush=True)
    data["wall_seconds"] = round((datetime.now(timezone.utc) - started).total_seconds(), 1)
    return data


# -- rendering ---------------------------------------------------------------------------------------------------
def merge(previous: dict[str, Any], new: dict[str, Any]) -> dict[str, Any]:
    """``previous`` with ``new``'s rows put in (``--fixture-rows``: a few rows re-measured on the same images)."""
    for field in ("settings", "reference", "model"):
        if previous[field] != new[field]:
            raise SystemExit(f"--fixture-rows: the {field} differ from the committed fixture run; re-run all rows")
    rows = {(r["runtime"], r["artifact"], r["precision"]): r for r in previous["results"]}
    rows.update({(r["runtime"], r["artifact"], r["precision"]): r for r in new["results"]})
    merged = dict(previous)
    merged["runtimes"] = {**previous["runtimes"], **new["runtimes"]}
    merged["results"] = [rows[key] for key in ROWS if key in rows]
    merged["wall_seconds"] = previous["wall_seconds"] + new["wall_seconds"]
    return merged


def _summary(row: dict[str, Any]) -> str:
    if not row["runs"]:
        return ("converts, does not run: " if row["converts"] else "does not convert: ") + \
            (row.get("error") or {}).get("first_line", "")
    p, a = row["parity"], row["agreement"]
    return (f"parity {'passed' if p['passed'] else 'failed'} (logits {p['logits_max_abs']:.2g}), agreement "
            f"matched {a['matched']:.3f} labels {a['labels']:.3f}, AP {row['AP']['AP']:.4f} ({row['AP_delta']:+.4f}), "
            f"{row['latency_ms']['median']:.0f} ms")


def _yes(value: bool) -> str:
    return "yes" if value else "**no**"


def judged_passed(row: dict[str, Any]) -> bool:
    """A row's verdict: fp32 rows by parity (verification's fp32 limits), reduced precision by agreement."""
    return row["parity"]["passed"] if row["precision"] == "fp32" else row["agreement"]["passed"]


def matrix_markdown(data: dict[str, Any]) -> str:
    """The fixture matrix as markdown (rendered under the r18vd matrix of docs/portability.md)."""
    m, s, ref = data["machine"], data["settings"], data["reference"]["AP"]
    load = m.get("load_average_start")
    lines = [
        f"Measured {data['date']} by `{data['command']}`: the trained fixture (`{data['model']['path']}`, "
        f"{data['model']['input'][0]}x{data['model']['input'][1]}, raw head, batch 1) as the "
        f"{ARTIFACTS['single']} and as the {ARTIFACTS['split']}.",
        "",
        f"Machine: {m['cpu']}, {m['logical_cpus']} logical CPUs, {m['os']}; load average "
        f"{load[0] if load else '?'} at the start{'; ' + m['note'] if m.get('note') else ''}.",
        f"Parity: max abs error against PyTorch fp32 on the first {s['parity_images']} val images (verification's "
        f"metric and limit, 1e-4). Agreement: verification's detection agreement with PyTorch over the "
        f"{s['val_images']} val images (matched / same label; the limits of the precision computed in: fp16 for "
        f"RKNN's float mode, int8 for INT8; fp32 rows are judged by parity). Fixture AP: COCO AP@[.5:.95] on the "
        f"same {s['val_images']} val images, the runtime's raw outputs through the project's postprocess "
        f"(reference PyTorch fp32: {ref['AP']:.4f}). INT8 calibration: {s['calibration']['count']} images of the "
        f"fixture's {s['calibration']['split']} generator, seed {s['calibration']['seed']} (as the project's INT8 "
        f"exports). Latency: median of {s['runs']} runs after {s['warmup']} warm-up runs of val image 0, "
        f"{s['threads']} threads, the split's host step included. `int8+fp16` / `int8+fp32`: graph 1 in INT8, "
        f"graph 2 in the runtime's float mode." + (
            " `int8-oiqt`: LiteRT's INT8 with onnx2tf's `-oiqt` (Runtimes says what it changes)."
            if any(r["precision"].startswith("int8-oiqt") for r in data["results"]) else ""),
        "",
        "| runtime | artifact | computes in | converts | runs | verdict | logits max abs | pred_boxes max abs | "
        "matched / labels | fixture AP (delta) | latency ms | load |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    notes: list[str] = []
    for row in data["results"]:
        verdict, logits, boxes, agree, ap, latency, load_text = "-", "-", "-", "-", "-", "-", "-"
        if row["runs"]:
            p, a = row["parity"], row["agreement"]
            kind = "parity" if row["precision"] == "fp32" else f"agreement ({a['limits']})"
            verdict = f"{kind} {'passed' if judged_passed(row) else '**failed**'}"
            logits, boxes = f"{p['logits_max_abs']:.2g}", f"{p['pred_boxes_max_abs']:.2g}"
            agree = f"{a['matched']:.3f} / {a['labels']:.3f}"
            ap = f"{row['AP']['AP']:.4f} ({row['AP_delta']:+.4f})"
            latency = f"{row['latency_ms']['median']:.0f}"
            if row["runtime"] == "rknn":
                latency += " (simulator)"
            if row["latency_ms"].get("load_average"):
                load_text = f"{max(row['latency_ms']['load_average']):.1f}"
        error = row.get("error")
        if error:
            run_error = row.get("run_error")
            also = f"; running it anyway: {run_error['first_line']}" if run_error else ""
            notes.append(f"{row['target']}, {row['artifact']}, {row['precision']} ({error['stage']}): "
                         f"{error['first_line']}{also}")
            verdict += f" [{len(notes)}]"
        for note in row.get("notes", []):
            # What changes how a row ran: ops the RKNN toolkit placed on no NPU unit, a refused CPU delegate.
            if ("Unkown op target" in note and not note.endswith(" 0 times")) or note.startswith("XNNPACK"):
                notes.append(f"{row['target']}, {row['artifact']}, {row['precision']}: {note}")
                verdict += f" [{len(notes)}]"
        lines.append(f"| {row['target']} | {row['artifact']} | {row['precision']} | {_yes(row['converts'])} | "
                     f"{_yes(row['runs'])} | {verdict} | {logits} | {boxes} | {agree} | {ap} | {latency} | "
                     f"{load_text} |")
    lines += ["", "Runtimes:", ""]
    for key, runtime in data["runtimes"].items():
        tools = next((r["tools"] for r in data["results"] if r["runtime"] == key and r["tools"]), {})
        text = ", ".join(f"{k} {v}" for k, v in tools.items() if v) or "versions not recorded"
        lines.append(f"- {runtime['target']} ({text}): {runtime['how']}")
    if notes:
        lines += ["", "Notes:", ""] + [f"{i}. {n}" for i, n in enumerate(notes, 1)]
    return "\n".join(lines) + "\n"


def compact_markdown(data: dict[str, Any]) -> str:
    """The fixture matrix in brief, for the README (docs/portability.md has every column and note)."""
    m, s = data["machine"], data["settings"]
    lines = [f"The trained fixture, {s['val_images']} val images, measured {data['date']} on a {m.get('note') or m['cpu']} "
             f"(`{data['command']}`; reference PyTorch fp32 AP {data['reference']['AP']['AP']:.4f}):", "",
             "| runtime | artifact | computes in | result | fixture AP (delta) | latency ms |", "|---|---|---|---|---|---|"]
    for row in data["results"]:
        if row["runs"]:
            a = row["agreement"]
            result = (f"parity {'passed' if judged_passed(row) else '**failed**'}" if row["precision"] == "fp32" else
                      f"agreement {'passed' if judged_passed(row) else '**failed**'} (matched {a['matched']:.2f})")
            ap = f"{row['AP']['AP']:.4f} ({row['AP_delta']:+.4f})"
            latency = f"{row['latency_ms']['median']:.0f}" + (" (simulator)" if row["runtime"] == "rknn" else "")
        else:
            result = ("converts, does not run" if row["converts"] else "does not convert")
            ap = latency = "-"
        lines.append(f"| {row['target']} | {row['artifact']} | {row['precision']} | {result} | {ap} | {latency} |")
    return "\n".join(lines) + "\n"


def _parse_worker(argv: list[str]) -> argparse.Namespace:
    w = argparse.ArgumentParser(description="internal: one runtime, one artifact, in the runtime's interpreter")
    w.add_argument("--runtime", choices=sorted(GRAPHS), required=True)
    w.add_argument("--artifact", choices=("single", "split"), required=True)
    w.add_argument("--precision", choices=("fp32", "fp16", "int8", "int8+fp16", "int8+fp32", "int8-oiqt",
                                            "int8-oiqt+fp32"), required=True)
    w.add_argument("--models", nargs="+", required=True)
    w.add_argument("--images", required=True)
    w.add_argument("--calib", required=True)
    w.add_argument("--num-queries", type=int, required=True)
    w.add_argument("--out", required=True)
    w.add_argument("--runs", type=int, default=10)
    w.add_argument("--warmup", type=int, default=2)
    w.add_argument("--threads", type=int, default=2)
    return w.parse_args(argv)


if __name__ == "__main__":
    if sys.argv[1:2] != ["worker"]:
        sys.exit("run it through benchmarks/portability.py --fixture (this file's own entry is its worker)")
    sys.exit(worker_main(_parse_worker(sys.argv[2:])))
