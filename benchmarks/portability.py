#!/usr/bin/env python3
"""Measured edge portability: convert the r18vd exports for other runtimes, run them, compare, time them.

For each runtime and each sampler (gather-nearest = ``--method discrete``, gridsample-bilinear and gather-bilinear
= ``default`` with ``--bilinear-op gridsample|gather``) it records whether the ONNX file
converts, whether the result runs, parity against the PyTorch reference (the verification's metric: per-output
max abs error on ``logits``/``pred_boxes`` after query-row alignment, rounding flips proven by re-running the
reference: ``verification.compare_outputs`` with ``thresholds_for``)
and latency (median of N runs at batch 1, a stated number of threads).

Run it through ``benchmarks/run_portability.sh``, which installs the runtimes with pinned versions. Outputs:

- ``benchmarks/results/portability/portability.json``: machine, load, library versions, date, every number;
- ``benchmarks/results/portability/portability.md``: the matrix rendered from that JSON;
- ``rtdetr_export/export/portability_measured.json``: the same JSON, read by ``rtdetr-export inspect``;
- the section of ``docs/portability.md`` between the ``measured:begin``/``measured:end`` markers.

``--render-only`` rewrites the last three from the committed JSON without measuring anything.

``--preset dfine_n`` (any preset other than r18vd) measures that model instead and writes only
``benchmarks/results/portability/<preset>/portability.{json,md}``: the package copy, the docs section and
``inspect`` stay r18vd's.

Each (runtime, method) runs in its own worker process (``portability.py worker ...``): a converter that
crashes or leaks cannot take the others down, and the LiteRT worker runs in a separate interpreter because
onnx2tf pins numpy/onnx/onnxruntime versions the project's environment does not have. Workers import only
numpy and their runtime; comparing against PyTorch happens here, in the parent.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results" / "portability"
RESULT_JSON = RESULTS / "portability.json"
RESULT_MD = RESULTS / "portability.md"
PACKAGE_JSON = ROOT / "rtdetr_export" / "export" / "portability_measured.json"
DOCS = ROOT / "docs" / "portability.md"
BEGIN, END = "<!-- measured:begin -->", "<!-- measured:end -->"
README = ROOT / "README.md"
EDGE_BEGIN, EDGE_END = "<!-- edge:begin -->", "<!-- edge:end -->"  # README's fixture table

SCHEMA = 1
PRESET, IMAGE_SIZE, OPSET = "r18vd", 640, 17
# The three ways the graph can read sampling points (docs/model.md): sampler -> (--method, --bilinear-op).
SAMPLERS = {"gather-nearest": ("discrete", "gather"), "gridsample-bilinear": ("default", "gridsample"),
            "gather-bilinear": ("default", "gather")}
OUTPUTS = ("logits", "pred_boxes")

# Runtime key -> the target name shown in the matrix and by inspect, and how it gets there.
RUNTIMES: dict[str, dict[str, str]] = {
    "onnxruntime": {"target": "ONNX Runtime CPU",
                    "how": "the ONNX file as is (the runtime our verification uses): the baseline"},
    "openvino": {"target": "OpenVINO CPU (f32)",
                 "how": "openvino.Core().read_model on the ONNX file, CPU plugin with INFERENCE_PRECISION_HINT f32"},
    "openvino-auto": {"target": "OpenVINO CPU (auto precision)",
                      "how": "as above without a precision hint: the plugin picks bf16 on CPUs that have it"},
    "ncnn": {"target": "ncnn (via pnnx)", "how": "pnnx model.onnx inputshape=[1,3,H,W] fp16=0, then ncnn.Net"},
    "litert": {"target": "LiteRT (via onnx2tf)",
               "how": "onnx2tf (Erf replaced by its builtin approximation, strict mode off) -> Keras -> "
                      "float32 .tflite with builtin ops only (no Flex delegate), run by ai_edge_litert's "
                      "Interpreter (XNNPACK); input NHWC"},
}


# -- worker: runs in the runtime's interpreter; stdlib + numpy + the runtime only --------------------------------
def _first_line(exc: BaseException | str) -> str:
    """One line that says what went wrong (the matrix's note; the JSON keeps the full text too).

    OpenVINO prefixes every message with lines naming its own source files ("Exception from src/...");
    those say where, not what, so they are skipped.
    """
    text = exc if isinstance(exc, str) else f"{type(exc).__name__}: {exc}"
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    useful = [ln for ln in lines if not ln.split(": ", 1)[-1].startswith("Exception from src/")] or lines
    # MLIR (the TFLite converter) opens with a generic line and names the op in its first "error:" diagnostic.
    diagnostics = [ln.split(" error: ", 1)[1] for ln in useful if " error: " in ln]
    if diagnostics:
        return diagnostics[0][:300]
    # OpenVINO names the node first and gives the reason last.
    first = useful[0] if useful else text
    return (first if len(useful) < 2 else f"{first} | {useful[-1]}")[:300]


def _error(exc: BaseException | str) -> dict[str, str]:
    text = exc if isinstance(exc, str) else f"{type(exc).__name__}: {exc}"
    return {"first_line": _first_line(exc), "detail": text.strip()[:2000]}


class _CapturedStderr:
    """Collect what native code writes to file descriptor 2 (ncnn reports load errors only there)."""

    def __init__(self, path: Path):
        self.path = path
        self.text = ""

    def __enter__(self) -> "_CapturedStderr":
        sys.stderr.flush()
        self._saved = os.dup(2)
        self._file = open(self.path, "w+b")
        os.dup2(self._file.fileno(), 2)
        return self

    def __exit__(self, *exc: object) -> None:
        sys.stderr.flush()
        os.dup2(self._saved, 2)
        os.close(self._saved)
        self._file.seek(0)
        self.text = self._file.read().decode(errors="replace")
        self._file.close()


def _version(dist: str) -> str | None:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(dist)
    except PackageNotFoundError:
        return None


class _OnnxRuntime:
    tools = ("onnxruntime",)

    def __init__(self, model: Path, work: Path, threads: int, samples: Path | None):
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.intra_op_num_threads, options.inter_op_num_threads = threads, 1
        self.session = ort.InferenceSession(str(model), options, providers=["CPUExecutionProvider"])
        self.details = {"providers": self.session.get_providers(), "inference_precision": "f32"}

    def infer(self, images):
        names = [o.name for o in self.session.get_outputs()]
        return dict(zip(names, self.session.run(None, {"images": images})))


class _OpenVINO:
    tools = ("openvino",)
    precision_hint: str | None = "f32"

    def __init__(self, model: Path, work: Path, threads: int, samples: Path | None):
        import openvino as ov

        core = ov.Core()
        config: dict[str, Any] = {"INFERENCE_NUM_THREADS": threads, "PERFORMANCE_HINT": "LATENCY"}
        if self.precision_hint:
            config["INFERENCE_PRECISION_HINT"] = self.precision_hint
        self.compiled = core.compile_model(core.read_model(str(model)), "CPU", config)
        self.request = self.compiled.create_infer_request()
        self.details = {"device": core.get_property("CPU", "FULL_DEVICE_NAME"),
                        "inference_precision": self.compiled.get_property("INFERENCE_PRECISION_HINT").to_string(),
                        "requested_precision": self.precision_hint or "plugin default"}

    def infer(self, images):
        self.request.infer({"images": images})
        return {out.get_any_name(): self.request.get_tensor(out).data.copy() for out in self.compiled.outputs}


class _OpenVINOAuto(_OpenVINO):
    precision_hint = None


class _Ncnn:
    tools = ("pnnx", "ncnn")

    def __init__(self, model: Path, work: Path, threads: int, samples: Path | None):
        import ncnn
        import pnnx

        self.ncnn = ncnn
        # pnnx writes its outputs next to its input: give it a copy of the name inside the work folder.
        local = work / model.name
        if not local.exists():
            local.symlink_to(model.resolve())
        started = time.perf_counter()
        proc = subprocess.run([pnnx.EXEC_PATH, local.name, f"inputshape=[1,3,{IMAGE_SIZE},{IMAGE_SIZE}]", "fp16=0"],
                              cwd=work, capture_output=True, text=True)
        self.convert_seconds = time.perf_counter() - started
        (work / "pnnx.log").write_text(proc.stdout + proc.stderr)
        if proc.returncode != 0:
            raise ConversionError(f"pnnx exited with {proc.returncode}: " + _first_line(proc.stderr or proc.stdout))
        param = work / (local.stem + ".ncnn.param")
        types = [line.split()[0] for line in param.read_text().splitlines()[2:] if line.strip()]
        # pnnx exits 0 even when it leaves ops it could not map; they stay as layer types ncnn does not have.
        missing = sorted({t for t in types if ncnn.create_layer(t) is None})
        self.details = {"layers": len(types), "layer_types_ncnn_lacks": missing, "inference_precision": "f32"}
        self.net = ncnn.Net()
        self.net.opt.num_threads = threads
        self.net.opt.use_fp16_packed = self.net.opt.use_fp16_storage = self.net.opt.use_fp16_arithmetic = False
        self.net.opt.use_bf16_storage = False
        self.param, self.bin = param, param.with_suffix(".bin")
        if missing:
            self.problem = f"pnnx left {len(missing)} op type(s) ncnn has no layer for: {', '.join(missing)}"

    def load(self, work: Path) -> None:
        with _CapturedStderr(work / "ncnn-load.log") as captured:
            status = self.net.load_param(str(self.param))
            if status == 0:
                status = self.net.load_model(str(self.bin))
        if status != 0:
            raise RuntimeError(captured.text.strip() or f"ncnn load failed with status {status}")

    def infer(self, images):
        with self.net.create_extractor() as ex:
            ex.input("in0", self.ncnn.Mat(images[0]).clone())
            outs = {}
            for i, name in enumerate(OUTPUTS):
                _, mat = ex.extract(f"out{i}")
                outs[name] = mat.numpy()[None]
        return outs


class _LiteRT:
    tools = ("onnx2tf", "tensorflow", "ai-edge-litert")
    # GELU's Erf has no LiteRT builtin: onnx2tf emits it as the Flex op FlexErf, which only runs with the
    # TensorFlow Flex delegate, so it is asked for its builtin-only approximation. Strict mode (an ONNX Runtime
    # check of every op) is off: it triples the conversion time, and the parity check below covers it.
    onnx2tf_options = {"replace_to_pseudo_operators": ["erf"], "disable_strict_mode": True}

    def __init__(self, model: Path, work: Path, threads: int, samples: Path | None):
        # onnx2tf downloads sample images from GitHub to test-run the graph unless a file of this name is in the
        # working folder; ours are the verification's synthetic scenes (only package registries are reachable).
        shutil.copy(samples, work / "calibration_image_sample_data_20x128x128x3_float32.npy")
        started = time.perf_counter()
        cwd = os.getcwd()
        os.chdir(work)
        try:
            import onnx2tf
            import tensorflow as tf

            keras_model = onnx2tf.convert(input_onnx_file_path=str(model.resolve()),
                                          output_folder_path=str(work / "tf"), non_verbose=True,
                                          disable_model_save=True, **self.onnx2tf_options)
            # Builtin ops only: what LiteRT runs without the TensorFlow Flex delegate (mobile, NPU delegates).
            converter = tf.lite.TFLiteConverter.from_keras_model(keras_model)
            converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS]
            flatbuffer = converter.convert()
        except SystemExit as exc:  # onnx2tf calls sys.exit on some failures
            raise ConversionError(f"onnx2tf exited ({exc.code})") from None
        finally:
            os.chdir(cwd)
        tflite = work / f"{model.stem}_float32.tflite"
        tflite.write_bytes(flatbuffer)
        self.convert_seconds = time.perf_counter() - started
        from ai_edge_litert.interpreter import Interpreter

        self.interpreter = Interpreter(model_path=str(tflite), num_threads=threads)
        signature = self.interpreter.get_signature_list().get("serving_default")
        self.input_shape = [int(d) for d in self.interpreter.get_input_details()[0]["shape"]]
        if signature is not None:
            self.input_name, self.runner = signature["inputs"][0], self.interpreter.get_signature_runner()
            outputs = signature["outputs"]
        else:  # the Keras model of D-FINE converts without a signature: the tensors in the graph's output order
            self.input_name, self.runner = None, None
            self.interpreter.allocate_tensors()
            outputs = [f"{d['name']} (position {i})" for i, d in enumerate(self.interpreter.get_output_details())]
        self.details = {"tflite_bytes": tflite.stat().st_size, "input_shape": self.input_shape,
                        "outputs": outputs, "signature": signature is not None,
                        "onnx2tf_options": self.onnx2tf_options,
                        "inference_precision": "f32"}  # a float32 .tflite; XNNPACK stays f32 unless asked

    def infer(self, images):
        import numpy as np

        # onnx2tf turns NCHW image inputs into NHWC.
        feed = np.ascontiguousarray(images if self.input_shape == list(images.shape) else images.transpose(0, 2, 3, 1))
        if self.runner is not None:
            outputs = self.runner(**{self.input_name: feed})
            return {name: outputs[name] for name in OUTPUTS}
        self.interpreter.set_tensor(self.interpreter.get_input_details()[0]["index"], feed)
        self.interpreter.invoke()
        details = self.interpreter.get_output_details()
        return {name: self.interpreter.get_tensor(d["index"]).copy() for name, d in zip(OUTPUTS, details)}


class ConversionError(RuntimeError):
    """The converter failed and left nothing to run."""


WORKERS = {"onnxruntime": _OnnxRuntime, "openvino": _OpenVINO, "openvino-auto": _OpenVINOAuto, "ncnn": _Ncnn,
           "litert": _LiteRT}


def worker_main(args: argparse.Namespace) -> int:
    """Convert, run every input, time input 0; writes result.json and outputs.npz into ``args.out``."""
    import numpy as np

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    cls = WORKERS[args.runtime]
    result: dict[str, Any] = {"runtime": args.runtime, "converts": False, "runs": False, "error": None,
                              "tools": {t: _version(t) for t in cls.tools}, "details": {}}
    inputs = np.load(args.inputs)
    images = [inputs[k] for k in sorted(inputs.files)]
    runner = None
    started = time.perf_counter()
    try:
        runner = cls(Path(args.model), out, args.threads, Path(args.samples) if args.samples else None)
        # A converter may write a model it knows to be incomplete (``problem``): that is no conversion, but
        # loading it anyway records the runtime's own error.
        problem = getattr(runner, "problem", None)
        result["converts"] = problem is None
        if problem:
            result["error"] = {"stage": "convert", **_error(problem)}
    except Exception as exc:  # noqa: BLE001 - every failure is a result to record
        result["error"] = {"stage": "convert", **_error(exc)}
    result["convert_seconds"] = round(getattr(runner, "convert_seconds", time.perf_counter() - started), 3)
    if runner is not None:
        result["details"] = getattr(runner, "details", {})
        try:
            if hasattr(runner, "load"):
                runner.load(out)
            outputs = [runner.infer(image) for image in images]
            np.savez(out / "outputs.npz", **{f"{i}/{name}": np.asarray(o[name], dtype=np.float32)
                                            for i, o in enumerate(outputs) for name in OUTPUTS})
            result["runs"] = True
            for _ in range(args.warmup):
                runner.infer(images[0])
            load_before = os.getloadavg()[0]
            times = []
            for _ in range(args.runs):
                t0 = time.perf_counter()
                runner.infer(images[0])
                times.append((time.perf_counter() - t0) * 1000)
            result["latency_ms"] = [round(t, 2) for t in times]
            result["load_during"] = [round(load_before, 2), round(os.getloadavg()[0], 2)]
        except Exception as exc:  # noqa: BLE001
            key = "error" if result["error"] is None else "run_error"
            result[key] = {"stage": "run", **_error(exc)}
    (out / "result.json").write_text(json.dumps(result, indent=2) + "\n")
    return 0


# -- parent: export, reference, workers, comparison, rendering -------------------------------------------------------
def _machine(note: str) -> dict[str, Any]:
    cpu = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem_gib = None
    try:
        kb = next(int(l.split()[1]) for l in Path("/proc/meminfo").read_text().splitlines() if l.startswith("MemTotal"))
        mem_gib = round(kb / 2**20, 1)
    except (OSError, StopIteration):
        pass
    return {"cpu": cpu, "logical_cpus": os.cpu_count(), "memory_gib": mem_gib,
            "os": f"{platform.system()} {platform.release()}", "python": platform.python_version(),
            "load_average_start": [round(x, 2) for x in os.getloadavg()], "note": note}


def _export(sampler: str, models: Path, preset: str) -> Path:
    from rtdetr_export.pipeline import OnnxExportOptions, export_onnx
    from rtdetr_export.weights import load_model

    from rtdetr_export.model.sampler import Sampler

    method, bilinear_op = SAMPLERS[sampler]
    choice = Sampler.parse(method, bilinear_op)
    assert choice.value == sampler, f"{sampler}: --method {method} --bilinear-op {bilinear_op} writes {choice}"
    path = models / f"{preset}_{sampler.replace('-', '_')}.onnx"  # pnnx names its outputs after the file: no '-'
    model = load_model(preset=preset, method=method, image_size=IMAGE_SIZE)
    export_onnx(model, path, OnnxExportOptions(opset=OPSET, head="raw", batch=1, sampler=choice), force=True)
    return path


def _reference(method: str, images, preset: str) -> tuple[Any, list[dict[str, Any]]]:
    """The active reference runner (it re-runs to prove discrete rounding flips) and its outputs per image."""
    from rtdetr_export.verify.reference import ReferenceRunner
    from rtdetr_export.weights import load_model

    model = load_model(preset=preset, method=method, image_size=IMAGE_SIZE)
    runner = ReferenceRunner(model, "raw")
    runner.activate()
    return runner, [runner.infer({"images": image}) for image in images]


def _selection_runner(key: str, onnx_file: Path, threads: int, precision: str | None = None) -> Any:
    """A runner of the row's runtime on the ONNX file as it ran it, whose query selection verify/selection.py can
    read, or None. ONNX Runtime's; OpenVINO's under the f32 hint; OpenVINO without a hint under the precision the
    plugin chose for that row (``precision``, read back from the compiled model by the worker: f32 on a CPU without
    bf16, so the same compiled graph). The converters' graphs (ncnn, LiteRT, RKNN) do not say which cells they kept."""
    from rtdetr_export.backends import OnnxRuntimeRunner
    from rtdetr_export.backends.openvino_runner import PRECISION_HINTS, OpenVinoRunner

    if key == "onnxruntime":
        return OnnxRuntimeRunner(onnx_file, threads=threads)
    if key == "openvino":
        return OpenVinoRunner(onnx_file, "f32", threads)
    if key == "openvino-auto" and precision in PRECISION_HINTS:
        return OpenVinoRunner(onnx_file, precision, threads)
    return None


def _parity(reference: tuple[Any, list[dict]], images, outputs_file: Path, candidate: Any = None) -> dict[str, Any]:
    """``candidate``: a runner of the row's runtime on its ONNX file (``_selection_runner``); a failed image is then
    judged again with the cells that runtime's query selection kept among tied scores, as verification does
    (verify/selection.py). Without one, no re-selection."""
    import numpy as np

    from rtdetr_export.verify import compare_outputs, thresholds_for
    from rtdetr_export.verify.verification import compare_with_candidate_selection

    runner, refs = reference
    reselected = 0
    thresholds = thresholds_for("fp32")
    data = np.load(outputs_file)
    worst = {name: 0.0 for name in OUTPUTS}
    unflipped = {name: 0.0 for name in OUTPUTS}
    failures, flipped, reordered = [], 0, 0
    for i, (ref, image) in enumerate(zip(refs, images)):
        test = {name: data[f"{i}/{name}"] for name in OUTPUTS}
        if any(test[n].shape != ref[n].shape for n in OUTPUTS):
            shapes = ", ".join(f"{n} {list(test[n].shape)}" for n in OUTPUTS)
            return {"passed": False, "failures": [f"output shapes differ from the reference: {shapes}"]}
        run = compare_outputs("raw", {"images": image}, ref, test, thresholds, runner)
        if run.failures and candidate is not None:
            with candidate:
                run = compare_with_candidate_selection("raw", {"images": image}, test, thresholds, runner, candidate,
                                                       run)
            reselected += run.reselected_queries or 0
        for name in OUTPUTS:
            worst[name] = max(worst[name], run.outputs[name].stats["max_abs"])
            unflipped[name] = max(unflipped[name], run.outputs[name].value)  # the judged max_abs_unflipped
        failures += run.failures
        flipped += run.flipped_rows
        reordered += run.reordered_rows
    return {"passed": not failures, "threshold": thresholds.max_abs,
            **{f"{name}_max_abs": float(f"{worst[name]:.4g}") for name in OUTPUTS},
            **{f"{name}_max_abs_unflipped": float(f"{unflipped[name]:.4g}") for name in OUTPUTS},
            "flipped_rows": flipped, "reordered_rows": reordered, "failures": failures,
            **({"reselected_queries": reselected} if reselected else {})}


def _median(values: list[float]) -> float:
    ordered = sorted(values)
    mid = len(ordered) // 2
    return ordered[mid] if len(ordered) % 2 else (ordered[mid - 1] + ordered[mid]) / 2


def _run_worker(key: str, sampler: str, python: str, model: Path, inputs: Path, work: Path, args) -> dict[str, Any]:
    out = work / f"{key}_{sampler}"
    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)
    command = [python, str(Path(__file__).resolve()), "worker", "--runtime", key, "--model", str(model.resolve()),
               "--inputs", str(inputs.resolve()), "--out", str(out.resolve()), "--runs", str(args.runs),
               "--warmup", str(args.warmup), "--threads", str(args.threads),
               "--samples", str((work / "onnx2tf_samples.npy").resolve())]
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "OMP_NUM_THREADS": str(args.threads)}
    started = time.perf_counter()
    try:
        proc = subprocess.run(command, capture_output=True, text=True, timeout=args.timeout, env=env)
        (out / "worker.log").write_text(proc.stdout + proc.stderr)
        crashed = proc.returncode != 0 or not (out / "result.json").exists()
    except subprocess.TimeoutExpired:
        proc, crashed = None, True
    if crashed:
        if proc is None:
            why = f"worker timed out after {args.timeout} s"
        else:
            # A native crash leaves no result.json; the last line of its output is the best clue.
            tail = (proc.stderr or proc.stdout).strip().splitlines()
            why = f"worker exited with {proc.returncode}" + (f": {tail[-1][:250]}" if tail else "")
        return {"runtime": key, "converts": False, "runs": False, "tools": {}, "details": {},
                "error": {"stage": "worker", "first_line": why[:300], "detail": why}}
    result = json.loads((out / "result.json").read_text())
    result["wall_seconds"] = round(time.perf_counter() - started, 1)
    return result


def measure(args: argparse.Namespace) -> dict[str, Any]:
    import numpy as np

    from rtdetr_export.errors import RTDetrExportError
    from rtdetr_export.imaging.inputs import synthetic_images

    work, preset = Path(args.work), args.preset
    models = work / "models"
    models.mkdir(parents=True, exist_ok=True)
    started = datetime.now(timezone.utc)
    data: dict[str, Any] = {
        "schema": SCHEMA,
        "date": started.strftime("%Y-%m-%d"),
        "started_utc": started.strftime("%Y-%m-%dT%H:%M:%SZ"),
        "command": "benchmarks/run_portability.sh" + ("" if preset == PRESET else f" --preset {preset}"),
        "json": str(results_json(preset).relative_to(ROOT)),
        "machine": _machine(args.note),
        "model": {"preset": preset, "weights": "seeded random (seed 0)", "input": [IMAGE_SIZE, IMAGE_SIZE],
                  "head": "raw", "batch": 1, "opset": OPSET, "precision": "fp32",
                  "export": f"rtdetr-export onnx --preset {preset} --method METHOD [--bilinear-op OP] --opset "
                            f"{OPSET} (verified)"},
        "settings": {"threads": args.threads, "runs": args.runs, "warmup": args.warmup,
                     "parity_inputs": args.inputs, "timed_input": 0,
                     "parity": "compare_outputs with thresholds_for('fp32'): max abs after row alignment, "
                               "rounding flips proven by re-running the reference"},
        "libraries": {d: _version(d) for d in ("torch", "onnx", "onnxruntime", "onnxslim", "numpy")},
        "runtimes": {k: {"target": v["target"], "how": v["how"]} for k, v in RUNTIMES.items()
                     if k in args.runtimes},
        "results": [],
    }
    images = [synthetic_images(1, (IMAGE_SIZE, IMAGE_SIZE), seed=i) for i in range(args.inputs)]
    inputs = work / "inputs.npz"
    np.savez(inputs, **{f"{i:02d}": image for i, image in enumerate(images)})
    np.save(work / "onnx2tf_samples.npy", synthetic_images(20, (128, 128), seed=100).transpose(0, 2, 3, 1))
    for sampler, (method, _) in SAMPLERS.items():
        print(f"[{sampler}] exporting {preset}", flush=True)
        try:
            model = _export(sampler, models, preset)
        except RTDetrExportError as exc:  # our own export refused (its verification failed): no file to convert
            print(f"    export refused: {exc}", flush=True)
            data["results"] += [{"target": RUNTIMES[key]["target"], "runtime": key, "method": method,
                                 "sampler": sampler, "tools": {}, "converts": False, "runs": False,
                                 "error": {"stage": "export", "first_line": _first_line(str(exc)),
                                           "detail": str(exc)}, "details": {}} for key in args.runtimes]
            continue
        reference = _reference(method, images, preset)
        for key in args.runtimes:
            python = args.python.get(key, sys.executable)
            print(f"[{sampler}] {RUNTIMES[key]['target']}", flush=True)
            raw = _run_worker(key, sampler, python, model, inputs, work, args)
            row: dict[str, Any] = {"target": RUNTIMES[key]["target"], "runtime": key, "method": method,
                                   "sampler": sampler,
                                   "tools": raw.get("tools", {}), "converts": raw["converts"], "runs": raw["runs"],
                                   "error": raw.get("error"), "details": raw.get("details", {}),
                                   "precision": raw.get("details", {}).get("inference_precision"),
                                   "convert_seconds": raw.get("convert_seconds")}
            if raw.get("run_error"):
                row["run_error"] = raw["run_error"]
            if raw["runs"]:
                row["parity"] = _parity(reference, images, work / f"{key}_{sampler}" / "outputs.npz",
                                        _selection_runner(key, model, args.threads, row["precision"]))
                times = raw["latency_ms"]
                row["latency_ms"] = {"median": round(_median(times), 1), "min": round(min(times), 1),
                                     "max": round(max(times), 1), "runs": len(times), "threads": args.threads,
                                     "load_average": raw.get("load_during")}
            data["results"].append(row)
            print("    " + _cell_summary(row), flush=True)
    data["machine"]["load_average_end"] = [round(x, 2) for x in os.getloadavg()]
    data["wall_seconds"] = round((datetime.now(timezone.utc) - started).total_seconds(), 1)
    return data


# -- rendering: the matrix is a pure function of the JSON -----------------------------------------------------------
def _tool_text(tools: dict[str, str | None]) -> str:
    return ", ".join(f"{k} {v}" for k, v in tools.items() if v)


def _cell_summary(row: dict[str, Any]) -> str:
    if row["runs"]:
        p = row["parity"]
        verdict = "parity passed" if p["passed"] else "parity FAILED"
        return (f"runs, {verdict}, logits {_num(p.get('logits_max_abs'))}, pred_boxes "
                f"{_num(p.get('pred_boxes_max_abs'))}, {row['latency_ms']['median']:.0f} ms")
    error = (row.get("error") or {}).get("first_line", "")
    return ("converts, does not run: " if row["converts"] else "does not convert: ") + error


def _num(value: float | None) -> str:
    return "-" if value is None else f"{value:.2g}"


def _sampler(row: dict[str, Any]) -> str:
    """The sampler a row ran; rows measured before the gather bilinear op recorded only the method."""
    return row.get("sampler") or ("gather-nearest" if row["method"] == "discrete" else "gridsample-bilinear")


def _yes(value: bool) -> str:
    return "yes" if value else "**no**"


def matrix_markdown(data: dict[str, Any]) -> str:
    """The measured matrix as markdown (docs/portability.md's measured section is exactly this)."""
    m, s, model = data["machine"], data["settings"], data["model"]
    load = m.get("load_average_start")
    lines = [
        f"Measured {data['date']} by `{data['command']}` (`{data.get('json', str(RESULT_JSON.relative_to(ROOT)))}` "
        f"has every number). {model['preset']}, {model['weights']} weights, {model['input'][0]}x{model['input'][1]}, "
        f"{model['head']} head, batch {model['batch']}, opset {model['opset']}, exported in {model['precision']}.",
        "",
        f"Machine: {m['cpu']}, {m['logical_cpus']} logical CPUs, {m['os']}; load average {load[0] if load else '?'} "
        f"at the start{'; ' + m['note'] if m.get('note') else ''}.",
        f"Parity: {s['parity_inputs']} synthetic scenes, per-output max abs error against PyTorch fp32 after query-row "
        f"alignment (the verification's metric; limit 1e-4, see docs/onnx-export.md). Latency: median of "
        f"{s['runs']} runs after {s['warmup']} warm-up runs, batch 1, {s['threads']} threads; load: the 1-minute "
        f"load average around the timed runs (above {m['logical_cpus']}, other processes competed for the CPUs).",
        "",
        "| runtime | sampler | converts | runs | parity | logits max abs | pred_boxes max abs | latency ms | load |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    notes: list[str] = []
    for row in data["results"]:
        parity, logits, boxes, latency, load = "-", "-", "-", "-", "-"
        if row["runs"]:
            p = row["parity"]
            parity = "passed" if p["passed"] else "**failed**"
            logits, boxes = _num(p.get("logits_max_abs")), _num(p.get("pred_boxes_max_abs"))
            latency = f"{row['latency_ms']['median']:.0f}"
            if row["latency_ms"].get("load_average"):
                load = f"{max(row['latency_ms']['load_average']):.1f}"
        error = row.get("error")
        if error:
            run_error = row.get("run_error")
            also = f"; loading it anyway: {run_error['first_line']}" if run_error else ""
            notes.append(f"{row['target']}, {_sampler(row)} ({error['stage']}): {error['first_line']}{also}")
            parity += f" [{len(notes)}]" if not row["runs"] else ""
            if row["runs"]:
                latency += f" [{len(notes)}]"
        if row["runs"] and row["parity"].get("reselected_queries"):
            notes.append(f"{row['target']}, {_sampler(row)}: passed with {row['parity']['reselected_queries']} "
                         "queries re-selected among tied scores (the cells its graph kept; verify/selection.py)")
            parity += f" [{len(notes)}]"
        precision = row.get("precision")
        if precision and precision != "f32":
            notes.append(f"{row['target']}, {_sampler(row)}: the CPU plugin ran in {precision}")
            parity += f" [{len(notes)}]"
        if row.get("diagnosis"):  # why a row failed, found after the run (written into the JSON by hand, dated)
            notes.append(f"{row['target']}, {_sampler(row)}: {row['diagnosis']}")
            parity += f" [{len(notes)}]"
        lines.append(f"| {row['target']} | {_sampler(row)} | {_yes(row['converts'])} | {_yes(row['runs'])} | "
                     f"{parity} | {logits} | {boxes} | {latency} | {load} |")
    lines += ["", "Runtimes:", ""]
    for key, runtime in data["runtimes"].items():
        tools = next((r["tools"] for r in data["results"] if r["runtime"] == key and r["tools"]), {})
        lines.append(f"- {runtime['target']} ({_tool_text(tools) or 'versions not recorded'}): {runtime['how']}")
    if notes:
        lines += ["", "Notes:", ""] + [f"{i}. {n}" for i, n in enumerate(notes, 1)]
    return "\n".join(lines) + "\n"


def full_markdown(data: dict[str, Any]) -> str:
    """The r18vd matrix and, where measured, the fixture's (single file and split artifact, fp32 and INT8)."""
    text = matrix_markdown(data)
    if "fixture" in data:
        text += "\n### The trained fixture: single file and split artifact, fp32 and INT8\n\n"
        text += _fixture_module().matrix_markdown(data["fixture"])
    return text


def _fixture_module():
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    import portability_fixture

    return portability_fixture


def write_outputs(data: dict[str, Any], text: str | None = None) -> None:
    """JSON (results + package copy), the markdown file, and the docs section, all from ``data``."""
    text = text if text is not None else json.dumps(data, indent=2) + "\n"
    RESULTS.mkdir(parents=True, exist_ok=True)
    RESULT_JSON.write_text(text)
    PACKAGE_JSON.write_text(text)
    matrix = full_markdown(data)
    RESULT_MD.write_text("# Measured portability\n\n" + matrix)
    DOCS.write_text(replace_docs_section(DOCS.read_text(), matrix))
    if "fixture" in data:
        README.write_text(replace_section(README.read_text(), _fixture_module().compact_markdown(data["fixture"]),
                                          EDGE_BEGIN, EDGE_END))


def results_json(preset: str) -> Path:
    """Where a preset's measured matrix is kept: r18vd's is the project's (docs, inspect), others sit beside it."""
    return RESULT_JSON if preset == PRESET else RESULTS / preset / RESULT_JSON.name


def write_preset_outputs(data: dict[str, Any]) -> None:
    """Another preset's matrix (``--preset``): its JSON and markdown only."""
    path = results_json(data["model"]["preset"])
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=2) + "\n")
    path.with_suffix(".md").write_text(f"# Measured portability: {data['model']['preset']}\n\n"
                                       + matrix_markdown(data))


def fixture_json(fixture_model: str) -> Path:
    """Where a trained fixture's rows are kept: RT-DETRv2's in the project's matrix (docs, README, inspect),
    D-FINE's in a file of their own."""
    return RESULT_JSON if fixture_model == "rtdetrv2" else RESULTS / f"{fixture_model}_fixture" / RESULT_JSON.name


def write_fixture_outputs(path: Path, data: dict[str, Any]) -> None:
    """Another trained fixture's rows (``--fixture-model``): its JSON, its markdown and its copy in docs/portability.md
    (between ``<!-- NAME-fixture:begin -->`` and ``<!-- NAME-fixture:end -->``)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=2) + "\n")
    fixture = data["fixture"]
    matrix = _fixture_module().matrix_markdown(fixture)
    path.with_suffix(".md").write_text(f"# Measured portability: the trained fixture `{fixture['model']['path']}`\n\n"
                                       + matrix)
    marker = path.parent.name.replace("_", "-")  # dfine_fixture -> <!-- dfine-fixture:begin -->
    begin, end = f"<!-- {marker}:begin -->", f"<!-- {marker}:end -->"
    DOCS.write_text(replace_section(DOCS.read_text(), matrix, begin, end))  # docs/portability.md's copy


def docs_section(docs: str) -> str:
    """The text between the measured markers of docs/portability.md."""
    start, end = docs.index(BEGIN) + len(BEGIN), docs.index(END)
    return docs[start:end].strip("\n") + "\n"


def replace_docs_section(docs: str, matrix: str) -> str:
    return replace_section(docs, matrix, BEGIN, END)


def replace_section(text: str, body: str, begin: str, end: str) -> str:
    if begin not in text or end not in text:
        raise SystemExit(f"add the {begin} / {end} markers where the matrix belongs")
    start, stop = text.index(begin) + len(begin), text.index(end)
    return text[:start] + "\n" + body + text[stop:]


def section(text: str, begin: str, end: str) -> str:
    """The text between two markers (README's edge table)."""
    return text[text.index(begin) + len(begin):text.index(end)].strip("\n") + "\n"


def _parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command")
    w = sub.add_parser("worker", help="internal: one runtime and one model, in the runtime's interpreter")
    w.add_argument("--runtime", choices=sorted(WORKERS), required=True)
    w.add_argument("--model", required=True)
    w.add_argument("--inputs", required=True)
    w.add_argument("--out", required=True)
    w.add_argument("--samples", help="NHWC [20, 128, 128, 3] float32 sample images for onnx2tf")
    w.add_argument("--runs", type=int, default=10)
    w.add_argument("--warmup", type=int, default=2)
    w.add_argument("--threads", type=int, default=2)
    parser.add_argument("--work", default=str(ROOT / "build" / "portability"),
                        help="folder for exported and converted models (ignored by git)")
    parser.add_argument("--runtimes", default=",".join(RUNTIMES),
                        help=f"comma-separated subset of {', '.join(RUNTIMES)}")
    parser.add_argument("--python", action="append", default=[], metavar="RUNTIME=PATH",
                        help="interpreter for a runtime's worker (default: this one), e.g. litert=venv-tf/bin/python")
    parser.add_argument("--runs", type=int, default=10, help="timed runs per model (median reported)")
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--inputs", type=int, default=2, help="synthetic scenes for parity")
    parser.add_argument("--timeout", type=int, default=600, help="seconds per worker")
    parser.add_argument("--note", default="", help="recorded with the machine, e.g. 'quiet machine'")
    parser.add_argument("--preset", default=PRESET,
                        help=f"the model measured (default {PRESET}, the project's matrix); another preset, e.g. "
                             "dfine_n, writes benchmarks/results/portability/PRESET/ only")
    parser.add_argument("--fixture", action="store_true",
                        help="measure the trained fixture's rows (single file and split artifact, fp32 and INT8; "
                             "benchmarks/portability_fixture.py) and keep the committed r18vd rows")
    parser.add_argument("--fixture-model", choices=("rtdetrv2", "dfine"), default="rtdetrv2",
                        help="with --fixture: the trained fixture measured, RT-DETRv2's (the project's matrix) or "
                             "D-FINE's (tests/data/fixture/dfine_shapes; writes benchmarks/results/portability/"
                             "dfine_fixture/ only)")
    parser.add_argument("--fixture-runtimes", default="onnxruntime,ncnn,rknn,litert",
                        help="comma-separated subset of onnxruntime, ncnn, rknn, litert (with --fixture)")
    parser.add_argument("--fixture-rows", default="",
                        help="with --fixture: only these rows (RUNTIME/ARTIFACT/PRECISION, comma-separated), merged "
                             "into the committed fixture rows")
    parser.add_argument("--val-images", type=int, default=0, help="fixture val images to run (0: all 200)")
    parser.add_argument("--parity-images", type=int, default=2, help="fixture val images judged for fp32 parity")
    parser.add_argument("--render-only", action="store_true",
                        help="re-render the markdown, the docs section and the package copy from the committed JSON")
    args = parser.parse_args(argv)
    if args.command != "worker":
        args.runtimes = [r.strip() for r in args.runtimes.split(",") if r.strip()]
        unknown = set(args.runtimes) - set(RUNTIMES)
        if unknown:
            parser.error(f"unknown runtime(s): {', '.join(sorted(unknown))}")
        args.python = dict(p.split("=", 1) for p in args.python)
        args.fixture_runtimes = [r.strip() for r in args.fixture_runtimes.split(",") if r.strip()]
        args.fixture_rows = [r.strip() for r in args.fixture_rows.split(",") if r.strip()]
    return args


def main(argv: list[str] | None = None) -> int:
    args = _parse(argv)
    if args.command == "worker":
        return worker_main(args)
    if args.render_only:
        text = RESULT_JSON.read_text()
        write_outputs(json.loads(text), text)
        return 0
    if args.fixture:
        path = fixture_json(args.fixture_model)
        data = json.loads(path.read_text()) if path.exists() else {}
        fixture = _fixture_module().measure(args, _machine(args.note))
        if args.fixture_rows:
            fixture = _fixture_module().merge(data["fixture"], fixture)
        data["fixture"] = fixture
        if path == RESULT_JSON:
            write_outputs(data)
        else:
            write_fixture_outputs(path, data)
        print(_fixture_module().matrix_markdown(data["fixture"]))
        return 0
    data = measure(args)
    if args.preset != PRESET:
        write_preset_outputs(data)
        print(matrix_markdown(data))
        return 0
    previous = json.loads(RESULT_JSON.read_text()) if RESULT_JSON.exists() else {}
    if "fixture" in previous:  # measured on its own (--fixture): kept until that is re-run
        data["fixture"] = previous["fixture"]
    write_outputs(data)
    print(matrix_markdown(data))
    return 0


if __name__ == "__main__":
    sys.exit(main())
