"""tree: NCCL's double binary tree for all-reduce (and a binary tree for broadcast), pipelined.

Two binary trees over the ranks, the second the mirror of the first, so a rank that is a leaf in
one is inside the other; each reduces half of the buffer up to its root and broadcasts it back
down.  2 x depth latencies (depth = log2 n) instead of the ring's 2(n-1), at twice the ring's
bytes through an inner rank's port."""
from collectives.algorithms.base import CHAIN_CHUNKS, Algorithm, region
from collectives.schedule import Xfer


def depth(p: int) -> int:
    return (p + 1).bit_length() - 1


def up_and_down(members: list[int], off: int, count: int, chunks: int, up: bool = True) -> list[list[Xfer]]:
    """A heap-shaped binary tree over `members` (position p's parent is (p-1)//2): reduce the
    region up to members[0] (if `up`), then send it back down, chunk by chunk."""
    m = len(members)
    deepest = depth(m - 1)
    pieces = region(off, count, chunks)
    steps = []
    if up:
        for level in range(deepest, 0, -1):
            steps.append([Xfer(members[p], members[(p - 1) // 2], "out", o, "out", o, n, reduce=True)
                          for p in range(m) if depth(p) == level for o, n in pieces])
    for level in range(deepest):
        steps.append([Xfer(members[(p - 1) // 2], members[p], "out", o, "out", o, n)
                      for p in range(1, m) if depth(p) == level + 1 for o, n in pieces])
    return steps


class Tree(Algorithm):
    name = "tree"
    ops = {"all_reduce": "double binary tree: each half reduced up one tree and sent back down, 2 log2(n) steps",
           "broadcast": "binary tree from the root: log2(n) steps, pipelined"}

    def steps(self, call, g, net):
        m = len(g)
        if call.op == "broadcast":
            members = [g[(call.root + p) % m] for p in range(m)]
            return up_and_down(members, 0, call.count, net.pieces(call.count * call.item, CHAIN_CHUNKS), up=False)
        (a_off, a_n), (b_off, b_n) = region(0, call.count, 2)
        chunks = net.pieces(max(a_n, b_n) * call.item)
        first = up_and_down(list(g), a_off, a_n, chunks)
        second = up_and_down(list(reversed(g)), b_off, b_n, chunks)
        return [a + b for a, b in zip(first, second)]


ALGORITHM = Tree()
