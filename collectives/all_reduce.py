"""all_reduce (sum): every rank ends with the element-wise sum of all ranks' buffers."""
from collectives.base import Collective, addends, member, sum_of_addends


class AllReduce(Collective):
    name = "all_reduce"

    def bus_factor(self, n):
        return 2 * (n - 1) / n

    def buffers(self, call, rank):
        return {"in": call.count, "out": call.count}

    def inputs(self, call, rank):
        return addends(call.count, member(call, rank)[1])

    def initial(self, call, rank):   # in place, as NCCL's: out starts as the rank's own addend
        mine = self.inputs(call, rank)
        return {"in": mine, "out": mine.copy()}

    def expected(self, call, rank):
        return sum_of_addends(call.count, len(member(call, rank)[0]))


COLLECTIVE = AllReduce()
