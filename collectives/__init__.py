"""What each rank runs: one small file per collective, registered here by name."""
from collectives import all_gather, all_reduce, all_to_all, broadcast, reduce_scatter, sendrecv

COLLECTIVES = {m.COLLECTIVE.name: m.COLLECTIVE
               for m in (all_reduce, all_gather, reduce_scatter, all_to_all, broadcast, sendrecv)}
