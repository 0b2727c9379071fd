"""all_reduce (sum): every rank ends with the element-wise sum of all ranks' buffers."""
from collectives.base import Collective, pattern, ring


class AllReduce(Collective):
    name = "all_reduce"
    algorithm = "gloo ring: reduce-scatter then all-gather, 2(n-1) steps of S/n to the next rank"

    def bus_factor(self, n):
        return 2 * (n - 1) / n

    def schedule(self, n, nbytes, spec):
        return ring(n, nbytes // n, 2 * (n - 1))

    def prepare(self, torch, rank, n, nbytes, spec):
        base = (pattern(torch, nbytes // self.ITEM, 7) + 1).to(torch.float32)  # exact in float32
        return {"src": base * (rank + 1), "out": torch.empty_like(base), "expect": base * (n * (n + 1) // 2)}

    def reset(self, state):
        state["out"].copy_(state["src"])

    def run(self, dist, state):
        dist.all_reduce(state["out"])


COLLECTIVE = AllReduce()
