"""Percentiles, as every report here computes them."""
from __future__ import annotations

import math


def percentile(values: list[float], q: float) -> float:
    """Linear interpolation between closest ranks (numpy's default)."""
    xs = sorted(values)
    pos = (len(xs) - 1) * q / 100
    lo, hi = math.floor(pos), math.ceil(pos)
    return xs[lo] + (xs[hi] - xs[lo]) * (pos - lo)


def summary(values: list[float], scale: float = 1.0) -> dict:
    """min, p50, p95, p99, max of values x scale."""
    return {name: percentile(values, q) * scale
            for name, q in (("min", 0), ("p50", 50), ("p95", 95), ("p99", 99), ("max", 100))}
