"""Per-layer time of one bench row, from the runtime's own counters: OpenVINO's per-node counters (``PERF_COUNT``,
``InferRequest.get_profiling_info``) and ONNX Runtime's profiler (``SessionOptions.enable_profiling``, its JSON
trace of node events), summed per operation type, per kernel and per model part (model/parts.py names the part
from the node name; both runtimes keep our ONNX node names, OpenVINO for a fused node the name of its first op).

Profiling is its own run, never the timed one: both counters cost time on every node (OpenVINO waits on each node
to time it, ONNX Runtime writes an event per node), so a profiled call is not the row's latency. The summary
therefore says how the row's time divides, and the wall time of the profiled calls is reported beside it only to
show how much of it the per-node times cover.
"""

from __future__ import annotations

import json
import time
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from rtdetr_export.model.parts import part_of

# The coarse parts a profile is summarized by first: the leading words of model/parts.py's labels.
GROUPS = ("backbone", "encoder", "query selection", "decoder", "box refinement", "other")


def group_of(label: str) -> str:
    """The coarse part of a model/parts.py label ("decoder layer 2 cross-attention (deformable)" -> "decoder")."""
    return next((g for g in GROUPS if label.startswith(g)), "other")


@dataclass(frozen=True)
class LayerTime:
    """One executed node: its name, its type (ONNX op type, or OpenVINO's layer type), the kernel that ran it, and
    its mean time per call in ms."""

    name: str
    op_type: str
    kernel: str
    ms: float

    @property
    def part(self) -> str:
        return part_of(self.name).label

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "op_type": self.op_type, "kernel": self.kernel, "ms": round(self.ms, 5),
                "part": self.part}


@dataclass
class Profile:
    """A row's per-layer times, averaged over ``runs`` profiled calls, and the wall time of those calls."""

    row: str
    runtime: str  # "onnxruntime" or "openvino <hint>"
    file: str
    runs: int
    layers: list[LayerTime] = field(default_factory=list)
    wall_ms: list[float] = field(default_factory=list)

    @property
    def total_ms(self) -> float:
        return sum(layer.ms for layer in self.layers)

    def by(self, key: str) -> list[tuple[str, float, int]]:
        """(key value, ms per call, nodes) summed over the layers, largest first; ``key``: "op_type", "kernel",
        "part" or "group"."""
        sums: dict[str, list[float]] = defaultdict(lambda: [0.0, 0])
        for layer in self.layers:
            value = group_of(layer.part) if key == "group" else getattr(layer, key)
            sums[value][0] += layer.ms
            sums[value][1] += 1
        return sorted(((k, v[0], int(v[1])) for k, v in sums.items()), key=lambda item: -item[1])

    def to_json(self) -> dict[str, Any]:
        def table(key: str) -> list[dict[str, Any]]:
            return [{key: k, "ms": round(ms, 4), "share": round(ms / self.total_ms, 4) if self.total_ms else None,
                     "nodes": n} for k, ms, n in self.by(key)]

        return {"row": self.row, "runtime": self.runtime, "file": self.file, "runs": self.runs,
                "per_node_total_ms": round(self.total_ms, 4), "wall_ms": [round(v, 3) for v in self.wall_ms],
                "by_group": table("group"), "by_part": table("part"), "by_op_type": table("op_type"),
                "by_kernel": table("kernel"), "layers": [layer.to_json() for layer in self.layers]}


def _mean_layers(samples: dict[tuple[str, str, str], list[float]], runs: int) -> list[LayerTime]:
    return [LayerTime(name, op_type, kernel, sum(values) / runs) for (name, op_type, kernel), values in
            samples.items()]


class OpenVinoProfiler:
    """One row on OpenVINO CPU with its per-node counters on (``PERF_COUNT``): ``call`` runs ``feed`` once;
    ``profile`` gives each node's mean time over the calls after ``warmup``.

    The CPU plugin's counter of a node is its mean over every call since the model was compiled (measured with
    OpenVINO 2026.4: on the micro IR the per-node sum fell from 11.6 to 4.2 ms over twelve calls of 4-6 ms each,
    the first call's 53 ms averaged away), so the times of the calls after warm-up are recovered from two
    readings: (mean after all n calls x n - mean after the w warm-up calls x w) / (n - w). Nodes OpenVINO did not
    execute in the last call (status NOT_RUN: folded, or fused into a neighbour whose time they are in) are left
    out."""

    def __init__(self, path: str | Path, feed: dict[str, np.ndarray], hint: str = "f32", threads: int | None = None,
                 warmup: int = 2, row: str = ""):
        import openvino as ov

        config: dict[str, Any] = {"PERF_COUNT": True, "INFERENCE_PRECISION_HINT": hint}
        if threads:
            config["INFERENCE_NUM_THREADS"] = threads
        self.path, self.hint, self.warmup, self.row = Path(path), hint, warmup, row
        compiled = ov.Core().compile_model(str(path), "CPU", config)
        self.request = compiled.create_infer_request()
        self.inputs = {port: feed[name] for port in compiled.inputs for name in port.get_names() if name in feed}
        self.calls, self.wall = 0, []
        self.after_warmup: dict[tuple[str, str, str], float] = {}

    def _means(self) -> dict[tuple[str, str, str], float]:
        return {(info.node_name, info.node_type, info.exec_type): info.real_time.total_seconds() * 1e3
                for info in self.request.get_profiling_info() if info.status == info.Status.EXECUTED}

    def call(self) -> None:
        start = time.perf_counter()
        self.request.infer(self.inputs)
        wall = (time.perf_counter() - start) * 1e3
        self.calls += 1
        if self.calls == self.warmup:
            self.after_warmup = self._means()
        elif self.calls > self.warmup:
            self.wall.append(wall)

    def profile(self) -> Profile:
        runs = len(self.wall)
        layers = [LayerTime(name, op_type, kernel, (mean * self.calls - self.after_warmup.get(
            (name, op_type, kernel), 0.0) * self.warmup) / runs) for (name, op_type, kernel), mean in
            self._means().items()] if runs else []
        return Profile(self.row, f"openvino {self.hint}", self.path.name, runs, layers, self.wall)


class OnnxRuntimeProfiler:
    """One row on ONNX Runtime CPU with its profiler on (``SessionOptions.enable_profiling``): ``call`` runs
    ``feed`` once; ``profile`` ends the trace and averages each node's kernel time over the calls after
    ``warmup`` (trace_layers)."""

    def __init__(self, path: str | Path, feed: dict[str, np.ndarray], threads: int | None = None, warmup: int = 2,
                 row: str = ""):
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.enable_profiling = True
        if threads:
            options.intra_op_num_threads = threads
        self.path, self.warmup, self.row = Path(path), warmup, row
        self.session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        names = {i.name for i in self.session.get_inputs()}
        self.inputs = {name: value for name, value in feed.items() if name in names}
        self.calls, self.wall = 0, []

    def call(self) -> None:
        start = time.perf_counter()
        self.session.run(None, self.inputs)
        wall = (time.perf_counter() - start) * 1e3
        self.calls += 1
        if self.calls > self.warmup:
            self.wall.append(wall)

    def profile(self) -> Profile:
        trace = Path(self.session.end_profiling())
        try:
            events = json.loads(trace.read_text())
        finally:
            trace.unlink(missing_ok=True)
        runs = len(self.wall)
        return Profile(self.row, "onnxruntime", self.path.name, runs, trace_layers(events, self.warmup, runs),
                       self.wall)


def profile_interleaved(profilers: list, runs: int, settle_ms: float = 50.0) -> list[Profile]:
    """``warmup + runs`` calls of each profiler, taking turns (the order rotated each round, ``settle_ms`` of pause
    before each call, as bench's timing loop), so the rows' profiles meet the same load; their profiles."""
    rounds = max(p.warmup for p in profilers) + runs
    for index in range(rounds):
        shift = index % len(profilers)
        for profiler in profilers[shift:] + profilers[:shift]:
            if profiler.calls < profiler.warmup + runs:
                time.sleep(settle_ms / 1e3)
                profiler.call()
    return [p.profile() for p in profilers]


def profile_openvino(path: str | Path, feed: dict[str, np.ndarray], hint: str = "f32", threads: int | None = None,
                     runs: int = 10, warmup: int = 2, row: str = "") -> Profile:
    """OpenVINO CPU's per-node counters of one row over ``runs`` calls of ``feed`` after ``warmup``."""
    return profile_interleaved([OpenVinoProfiler(path, feed, hint, threads, warmup, row)], runs, 0.0)[0]


def profile_onnxruntime(path: str | Path, feed: dict[str, np.ndarray], threads: int | None = None, runs: int = 10,
                        warmup: int = 2, row: str = "") -> Profile:
    """ONNX Runtime CPU's profile of one row over ``runs`` calls of ``feed`` after ``warmup``."""
    return profile_interleaved([OnnxRuntimeProfiler(path, feed, threads, warmup, row)], runs, 0.0)[0]


def trace_layers(events: list[dict[str, Any]], warmup: int, runs: int) -> list[LayerTime]:
    """The mean kernel time per node of an ONNX Runtime profile trace, over the calls after the first ``warmup``
    (a call is one ``model_run`` event; a node event belongs to the call whose span holds its start)."""
    calls = sorted((e["ts"], e["ts"] + e["dur"]) for e in events if e.get("cat") == "Session"
                   and e.get("name") == "model_run")[warmup:]
    samples: dict[tuple[str, str, str], list[float]] = defaultdict(list)
    for event in events:
        name = str(event.get("name", ""))
        if event.get("cat") != "Node" or not name.endswith("_kernel_time"):
            continue
        if not any(start <= event["ts"] <= end for start, end in calls):
            continue
        args = event.get("args", {})
        key = (name[:-len("_kernel_time")], str(args.get("op_name", "?")), str(args.get("provider", "?")))
        samples[key].append(event["dur"] / 1e3)
    return _mean_layers(samples, runs)


def group_flops(flops: dict[str, int]) -> dict[str, int]:
    """Per-node FLOPs (flops.node_flops, by ONNX node name) summed per coarse part."""
    out: dict[str, int] = defaultdict(int)
    for name, count in flops.items():
        out[group_of(part_of(name).label)] += count
    return dict(out)


def profile_markdown(profiles: list[Profile], flops: dict[str, int] | None = None, top: int = 12) -> str:
    """Per row: how the per-node time divides by coarse part (with each part's GFLOP and the GFLOP/s its nodes ran
    at, given ``flops``: group -> FLOPs per call), by the finest parts, by op type and by kernel."""
    lines = []
    for p in profiles:
        wall = sorted(p.wall_ms)
        median = wall[len(wall) // 2] if wall else float("nan")
        lines += [f"## {p.row or p.file}: {p.runtime}, {p.file}", "",
                  f"{p.runs} profiled calls: per-node time {p.total_ms:.1f} ms per call, wall time of the profiled "
                  f"calls median {median:.1f} ms (profiling slows every node: divide, do not compare with bench's "
                  f"latency); {len(p.layers)} executed nodes.", ""]
        if flops:
            lines += ["| part (coarse) | ms per call | share | GFLOP | GFLOP/s in its nodes | nodes |",
                      "| --- | --- | --- | --- | --- | --- |"]
            for name, ms, nodes in p.by("group"):
                gflop = flops.get(name, 0) / 1e9
                rate = f"{gflop / (ms / 1e3):.1f}" if ms and gflop else "-"
                lines.append(f"| {name} | {ms:.2f} | {ms / p.total_ms:.1%} | {gflop:.2f} | {rate} | {nodes} |")
            total = sum(flops.values()) / 1e9
            lines += [f"| all | {p.total_ms:.2f} | 100% | {total:.2f} | {total / (p.total_ms / 1e3):.1f} | "
                      f"{len(p.layers)} |", ""]
        for key, title, limit in ((("part", "part", top),) if flops else
                                  (("group", "part (coarse)", None), ("part", "part", top))) + (
                                      ("op_type", "op type", top), ("kernel", "kernel", top)):
            rows = p.by(key)
            if key == "kernel" and len(rows) < 2:  # ONNX Runtime's trace names the provider only: one value
                continue
            lines += [f"| {title} | ms per call | share | nodes |", "| --- | --- | --- | --- |"]
            for name, ms, nodes in rows[:limit]:
                lines.append(f"| {name} | {ms:.2f} | {ms / p.total_ms:.1%} | {nodes} |" if p.total_ms else
                             f"| {name} | {ms:.2f} | - | {nodes} |")
            if limit is not None and len(rows) > limit:
                rest = sum(ms for _, ms, _ in rows[limit:])
                lines.append(f"| ({len(rows) - limit} more) | {rest:.2f} | {rest / p.total_ms:.1%} | |")
            lines.append("")
    return "\n".join(lines)
