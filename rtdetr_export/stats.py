"""Latency statistics: pure functions over lists of samples in milliseconds."""

from __future__ import annotations

import math

import numpy as np

PERCENTILES = (50, 90, 99)


def summarize(samples_ms: list[float]) -> dict[str, float | int]:
    """min/mean/p50/p90/p99/max/std (sample std, 0 for one sample) and the count of ``samples_ms``."""
    if not samples_ms:
        raise ValueError("no samples to summarize")
    values = np.asarray(samples_ms, dtype=np.float64)
    out: dict[str, float | int] = {"n": int(values.size), "min": float(values.min()), "mean": float(values.mean())}
    # Linear interpolation between order statistics, as numpy's default: p99 of few samples sits near max.
    for p in PERCENTILES:
        out[f"p{p}"] = float(np.percentile(values, p))
    out["max"] = float(values.max())
    out["std"] = float(values.std(ddof=1)) if values.size > 1 else 0.0
    return out


def throughput(batch: int, latency_ms: float) -> float:
    """Images per second at ``batch`` images per call taking ``latency_ms``."""
    return batch * 1000.0 / latency_ms if latency_ms > 0 else math.inf


def speedup(baseline_ms: float | None, candidate_ms: float | None) -> float | None:
    """How many times faster ``candidate`` is than ``baseline`` (None when either is missing)."""
    if not baseline_ms or not candidate_ms:
        return None
    return baseline_ms / candidate_ms


def paired_speedup(baseline_ms: list[float], candidate_ms: list[float]) -> float | None:
    """Median over rounds of baseline/candidate, pairing the samples taken in the same interleaved round.

    Load from elsewhere that drifts over seconds slows both samples of a round alike, so their ratio keeps
    far less of that noise than a ratio of two separately taken medians.
    """
    pairs = [b / c for b, c in zip(baseline_ms, candidate_ms) if c > 0]
    return float(np.median(pairs)) if pairs else None


def rotated(items: list, shift: int) -> list:
    """``items`` rotated left by ``shift``: over len(items) rounds every item takes every position once."""
    if not items:
        return []
    k = shift % len(items)
    return items[k:] + items[:k]
