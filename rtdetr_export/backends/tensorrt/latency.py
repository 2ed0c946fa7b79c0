"""GPU latency of an engine: warm-up, then CUDA-event timing of each execution on device-resident inputs."""

from __future__ import annotations

from typing import Any

import numpy as np

from rtdetr_export.backends.tensorrt.runner import TensorRTRunner
from rtdetr_export.stats import summarize


def latency_summary(times_ms: list[float], batch: int) -> dict[str, Any]:
    """Mean, spread and percentiles of per-execution times (ms) and the implied throughput."""
    if not times_ms:
        raise ValueError("no timings")
    s = summarize(times_ms)
    # Population std (ddof 0), as this record has always reported; bench's reports use the sample std.
    std = float(np.std(np.asarray(times_ms, dtype=np.float64)))
    return {"batch": batch, "iterations": s["n"], "mean_ms": s["mean"], "std_ms": std, "min_ms": s["min"],
            "p50_ms": s["p50"], "p90_ms": s["p90"], "p99_ms": s["p99"], "max_ms": s["max"],
            "images_per_s": batch * 1000.0 / s["mean"]}


def measure_latency(runner: TensorRTRunner, feed: dict[str, np.ndarray], warmup: int = 50,
                    iterations: int = 200) -> dict[str, Any]:
    """Time ``iterations`` executions after ``warmup`` (an active runner; H2D/D2H copies not included)."""
    import torch

    runner.infer(feed)  # binds buffers (and captures the CUDA graph when enabled)
    with torch.cuda.stream(runner.stream):
        for _ in range(warmup):
            runner.execute()
        runner.stream.synchronize()
        times = []
        for _ in range(iterations):
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record(runner.stream)
            runner.execute()
            end.record(runner.stream)
            end.synchronize()
            times.append(start.elapsed_time(end))
    batch = int(next(iter(feed.values())).shape[0])
    return {**latency_summary(times, batch), "warmup": warmup, "cuda_graph": runner.cuda_graph,
            "measures": "GPU time per execution (CUDA events), inputs already on the GPU"}
