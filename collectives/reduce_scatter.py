"""reduce_scatter (sum): rank r ends with chunk r of the element-wise sum.  Size = whole array."""
from collectives.base import Collective, pattern, ring


class ReduceScatter(Collective):
    name = "reduce_scatter"
    per_rank_chunks = True
    # gloo has no reduce-scatter of its own: torch runs a full all-reduce of S and keeps chunk r,
    # so it moves twice the bytes of a ring reduce-scatter (measured: same time as all_reduce of S)
    algorithm = "gloo all-reduce of S, then each rank keeps its chunk: 2(n-1) ring steps of S/n"

    def bus_factor(self, n):
        return (n - 1) / n

    def schedule(self, n, nbytes, spec):
        return ring(n, nbytes // n, 2 * (n - 1))

    def prepare(self, torch, rank, n, nbytes, spec):
        count = nbytes // self.ITEM
        base = (pattern(torch, count, 7) + 1).to(torch.float32)
        chunk = count // n
        return {"in": base * (rank + 1), "out": torch.zeros(chunk, dtype=torch.float32),
                "expect": base[rank * chunk:(rank + 1) * chunk] * (n * (n + 1) // 2)}

    def reset(self, state):
        state["out"].zero_()

    def run(self, dist, state):
        dist.reduce_scatter_single(state["out"], state["in"])


COLLECTIVE = ReduceScatter()
