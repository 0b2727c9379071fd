"""The algorithms: one small file each, registered here by name.

`auto` (the default) picks, per call, the one the α-β model finds fastest on the plan's fabric,
as NCCL's tuner does; gloo (torch's own call) is the baseline and never picked by auto.
Where the model ties two (a fabric without latency), auto takes the one registered first
below: the order is the emulation's measured preference (fabric.work.fastest).
"""
from collectives.algorithms import direct, gloo, hierarchical, one_shot, pairwise, ring, tree, two_shot
from collectives.algorithms.base import Net

ALGORITHMS = {m.ALGORITHM.name: m.ALGORITHM
              for m in (ring, tree, one_shot, two_shot, hierarchical, direct, pairwise, gloo)}
AUTO = "auto"
BASELINE = "gloo"


def runs(op: str) -> list[str]:
    """The algorithms that run `op`."""
    return [name for name, a in ALGORITHMS.items() if op in a.ops]


def candidates(call, net: Net) -> list[str]:
    """What auto chooses among for this call (every algorithm that applies, but the baseline)."""
    return [name for name, a in ALGORITHMS.items() if name != BASELINE and a.applies(call, net)]


__all__ = ["ALGORITHMS", "AUTO", "BASELINE", "Net", "candidates", "runs"]
