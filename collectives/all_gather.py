"""all_gather: every rank ends with all ranks' chunks, in rank order.  Size = whole array."""
from collectives.base import Collective, pattern, ring


class AllGather(Collective):
    name = "all_gather"
    dtype = "int32"
    per_rank_chunks = True
    algorithm = "gloo ring: n-1 steps of S/n to the next rank"

    def bus_factor(self, n):
        return (n - 1) / n

    def schedule(self, n, nbytes, spec):
        return ring(n, nbytes // n, n - 1)

    def prepare(self, torch, rank, n, nbytes, spec):
        chunk = nbytes // self.ITEM // n
        def part(r):
            return (pattern(torch, chunk) + r * 65536).to(torch.int32)
        return {"in": part(rank), "out": torch.zeros(chunk * n, dtype=torch.int32),
                "expect": torch.cat([part(r) for r in range(n)])}

    def reset(self, state):
        state["out"].zero_()

    def run(self, dist, state):
        dist.all_gather_single(state["out"], state["in"])


COLLECTIVE = AllGather()
