"""Inference workloads: what a model's serving step sends, sized from its config.

One small file per workload kind.  Each turns its profile entry into phases (workloads.base):
compute waits and collectives over groups of ranks, in the order every rank runs them.  The
pure side (sizes, groups, routing) imports without torch and is what tests and the α-β model
read.
"""
