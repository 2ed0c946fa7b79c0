"""This machine's measured compute peaks: one large matrix product per precision, timed in the bench's own run.

Each peak is the best of a few calls of a GEMM graph, at the size (of ``GEMM_SHAPES``) where it reached the most,
run by the runtime that reaches the most on it, with the bench's thread count and session settings (the same
runner classes as the rows):

- FP32: ONNX Runtime, one MatMul (MLAS's SGEMM; also the runtime of most CPU rows);
- INT8: ONNX Runtime, one MatMulInteger of uint8 activations and int8 weights (the u8 x s8 product that INT8 CPU
  files run as);
- BF16: OpenVINO, the FP32 MatMul under the bf16 precision hint (the runtime of the bf16 rows; AMX or AVX512-BF16
  where the CPU has them). PyTorch's CPU bf16 matmul is no alternative on a CPU without them: on the 2-core AMD
  EPYC (AVX2) it ran 0.5-0.8 GFLOP/s, emulated, against OpenVINO's 34-100 (the bf16 hint runs in f32 there).

A precision without instructions of its own on this CPU is measured anyway and says so in its note.
"""

from __future__ import annotations

import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from rtdetr_export.backends import OnnxRuntimeRunner, Runner
from rtdetr_export.bench.machine import cpu_flags
from rtdetr_export.bench.timing import Rounds, timed
from rtdetr_export.stats import rotated

PRECISIONS = ("fp32", "bf16", "int8")
# M, K, N of the GEMMs, each precision's peak taken at the one that reached the most. 512^3 (0.27 GFLOP, a few
# milliseconds per call) reached the most in FP32 and INT8 of 256-1024 on the AVX2-only AMD EPYC; on the EPYC with
# AVX-512 VNNI and BF16 it read half of what 1024^3 (2.1 GFLOP) reaches in INT8 and BF16 (best of 15 interleaved
# calls: INT8 470 vs 741 GFLOP/s, BF16 142 vs 184-294; FP32 187 vs 195), below what the model's own INT8
# convolutions ran at (~700). Both sizes keep a call within a few to ~10 ms, short enough for a shared machine's
# quiet moments (docs/benchmarks.md, "Roofline").
GEMM_SHAPES = ((512, 512, 512), (1024, 1024, 1024))
RUNTIMES = {"fp32": "onnxruntime MatMul (float32)", "int8": "onnxruntime MatMulInteger (uint8 x int8 -> int32)",
            "bf16": "openvino MatMul (float32 graph, bf16 inference precision hint)"}


@dataclass(frozen=True)
class Peak:
    """One precision's measured peak: the best call of a GEMM of ``shape`` (M, K, N)."""

    precision: str
    runtime: str
    shape: tuple[int, int, int]
    threads: int | None  # None: the runtime's default
    best_ms: float | None  # None: not measured (``note`` says why)
    samples: int = 0
    note: str | None = None
    # The precision the runtime ran it in where that is not ``precision`` (OpenVINO runs the bf16 hint in f32 on
    # a CPU without bf16 instructions): rows of ``precision`` are then compared with that precision's peak.
    executed: str | None = None

    @property
    def flops(self) -> int:
        """2 x M x K x N: one multiply-add = 2 FLOPs (integer ones too), as the model's count."""
        m, k, n = self.shape
        return 2 * m * k * n

    @property
    def gflops(self) -> float | None:
        return None if not self.best_ms else self.flops / self.best_ms / 1e6

    def to_json(self) -> dict[str, Any]:
        return {"precision": self.precision, "gflops": self.gflops, "runtime": self.runtime, "shape": list(self.shape),
                "flops": self.flops, "best_ms": self.best_ms, "samples": self.samples, "threads": self.threads,
                "note": self.note, "executed": self.executed}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> "Peak":
        return cls(data["precision"], data["runtime"], tuple(data["shape"]), data.get("threads"), data.get("best_ms"),
                   int(data.get("samples", 0)), data.get("note"), data.get("executed"))


@dataclass(frozen=True)
class Peaks:
    """The measured peak of each precision (fp32, bf16, int8) on this machine."""

    by_precision: dict[str, Peak] = field(default_factory=dict)

    def get(self, precision: str) -> Peak | None:
        return self.by_precision.get(precision)

    def to_json(self) -> dict[str, Any]:
        return {precision: peak.to_json() for precision, peak in self.by_precision.items()}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> "Peaks":
        return cls({precision: Peak.from_json(entry) for precision, entry in data.items()})


def _gemm_graph(path: Path, precision: str, shape: tuple[int, int, int]) -> np.ndarray:
    """Write a one-node GEMM graph with constant weights to ``path``; return an input to feed it."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    m, k, n = shape
    rng = np.random.default_rng(0)
    if precision == "int8":
        op, a_type, y_type = "MatMulInteger", TensorProto.UINT8, TensorProto.INT32
        weights = rng.integers(-127, 128, (k, n), dtype=np.int8)
        feed = rng.integers(0, 256, (m, k), dtype=np.uint8)
    else:
        op, a_type, y_type = "MatMul", TensorProto.FLOAT, TensorProto.FLOAT
        weights = rng.standard_normal((k, n), dtype=np.float32)
        feed = rng.standard_normal((m, k), dtype=np.float32)
    graph = helper.make_graph([helper.make_node(op, ["a", "b"], ["y"])], f"gemm_{precision}",
                              [helper.make_tensor_value_info("a", a_type, [m, k])],
                              [helper.make_tensor_value_info("y", y_type, [m, n])],
                              [numpy_helper.from_array(weights, "b")])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(path))
    return feed


def _cpu_note(precision: str, flags: frozenset[str]) -> str | None:
    """What this CPU lacks for ``precision`` (None where it has the instructions); the flags of /proc/cpuinfo."""
    if precision == "bf16" and not flags & {"avx512_bf16", "amx_bf16"}:
        return "no bf16 instructions on this CPU (no AVX512_BF16 or AMX)"
    if precision == "int8" and not flags & {"avx512_vnni", "avx_vnni", "amx_int8"}:
        return "no VNNI on this CPU: 8-bit products without the dot-product instructions"
    return None


class PeakProbe:
    """The GEMM runners (each precision at each of ``shapes``), made once, sampled between the bench's own rounds
    (``sample``), best kept."""

    def __init__(self, folder: Path, threads: int | None = None,
                 shapes: tuple[tuple[int, int, int], ...] = GEMM_SHAPES, settle_ms: float = Rounds.settle_ms):
        self.folder, self.threads, self.shapes, self.settle_ms = Path(folder), threads, tuple(shapes), settle_ms
        # keyed by (precision, shape)
        self.runners: dict[tuple[str, tuple[int, int, int]], Runner] = {}
        self.feeds: dict[tuple[str, tuple[int, int, int]], dict[str, np.ndarray]] = {}
        self.samples: dict[tuple[str, tuple[int, int, int]], list[float]] = {
            (p, shape): [] for p in PRECISIONS for shape in self.shapes}
        self.notes: dict[str, str | None] = {}
        self.executed: dict[str, str] = {}
        self.seconds = 0.0  # spent loading and sampling: what the peaks add to a bench's time
        self.rounds = 0

    def activate(self) -> None:
        """Write the graphs, load their runners and run each twice untimed; a runtime that cannot is noted."""
        started = time.perf_counter()
        flags = cpu_flags()
        self.folder.mkdir(parents=True, exist_ok=True)
        for precision in PRECISIONS:
            self.notes[precision] = _cpu_note(precision, flags)
            for shape in self.shapes:
                # bf16's is an FP32 graph: the hint sets the precision
                path = self.folder / f"gemm_{precision}_{'x'.join(map(str, shape))}.onnx"
                feed = _gemm_graph(path, precision, shape)
                try:
                    runner = self._runner(precision, path)
                    runner.activate()
                    for _ in range(2):
                        runner.infer({"a": feed})
                except Exception as exc:  # a missing optional runtime costs its peak, not the report
                    if not any(key[0] == precision for key in self.runners):  # else the sizes that ran give it
                        first_line = (str(exc).splitlines() or [""])[0][:160]
                        self.notes[precision] = f"not measured: {type(exc).__name__}: {first_line}"
                    break
                ran_f32 = precision == "bf16" and _executed(runner) not in (None, "bf16")
                if ran_f32 and precision not in self.executed:
                    self.executed[precision] = "fp32"
                    note = self.notes[precision] or "bf16"
                    self.notes[precision] = f"{note}: OpenVINO runs the bf16 hint in f32 here"
                self.runners[precision, shape], self.feeds[precision, shape] = runner, {"a": feed}
        self.seconds += time.perf_counter() - started

    def _runner(self, precision: str, path: Path) -> Runner:
        if precision == "bf16":
            from rtdetr_export.backends.openvino_runner import OpenVinoRunner

            return OpenVinoRunner(path, "bf16", self.threads, io_names=(["a"], ["y"]))
        return OnnxRuntimeRunner(path, threads=self.threads)

    def sample(self) -> None:
        """One timed call of each GEMM, each after the pause the bench's rounds make before a call."""
        started = time.perf_counter()
        order = rotated(list(self.runners), self.rounds)  # each GEMM takes each position in turn
        self.rounds += 1
        for key, runner in ((k, self.runners[k]) for k in order):
            if self.settle_ms > 0:
                time.sleep(self.settle_ms / 1000)
            self.samples[key].append(timed(lambda: runner.infer(self.feeds[key]))[0])
        if self.settle_ms > 0:  # the next row's call, too, starts after the GEMM's threads have settled
            time.sleep(self.settle_ms / 1000)
        self.seconds += time.perf_counter() - started

    def sample_until(self, count: int) -> None:
        """Sample until every GEMM that runs has ``count`` samples."""
        while self.runners and min(len(self.samples[key]) for key in self.runners) < count:
            self.sample()

    def result(self) -> Peaks:
        """Each precision's peak at the shape where it reached the most (the first shape where none was timed)."""
        def best(precision: str) -> Peak:
            measured = [Peak(precision, RUNTIMES[precision], shape, self.threads,
                             min(self.samples[precision, shape], default=None), len(self.samples[precision, shape]),
                             self.notes.get(precision), self.executed.get(precision)) for shape in self.shapes]
            return max(measured, key=lambda peak: peak.gflops or 0.0)

        return Peaks({p: best(p) for p in PRECISIONS})

    def deactivate(self) -> None:
        for runner in self.runners.values():
            runner.deactivate()
        self.runners.clear()


def _executed(runner: Runner) -> str | None:
    """The inference precision OpenVINO chose for the bf16 hint ("bf16", or "f32" on a CPU without bf16
    instructions); None where it does not say."""
    try:
        return runner.compiled.get_property("INFERENCE_PRECISION_HINT").to_string()
    except Exception:  # older OpenVINO: the property or its type differs
        return None


def measure_peaks(threads: int | None = None, repeats: int = 5,
                  shapes: tuple[tuple[int, int, int], ...] = GEMM_SHAPES) -> Peaks:
    """This machine's FP32, BF16 and INT8 GEMM peaks on their own: the best of ``repeats`` rounds."""
    with tempfile.TemporaryDirectory(prefix="rtdetr-peaks-") as folder:
        probe = PeakProbe(Path(folder), threads, shapes)
        probe.activate()
        try:
            probe.sample_until(repeats)
        finally:
            probe.deactivate()
        return probe.result()
