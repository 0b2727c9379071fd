"""The α-β model of a collective on a plan's topology.

A collective is a list of steps (collectives/*.py: schedule); in each step a set of flows
runs at once.  A step costs its α term plus the time the most loaded link direction needs to
carry its bytes (β): the textbook α-β model extended to shared links.

The α of a step is a round trip, not a one-way latency: gloo's TCP transport sends a buffer
only after the receiver has announced it (a "ready to receive" message travels dst -> src,
then the data src -> dst), and its collectives post both at the start of each step.  So on a
flat fabric with one-way latency a, ring all-reduce costs 2(n-1)·(2a + S/(n·β)).  (Measured
with netem: a 4-byte 2-rank all-reduce at a = 10 ms takes ~40 ms, not 20.)
"""
from __future__ import annotations

from dataclasses import dataclass

from collectives.base import Step
from fabric.plan import Plan


@dataclass(frozen=True)
class Prediction:
    time_s: float            # emulated seconds
    bottleneck_bps: float    # rate of the link direction that bounds the largest β term
    latency_s: float         # the α part of time_s (a rendezvous round trip per step)


def predict(plan: Plan, steps: list[Step]) -> Prediction:
    total = alpha_total = 0.0
    worst_beta, bottleneck = -1.0, min(s.rate_bps for s in plan.shapers.values())
    for step in steps:
        load: dict[str, float] = {}
        alpha = 0.0
        for src, dst, nbytes in step:
            hops = plan.path(src, dst)
            alpha = max(alpha, plan.path_latency(dst, src) + sum(b.delay_s for _, b in hops))
            for shaper, _ in hops:
                load[shaper.key] = load.get(shaper.key, 0.0) + nbytes
        beta, rate = 0.0, None
        for key, nbytes in load.items():
            t = nbytes * 8 / plan.shapers[key].rate_bps
            if t > beta:
                beta, rate = t, plan.shapers[key].rate_bps
        if rate is not None and beta > worst_beta:
            worst_beta, bottleneck = beta, rate
        total += alpha + beta
        alpha_total += alpha
    return Prediction(total, bottleneck, alpha_total)
