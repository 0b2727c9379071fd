"""The collectives: one small file per op (size rule, bus factor, buffers and expected result),
registered here by name.  How they move bytes: collectives/algorithms/."""
from collectives import all_gather, all_reduce, all_to_all, broadcast, p2p, reduce_scatter, sendrecv

OPS = {m.COLLECTIVE.name: m.COLLECTIVE
       for m in (all_reduce, all_gather, reduce_scatter, all_to_all, broadcast, sendrecv, p2p)}
# what a profile's `op:` may name (p2p is a workload's hand-off, not an nccl-tests op)
COLLECTIVES = {name: c for name, c in OPS.items() if name != "p2p"}
