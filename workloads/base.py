"""The phases an inference workload is made of, as plain data.

A workload iteration (a decode step, a MoE layer, a prompt's KV hand-off) is a list of
phases that every rank walks in order; a rank not in a phase's groups skips it.  Times are
real-fabric seconds (the runner scales them by k); sizes are bytes on the wire.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from fabric.stats import percentile

Group = tuple[int, ...]
Flow = tuple[int, int, int]


@dataclass(frozen=True)
class Compute:
    """Each rank of `ranks` is busy for `seconds` (a roofline estimate of the math)."""
    label: str
    seconds: float
    ranks: Group


@dataclass(frozen=True)
class AllReduce:
    """Every group all-reduces `nbytes` at the same time (tensor-parallel groups)."""
    label: str
    nbytes: int
    groups: tuple[Group, ...]


@dataclass(frozen=True)
class AllToAll:
    """One all_to_all_single over `ranks`: matrix[i][j] bytes from ranks[i] to ranks[j]."""
    label: str
    ranks: Group
    matrix: tuple[tuple[int, ...], ...]


@dataclass(frozen=True)
class Transfer:
    """Point-to-point sends that run at once: (src, dst, bytes).  With `overlap` the ranks
    post them and go on (the next phases, e.g. compute, run meanwhile); a Drain waits.
    `announced`: the receivers posted their receives well before the send (a pipeline stage
    idle until its input comes), so gloo's ready message is not on the critical path and the
    α-β model charges the one-way latency instead of a round trip."""
    label: str
    flows: tuple[Flow, ...]
    overlap: bool = False
    announced: bool = False


@dataclass(frozen=True)
class Drain:
    """Wait until every overlapped transfer this rank posted has completed."""
    label: str
    ranks: Group


Phase = Compute | AllReduce | AllToAll | Transfer | Drain
COMMUNICATION = (AllReduce, AllToAll, Transfer)


def consecutive_groups(world: int, size: int, order: Group = ()) -> tuple[Group, ...]:
    """Ranks in groups of `size` consecutive ranks of `order` (default 0..world-1): ranks are
    numbered domain by domain, so a group fills one domain (a node, a satellite) before it
    spans the next, as a user lays out tensor parallelism.  Ranks beyond the last whole group
    are left out."""
    order = order or tuple(range(world))
    return tuple(tuple(order[g * size:(g + 1) * size]) for g in range(len(order) // size))


def spread_order(domains: int, per_domain: int) -> Group:
    """Ranks interleaved across domains (0, per_domain, 2 per_domain, ..., 1, ...): groups laid
    on this order span every domain, the placement that makes a group cross the uplinks."""
    return tuple(d * per_domain + i for i in range(per_domain) for d in range(domains))


def steps_of(p: Phase) -> list[list[Flow]]:
    """The flows gloo sends for one phase, step by step (for the α-β model; fabric.model)."""
    if isinstance(p, AllReduce):   # gloo's ring in each group, all groups at once
        longest = max(len(g) for g in p.groups)
        return [[(g[i], g[(i + 1) % len(g)], p.nbytes // len(g)) for g in p.groups if len(g) > 1 and s < 2 * (len(g) - 1)
                 for i in range(len(g))] for s in range(2 * (longest - 1))]
    if isinstance(p, AllToAll):    # gloo alltoallv posts every send at once
        return [[(s, d, p.matrix[i][j]) for i, s in enumerate(p.ranks) for j, d in enumerate(p.ranks)
                 if s != d and p.matrix[i][j]]]
    if isinstance(p, Transfer):
        return [[f for f in p.flows if f[0] != f[1] and f[2]]]
    return []


def buffer_bytes(phases: list[Phase]) -> int:
    """An upper bound on the buffer bytes one rank holds for these phases (each phase keeps its own)."""
    total = 0
    for p in phases:
        if isinstance(p, AllReduce):
            total += p.nbytes
        elif isinstance(p, AllToAll):
            total += max(sum(row) for row in p.matrix) + max(map(sum, zip(*p.matrix)))
        elif isinstance(p, Transfer):
            total += sum(b for *_, b in p.flows)
    return total


@dataclass(frozen=True)
class Context:
    """What a workload entry needs to know of the profile around it."""
    world: int
    domains: int
    per_domain: int
    hbm_Bps: float           # GPU memory bandwidth, B/s
    flops: float             # GPU dense BF16 compute, FLOP/s


@dataclass(frozen=True)
class Entry:
    """One `workload:` entry of a profile: the workload, how often to measure it, its label."""
    label: str
    workload: object         # TpDecode | EpMoe | Pipeline | KvTransfer | Dp
    iters: int = 4
    warmup: int = 1
    config: dict = field(default_factory=dict, compare=False)   # the entry as given, for results.json


@dataclass(frozen=True)
class Timings:
    """What the ranks measured for one entry, emulated seconds, one value per iteration:
    `iteration` is the slowest rank's end; `phases` sums, per label, each phase's duration
    (its slowest end minus the previous phase's slowest end: right for phases that run one
    after another, as in tp_decode and ep_moe)."""
    k: float
    iteration: list[float]
    phases: dict[str, list[float]]

    def real(self, values: list[float], q: float = 50) -> float:
        """Percentile q of emulated values, projected to the real fabric (/ k)."""
        return percentile(values, q) / self.k
