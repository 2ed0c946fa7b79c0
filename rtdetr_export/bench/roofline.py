"""The roofline column: each row's achieved GFLOP/s and its fraction of this machine's measured peak in the
precision it runs in. A roofline of compute only: it says how far a row is from the arithmetic limit, not whether
memory bandwidth is what holds it there (docs/benchmarks.md, "Roofline")."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Callable

import onnx

from rtdetr_export.artifact import load_onnx
from rtdetr_export.bench.artifacts import ONNX_KINDS, Artifact
from rtdetr_export.bench.flops import CONVENTION, METHOD, FlopCount, count_flops
from rtdetr_export.bench.peaks import Peaks
from rtdetr_export.bench.targets import Target

Log = Callable[[str], None]
PEAK_NAMES = {"fp32": "FP32", "bf16": "BF16", "int8": "INT8", "fp16": "FP16"}


@dataclass(frozen=True)
class Roofline:
    """One row's place under the compute roof: the model's FLOPs per image x images per second, against the
    measured peak of ``peak_precision``."""

    peak_precision: str  # the peak it is compared with: fp32, bf16 or int8 (fp16 on a GPU: none measured)
    flops_per_image: float | None
    counted_from: str | None  # the graph whose count the row uses (an artifact's label)
    achieved_gflops: float | None
    peak_gflops: float | None
    note: str | None = None  # why a number is missing, or why this peak

    @property
    def fraction(self) -> float | None:
        if self.achieved_gflops is None or not self.peak_gflops:
            return None
        return self.achieved_gflops / self.peak_gflops

    def cell(self) -> str:
        """How report.md shows it: '12.3 GFLOP/s, 8% of FP32 peak'."""
        if self.achieved_gflops is None:
            return "-"
        text = f"{self.achieved_gflops:.3g} GFLOP/s"
        fraction = self.fraction
        peak = PEAK_NAMES.get(self.peak_precision, self.peak_precision)
        if fraction is None:
            return f"{text}, no {peak} peak"
        return f"{text}, {'<1%' if fraction < 0.005 else f'{fraction:.0%}'} of {peak} peak"

    def to_json(self) -> dict[str, Any]:
        return {"achieved_gflops": self.achieved_gflops, "peak_precision": self.peak_precision,
                "peak_gflops": self.peak_gflops, "fraction_of_peak": self.fraction,
                "flops_per_image": self.flops_per_image, "counted_from": self.counted_from, "note": self.note}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> "Roofline":
        return cls(data["peak_precision"], data.get("flops_per_image"), data.get("counted_from"),
                   data.get("achieved_gflops"), data.get("peak_gflops"), data.get("note"))


def peak_precision(target: Target) -> tuple[str, str | None]:
    """The precision whose peak a row is compared with, and why when it is not the row's own: INT8 files with the
    INT8 peak, bf16-hinted OpenVINO rows with BF16, FP16 with FP16 where the runtime runs it, else FP32."""
    artifact_precision = target.artifact.precision if target.artifact else target.precision
    if artifact_precision == "int8":
        return "int8", None
    if target.backend == "openvino" and target.info.get("precision_hint") == "bf16":
        return "bf16", None
    if target.precision == "fp16":
        if target.device == "cuda":
            return "fp16", None
        return "fp32", "an FP16 file on a CPU runtime: compared with the FP32 peak (no FP16 GEMM peak on the CPU)"
    return "fp32", None


def graph_input_shapes(model: onnx.ModelProto, batch: int, size: tuple[int, int]) -> dict[str, tuple[int, ...]]:
    """Every graph input's shape at ``batch`` and image ``size``: a symbolic leading dimension is the batch, and
    the symbols of the images' height and width are ``size``; ValueError for any other symbol."""
    initializers = {i.name for i in model.graph.initializer}
    inputs = [i for i in model.graph.input if i.name not in initializers]
    symbols: dict[str, int] = {}
    for graph_input in inputs:
        dims = graph_input.type.tensor_type.shape.dim
        if dims and dims[0].dim_param:
            symbols[dims[0].dim_param] = batch
        if graph_input.name == "images" and len(dims) == 4:
            symbols.update({d.dim_param: s for d, s in zip(dims[2:], size) if d.dim_param})
    shapes = {}
    for graph_input in inputs:
        shape = []
        for dim in graph_input.type.tensor_type.shape.dim:
            if dim.HasField("dim_value"):
                shape.append(dim.dim_value)
            elif dim.dim_param in symbols:
                shape.append(symbols[dim.dim_param])
            else:
                raise ValueError(f"input {graph_input.name!r} has a dimension {dim.dim_param or '?'!r} whose size "
                                 "the bench does not know")
        shapes[graph_input.name] = tuple(shape)
    return shapes


def artifact_flops(artifact: Artifact, batch: int, size: tuple[int, int]) -> FlopCount:
    """The FLOPs of an ONNX file or a split artifact (both graphs; the host step's top-k is not counted)."""
    if artifact.kind == "split":
        # The sidecar and both graphs lie together, whichever of them the artifact was named by.
        graphs = [load_onnx(artifact.path.parent / graph.file) for graph in artifact.record.graphs.values()]
    else:
        graphs = [load_onnx(artifact.path)]
    counts = [count_flops(graph, graph_input_shapes(graph, batch, size)) for graph in graphs]
    total = counts[0]
    for count in counts[1:]:
        total = total + count
    return total


@dataclass
class RooflineBasis:
    """What every row's roofline is computed from: the FLOP count of each ONNX artifact (by label), why one
    could not be counted, and the measured peaks."""

    counts: dict[str, FlopCount] = field(default_factory=dict)
    failures: dict[str, str] = field(default_factory=dict)
    precisions: dict[str, str] = field(default_factory=dict)  # artifact label -> its precision
    seconds: float = 0.0  # spent counting
    peaks: Peaks = field(default_factory=Peaks)
    peak_seconds: float = 0.0  # spent loading and sampling the peak GEMMs

    @property
    def model_label(self) -> str | None:
        """The count used by rows that run no graph of their own (PyTorch, TensorRT engines): ours, FP32 first."""
        ours = [label for label in self.counts if label != "peer"]
        return next((label for label in ours if self.precisions.get(label) == "fp32"), ours[0] if ours else None)

    def source(self, target: Target) -> tuple[str | None, str | None]:
        """(label of the count a row uses, why there is none)."""
        if target.artifact is not None and target.artifact.kind in ONNX_KINDS:
            label = target.artifact.label
            return (label, None) if label in self.counts else (None, self.failures.get(label, "not counted"))
        if target.role == "peer" and "peer" in self.counts:
            return "peer", None  # transformers' model run eagerly: its own export's graph
        label = self.model_label
        return (label, None) if label else (None, "no ONNX graph in this bench to count the model's FLOPs from")

    def row(self, target: Target, throughput_ips: float) -> Roofline:
        """The roofline of one measured row."""
        precision, why = peak_precision(target)
        label, missing = self.source(target)
        per_image = self.counts[label].per_image if label else None
        achieved = per_image * throughput_ips / 1e9 if per_image is not None else None
        peak = self.peaks.get(precision)
        if peak is not None and peak.executed and peak.executed != precision:
            # The runtime runs this precision as another one here (OpenVINO's bf16 hint in f32 on a CPU without bf16
            # instructions): so do the rows, and that precision's peak is their roof.
            why = (f"{PEAK_NAMES[precision]} runs in {PEAK_NAMES.get(peak.executed, peak.executed)} on this CPU: "
                   f"compared with the {PEAK_NAMES.get(peak.executed, peak.executed)} peak")
            precision = peak.executed
            peak = self.peaks.get(precision)
        if target.device != "cpu":
            peak_gflops, why = None, f"GEMM peaks are measured on the CPU only (this row runs on {target.device})"
        else:
            peak_gflops = peak.gflops if peak else None
            if peak_gflops is None:
                why = (peak.note if peak else None) or f"no {PEAK_NAMES.get(precision, precision)} peak measured"
        if achieved is not None and peak_gflops and achieved > peak_gflops:
            # Not a faster-than-peak row: every GEMM call of the run was slowed (a loaded machine), so the peak is low.
            why = "above the measured peak: every peak GEMM call of this run was slowed, so the peak reads low"
        return Roofline(precision, per_image, label, achieved, peak_gflops, missing or why)

    def to_json(self) -> dict[str, Any]:
        flops: dict[str, Any] = {label: count.to_json() for label, count in self.counts.items()}
        flops.update({label: {"error": reason} for label, reason in self.failures.items()})
        return {"convention": CONVENTION, "method": METHOD, "flops": flops, "model_flops_from": self.model_label,
                "count_seconds": round(self.seconds, 2), "peaks": self.peaks.to_json(),
                "peak_seconds": round(self.peak_seconds, 2)}


def count_artifacts(artifacts: list[Artifact], batches: list[int], size: tuple[int, int],
                    log: Log = lambda message: None) -> RooflineBasis:
    """Count each ONNX artifact's FLOPs once, at the smallest batch it is timed at and the bench's input size."""
    basis = RooflineBasis()
    started = time.perf_counter()
    for artifact in artifacts:
        if artifact.kind not in ONNX_KINDS:
            continue
        timed_batches = [b for b in batches if artifact.supports(b)]
        batch = min(timed_batches) if timed_batches else (artifact.batches or (1, 1))[0]
        basis.precisions[artifact.label] = artifact.precision
        try:
            basis.counts[artifact.label] = artifact_flops(artifact, batch, size)
        except Exception as exc:  # a graph we cannot count costs its rows' roofline, not the report
            basis.failures[artifact.label] = f"FLOPs not counted: {type(exc).__name__}: {str(exc)[:200]}"
            log(f"  {artifact.label}: {basis.failures[artifact.label]}")
    basis.seconds = time.perf_counter() - started
    if basis.counts:
        log("[bench] FLOPs per image: " + ", ".join(f"{label} {count.per_image / 1e9:.3g} G"
                                                    for label, count in basis.counts.items()))
    return basis
