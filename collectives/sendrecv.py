"""sendrecv: a ring of point-to-point transfers, rank -> rank+1 (nccl-tests sendrecv)."""
from collectives.base import Collective, data, member


class SendRecv(Collective):
    name = "sendrecv"
    dtype = "int32"

    def bus_factor(self, n):
        return 1.0

    def buffers(self, call, rank):
        return {"in": call.count, "out": call.count}

    def inputs(self, call, rank):
        return data(call.dtype, member(call, rank)[1], call.count)

    def expected(self, call, rank):
        g, i = member(call, rank)
        return data(call.dtype, (i - 1) % len(g), call.count)


COLLECTIVE = SendRecv()
