"""one_shot: every rank sends its whole buffer to every other and adds up what it receives.

One latency, (n-1) x S through every port: the small-message all-reduce of TensorRT-LLM's custom
all-reduce and of NVLS-class kernels, where a switch fabric lets every GPU reach every other."""
from collectives.algorithms.base import Algorithm
from collectives.schedule import Xfer


class OneShot(Algorithm):
    name = "one_shot"
    ops = {"all_reduce": "one step: each rank sends all of S to every other rank, which adds it"}

    def steps(self, call, g, net):
        return [[Xfer(s, d, "in", 0, "out", 0, call.count, reduce=True) for s in g for d in g if s != d]]


ALGORITHM = OneShot()
