"""The α-β model of a collective on a plan's topology.

A collective is a list of steps (collectives/*.py: schedule); in each step a set of flows
runs at once, and the step ends when its last flow does.  A flow costs its own α (the round
trip on its path) plus its β: the time the most loaded link direction on its path needs to
carry the bytes of every flow of the step crossing it.  On a flat fabric this is the textbook
α-β model; on two tiers a step's slow flow may be a long intra-domain round trip or a short
one through the shared uplink, not both at once.  (Measured in the microVM, 8 ranks in two
domains, 1 MiB ring all-reduce: max(α) + max(β) over-predicted by 1.23x; per flow, 1.01x.)

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
    latency_s: float         # the latency floor: each step's longest round trip (time_s >= latency_s)


def predict(plan: Plan, steps: list[Step], one_way: bool = False) -> Prediction:
    total = alpha_total = 0.0
    worst_beta, bottleneck = -1.0, min(s.rate_bps for s in plan.shapers.values())
    for step in steps:
        load: dict[str, float] = {}
        for src, dst, nbytes in step:
            for shaper, _ in plan.path(src, dst):
                load[shaper.key] = load.get(shaper.key, 0.0) + nbytes
        step_time = step_alpha = 0.0
        step_beta, step_rate = 0.0, None
        for src, dst, nbytes in step:
            hops = plan.path(src, dst)
            alpha = (0.0 if one_way else plan.path_latency(dst, src)) + sum(b.delay_s for _, b in hops)
            beta, rate = 0.0, None
            for shaper, _ in hops:
                t = load[shaper.key] * 8 / shaper.rate_bps
                if t > beta:
                    beta, rate = t, shaper.rate_bps
            step_alpha = max(step_alpha, alpha)
            if alpha + beta > step_time:
                step_time, step_beta, step_rate = alpha + beta, beta, rate
        if step_rate is not None and step_beta > worst_beta:
            worst_beta, bottleneck = step_beta, step_rate
        total += step_time
        alpha_total += step_alpha
    return Prediction(total, bottleneck, alpha_total)
