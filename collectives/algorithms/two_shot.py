"""two_shot: a direct reduce-scatter, then a direct all-gather.

Two latencies and 2 (n-1)/n x S through every port (the ring's bytes in 2 steps instead of
2(n-1)): TensorRT-LLM's medium-message custom all-reduce."""
from collectives.algorithms.base import Algorithm, direct_all_gather, direct_reduce_scatter


class TwoShot(Algorithm):
    name = "two_shot"
    ops = {"all_reduce": "two steps: block j of every rank to rank j, which adds them; then rank j's sum to all"}

    def steps(self, call, g, net):
        return direct_reduce_scatter(g, "in", 0, call.count, "out") + direct_all_gather(g, "out", 0, call.count)


ALGORITHM = TwoShot()
