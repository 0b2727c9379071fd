"""all_to_all (all_to_all_single): rank s sends chunk (s, d) to every rank d.

Size = the per-rank send buffer (nccl-tests' whole array).  `splits: uneven` gives every
pair its own chunk size and every rank a different receive total, as MoE dispatch does.
"""
from collectives.base import Collective


def split_matrix(n: int, count: int, splits: str) -> list[list[int]]:
    """Elements rank s sends to rank d; every row sums to count."""
    if splits == "even":
        return [[count // n] * n for _ in range(n)]
    rows = []
    for s in range(n):
        w = [1 + ((s + d) % n) * (d + 1) for d in range(n)]   # higher ranks receive more
        row = [count * x // sum(w) for x in w]
        row[w.index(max(w))] += count - sum(row)
        rows.append(row)
    return rows


class AllToAll(Collective):
    name = "all_to_all"
    dtype = "int32"
    per_rank_chunks = True
    algorithm = "gloo alltoallv: every rank posts its n-1 sends at once (one step)"

    def bus_factor(self, n):
        return (n - 1) / n

    def schedule(self, n, nbytes, spec):
        m = split_matrix(n, nbytes // self.ITEM, spec.splits)
        return [[(s, d, m[s][d] * self.ITEM) for s in range(n) for d in range(n) if s != d and m[s][d]]]

    def prepare(self, torch, rank, n, nbytes, spec):
        m = split_matrix(n, nbytes // self.ITEM, spec.splits)
        def chunk(s, d):  # what s sends to d: the pair's id and the position inside the chunk
            return (torch.arange(m[s][d], dtype=torch.int64).remainder_(65536) + (s * n + d) * 65536).to(torch.int32)
        recv = [m[s][rank] for s in range(n)]
        return {"in": torch.cat([chunk(rank, d) for d in range(n)]),
                "out": torch.zeros(sum(recv), dtype=torch.int32),
                "expect": torch.cat([chunk(s, rank) for s in range(n)]),
                "send_splits": m[rank], "recv_splits": recv}

    def reset(self, state):
        state["out"].zero_()

    def run(self, dist, state):
        dist.all_to_all_single(state["out"], state["in"], state["recv_splits"], state["send_splits"])


COLLECTIVE = AllToAll()
