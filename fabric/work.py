"""What the ranks run, one Work per op size and per workload entry, in order: its parts
(collectives.schedule.Part), the algorithm chosen for every collective call, and the α-β
prediction of one iteration.  The runner, the ranks, the results, `fabric plan` and the
progress line all read this one list.

Choosing an algorithm (`auto`, the default): every algorithm that applies to the call is
simulated on the plan (fabric.model) and the fastest is taken, as NCCL's tuner takes the
cheapest of its cost model; an op or workload entry's `algorithm:` or `--algorithm` forces one.
"""
from __future__ import annotations

from dataclasses import dataclass, field, replace

from collectives import COLLECTIVES
from collectives.algorithms import ALGORITHMS, AUTO, Net, candidates
from collectives.all_to_all import split_matrix
from collectives.base import Call
from collectives.schedule import PAUSE, START, Op, Part, program
from fabric.model import Prediction, predict
from fabric.plan import Plan


@dataclass(frozen=True)
class Choice:
    """How one call's algorithm was chosen: the one taken and every candidate's model time."""
    label: str
    algorithm: str
    forced: bool
    times: dict = field(default_factory=dict)   # candidate -> emulated seconds of the call alone

    @property
    def tied(self) -> list[str]:
        """The other candidates the model found as fast as the one taken (fastest())."""
        t = self.times.get(self.algorithm)
        return [] if t is None else [n for n, v in self.times.items()
                                     if n != self.algorithm and abs(v - t) <= t * TIE]


@dataclass
class Work:
    label: str
    parts: list[Part]
    iters: int
    warmup: int
    prediction: Prediction
    choices: list[Choice]
    op: str = ""                # a plain op (else a workload entry)
    nbytes: int = 0
    spec: object = None         # the OpSpec or workload Entry it came from
    check: bool = True
    until: object = None        # fabric.stats.Until: iters: auto stops the ranks early (iters is the cap)

    @property
    def seconds(self) -> float:
        """The α-β time of one iteration, emulated."""
        return self.prediction.time_s

    @property
    def calls(self) -> int:
        """Collective calls per iteration (a late rank is late at each)."""
        return sum(p.kind == "call" for p in self.parts)

    @property
    def algorithm(self) -> str:
        """The algorithm of the calls ("a, b" where they differ)."""
        names = list(dict.fromkeys(c.algorithm for c in self.choices))
        return ", ".join(names) or "-"


def net(plan: Plan) -> Net:
    topo = plan.profile.topology
    link = plan.profile.link(topo.intra)
    return Net(domain_of=topo.domain_of, chunk_bytes=int(link.latency_s * link.rate_bps / 8))


class Builder:
    """Builds the Work of one plan; calls that recur (a TP layer's all-reduces) are chosen once."""

    def __init__(self, plan: Plan, algorithm: str = AUTO):
        self.plan, self.forced, self.net = plan, algorithm, net(plan)
        self._cache: dict = {}

    def endpoint(self, call: Call):
        """(op pause, step pause for a transfer), real seconds, from the profile's endpoint costs."""
        prof, topo = self.plan.profile, self.plan.profile.topology
        intra = prof.endpoint_of(topo.intra)
        inter = prof.endpoint_of(topo.inter) if topo.inter and topo.domains > 1 else intra
        crosses = call.op != "p2p" and any(len({topo.domain_of(r) for r in g}) > 1 for g in call.groups) or \
            call.op == "p2p" and any(topo.domain_of(s) != topo.domain_of(d) for s, d, _ in call.flows)
        op = max(intra.op_s, inter.op_s) if crosses else intra.op_s

        def step(x):
            return inter.step_s if topo.domain_of(x.src) != topo.domain_of(x.dst) else intra.step_s
        return op, step

    def part(self, call: Call, algorithm: str, label: str, overlap: bool = False) -> Part:
        s = ALGORITHMS[algorithm].schedule(call, self.net)
        op, step = self.endpoint(call)
        if s.programs is not None:       # gloo's own call: the stack's cost per call before it
            pause = [Op(PAUSE, seconds=op, label="op")] if op else []
            programs = {r: [o for o in prog if o.kind == START] + pause + [o for o in prog if o.kind != START]
                        for r, prog in s.programs.items()}
        else:
            programs = {r: program(s, r, op_pause=op, step_pause=step) for r in call.ranks}
        return Part("call", label, call.ranks, call=call, schedule=s, programs=programs, overlap=overlap,
                    algorithm=algorithm)

    def choose(self, call: Call, label: str, wanted: str, overlap: bool = False) -> tuple[Part, Choice]:
        forced = wanted if wanted != AUTO else self.forced
        key = self._key(call, wanted, overlap)
        if key not in self._cache:
            parts = {n: self.part(call, n, label, overlap) for n in candidates(call, self.net)}
            predicted = {n: predict(self.plan, [p]) for n, p in parts.items()}
            times = {n: p.time_s for n, p in predicted.items()}
            # a forced algorithm runs wherever it applies (hierarchical needs a group over domains)
            if forced != AUTO and ALGORITHMS[forced].applies(call, self.net):
                name = forced
            else:
                name = fastest(times)
            part = parts.get(name) or self.part(call, name, label, overlap)
            self._cache[key] = (part, Choice(label, name, name == forced, times),
                                predicted.get(name) or predict(self.plan, [part]))
        part, choice, _ = self._cache[key]
        return replace(part, label=label), Choice(label, choice.algorithm, choice.forced, choice.times)

    def predicted(self, call: Call, wanted: str, overlap: bool = False) -> Prediction:
        """The model's prediction of the call alone, as choose() made it."""
        return self._cache[self._key(call, wanted, overlap)][2]

    def _key(self, call: Call, wanted: str, overlap: bool) -> tuple:
        return call, wanted if wanted != AUTO else self.forced, overlap

    def op(self, spec, nbytes: int) -> Work:
        n, coll = self.plan.ranks, COLLECTIVES[spec.op]
        world = tuple(range(n))
        count = nbytes // coll.ITEM
        mat = tuple(map(tuple, split_matrix(n, count, spec.splits))) if spec.op == "all_to_all" else None
        call = Call(spec.op, (world,), count, coll.dtype, matrix=mat, root=spec.root)
        part, choice = self.choose(call, f"{spec.op} {nbytes} B", spec.algorithm)
        return Work(f"{spec.op} {nbytes} B", [part], spec.iters, spec.warmup, self.predicted(call, spec.algorithm),
                    [choice], op=spec.op, nbytes=nbytes, spec=spec, check=spec.check, until=spec.until)

    def entry(self, e) -> Work:
        from workloads.base import Compute, Drain, Transfer, call_of
        parts, choices = [], []
        for phase in e.workload.phases(self.plan.ranks):
            if isinstance(phase, Compute):
                parts.append(Part("compute", phase.label, phase.ranks, seconds=phase.seconds))
            elif isinstance(phase, Drain):
                parts.append(Part("drain", phase.label, phase.ranks))
            else:
                call = call_of(phase)
                if not call.ranks:       # nothing crosses the fabric (a rank's share for itself)
                    parts.append(Part("call", phase.label, (), call=call, algorithm="-"))
                    continue
                overlap = isinstance(phase, Transfer) and phase.overlap
                part, choice = self.choose(call, phase.label, e.algorithm, overlap)
                parts.append(part)
                choices.append(choice)
        return Work(e.label, parts, e.iters, e.warmup, predict(self.plan, parts), _distinct(choices), spec=e,
                    until=e.until)


TIE = 1e-6   # relative: model times closer than this are a tie


def fastest(times: dict[str, float]) -> str:
    """The candidate with the least model time; on a tie, the one registered first
    (collectives.algorithms.ALGORITHMS: ring before two-shot, direct before pairwise).

    A fabric without latency ties schedules that move the same bytes through the same ports:
    ring and two-shot all-reduce, direct and pairwise all-to-all (1,321 us each for 64 ranks at
    100 Gbit/s).  Which one ran was then an accident of rounding; the registration order is the
    one the emulation measured better (natively, k = 5000, 5 iterations each, 2026-12-07): a
    4 MiB all-reduce ran ring 1.03, 1.04, 1.09x its model at 16, 32, 64 ranks and two-shot 1.15,
    1.15, 2.52x; a 64-rank all-to-all ran direct 1.12-1.14x and pairwise 5.17x (README, "Scale")."""
    best = min(times.values())
    order = list(ALGORITHMS)
    return min((n for n, t in times.items() if t <= best * (1 + TIE)), key=order.index)


def _distinct(choices: list[Choice]) -> list[Choice]:
    """One choice per (label, algorithm): a workload repeats its calls layer after layer."""
    seen, out = set(), []
    for c in choices:
        if (c.label, c.algorithm) not in seen:
            seen.add((c.label, c.algorithm))
            out.append(c)
    return out


def build(plan: Plan, algorithm: str = AUTO) -> list[Work]:
    """Every op size, then every workload entry, of the plan's profile, as the ranks run them."""
    b = Builder(plan, algorithm)
    out = []
    for spec in plan.profile.workload:
        coll = COLLECTIVES[spec.op]
        for size in spec.sizes:
            out.append(b.op(spec, coll.size(size, plan.ranks)))
    out += [b.entry(e) for e in plan.profile.workloads]
    return out


def buffer_bytes(works: list[Work]) -> int:
    """An upper bound on the buffer bytes one rank holds (its buffers and a scratch buffer for
    every receive that does not land in place), over all the work."""
    from collectives import OPS
    total = 0
    for w in works:
        for p in w.parts:
            if p.kind != "call" or not p.ranks:
                continue
            s = p.schedule
            total += max(sum(OPS[p.call.op].buffers(p.call, r).values()) +
                         sum(x.count for x in s.xfers if x.dst == r and not x.local) for r in p.ranks) * s.item
    return total
