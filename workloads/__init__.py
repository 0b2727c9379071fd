"""Inference workloads: what a model's serving step sends, sized from its config.

One small file per workload kind.  Each turns its profile entry into phases (workloads.base):
compute waits and collectives over groups of ranks, in the order every rank runs them.  The
pure side (sizes, groups, routing) imports without torch and is what tests and the α-β model
read.  A kind is a class with: kind, keys (its profile keys), parse(checker, spec, key,
context), label, phases(world), figures(timings), describe(figures) (the report's line) and
headline(figures) (its rows in fabric compare: name, value, unit; lower is better).  Its
collectives run through collectives/ (workloads.base.call_of) and the α-β model simulates its
phases as the ranks walk them (fabric.model).
"""
from workloads.dp import Dp
from workloads.ep_moe import EpMoe
from workloads.kv_transfer import KvTransfer
from workloads.pp import Pipeline
from workloads.tp_decode import TpDecode

KINDS = {cls.kind: cls for cls in (TpDecode, EpMoe, Pipeline, KvTransfer, Dp)}
