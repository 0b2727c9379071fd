"""all_gather: every rank ends with all ranks' chunks, in rank order.  Size = whole array."""
import numpy as np

from collectives.base import Collective, data, member


class AllGather(Collective):
    name = "all_gather"
    dtype = "int32"
    per_rank_chunks = True

    def bus_factor(self, n):
        return (n - 1) / n

    def buffers(self, call, rank):
        m = len(member(call, rank)[0])
        return {"in": call.count // m, "out": call.count // m * m}

    def inputs(self, call, rank):
        g, i = member(call, rank)
        return data(call.dtype, i, call.count // len(g))

    def initial(self, call, rank):   # the rank's own chunk is in place already
        g, i = member(call, rank)
        chunk = call.count // len(g)
        mine = self.inputs(call, rank)
        out = np.zeros(chunk * len(g), dtype=mine.dtype)
        out[i * chunk:(i + 1) * chunk] = mine
        return {"in": mine, "out": out}

    def expected(self, call, rank):
        g, _ = member(call, rank)
        return np.concatenate([data(call.dtype, j, call.count // len(g)) for j in range(len(g))])


COLLECTIVE = AllGather()
