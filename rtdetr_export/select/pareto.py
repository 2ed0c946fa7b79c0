"""The choice itself, as pure functions over (latency, AP) points: the Pareto front and the fastest point within
an AP budget."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Point:
    """A measured candidate as the choice sees it: its batch-1 latency, its AP, and whether it may be chosen at all
    (its verification and parity did not fail)."""

    name: str
    latency_ms: float
    ap: float
    trusted: bool = True


def dominates(a: Point, b: Point) -> bool:
    """``a`` is at least as fast and at least as accurate as ``b``, and strictly better in one of the two."""
    return a.latency_ms <= b.latency_ms and a.ap >= b.ap and (a.latency_ms < b.latency_ms or a.ap > b.ap)


def pareto_front(points: list[Point]) -> list[str]:
    """Names of the points no other point dominates (lower latency and higher AP are better), fastest first.
    Two points with equal latency and AP are both on the front."""
    front = [p for p in points if not any(dominates(q, p) for q in points)]
    return [p.name for p in sorted(front, key=lambda p: (p.latency_ms, -p.ap))]


def within_budget(point: Point, baseline_ap: float, max_ap_drop: float) -> bool:
    """Whether ``point`` loses at most ``max_ap_drop`` AP against the baseline and may be chosen."""
    return point.trusted and point.ap >= baseline_ap - max_ap_drop


@dataclass(frozen=True)
class Choice:
    """The fastest point within the budget (None when none is), else the one that came closest to it."""

    chosen: str | None
    closest: str | None = None
    shortfall: float = 0.0  # how much more AP drop the closest would have needed


def choose(points: list[Point], baseline_ap: float, max_ap_drop: float) -> Choice:
    """The fastest trusted point within the budget; with none, the trusted point with the smallest AP drop (the
    faster of equals), or any point when none is trusted."""
    eligible = [p for p in points if within_budget(p, baseline_ap, max_ap_drop)]
    if eligible:
        return Choice(min(eligible, key=lambda p: (p.latency_ms, -p.ap)).name)
    pool = [p for p in points if p.trusted] or points
    if not pool:
        return Choice(None)
    closest = min(pool, key=lambda p: (-p.ap, p.latency_ms))
    return Choice(None, closest.name, (baseline_ap - closest.ap) - max_ap_drop)
