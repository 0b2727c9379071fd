"""Percentiles, as every report here computes them, and only where the samples carry them.

A q-th percentile above the median says something only if some sample lies beyond it: of n
samples, n (1 - q/100) are expected above, so p95 needs 20 samples and p99 100.  Below that
the summary holds None and the tables print "n/a (n=12)" — a p99 of three samples is their
maximum, not a tail.  The median gets a distribution-free 95 % interval from the order
statistics (no interval below 6 samples), a ratio of two runs' medians a bootstrap one.
"""
from __future__ import annotations

import math
import random
from dataclasses import dataclass

QUANTILES = (("min", 0), ("p50", 50), ("p95", 95), ("p99", 99), ("max", 100))
CONFIDENCE = 0.95
BOOTSTRAP_RESAMPLES = 2000


def percentile(values: list[float], q: float) -> float:
    """Linear interpolation between closest ranks (numpy's default)."""
    xs = sorted(values)
    pos = (len(xs) - 1) * q / 100
    lo, hi = math.floor(pos), math.ceil(pos)
    return xs[lo] + (xs[hi] - xs[lo]) * (pos - lo)


def needed(q: float) -> int:
    """Samples a q-th percentile needs: one at least expected beyond it (p95: 20, p99: 100)."""
    return 1 if q <= 50 else math.ceil(100 / (100 - q) - 1e-9)


def supported(q: float, n: int) -> bool:
    return n >= needed(q)


def tail(values: list[float], q: float) -> float | None:
    """Percentile q of values, or None when there are too few of them to carry it."""
    return percentile(values, q) if values and supported(q, len(values)) else None


def summary(values: list[float], scale: float = 1.0) -> dict:
    """n; min, p50, p95, p99, max of values x scale (None where n cannot carry the percentile);
    p50_ci: the median's 95 % interval (None below 6 samples)."""
    out: dict = {"n": len(values)}
    if not values:
        return {**out, **{name: None for name, _ in QUANTILES}, "p50_ci": None}
    for name, q in QUANTILES:
        v = tail(values, q) if name in ("p95", "p99") else percentile(values, q)
        out[name] = None if v is None else v * scale
    ci = median_interval(values)
    out["p50_ci"] = None if ci is None else [ci[0] * scale, ci[1] * scale]
    return out


def median_interval(values: list[float], confidence: float = CONFIDENCE) -> tuple[float, float] | None:
    """A distribution-free interval for the median: the order statistics x(j) and x(n+1-j) with
    the largest j such that P(Binomial(n, 1/2) < j) <= (1 - confidence) / 2, which cover the
    median with at least `confidence`.  None when n is too small for any (n < 6 at 95 %)."""
    n, xs = len(values), sorted(values)
    alpha, below, j = (1 - confidence) / 2, 0.0, 0
    # each binomial term in logs: math.comb(n, j) / 2**n in exact integers took ~1 s at 5 000
    # samples and ~1 min at 20 000 (a capture's per-packet delays); this, milliseconds
    while j < n and below + (term := math.exp(math.lgamma(n + 1) - math.lgamma(j + 1) - math.lgamma(n - j + 1)
                                               - n * math.log(2))) <= alpha:
        below += term
        j += 1
    if j == 0:
        return None
    return xs[j - 1], xs[n - j]


def ratio_interval(base: list[float], other: list[float], q: float = 50, confidence: float = CONFIDENCE,
                   seed: int = 0) -> tuple[float, float] | None:
    """A bootstrap interval for percentile_q(other) / percentile_q(base), two independent runs:
    each resampled with replacement, the ratio's (1 - confidence) / 2 and (1 + confidence) / 2
    percentiles over the resamples.  Seeded, so a report reads the same every time.  None when
    either run has fewer than 6 samples or cannot carry q."""
    if min(len(base), len(other)) < 6 or not (supported(q, len(base)) and supported(q, len(other))):
        return None
    rng, ratios = random.Random(seed), []
    for _ in range(BOOTSTRAP_RESAMPLES):
        b = percentile(rng.choices(base, k=len(base)), q)
        if b > 0:
            ratios.append(percentile(rng.choices(other, k=len(other)), q) / b)
    if len(ratios) < BOOTSTRAP_RESAMPLES // 2:
        return None
    return (percentile(ratios, 100 * (1 - confidence) / 2), percentile(ratios, 100 * (1 + confidence) / 2))


def fmt(value: float | None, n: int, spec: str = ".1f") -> str:
    """A percentile for a table: the value, or "n/a (n=12)" where the samples cannot carry it."""
    return f"n/a (n={n})" if value is None else format(value, spec)


def fmt_interval(ci, n: int | str) -> str:
    """A ratio's 95 % interval for a table ("1.02-1.09"), or "n/a (n=4)" where there is none."""
    return f"{ci[0]:.2f}-{ci[1]:.2f}" if ci else f"n/a (n={n})"


@dataclass(frozen=True)
class Until:
    """`iters: auto`: measure until the median's 95 % interval is within `width` of the median
    (its full width over the median), or until `budget_s` of wall time has gone on measured
    iterations, but never fewer than min_iters (so p95 is there) nor more than max_iters."""
    min_iters: int = 20
    max_iters: int = 400
    width: float = 0.05
    budget_s: float = 60.0

    def done(self, samples: list[float], elapsed_s: float) -> bool:
        n = len(samples)
        if n < self.min_iters:
            return False
        if n >= self.max_iters or elapsed_s >= self.budget_s:
            return True
        return relative_width(samples) <= self.width


def relative_width(samples: list[float]) -> float:
    """The median's 95 % interval, its width over the median (inf where there is none)."""
    ci, mid = median_interval(samples), percentile(samples, 50) if samples else 0.0
    return (ci[1] - ci[0]) / mid if ci and mid > 0 else math.inf
