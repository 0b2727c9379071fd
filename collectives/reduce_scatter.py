"""reduce_scatter (sum): rank r ends with chunk r of the element-wise sum.  Size = whole array."""
from collectives.base import Collective, pattern, ring


class ReduceScatter(Collective):
    name = "reduce_scatter"
    per_rank_chunks = True
    algorithm = "gloo ring reduce-scatter: n-1 steps of S/n to the next rank"

    def bus_factor(self, n):
        return (n - 1) / n

    def schedule(self, n, nbytes, spec):
        return ring(n, nbytes // n, n - 1)

    def prepare(self, torch, rank, n, nbytes, spec):
        count = nbytes // self.ITEM
        base = (pattern(torch, count, 7) + 1).to(torch.float32)
        chunk = count // n
        return {"in": base * (rank + 1), "out": torch.zeros(chunk, dtype=torch.float32),
                "expect": base[rank * chunk:(rank + 1) * chunk] * (n * (n + 1) // 2)}

    def reset(self, state):
        state["out"].zero_()

    def run(self, dist, state):
        dist.reduce_scatter_tensor(state["out"], state["in"])


COLLECTIVE = ReduceScatter()
