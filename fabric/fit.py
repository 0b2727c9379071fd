"""The α-β fit of a size sweep: t(S) = A + S·B over the measured sizes, and the same fit over
the model's times, so measured and modelled latency (A) and bandwidth (1/B) terms compare
like with like whatever the collective's schedule.  The crossover A/B (Hockney's n½) is the
size where moving the bytes starts to cost more than the latency: below it an op is
latency-bound, above it bandwidth-bound.

Least squares on relative error (each point weighted 1/t²): sizes span decades, and plain
least squares would let the largest sizes decide the latency term alone.
"""
from __future__ import annotations

from fabric.dilation import Dilation


def line(sizes: list[float], times: list[float]) -> tuple[float, float]:
    """(A, B) minimising Σ((A + B·S - t) / t)²."""
    w = [1 / t ** 2 for t in times]
    sw = sum(w)
    sx = sum(wi * s for wi, s in zip(w, sizes))
    sxx = sum(wi * s * s for wi, s in zip(w, sizes))
    sy = sum(wi * t for wi, t in zip(w, times))
    sxy = sum(wi * s * t for wi, s, t in zip(w, sizes, times))
    det = sw * sxx - sx * sx
    if len(sizes) < 2 or det <= 0:
        raise ValueError("an α-β fit needs at least two different sizes")
    return (sy * sxx - sx * sxy) / det, (sw * sxy - sx * sy) / det


def alpha_beta(results: list[dict], k: float) -> dict:
    """Per op in `results` with at least two sizes: the fitted latency term (real µs) and
    effective bandwidth of the bottleneck link (real bit/s), each beside the profile's (the
    same fit over the α-β model's times) and their difference."""
    dil = Dilation(k)
    out = {}
    for op in dict.fromkeys(r["op"] for r in results):
        rows = [r for r in results if r["op"] == op]
        if len({r["bytes"] for r in rows}) < 2:
            continue
        sizes = [r["bytes"] for r in rows]
        a, b = line(sizes, [r["time_us"]["p50"] for r in rows])
        ma, mb = line(sizes, [r["model_time_us"] for r in rows])
        link_bps = dil.real_rate(rows[0]["link_GBps"] * 8e9)            # the bottleneck link, real
        out[op] = {"alpha_us": dil.real(a), "profile_alpha_us": dil.real(ma), "alpha_diff": a / ma - 1 if ma > 0 else None,
                   "beta_bps": link_bps * mb / b if b > 0 else None, "profile_beta_bps": link_bps,
                   "beta_diff": mb / b - 1 if b > 0 else None, "sizes": len(rows),
                   # Hockney's n½: the size whose bandwidth term equals the latency term (k cancels)
                   "crossover_bytes": a / b if a > 0 and b > 0 else None,
                   "profile_crossover_bytes": ma / mb if ma > 0 and mb > 0 else None}
    return out
