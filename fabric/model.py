"""The α-β model: every rank's program (collectives.schedule) simulated on the plan's links.

The programs are the ones the ranks run, so the model and the emulation read one schedule.
Time starts at the agreed start (0); each rank walks its ops in order:
  * a receive posted before the start is known to its sender at once; one posted later reaches
    the sender after the path's one-way latency back (gloo's ready notice), and a send leaves no
    earlier than that: so a gloo step pays a round trip and a pre-posted one one way;
  * a send's bytes queue on every shaped link direction of its path (first come, first served,
    each at its rate) and arrive the path's one-way latency after the last of them is through;
    a transfer is therefore bound by the most loaded link on its path;
  * a wait blocks until its receive arrived, a sync until its send has left the sender's port,
    a pause (compute, endpoint costs) lasts its seconds x k.
The call's time is the slowest rank's end.  Measured against the emulation: docs/validation.md
and benchmarks/algorithms.py.
"""
from __future__ import annotations

import heapq
import math
from dataclasses import dataclass, field

from collectives.schedule import MARK, PAUSE, POST, SEND, START, SYNC, WAIT, Part, combine
from fabric.plan import Plan


@dataclass(frozen=True)
class Prediction:
    time_s: float            # emulated seconds: the slowest rank's end
    bottleneck_bps: float    # rate of the link direction that carries the most (in time)
    latency_s: float         # the same program with every rate infinite (time_s >= latency_s)
    rank_end_s: tuple = ()   # per rank (0 where it takes no part)
    marks: dict = field(default_factory=dict)   # part index -> the slowest rank's end of it


def predict(plan: Plan, parts: list[Part]) -> Prediction:
    """The model's time for one iteration of `parts` (a call, or a workload's parts)."""
    t, ends, marks, load = _simulate(plan, parts, bandwidth=True)
    floor = _simulate(plan, parts, bandwidth=False)[0]
    if load:
        key = max(load, key=lambda k: load[k] / plan.shapers[k].rate_bps)
        bottleneck = plan.shapers[key].rate_bps
    else:
        bottleneck = min(s.rate_bps for s in plan.shapers.values())
    return Prediction(t, bottleneck, floor, tuple(ends.get(r, 0.0) for r in range(plan.ranks)), marks)


def _simulate(plan: Plan, parts: list[Part], bandwidth: bool):
    k = plan.scale
    programs, xfers, item = {}, [], []
    for p, part in enumerate(parts):
        if part.kind == "call" and part.schedule is not None:
            xfers += part.schedule.xfers
            item += [part.schedule.item] * len(part.schedule.xfers)
    ranks = sorted({r for part in parts for r in part.ranks})
    for r in ranks:
        programs[r] = combine(parts, r)[0]
    notice = [None] * len(xfers)      # when the sender learns the receive is posted
    issued = [None] * len(xfers)      # when the sender's program reached the send
    left = [None] * len(xfers)        # when its last byte left the sender's port
    arrived = [None] * len(xfers)
    waiting: dict[tuple[str, int], int] = {}      # ("arrive" | "left", xfer) -> the rank blocked on it
    free: dict[str, float] = {}                     # link direction -> when it is free again
    load: dict[str, float] = {}                     # link direction -> bits it carried
    paths: dict[tuple[int, int], tuple] = {}
    pc = {r: 0 for r in ranks}
    end: dict[int, float] = {}
    marks: dict[int, float] = {}
    heap: list = []
    seq = 0

    def push(time, kind, what):
        nonlocal seq
        seq += 1
        heapq.heappush(heap, (time, seq, kind, what))

    def path(src, dst):
        if (src, dst) not in paths:
            hops = plan.path(src, dst)
            paths[src, dst] = ([(s.key, s.rate_bps) for s, _ in hops], sum(b.delay_s for _, b in hops))
        return paths[src, dst]

    def depart(x, when):
        push(when, "depart", x)

    def run(r, now):
        ops = programs[r]
        while pc[r] < len(ops):
            op = ops[pc[r]]
            kind = op.kind
            if kind == START:
                now = max(now, 0.0)
            elif kind == POST:
                xf = xfers[op.x]
                notice[op.x] = -math.inf if now == -math.inf else now + path(xf.dst, xf.src)[1]
                if issued[op.x] is not None:
                    depart(op.x, max(issued[op.x], notice[op.x]))
            elif kind == SEND:
                issued[op.x] = now
                if notice[op.x] is not None:
                    depart(op.x, max(now, notice[op.x]))
            elif kind in (WAIT, SYNC):
                done = arrived if kind == WAIT else left
                if done[op.x] is None:
                    waiting["arrive" if kind == WAIT else "left", op.x] = r
                    return
                if done[op.x] > now:
                    push(done[op.x], "run", r)
                    return
            elif kind == PAUSE:
                if op.seconds > 0:
                    pc[r] += 1
                    push(now + op.seconds * k, "run", r)
                    return
            elif kind == MARK:
                marks[op.x] = max(marks.get(op.x, 0.0), now)
            pc[r] += 1
        end[r] = now

    for r in ranks:
        run(r, -math.inf)
    while heap:
        now, _, kind, what = heapq.heappop(heap)
        if kind == "run":
            run(what, now)
            continue
        if kind == "depart":
            xf = xfers[what]
            hops, latency = path(xf.src, xf.dst)
            bits = xf.count * item[what] * 8
            last = first = now
            for i, (key, rate) in enumerate(hops):
                start = max(now, free.get(key, now))
                done = start + (bits / rate if bandwidth else 0.0)
                free[key] = done
                load[key] = load.get(key, 0.0) + bits
                last = max(last, done)
                if i == 0:
                    first = done
            push(first, "left", what)
            push(last + latency, "arrive", what)
            continue
        (left if kind == "left" else arrived)[what] = now
        r = waiting.pop((kind, what), None)
        if r is not None:
            run(r, now)
    stuck = [r for r in ranks if r not in end]
    if stuck:
        raise RuntimeError(f"the programs deadlock: ranks {stuck} wait for transfers nobody sends")
    return max(end.values(), default=0.0), end, marks, load
