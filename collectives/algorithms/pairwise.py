"""pairwise: all-to-all in n-1 rounds; in round k rank i sends to rank i+k and receives from i-k.

Each port carries one message at a time (no incast), at the price of n-1 latencies: the
schedule MPI libraries use for large all-to-alls."""
from collectives.algorithms.base import Algorithm, a2a_offsets
from collectives.all_to_all import matrix
from collectives.schedule import Schedule, Xfer


class Pairwise(Algorithm):
    name = "pairwise"
    ops = {"all_to_all": "n-1 rounds: in round k each rank sends to rank+k, after round k-1 arrived"}

    def schedule(self, call, net) -> Schedule:
        s = super().schedule(call, net)
        s.lockstep = True
        return s

    def steps(self, call, g, net):
        m = len(g)
        mat, (send, recv) = matrix(call), a2a_offsets(call)
        return [[Xfer(g[i], g[(i + k) % m], "in", send[i][(i + k) % m], "out", recv[i][(i + k) % m],
                      mat[i][(i + k) % m]) for i in range(m)] for k in range(1, m)]


ALGORITHM = Pairwise()
