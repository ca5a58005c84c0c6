"""Percentiles of the measured times."""

from __future__ import annotations


def percentile(values: list[float], p: float) -> float:
    """Nearest rank."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    rank = max(1, int(-(-p * len(ordered) // 100)))  # ceil(p/100 * n)
    return ordered[min(rank, len(ordered)) - 1]


def percentiles(values: list[float], ps: tuple[float, ...]) -> list[float]:
    return [percentile(values, p) for p in ps]
