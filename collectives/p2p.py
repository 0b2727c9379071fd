"""p2p: point-to-point transfers that run at once, (src, dst, elements) each: a KV-cache hand-off,
a pipeline stage's activations.  A rank's "in" holds its outgoing flows one after another, its
"out" its incoming ones, in the order the call lists them."""
import numpy as np

from collectives.base import Collective, data


class P2P(Collective):
    name = "p2p"
    dtype = "uint8"
    min_ranks = 2

    def bus_factor(self, n):
        return 1.0

    def buffers(self, call, rank):
        return {"in": sum(b for s, _, b in call.flows if s == rank),
                "out": sum(b for _, d, b in call.flows if d == rank)}

    def inputs(self, call, rank):
        return _concat(call.dtype, [(f, b) for f, (s, _, b) in enumerate(call.flows) if s == rank])

    def expected(self, call, rank):
        return _concat(call.dtype, [(f, b) for f, (_, d, b) in enumerate(call.flows) if d == rank])


def _concat(dtype, parts):
    if not parts:
        return np.zeros(0, dtype=np.dtype(dtype))
    return np.concatenate([data(dtype, f, b) for f, b in parts])


COLLECTIVE = P2P()
