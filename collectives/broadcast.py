"""broadcast: the root's buffer ends on every rank."""
from collectives.base import Collective, pattern


def binomial_tree(n: int, root: int, nbytes: int):
    """Rounds of a binomial-tree broadcast: in round k, ranks that have the data send to rank + 2^k."""
    steps, have = [], 1
    while have < n:
        step = []
        for rel in range(have):
            dst = rel + have
            if dst < n:
                step.append(((rel + root) % n, (dst + root) % n, nbytes))
        steps.append(step)
        have *= 2
    return steps


class Broadcast(Collective):
    name = "broadcast"
    dtype = "int32"
    algorithm = "gloo binomial tree from the root: ceil(log2 n) rounds of S"

    def bus_factor(self, n):
        return 1.0

    def schedule(self, n, nbytes, spec):
        return binomial_tree(n, spec.root, nbytes)

    def prepare(self, torch, rank, n, nbytes, spec):
        data = (pattern(torch, nbytes // self.ITEM) + 7).to(torch.int32)
        return {"out": torch.zeros_like(data), "src": data if rank == spec.root else None,
                "expect": data, "root": spec.root}

    def reset(self, state):
        if state["src"] is None:
            state["out"].zero_()
        else:
            state["out"].copy_(state["src"])

    def run(self, dist, state):
        dist.broadcast(state["out"], src=state["root"])


COLLECTIVE = Broadcast()
