"""broadcast: the root's buffer ends on every rank."""
from collectives.base import Collective, pattern


class Broadcast(Collective):
    name = "broadcast"
    dtype = "int32"
    # measured: (n-1) x S / rate through the root's port, i.e. the root sends to every rank itself
    algorithm = "gloo: the root sends S to each other rank at once (n-1 flows through its port)"

    def bus_factor(self, n):
        return 1.0

    def schedule(self, n, nbytes, spec):
        return [[(spec.root, d, nbytes) for d in range(n) if d != spec.root]]

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
