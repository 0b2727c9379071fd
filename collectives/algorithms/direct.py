"""direct: every pair at once, in one step, as DeepEP's all-to-all kernels send their tokens.

One latency; a port carries what its rank sends or receives, all of it at the same time."""
from collectives.algorithms.base import Algorithm, a2a_offsets
from collectives.all_to_all import matrix
from collectives.schedule import Xfer


class Direct(Algorithm):
    name = "direct"
    ops = {"all_to_all": "one step: every rank sends each other rank its chunk, all at once",
           "all_gather": "one step: every rank sends its chunk to every other rank",
           "reduce_scatter": "one step: every rank sends chunk j to rank j, which adds them",
           "broadcast": "one step: the root sends S to every other rank at once",
           "sendrecv": "one step: every rank sends S to rank+1",
           "p2p": "one step: every transfer at once"}

    def steps(self, call, g, net):
        m = len(g)
        if call.op == "all_to_all":
            mat, (send, recv) = matrix(call), a2a_offsets(call)
            return [[Xfer(g[i], g[j], "in", send[i][j], "out", recv[i][j], mat[i][j])
                     for i in range(m) for j in range(m) if i != j]]
        if call.op == "all_gather":
            c = call.count // m
            return [[Xfer(g[i], g[j], "in", 0, "out", i * c, c) for i in range(m) for j in range(m) if i != j]]
        if call.op == "reduce_scatter":
            c = call.count // m
            return [[Xfer(g[i], g[j], "in", j * c, "out", 0, c, reduce=True) for i in range(m) for j in range(m)
                     if i != j]]
        if call.op == "broadcast":
            return [[Xfer(g[call.root], g[j], "in", 0, "out", 0, call.count) for j in range(m) if j != call.root]]
        if call.op == "sendrecv":
            return [[Xfer(g[i], g[(i + 1) % m], "in", 0, "out", 0, call.count) for i in range(m)]]
        sent, got, step = {}, {}, []               # p2p: each rank's flows one after another
        for s, d, n in call.flows:
            step.append(Xfer(s, d, "in", sent.get(s, 0), "out", got.get(d, 0), n))
            sent[s], got[d] = sent.get(s, 0) + n, got.get(d, 0) + n
        return [step]


ALGORITHM = Direct()
