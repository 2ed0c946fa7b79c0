"""GPU latency of an engine: warm-up, then CUDA-event timing of each execution on device-resident inputs."""

from __future__ import annotations

from typing import Any

import numpy as np

from rtdetr_export.backends.tensorrt.runner import TensorRTRunner


def latency_summary(times_ms: list[float], batch: int) -> dict[str, Any]:
    """Mean, spread and percentiles of per-execution times (ms) and the implied throughput."""
    t = np.asarray(times_ms, dtype=np.float64)
    if t.size == 0:
        raise ValueError("no timings")
    mean = float(t.mean())
    return {"batch": batch, "iterations": int(t.size), "mean_ms": mean, "std_ms": float(t.std()),
            "min_ms": float(t.min()), "p50_ms": float(np.percentile(t, 50)), "p90_ms": float(np.percentile(t, 90)),
            "p99_ms": float(np.percentile(t, 99)), "max_ms": float(t.max()),
            "images_per_s": batch * 1000.0 / mean}


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
