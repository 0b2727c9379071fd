"""What every collective declares, nccl-tests style: the size rule, the bus-bandwidth factor, and
what each rank holds before and after (its buffers, its input, the expected result).

How the bytes move is not here: an algorithm (collectives/algorithms/) turns a Call into a
Schedule (collectives/schedule.py).  A collective file stays small: subclass Collective and fill
in these few methods.  Buffers are numpy arrays: the symbolic run in the tests and the ranks
(through torch.from_numpy) use the same ones.
"""
from __future__ import annotations

from dataclasses import dataclass

Group = tuple[int, ...]


@dataclass(frozen=True)
class Call:
    """One collective call: `op` in each group of ranks at the same time (global ranks).

    count: elements, by nccl-tests' size rule (the per-rank buffer for all_reduce, broadcast and
    sendrecv; the whole array, per-rank x group size, for all_gather, reduce_scatter and
    all_to_all); matrix: all_to_all elements from member i to member j (None: even); root:
    broadcast's member; flows: p2p's (src, dst, elements) in global ranks."""
    op: str
    groups: tuple[Group, ...]
    count: int = 0
    dtype: str = "float32"
    matrix: tuple[tuple[int, ...], ...] | None = None
    root: int = 0
    flows: tuple[tuple[int, int, int], ...] = ()

    @property
    def item(self) -> int:
        return {"float32": 4, "int32": 4, "uint8": 1}[self.dtype]

    @property
    def size(self) -> int:
        """The largest group's size."""
        return max((len(g) for g in self.groups), default=0)

    @property
    def ranks(self) -> tuple[int, ...]:
        if self.op == "p2p":
            return tuple(sorted({r for s, d, _ in self.flows for r in (s, d)}))
        return tuple(sorted(r for g in self.groups for r in g))


class Collective:
    name: str = ""
    dtype: str = "float32"           # the element type on the wire of the plain op (4 bytes)
    min_ranks: int = 2
    per_rank_chunks: bool = False    # the size is split into n equal chunks (all_gather, ...)
    ITEM = 4

    def bus_factor(self, n: int) -> float:
        raise NotImplementedError

    def size(self, nbytes: int, n: int) -> int:
        """The nccl-tests size actually used: whole elements, and whole chunks per rank."""
        unit = self.ITEM * (n if self.per_rank_chunks else 1)
        return max(unit, nbytes // unit * unit)

    def buffers(self, call: Call, rank: int) -> dict[str, int]:
        """Elements of "in" and "out" on `rank` (a member of one of the call's groups)."""
        raise NotImplementedError

    def inputs(self, call: Call, rank: int):
        """The rank's "in" buffer (numpy)."""
        raise NotImplementedError

    def initial(self, call: Call, rank: int) -> dict:
        """Every buffer's content before the call (restored before each iteration, outside the
        timed region): "in" and, where the rank's own part of the result is already its own
        (the all-reduce's own addend, the all-gather's own chunk), "out"."""
        n = self.buffers(call, rank)["out"]
        return {"in": self.inputs(call, rank), "out": zeros(call.dtype, n)}

    def expected(self, call: Call, rank: int):
        """What the rank's "out" buffer holds afterwards (numpy)."""
        raise NotImplementedError


def zeros(dtype: str, count: int):
    import numpy as np
    return np.zeros(count, dtype=np.dtype(dtype))


def data(dtype: str, key: int, count: int, offset: int = 0):
    """Elements offset .. offset+count of the position-dependent pattern `key` (a rank, a pair):
    a misplaced, lost or doubled element fails the check."""
    import numpy as np
    pos = np.arange(offset, offset + count, dtype=np.int64)
    if dtype == "uint8":
        return ((key * 37 + pos) % 251).astype(np.uint8)
    return (key * 65536 + pos % 65536).astype(np.dtype(dtype))


def addends(count: int, member: int, offset: int = 0):
    """What member adds into a reduction: small whole numbers, so float32 sums are exact."""
    import numpy as np
    return ((np.arange(offset, offset + count, dtype=np.int64) % 7 + 1) * (member + 1)).astype(np.float32)


def sum_of_addends(count: int, m: int, offset: int = 0):
    import numpy as np
    return ((np.arange(offset, offset + count, dtype=np.int64) % 7 + 1) * (m * (m + 1) // 2)).astype(np.float32)


def chunks(total: int, parts: int) -> list[tuple[int, int]]:
    """(offset, count) of `parts` nearly equal pieces of `total` elements (the first ones one larger)."""
    base, extra = divmod(total, parts)
    out, off = [], 0
    for p in range(parts):
        n = base + (p < extra)
        out.append((off, n))
        off += n
    return out


def member(call: Call, rank: int) -> tuple[Group, int] | None:
    """(rank's group, its index in it), or None when it takes no part."""
    for g in call.groups:
        if rank in g:
            return g, g.index(rank)
    return None
