"""ring: chunked and pipelined, as NCCL's ring: bandwidth-optimal, 2(n-1) latencies for an all-reduce.

Each step is cut into chunks (Net.pieces) that travel on as soon as they arrived, so a large
message keeps every link busy instead of waiting a latency per step."""
from collectives.algorithms.base import CHAIN_CHUNKS, Algorithm, region, ring_all_gather, ring_all_reduce, ring_reduce_scatter
from collectives.schedule import Xfer


class Ring(Algorithm):
    name = "ring"
    ops = {"all_reduce": "pipelined ring: reduce-scatter then all-gather, 2(n-1) steps of S/n",
           "all_gather": "pipelined ring: n-1 steps of S/n to the next rank",
           "reduce_scatter": "pipelined ring: n-1 steps of S/n, each rank adding its own",
           "broadcast": "pipelined chain from the root: n-1 hops, chunks following each other"}

    def steps(self, call, g, net):
        m, item = len(g), call.item
        if call.op == "all_reduce":
            return ring_all_reduce(g, "out", 0, call.count, item, net)
        chunk = call.count // m
        if call.op == "all_gather":
            return ring_all_gather(g, "out", 0, chunk * m, item, net)
        if call.op == "reduce_scatter":
            return ring_reduce_scatter(g, "in", 0, chunk * m, item, net, last="out")
        order = [g[(call.root + s) % m] for s in range(m)]      # broadcast: a chain from the root
        pieces = region(0, call.count, net.pieces(call.count * item, CHAIN_CHUNKS))
        return [[Xfer(order[s], order[s + 1], "out", o, "out", o, n) for o, n in pieces] for s in range(m - 1)]


ALGORITHM = Ring()
