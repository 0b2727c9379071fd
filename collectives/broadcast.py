"""broadcast: the root's buffer ends on every rank."""
from collectives.base import Collective, data, member


class Broadcast(Collective):
    name = "broadcast"
    dtype = "int32"

    def bus_factor(self, n):
        return 1.0

    def buffers(self, call, rank):
        return {"in": call.count, "out": call.count}

    def inputs(self, call, rank):
        return data(call.dtype, 7 + member(call, rank)[1], call.count)   # only the root's is sent

    def initial(self, call, rank):   # the root's result is its own input
        mine = self.inputs(call, rank)
        root = member(call, rank)[1] == call.root
        return {"in": mine, "out": mine.copy() if root else mine * 0}

    def expected(self, call, rank):
        return data(call.dtype, 7 + call.root, call.count)


COLLECTIVE = Broadcast()
