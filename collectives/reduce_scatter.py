"""reduce_scatter (sum): rank r ends with chunk r of the element-wise sum.  Size = whole array."""
from collectives.base import Collective, addends, member, sum_of_addends


class ReduceScatter(Collective):
    name = "reduce_scatter"
    per_rank_chunks = True

    def bus_factor(self, n):
        return (n - 1) / n

    def buffers(self, call, rank):
        m = len(member(call, rank)[0])
        return {"in": call.count // m * m, "out": call.count // m}

    def inputs(self, call, rank):
        g, i = member(call, rank)
        return addends(call.count // len(g) * len(g), i)

    def initial(self, call, rank):   # out starts as the rank's own addend to its chunk
        g, i = member(call, rank)
        chunk = call.count // len(g)
        mine = self.inputs(call, rank)
        return {"in": mine, "out": mine[i * chunk:(i + 1) * chunk].copy()}

    def expected(self, call, rank):
        g, i = member(call, rank)
        chunk = call.count // len(g)
        return sum_of_addends(chunk, len(g), offset=i * chunk)


COLLECTIVE = ReduceScatter()
