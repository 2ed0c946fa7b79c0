"""Timing loops: first (cold) run, warm-up, then interleaved rounds across every runner.

Interleaving resists a noisy machine: a burst of load from elsewhere hits every runner in the same round
instead of the one that happened to be measured then, and rotating the order each round gives every runner
every position (first after another's cache-thrashing run, last, ...) equally often.

Each call starts after a short pause (``Rounds.settle_ms``) when several runners take turns: a runtime's worker
threads keep spinning for a while after a call returns (ONNX Runtime's intra-op pool, OpenVINO's TBB arena), and
without the pause they take the cores from the next runner's first milliseconds. Measured on a 2-core Xeon with
r18vd, ONNX Runtime FP32 and INT8 sessions alternating: the INT8 call took 123-125 ms right after the other
session, 96-97 ms after a 50 ms pause, and 102-105 ms run back to back on its own session (the steady state a
deployment sees); FP32 (~255 ms) barely moved, so without the pause the ratio read 2.25-2.40x instead of 2.5-2.65x.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

from rtdetr_export.artifact import make_feed
from rtdetr_export.backends.base import Runner
from rtdetr_export.imaging import load_image, postprocess, preprocess_batch
from rtdetr_export.stats import rotated

STAGES = ("decode", "preprocess", "infer", "postprocess")


def synchronizer(device: str) -> Callable[[], None] | None:
    """A function that waits for queued CUDA work (so timings cover it), None on the CPU."""
    if device != "cuda":
        return None
    import torch

    return torch.cuda.synchronize


def timed(fn: Callable[[], object], sync: Callable[[], None] | None = None) -> tuple[float, object]:
    """(milliseconds, result) of one call; with ``sync``, pending GPU work is drained before and after."""
    if sync:
        sync()
    start = time.perf_counter_ns()
    result = fn()
    if sync:
        sync()
    return (time.perf_counter_ns() - start) / 1e6, result


@dataclass
class Rounds:
    """How long the interleaved phase runs: a fixed count, or until every runner has ``seconds`` of samples."""

    iters: int | None = 10
    seconds: float | None = None
    min_rounds: int = 2
    max_rounds: int = 100_000
    settle_ms: float = 50.0  # pause before each call while several runners take turns (module docstring)

    def done(self, completed: int, totals_ms: list[float]) -> bool:
        if self.seconds is None:
            return completed >= (self.iters or 0)
        if completed >= self.max_rounds:
            return True
        return completed >= self.min_rounds and min(totals_ms, default=0.0) >= self.seconds * 1000


@dataclass
class Samples:
    """End-to-end latencies of one runner at one batch size, in total and per stage."""

    e2e_ms: list[float] = field(default_factory=list)
    stages_ms: dict[str, list[float]] = field(default_factory=lambda: {s: [] for s in STAGES})


def interleaved(runners: dict[str, Runner], feed: dict[str, np.ndarray], rounds: Rounds, sync=None,
                progress: Callable[[int], None] = lambda done: None,
                stages: dict[str, dict[str, list[float]]] | None = None) -> dict[str, list[float]]:
    """Model-only latencies (ms) per runner name, one call per runner per round, order rotated each round.
    ``stages`` collects, per runner made of stages (``Runner.stage_ms``), each call's milliseconds per stage."""
    names = list(runners)
    samples: dict[str, list[float]] = {name: [] for name in names}
    done = 0
    while not rounds.done(done, [sum(samples[n]) for n in names]):
        for name in rotated(names, done):
            if len(names) > 1 and rounds.settle_ms > 0:
                time.sleep(rounds.settle_ms / 1000)
            samples[name].append(timed(lambda: runners[name].infer(feed), sync)[0])
            if stages is not None and runners[name].stage_ms:
                for stage, ms in runners[name].stage_ms.items():
                    stages.setdefault(name, {}).setdefault(stage, []).append(ms)
        done += 1
        progress(done)
    return samples


def end_to_end_once(runner: Runner, paths: list[Path], size: tuple[int, int], head: str,
                    threshold: float = 0.5, sync=None) -> dict[str, float]:
    """Files -> detections through one runner; milliseconds per stage and in total."""
    times: dict[str, float] = {}
    ms, pictures = timed(lambda: [load_image(p) for p in paths])
    times["decode"] = ms
    sizes = [(p.height, p.width) for p in pictures]
    ms, feed = timed(lambda: make_feed(head, preprocess_batch(pictures, size), sizes))
    times["preprocess"] = ms
    ms, outputs = timed(lambda: runner.infer(feed), sync)
    times["infer"] = ms

    def post():
        if head == "raw":
            return postprocess(outputs["logits"], outputs["pred_boxes"], sizes, threshold)
        return [scores > threshold for scores in outputs["scores"]]

    times["postprocess"] = timed(post)[0]
    times["total"] = sum(times[s] for s in STAGES)
    return times


def interleaved_end_to_end(runners: dict[str, Runner], paths: list[Path], size: tuple[int, int], head: str,
                           count: int, sync=None) -> dict[str, Samples]:
    """``count`` interleaved end-to-end rounds; per runner the total and per-stage samples."""
    out = {name: Samples() for name in runners}
    names = list(runners)
    for r in range(count):
        for name in rotated(names, r):
            times = end_to_end_once(runners[name], paths, size, head, sync=sync)
            out[name].e2e_ms.append(times["total"])
            for stage in STAGES:
                out[name].stages_ms[stage].append(times[stage])
    return out
