"""gloo: torch.distributed's own call, kept as the baseline.

The ranks call torch (dist.all_reduce, all_to_all_single, ...).  For the α-β model the schedule
mimics what gloo does (its source, gloo/*.cc): a send leaves only once the receiver has posted
its receive and told the sender (a round trip unless the receive was posted long before), and
gloo posts a receive only when it reaches that step:
  * all_reduce: a ring (to rank-1) of 2n segments, two in flight: iteration i posts segment i's
    receive, sends segment i and waits for segment i-2 (reduce-scatter, then all-gather);
  * all_gather: a ring (to rank+1) of 2(n-1) half chunks, two in flight;
  * reduce_scatter: torch runs a whole all-reduce and keeps its chunk;
  * all_to_all: every send and receive posted at once (alltoallv);
  * broadcast: the root sends S to every rank at once (measured: (n-1) S through its port);
  * sendrecv and p2p: isend and irecv posted together.
"""
from __future__ import annotations

from collectives.algorithms.base import Algorithm
from collectives.all_to_all import matrix
from collectives.base import chunks
from collectives.schedule import POST, SEND, START, SYNC, WAIT, Op, Schedule, Xfer


class Gloo(Algorithm):
    name = "gloo"
    ops = {"all_reduce": "gloo's ring, 2n segments two in flight, a round trip before each",
           "all_gather": "gloo's ring, 2(n-1) half chunks two in flight, a round trip before each",
           "reduce_scatter": "gloo has none: torch runs an all-reduce of S and keeps its chunk",
           "all_to_all": "gloo alltoallv: every send and receive at once, each a round trip",
           "broadcast": "gloo: the root sends S to each other rank at once",
           "sendrecv": "isend to rank+1 and irecv from rank-1 together: a round trip",
           "p2p": "isend and irecv together: a round trip each"}

    def schedule(self, call, net) -> Schedule:
        s = Schedule(self.name, call.item, native=True, programs={})
        groups = call.groups if call.op != "p2p" else ((),)
        for g in groups:
            {"all_reduce": _ring_all_reduce, "reduce_scatter": _ring_all_reduce, "all_gather": _ring_all_gather,
             "all_to_all": _all_to_all, "broadcast": _broadcast, "sendrecv": _sendrecv,
             "p2p": _p2p}[call.op](s, call, g)
        for r in call.ranks:
            s.programs.setdefault(r, [Op(START)])
            s.buffers.setdefault(r, {})
        return s


def _add(s: Schedule, x: Xfer) -> int:
    s.xfers.append(x)
    return len(s.xfers) - 1


def _windowed(s: Schedule, g, rounds: list[list[tuple[int, int, int]]], send_first: bool) -> None:
    """gloo's two-in-flight ring: round i has, per member, (src, dst, elements); iteration i
    waits for round i-2, then posts round i's receive and sends (or the other way round)."""
    m = len(g)
    ids = [{src: _add(s, Xfer(g[src], g[dst], "in", 0, "out", 0, n)) for src, dst, n in rnd if n > 0}
           for rnd in rounds]
    into = [{dst: ids[i][src] for src, dst, n in rnd if n > 0} for i, rnd in enumerate(rounds)]
    for me in range(m):
        prog = s.programs.setdefault(g[me], [Op(START)])
        for i in range(len(rounds) + 2):
            if i >= 2:
                if me in into[i - 2]:
                    prog.append(Op(WAIT, into[i - 2][me]))
                if me in ids[i - 2]:
                    prog.append(Op(SYNC, ids[i - 2][me]))
            if i < len(rounds):
                post = [Op(POST, into[i][me])] if me in into[i] else []
                send = [Op(SEND, ids[i][me])] if me in ids[i] else []
                prog += send + post if send_first else post + send


def _ring_all_reduce(s: Schedule, call, g) -> None:
    m = len(g)
    segs = chunks(call.count, 2 * m)           # equal-sized segments, the last ones short
    seg = max(n for _, n in segs)
    rounds = []
    for phase in ("reduce_scatter", "all_gather"):
        for i in range(2 * m - 2):
            rnd = []
            for me in range(m):
                first = (me + 1) * 2 if phase == "reduce_scatter" else me * 2
                idx = (first + i) % (2 * m)
                n = max(0, min(seg, call.count - idx * seg))
                rnd.append((me, (me - 1) % m, n))
            rounds.append(rnd)
        # gloo waits for the last two segments of a phase before starting the next
    _windowed(s, g, rounds[:2 * m - 2], send_first=False)
    _windowed(s, g, rounds[2 * m - 2:], send_first=False)


def _ring_all_gather(s: Schedule, call, g) -> None:
    m = len(g)
    chunk = call.count // m
    halves = [chunk // 2, chunk - chunk // 2]
    rounds = [[(me, (me + 1) % m, halves[i & 1]) for me in range(m)] for i in range(2 * (m - 1))]
    _windowed(s, g, rounds, send_first=True)


def _all_to_all(s: Schedule, call, g) -> None:
    m, mat = len(g), matrix(call)
    ids = {(i, j): _add(s, Xfer(g[i], g[j], "in", 0, "out", 0, mat[i][j]))
           for i in range(m) for j in range(m) if i != j and mat[i][j]}
    for me in range(m):
        prog = s.programs.setdefault(g[me], [Op(START)])
        for k in range(1, m):
            to, fro = (me + k) % m, (me - k) % m
            prog += [Op(SEND, ids[me, to])] if (me, to) in ids else []
            prog += [Op(POST, ids[fro, me])] if (fro, me) in ids else []
        for k in range(1, m):
            to, fro = (me + k) % m, (me - k) % m
            prog += [Op(SYNC, ids[me, to])] if (me, to) in ids else []
            prog += [Op(WAIT, ids[fro, me])] if (fro, me) in ids else []


def _broadcast(s: Schedule, call, g) -> None:
    root = g[call.root]
    ids = {d: _add(s, Xfer(root, d, "in", 0, "out", 0, call.count)) for d in g if d != root}
    s.programs.setdefault(root, [Op(START)]).extend([Op(SEND, x) for x in ids.values()] +
                                                    [Op(SYNC, x) for x in ids.values()])
    for d, x in ids.items():
        s.programs.setdefault(d, [Op(START)]).extend([Op(POST, x), Op(WAIT, x)])


def _sendrecv(s: Schedule, call, g) -> None:
    m = len(g)
    ids = [_add(s, Xfer(g[i], g[(i + 1) % m], "in", 0, "out", 0, call.count)) for i in range(m)]
    for i in range(m):
        s.programs.setdefault(g[i], [Op(START)]).extend(
            [Op(SEND, ids[i]), Op(POST, ids[(i - 1) % m]), Op(WAIT, ids[(i - 1) % m]), Op(SYNC, ids[i])])


def _p2p(s: Schedule, call, g) -> None:
    ids = [_add(s, Xfer(src, dst, "in", 0, "out", 0, n)) for src, dst, n in call.flows]
    for r in call.ranks:
        prog = s.programs.setdefault(r, [Op(START)])
        prog += [Op(SEND, x) for x in ids if s.xfers[x].src == r]
        prog += [Op(POST, x) for x in ids if s.xfers[x].dst == r]
        prog += [Op(WAIT, x) for x in ids if s.xfers[x].dst == r]
        prog += [Op(SYNC, x) for x in ids if s.xfers[x].src == r]


# ---- the ranks' side: torch's own calls --------------------------------------------------

def run(torch, dist, call, st: dict, group, pending: list, sync_sends: bool = True) -> None:
    """Run the call with torch.distributed's gloo collective (buffers as the executor keeps them)."""
    op, inp, out = call.op, st["in"], st["out"]
    if op == "all_reduce":
        dist.all_reduce(out, group=group)
    elif op == "all_gather":
        dist.all_gather_into_tensor(out, inp, group=group)
    elif op == "reduce_scatter":
        dist.reduce_scatter_tensor(out, inp, group=group)
    elif op == "all_to_all":
        mat, i = matrix(call), st["member"]
        dist.all_to_all_single(out, inp, [row[i] for row in mat], list(mat[i]), group=group)
    elif op == "broadcast":
        g = st["group"]
        if st["member"] != call.root:
            dist.broadcast(out, src=g[call.root], group=group)
        else:
            dist.broadcast(inp, src=g[call.root], group=group)
    elif op == "sendrecv":
        g, i = st["group"], st["member"]
        ops = [dist.P2POp(dist.isend, inp, g[(i + 1) % len(g)]), dist.P2POp(dist.irecv, out, g[(i - 1) % len(g)])]
        for w in dist.batch_isend_irecv(ops):
            w.wait()
    else:   # p2p
        me, sends, recvs, so, ro = st["rank"], [], [], 0, 0
        for f, (s, d, n) in enumerate(call.flows):
            if s == me:
                sends.append(dist.isend(inp[so:so + n], d, tag=f))
                so += n
        for f, (s, d, n) in enumerate(call.flows):
            if d == me:
                recvs.append(dist.irecv(out[ro:ro + n], s, tag=f))
                ro += n
        for w in recvs:
            w.wait()
        if sync_sends:
            for w in sends:
                w.wait()
        else:
            pending += sends


ALGORITHM = Gloo()
