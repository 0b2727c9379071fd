"""The phases an inference workload is made of, as plain data.

A workload iteration (a decode step, a MoE layer, a prompt's KV hand-off) is a list of
phases that every rank walks in order; a rank not in a phase's groups skips it.  Times are
real-fabric seconds (the runner scales them by k); sizes are bytes on the wire.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from fabric.dilation import Dilation
from fabric.stats import percentile, summary

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
    post them and go on (the next phases, e.g. compute, run meanwhile); a Drain waits."""
    label: str
    flows: tuple[Flow, ...]
    overlap: bool = False


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


def call_of(p: Phase):
    """The collective call a communication phase is (collectives.base.Call), else None.  All of
    a workload's traffic runs through collectives/: its algorithms, executor and model."""
    from collectives.base import Call
    if isinstance(p, AllReduce):
        return Call("all_reduce", tuple(g for g in p.groups if len(g) > 1), max(1, p.nbytes // 4), "float32")
    if isinstance(p, AllToAll):
        return Call("all_to_all", (p.ranks,), max(map(sum, p.matrix)), "uint8", matrix=p.matrix)
    if isinstance(p, Transfer):   # a rank's share for itself stays in its memory
        return Call("p2p", (), dtype="uint8", flows=tuple(f for f in p.flows if f[0] != f[1] and f[2]))
    return None


def ops_of(phases: list[Phase]) -> set[str]:
    """The collectives a workload's phases call."""
    return {c.op for c in map(call_of, phases) if c is not None}


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
    algorithm: str = "auto"  # of every collective call of the entry (collectives/algorithms)
    until: object = None     # steps: auto (fabric.stats.Until); iters is then its max_iters


def p99_text(quantiles: dict, spec: str = ",.1f") -> str:
    """A figure's p99 for a sentence: the value, or "n/a, n=3" when its samples cannot carry it."""
    v = quantiles.get("p99")
    return f"n/a, n={quantiles.get('n', '?')}" if v is None else format(v, spec)


@dataclass(frozen=True)
class Timings:
    """What the ranks measured for one entry, emulated seconds, one value per iteration:
    `iteration` is the slowest rank's end; `phases` sums, per label, each phase's duration
    (its slowest end minus the previous phase's slowest end: right for phases that run one
    after another, as in tp_decode and ep_moe)."""
    dilation: Dilation
    iteration: list[float]
    phases: dict[str, list[float]]

    def real(self, values: list[float], q: float = 50) -> float:
        """Percentile q of emulated values, on the real fabric."""
        return self.dilation.real(percentile(values, q))

    def percentiles(self, values: list[float], scale: float = 1e6) -> dict:
        """n, and p50, p95, p99 of emulated values on the real fabric x scale (µs by default);
        None where n cannot carry the percentile (fabric.stats)."""
        s = summary(values, self.dilation.real(scale))
        return {q: s[q] for q in ("n", "p50", "p95", "p99")}
