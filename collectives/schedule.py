"""A collective as a schedule of chunk transfers, and the program each rank runs from it.

The vocabulary, as MSCCLang programs and NCCL's primitives express algorithms:
  * every rank holds named buffers of elements: "in" (its input), "out" (its result) and, where
    an algorithm needs room of its own, "tmp";
  * an Xfer moves `count` elements from region (sbuf, soff) of rank src into region (dbuf, doff)
    of rank dst, where they are copied in or added to what is there (reduce); src == dst is a
    local copy;
  * a Schedule is a list of steps, each a list of Xfers.  Meaning: step after step, every rank's
    sends read its buffers as the previous steps left them, then the step's receives land.

program(schedule, rank) turns that into what one rank does, in order (Op below): post every
receive before the agreed start (so a send never waits for its receiver to announce itself: one
way per step, as NCCL's pre-registered buffers give); then step by step, for each send wait for
(and apply) the receives that wrote the region it reads, then send; before a receive lands in a
region an earlier send still reads, wait for that send; at the end take in the rest.  A send
waits only for its own data, so a chunked ring pipelines: chunk c of step s leaves as soon as
chunk c of step s-1 arrived.  collectives.executor runs a program over gloo; fabric.model
simulates the same program on the plan's links.
"""
from __future__ import annotations

from dataclasses import dataclass, field

POST, START, PAUSE, SEND, WAIT, SYNC, COPY, MARK, DELAY, NATIVE = (
    "post", "start", "pause", "send", "wait", "sync", "copy", "mark", "delay", "native")


@dataclass(frozen=True)
class Xfer:
    src: int
    dst: int
    sbuf: str
    soff: int
    dbuf: str
    doff: int
    count: int                  # elements
    reduce: bool = False        # the receiver adds (else copies)

    @property
    def local(self) -> bool:
        return self.src == self.dst


@dataclass(frozen=True)
class Op:
    """One thing a rank does.  x: the Xfer's index; seconds: a PAUSE's length (real seconds);
    direct: a POST whose data lands in place (no other op touches that region)."""
    kind: str
    x: int = -1
    seconds: float = 0.0
    direct: bool = False
    label: str = ""


@dataclass
class Schedule:
    """The transfers of one collective call, step by step, over global ranks."""
    algorithm: str
    item: int                                   # bytes per element
    xfers: list[Xfer] = field(default_factory=list)
    steps: list[list[int]] = field(default_factory=list)    # indices into xfers
    buffers: dict[int, dict[str, int]] = field(default_factory=dict)   # rank -> {buffer: elements}
    programs: dict[int, list[Op]] | None = None  # given by the algorithm itself (gloo's, for the model)
    native: bool = False                        # the ranks call torch's own collective (gloo)
    lockstep: bool = False                      # a step's sends wait for all of the rank's earlier receives

    def step(self, xfers: list[Xfer]) -> None:
        """Append a step (transfers of no elements are left out)."""
        idx = []
        for x in xfers:
            if x.count > 0:
                idx.append(len(self.xfers))
                self.xfers.append(x)
        self.steps.append(idx)

    def merge(self, other: "Schedule") -> None:
        """Run `other` at the same time (a disjoint group of ranks): step i joins step i."""
        base = len(self.xfers)
        self.xfers += other.xfers
        self.lockstep |= other.lockstep
        for i, s in enumerate(other.steps):
            if i == len(self.steps):
                self.steps.append([])
            self.steps[i] += [base + x for x in s]
        for r, bufs in other.buffers.items():
            mine = self.buffers.setdefault(r, {})
            for name, n in bufs.items():
                mine[name] = max(mine.get(name, 0), n)

    def ranks(self) -> list[int]:
        return sorted(set(self.buffers) | {r for x in self.xfers for r in (x.src, x.dst)})

    def bytes_sent(self, rank: int) -> int:
        return sum(x.count for x in self.xfers if x.src == rank and not x.local) * self.item

    @property
    def step_count(self) -> int:
        return sum(1 for s in self.steps if any(not self.xfers[i].local for i in s))


def _overlaps(a: tuple[str, int, int], b: tuple[str, int, int]) -> bool:
    return a[0] == b[0] and a[1] < b[2] and b[1] < a[2]


def program(s: Schedule, rank: int, op_pause: float = 0.0, step_pause=lambda x: 0.0,
            sync_sends: bool = True) -> list[Op]:
    """What `rank` does for schedule s, from before the agreed start to its end.

    op_pause: real seconds at the start (the stack's cost per collective call);
    step_pause(xfer): real seconds before the first send of each step (per step cost of the
    link that send crosses).  sync_sends: wait for this rank's sends at the end (False: they
    go on in the background, until a later SYNC; an overlapped hand-off)."""
    if s.programs is not None:
        return list(s.programs.get(rank, []))
    mine = [(i, s.xfers[i]) for step in s.steps for i in step if rank in (s.xfers[i].src, s.xfers[i].dst)]
    recvs = [i for i, x in mine if x.dst == rank and not x.local]
    touches: dict[str, list[tuple[int, int, int]]] = {}     # buffer -> (lo, hi, xfer) regions this rank uses
    for i, x in mine:
        if x.src == rank:
            touches.setdefault(x.sbuf, []).append((x.soff, x.soff + x.count, i))
        if x.dst == rank:
            touches.setdefault(x.dbuf, []).append((x.doff, x.doff + x.count, i))
    direct = {i for i in recvs if not s.xfers[i].reduce and _alone(touches, s.xfers[i], i)}
    out = [Op(POST, i, direct=i in direct) for i in recvs] + [Op(START)]
    if op_pause and mine:
        out.append(Op(PAUSE, seconds=op_pause, label="op"))
    pending_recv: list[int] = []       # posted, not yet waited for (program order)
    pending_send: list[int] = []       # sent, not yet known complete

    def region_w(x: Xfer):
        return (x.dbuf, x.doff, x.doff + x.count)

    def region_r(x: Xfer):
        return (x.sbuf, x.soff, x.soff + x.count)

    def take_in(region) -> None:
        """Wait for (and apply) every pending receive that writes into `region`, in order."""
        for j in [j for j in pending_recv if _overlaps(region_w(s.xfers[j]), region)]:
            if j in pending_recv:
                land(j)

    def land(j: int) -> None:
        x = s.xfers[j]
        earlier = pending_recv[:pending_recv.index(j)]
        for e in [e for e in earlier if _overlaps(region_w(s.xfers[e]), region_w(x))]:
            land(e)                                  # same region: keep the order of the steps
        for k in [k for k in pending_send if _overlaps(region_r(s.xfers[k]), region_w(x))]:
            out.append(Op(SYNC, k))                  # a send still reads what this receive overwrites
            pending_send.remove(k)
        out.append(Op(WAIT, j))
        pending_recv.remove(j)

    for step in s.steps:
        first = True
        if s.lockstep and any(s.xfers[i].src == rank for i in step):
            while pending_recv:
                land(pending_recv[0])
        for i in step:
            x = s.xfers[i]
            if x.src != rank:
                continue
            take_in(region_r(x))
            if x.local:
                for k in [k for k in pending_send if _overlaps(region_r(s.xfers[k]), region_w(x))]:
                    out.append(Op(SYNC, k))
                    pending_send.remove(k)
                take_in(region_w(x))
                out.append(Op(COPY, i))
                continue
            if first:
                pause = step_pause(x)
                if pause:
                    out.append(Op(PAUSE, seconds=pause, label="step"))
                first = False
            out.append(Op(SEND, i))
            pending_send.append(i)
        pending_recv += [i for i in step if s.xfers[i].dst == rank and not s.xfers[i].local]
    while pending_recv:
        land(pending_recv[0])
    if sync_sends:
        out += [Op(SYNC, k) for k in pending_send]
    return out


def _alone(touches: dict, x: Xfer, i: int) -> bool:
    """No other transfer of this rank reads or writes x's destination region."""
    lo, hi = x.doff, x.doff + x.count
    return all(j == i or b <= lo or a >= hi for a, b, j in touches.get(x.dbuf, ()))


def run_reference(s: Schedule, buffers: dict[int, dict[str, object]]) -> dict[int, dict[str, object]]:
    """The schedule's meaning, step by step, on numpy arrays (no network): every rank's sends
    read the buffers as the previous step left them, then the step's receives land.  The
    buffers are changed in place and returned."""
    for step in s.steps:
        data = [buffers[s.xfers[i].src][s.xfers[i].sbuf][s.xfers[i].soff:s.xfers[i].soff + s.xfers[i].count].copy()
                for i in step]
        for i, d in zip(step, data):
            x = s.xfers[i]
            target = buffers[x.dst][x.dbuf][x.doff:x.doff + x.count]
            if x.reduce:
                target += d
            else:
                target[:] = d
    return buffers


@dataclass
class Part:
    """One piece of a job's iteration, as every rank walks them in order: a compute wait (real
    seconds), a collective call (its schedule and each rank's program), or a drain (wait for the
    sends an overlapped call left running)."""
    kind: str                                   # "compute" | "call" | "drain"
    label: str
    ranks: tuple[int, ...]
    seconds: float = 0.0
    call: object = None                         # collectives.base.Call
    schedule: Schedule | None = None
    programs: dict[int, list[Op]] = field(default_factory=dict)
    overlap: bool = False                       # a call whose sends go on while the next parts run
    algorithm: str = ""


def combine(parts: list[Part], rank: int, native: bool = False) -> tuple[list[Op], list[tuple[int, int]]]:
    """One rank's whole iteration as one program: every part's posts first (before the agreed
    start), then the parts in order, each ended by a MARK(part index) where the rank takes part.
    Xfer ids become global (the second list maps them back to (part, xfer)).  native: a gloo
    part is one NATIVE op (what the rank runs), else its mimic program (what the model reads)."""
    posts, body, where, pending = [], [], [], []
    for p, part in enumerate(parts):
        base = len(where)                  # the same numbering on every rank (tags, the model)
        if part.kind == "call" and part.schedule is not None:
            where += [(p, x) for x in range(len(part.schedule.xfers))]
        if rank not in part.ranks:
            continue
        if part.kind == "compute":
            body += [Op(PAUSE, seconds=part.seconds, label="compute"), Op(MARK, p)]
            continue
        if part.kind == "drain":
            body += [Op(SYNC, x) for x in pending] + [Op(MARK, p)]
            pending = []
            continue
        body.append(Op(DELAY))
        if native and part.schedule.native:
            ops = [op for op in part.programs.get(rank, []) if op.kind == PAUSE and op.label == "op"]
            body += ops + [Op(NATIVE, p), Op(MARK, p)]
            continue
        started = False
        for op in part.programs.get(rank, []):
            g = Op(op.kind, op.x + base if op.x >= 0 else -1, op.seconds, op.direct, op.label)
            if op.kind == START:
                started = True
            elif op.kind == POST and not started:
                posts.append(g)
            elif op.kind == SYNC and part.overlap:
                pending.append(g.x)
            else:
                body.append(g)
        body.append(Op(MARK, p))
    return posts + [Op(START)] + body + [Op(SYNC, x) for x in pending], where
