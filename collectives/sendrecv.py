"""sendrecv: a ring of point-to-point transfers, rank -> rank+1 (nccl-tests sendrecv)."""
from collectives.base import Collective, pattern, ring


class SendRecv(Collective):
    name = "sendrecv"
    dtype = "int32"
    algorithm = "one step: every rank sends S to rank+1 and receives S from rank-1"

    def bus_factor(self, n):
        return 1.0

    def schedule(self, n, nbytes, spec):
        return ring(n, nbytes, 1)

    def prepare(self, torch, rank, n, nbytes, spec):
        count = nbytes // self.ITEM
        def data(r):
            return (pattern(torch, count) + r * 65536).to(torch.int32)
        return {"in": data(rank), "out": torch.zeros(count, dtype=torch.int32),
                "expect": data((rank - 1) % n), "rank": rank, "n": n}

    def reset(self, state):
        state["out"].zero_()

    def run(self, dist, state):
        rank, n = state["rank"], state["n"]
        ops = [dist.P2POp(dist.isend, state["in"], (rank + 1) % n),
               dist.P2POp(dist.irecv, state["out"], (rank - 1) % n)]
        for work in dist.batch_isend_irecv(ops):
            work.wait()


COLLECTIVE = SendRecv()
