"""The ranks' side of a schedule: one rank runs its program (collectives.schedule) over gloo.

Before the agreed start it posts every receive of the iteration (gloo tells each sender that
the receive is there, so no send waits for a ready notice: one-way per step); after it, it
walks its program: sends (a tag per transfer), waits for receives and applies them (copy or add
from a scratch buffer, or nothing where the data landed in place), waits for sends where a
region is about to be overwritten, pauses for compute and endpoint costs (x k).  A gloo part
calls torch's own collective instead.

What a step costs the host counts, because the software-emulated microVM runs every Python and
torch call ~40x slower than a native core (measured there, 2 ranks over loopback: an isend
1.1 ms, a 16 KiB add 0.8 ms through torch, 0.08 ms through numpy): the buffers are numpy
arrays that torch tensors share (the wire side), every region's view is made once, and sends
and receives go to the process group directly.  It is written against a small backend (the wire
side): torch and gloo on the ranks; in-memory queues in the tests, which run the same programs
without a network.
"""
from __future__ import annotations

import time

from collectives import OPS
from collectives.base import member
from collectives.schedule import COPY, DELAY, MARK, NATIVE, PAUSE, POST, SEND, START, SYNC, WAIT, Part, combine
from fabric.dilation import Dilation


def wait_until(t: float) -> bool:
    """Sleep, then spin for the last stretch.  False if t had already passed (a late start)."""
    now = time.monotonic()
    if now > t:
        return False
    if t - now > 0.002:
        time.sleep(t - now - 0.001)
    while time.monotonic() < t:
        pass
    return True


def _land(target, data, reduce: bool) -> None:
    """A receive (or local copy) lands: added in, or copied over."""
    if reduce:
        target += data
    else:
        target[:] = data


class TorchBackend:
    """gloo point-to-point on a rank (torch and torch.distributed passed in): the process
    group's own send and recv, on torch tensors that share the numpy buffers' memory."""

    def __init__(self, torch, dist, groups: dict | None = None):
        self.torch, self.dist, self.groups = torch, dist, groups or {}
        self.pg = dist.distributed_c10d._get_default_group()

    def wire(self, view):
        return self.torch.from_numpy(view)

    def irecv(self, buf, src: int, tag: int):
        return self.pg.recv([buf], src, tag)

    def isend(self, buf, dst: int, tag: int):
        return self.pg.send([buf], dst, tag)

    def native(self, part: Part, st: dict, pending: list) -> None:
        from collectives.algorithms import gloo
        g = member(part.call, st["rank"])[0] if part.call.op != "p2p" else ()
        wire = {k: self.wire(st[k]) for k in ("in", "out")}
        gloo.run(self.torch, self.dist, part.call, {**st, **wire}, self.groups.get(g), pending,
                 sync_sends=not part.overlap)


class RankRun:
    """One rank's part of one job item (an op and size, or a workload entry), iteration after
    iteration: its buffers (allocated once), its program (resolved to views once), its checks."""

    def __init__(self, backend, rank: int, parts: list[Part], k: float, delays=None):
        import numpy as np
        self.b, self.rank, self.parts, self.k, self.delays = backend, rank, parts, k, delays
        ops, where = combine(parts, rank, native=True)
        self.state: dict[int, dict] = {}
        for p, part in enumerate(parts):
            if part.kind == "call" and rank in part.ranks:
                coll = OPS[part.call.op]
                init = coll.initial(part.call, rank)
                st = {name: v.copy() for name, v in init.items()}
                st.update(init_values=init, expected=coll.expected(part.call, rank), rank=rank)
                if part.call.op != "p2p":
                    st["group"], st["member"] = member(part.call, rank)
                self.state[p] = st

        def xfer(gid):
            p, x = where[gid]
            return p, self.parts[p].schedule.xfers[x]

        def view(p, buf, off, count):
            return self.state[p][buf][off:off + count]

        self.posts = []                      # (global id, wire buffer, source rank)
        self.body = []                       # (kind, resolved arguments)
        tmp = {}
        split = [o.kind for o in ops].index(START)
        for op in ops[:split]:
            p, xf = xfer(op.x)
            target = view(p, xf.dbuf, xf.doff, xf.count)
            buf = target if op.direct else np.empty(xf.count, dtype=target.dtype)
            tmp[op.x] = None if op.direct else (buf, target, xf.reduce)
            self.posts.append((op.x, backend.wire(buf), xf.src))
        for op in ops[split + 1:]:
            if op.kind == SEND:
                p, xf = xfer(op.x)
                self.body.append((SEND, (op.x, backend.wire(view(p, xf.sbuf, xf.soff, xf.count)), xf.dst)))
            elif op.kind == WAIT:
                self.body.append((WAIT, (op.x, tmp[op.x])))
            elif op.kind == COPY:
                p, xf = xfer(op.x)
                self.body.append((COPY, (view(p, xf.sbuf, xf.soff, xf.count), view(p, xf.dbuf, xf.doff, xf.count),
                                         xf.reduce)))
            elif op.kind in (SYNC, NATIVE, MARK):
                self.body.append((op.kind, op.x))
            elif op.kind == PAUSE:
                self.body.append((PAUSE, Dilation(k).emulated(op.seconds)))
            elif op.kind == DELAY:
                self.body.append((DELAY, None))

    def reset(self) -> None:
        """Restore every buffer (outside the timed region)."""
        for st in self.state.values():
            for name, values in st["init_values"].items():
                st[name][:] = values

    def post(self) -> dict:
        """Post every receive of the iteration; returns them by global xfer id."""
        return {gid: self.b.irecv(buf, src, gid) for gid, buf, src in self.posts}

    def run(self, recvs: dict, start: float) -> tuple[list[float | None], bool]:
        """Walk the program from the agreed start; returns each part's end (s after start, None
        where this rank takes no part) and whether every result arrived intact."""
        import numpy as np
        ends: list[float | None] = [None] * len(self.parts)
        sends, pending_native, isend = {}, [], self.b.isend
        for kind, a in self.body:
            if kind == SEND:
                gid, buf, dst = a
                sends[gid] = isend(buf, dst, gid)
            elif kind == WAIT:
                gid, landing = a
                recvs.pop(gid).wait()
                if landing is not None:
                    buf, target, reduce = landing
                    _land(target, buf, reduce)
            elif kind == SYNC:
                w = sends.pop(a, None)
                if w is not None:
                    w.wait()
            elif kind == COPY:
                src, dst, reduce = a
                _land(dst, src, reduce)
            elif kind == PAUSE:
                wait_until(time.monotonic() + a)
            elif kind == DELAY:
                if self.delays:
                    self.delays.wait()
            elif kind == NATIVE:
                self.b.native(self.parts[a], self.state[a], pending_native)
            else:   # MARK
                if self.parts[a].kind == "drain":
                    while pending_native:
                        pending_native.pop().wait()
                ends[a] = time.monotonic() - start
        for w in list(sends.values()) + pending_native:    # nothing may outlive the iteration
            w.wait()
        if recvs:
            raise RuntimeError(f"rank {self.rank}: {len(recvs)} receives were posted and never waited for")
        ok = all(np.array_equal(st["out"], st["expected"]) for st in self.state.values())
        return ends, ok
