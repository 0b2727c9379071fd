"""The α-β model: every rank's program (collectives.schedule) simulated on the plan's links.

The programs are the ones the ranks run, so the model and the emulation read one schedule.
Time starts at the agreed start (0); each rank walks its ops in order:
  * a receive posted before the start is known to its sender at once; one posted later reaches
    the sender after the path's one-way latency back (gloo's ready notice), and a send leaves no
    earlier than that: so a gloo step pays a round trip and a pre-posted one one way;
  * a send's bytes cross every shaped link direction of its path at one rate and arrive the
    path's one-way latency after the last of them is through; transfers between different
    pairs share each link direction max-min fairly, those of one pair go one after another
    (_Flows).  Against first come, first served per link the emulation measured a 1 MiB tree
    broadcast at 1.19-1.21x its model and a 64 MiB pairwise all-to-all at 1.29x; against sharing
    at 0.94-1.03x (benchmarks/algorithms.py's 3 runs, docs/validation.md);
  * a wait blocks until its receive arrived, a sync until its send has left the sender's port,
    a pause (compute, endpoint costs) lasts its seconds x k.
The call's time is the slowest rank's end.  Measured against the emulation: docs/validation.md
and benchmarks/algorithms.py.
"""
from __future__ import annotations

import heapq
import math
from dataclasses import dataclass, field

import numpy as np

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
    dil = plan.dilation
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

    flows = _Flows([path(x.src, x.dst)[0] for x in xfers] if bandwidth else [])   # on the wire

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
                    push(now + dil.emulated(op.seconds), "run", r)
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
            for key, _ in hops:
                load[key] = load.get(key, 0.0) + bits
            if not bandwidth or not bits or not hops:
                push(now, "left", what)
                push(now + latency, "arrive", what)
                continue
            flows.advance(now)
            flows.add(what, (xf.src, xf.dst), bits)
            push(now, "flows", flows.version)      # after every other departure at this time
            continue
        if kind == "flows":
            if what != flows.version:      # a later event stands for this one
                continue
            flows.advance(now)
            for x in flows.settle():
                push(now, "left", x)
                push(now + path(xfers[x].src, xfers[x].dst)[1], "arrive", x)
            if flows.busy():
                push(flows.next_end(), "flows", flows.version)
            continue
        (left if kind == "left" else arrived)[what] = now
        r = waiting.pop((kind, what), None)
        if r is not None:
            run(r, now)
    stuck = [r for r in ranks if r not in end]
    if stuck:
        raise RuntimeError(f"the programs deadlock: ranks {stuck} wait for transfers nobody sends")
    return max(end.values(), default=0.0), end, marks, load


class _Flows:
    """The transfers on the wire.  Those from one rank to another go one after another, in the
    order sent (gloo has one connection per pair, NCCL one channel); the heads of different
    pairs cross their link directions at once, each at one rate, the links' capacity shared
    max-min fairly among them (progressive filling), as TCP connections through the
    emulation's shapers share a port and a GPU's copies to several peers share its links.
    Rates change only when a transfer starts or ends; numpy keeps that cheap with thousands of
    transfers in flight (a 64-rank all-to-all has 4,032)."""

    def __init__(self, hops: list):
        n = len(hops)
        links: dict[str, int] = {}
        capacity, ex, el = [], [], []            # one entry per (xfer, link direction it crosses)
        for x, path in enumerate(hops):
            for key, rate in path:
                if key not in links:
                    links[key] = len(capacity)
                    capacity.append(rate)
                ex.append(x)
                el.append(links[key])
        self.ex, self.el, self.capacity = np.array(ex, dtype=int), np.array(el, dtype=int), np.array(capacity)
        self.left = np.zeros(n)                  # bits still to cross, per xfer
        self.rate = np.zeros(n)
        self.on = np.zeros(n, dtype=bool)        # crossing now (the head of its pair)
        self.queued: dict[tuple, list] = {}      # pair -> transfers behind its head, in order
        self.pair_of: dict[int, tuple] = {}
        self.t = 0.0
        self.version = 0

    def advance(self, now: float) -> None:
        dt = now - self.t
        if dt > 0:
            self.left[self.on] -= self.rate[self.on] * dt
        self.t = max(self.t, now)

    def add(self, x: int, pair: tuple, bits: float) -> None:
        """x joins the wire (or its pair's queue); the rates follow at settle()."""
        self.version += 1
        self.left[x] = bits
        self.pair_of[x] = pair
        if pair in self.queued:
            self.queued[pair].append(x)
            return
        self.queued[pair] = []
        self.on[x] = True

    def settle(self) -> list[int]:
        """The transfers that have crossed (their pairs' next ones start), then the new rates."""
        done = np.flatnonzero(self.on & (self.left <= 1e-3)).tolist()    # bits: rounding, not data
        for x in done:
            self.on[x] = False
            pair = self.pair_of.pop(x)
            if self.queued[pair]:
                self.on[self.queued[pair].pop(0)] = True
            else:
                del self.queued[pair]
        self._share()
        return done

    def busy(self) -> bool:
        return bool(self.on.any())

    def next_end(self) -> float:
        on = self.on
        return self.t + float((self.left[on] / self.rate[on]).min())

    def _share(self) -> None:
        self.version += 1
        crossing = np.flatnonzero(self.on[self.ex])          # the entries of the transfers on the wire
        ex, el = self.ex[crossing], self.el[crossing]
        links = len(self.capacity)
        capacity = self.capacity.copy()
        open_ = np.ones(len(ex), dtype=bool)                 # per entry: its transfer has no rate yet
        rate = np.zeros_like(self.rate)
        while open_.any():
            users = np.bincount(el[open_], minlength=links)
            used = users > 0
            share = np.full(links, np.inf)
            share[used] = capacity[used] / users[used]
            least = share.min()
            tight = share <= least * (1 + 1e-9)              # every link at the least share at once
            frozen = np.zeros(len(self.rate), dtype=bool)
            frozen[ex[open_ & tight[el]]] = True
            rate[frozen] = least
            now = open_ & frozen[ex]
            capacity -= np.bincount(el[now], minlength=links) * least
            open_ &= ~now
        self.rate = rate
