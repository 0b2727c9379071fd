"""What every algorithm declares and the pieces they share.

An algorithm is one small file: a subclass of Algorithm naming the ops it runs and turning a
Call (collectives.base) into a Schedule (collectives.schedule) over global ranks.  Pieces that
several algorithms reuse (a ring over a region, a direct exchange) are functions here that
return steps, so an algorithm composes phases and runs disjoint groups side by side.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from collectives.all_to_all import matrix
from collectives.base import Call, Group, chunks
from collectives.schedule import Schedule, Xfer

MAX_CHUNKS = 8          # pipelining: at most this many chunks per step (a ring moves n blocks at once)
CHAIN_CHUNKS = 64       # ... and per hop of a chain or tree, whose pipeline is only as deep as its chunks

Steps = list[list[Xfer]]


@dataclass(frozen=True)
class Net:
    """What an algorithm may know of the fabric: which domain (node, satellite) a rank is in,
    and the pipelining unit: a chunk whose wire time matches the ranks' link latency (latency x
    rate of their link class, real), below which cutting a step into chunks saves nothing."""
    domain_of: Callable[[int], int] = lambda r: 0
    chunk_bytes: int = 0

    def pieces(self, nbytes: int, most: int = MAX_CHUNKS) -> int:
        """Chunks to cut a step of nbytes into."""
        if not self.chunk_bytes:
            return 1
        return max(1, min(most, nbytes // self.chunk_bytes))


class Algorithm:
    name = ""
    ops: dict[str, str] = {}     # op -> one line on what it does (fabric plan, the table's header)

    def applies(self, call: Call, net: Net) -> bool:
        return call.op in self.ops

    def schedule(self, call: Call, net: Net) -> Schedule:
        """The call's transfers, step by step, every group at once."""
        out = Schedule(self.name, call.item)
        for g in call.groups if call.op != "p2p" else ((),):
            one = Schedule(self.name, call.item)
            for step in self.steps(call, g, net):
                one.step(step)
            out.merge(one)
        return out

    def steps(self, call: Call, group: Group, net: Net) -> Steps:
        raise NotImplementedError


def region(off: int, count: int, parts: int) -> list[tuple[int, int]]:
    """`parts` pieces of the region [off, off + count)."""
    return [(off + o, n) for o, n in chunks(count, parts)]


def _ring(g: Group, off: int, count: int, item: int, net: Net, shift: int, xfer) -> Steps:
    """m-1 steps around the ring: at step s member i sends block (i + shift - s) of the region,
    chunk by chunk, to member i+1; xfer(i, s, offset, count, block) makes each transfer."""
    m = len(g)
    blocks = region(off, count, m)
    c = net.pieces(max(n for _, n in blocks) * item)
    return [[xfer(i, s, o, n, blocks[(i + shift - s) % m]) for i in range(m)
             for o, n in region(*blocks[(i + shift - s) % m], c)] for s in range(m - 1)]


def ring_reduce_scatter(g: Group, buf: str, off: int, count: int, item: int, net: Net,
                        last: str | None = None, last_off: int = 0) -> Steps:
    """m-1 steps: member i sends block (i-s-1) of the region to member i+1, who adds it to its
    own; afterwards member i holds block i's sum.  With `last`, the final step lands in that
    buffer instead, at last_off (the receiver's own block there)."""
    m = len(g)

    def xfer(i, s, o, n, block):
        final = last is not None and s == m - 2
        return Xfer(g[i], g[(i + 1) % m], buf, o, last if final else buf,
                    last_off + o - block[0] if final else o, n, reduce=True)
    return _ring(g, off, count, item, net, -1, xfer)


def ring_all_gather(g: Group, buf: str, off: int, count: int, item: int, net: Net) -> Steps:
    """m-1 steps: member i sends block (i-s) of the region to member i+1 (copy); member i
    starts with block i complete."""
    return _ring(g, off, count, item, net, 0, lambda i, s, o, n, block: Xfer(g[i], g[(i + 1) % len(g)], buf, o,
                                                                              buf, o, n))


def ring_all_reduce(g: Group, buf: str, off: int, count: int, item: int, net: Net) -> Steps:
    """Reduce-scatter then all-gather around the ring, in place: 2(m-1) steps."""
    return ring_reduce_scatter(g, buf, off, count, item, net) + ring_all_gather(g, buf, off, count, item, net)


def direct_all_reduce(g: Group, buf: str, off: int, count: int) -> Steps:
    """One step: every member sends its whole region to every other, who adds it (one-shot)."""
    return [[Xfer(g[i], g[j], buf, off, buf, off, count, reduce=True)
             for i in range(len(g)) for j in range(len(g)) if i != j]]


def direct_reduce_scatter(g: Group, sbuf: str, off: int, count: int, dbuf: str) -> Steps:
    """One step: member i sends block j of its region to member j, who adds it to its own
    (in dbuf at the same offset)."""
    blocks = region(off, count, len(g))
    return [[Xfer(g[i], g[j], sbuf, blocks[j][0], dbuf, blocks[j][0], blocks[j][1], reduce=True)
             for i in range(len(g)) for j in range(len(g)) if i != j]]


def direct_all_gather(g: Group, buf: str, off: int, count: int) -> Steps:
    """One step: member i sends its block i of the region to every other member (copy)."""
    blocks = region(off, count, len(g))
    return [[Xfer(g[i], g[j], buf, blocks[i][0], buf, blocks[i][0], blocks[i][1])
             for i in range(len(g)) for j in range(len(g)) if i != j]]


def a2a_offsets(call: Call) -> tuple[list[list[int]], list[list[int]]]:
    """(send offset in member i's "in", receive offset in member j's "out") of chunk i -> j."""
    mat = matrix(call)
    m = len(mat)
    send = [[sum(mat[i][:j]) for j in range(m)] for i in range(m)]
    recv = [[sum(mat[k][j] for k in range(i)) for j in range(m)] for i in range(m)]
    return send, recv
