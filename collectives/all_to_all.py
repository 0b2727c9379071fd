"""all_to_all: member i sends chunk (i, j) to every member j (all_to_all_single).

Size = the per-rank send buffer (nccl-tests' whole array).  `splits: uneven` gives every pair its
own chunk size and every rank a different receive total, as MoE dispatch does; a workload's
dispatch and combine give their routed matrix (call.matrix).
"""
import numpy as np

from collectives.base import Collective, data, member


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


def matrix(call) -> tuple[tuple[int, ...], ...]:
    m = call.size
    return call.matrix or tuple(tuple(call.count // m for _ in range(m)) for _ in range(m))


class AllToAll(Collective):
    name = "all_to_all"
    dtype = "int32"
    per_rank_chunks = True

    def bus_factor(self, n):
        return (n - 1) / n

    def buffers(self, call, rank):
        mat, i = matrix(call), member(call, rank)[1]
        return {"in": sum(mat[i]), "out": sum(row[i] for row in mat)}

    def inputs(self, call, rank):
        mat, i = matrix(call), member(call, rank)[1]
        return np.concatenate([data(call.dtype, i * len(mat) + j, mat[i][j]) for j in range(len(mat))])

    def initial(self, call, rank):   # the rank's chunk for itself is in place already
        mat, i = matrix(call), member(call, rank)[1]
        out = np.zeros(sum(row[i] for row in mat), dtype=np.dtype(call.dtype))
        off = sum(mat[s][i] for s in range(i))
        out[off:off + mat[i][i]] = data(call.dtype, i * len(mat) + i, mat[i][i])
        return {"in": self.inputs(call, rank), "out": out}

    def expected(self, call, rank):
        mat, j = matrix(call), member(call, rank)[1]
        return np.concatenate([data(call.dtype, i * len(mat) + j, mat[i][j]) for i in range(len(mat))])


COLLECTIVE = AllToAll()
