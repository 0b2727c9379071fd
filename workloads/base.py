"""The phases an inference workload is made of, as plain data.

A workload iteration (a decode step, a MoE layer, a prompt's KV hand-off) is a list of
phases that every rank walks in order; a rank not in a phase's groups skips it.  Times are
real-fabric seconds (the runner scales them by k); sizes are bytes on the wire.
"""
from __future__ import annotations

from dataclasses import dataclass

Group = tuple[int, ...]


@dataclass(frozen=True)
class Compute:
    """Each rank of `ranks` is busy for `seconds` (a roofline estimate of the math)."""
    label: str
    seconds: float
    ranks: Group


@dataclass(frozen=True)
class AllReduce:
    """Every group all-reduces `nbytes` at the same time (tensor-parallel groups)."""
    label: str
    nbytes: int
    groups: tuple[Group, ...]


@dataclass(frozen=True)
class AllToAll:
    """One all_to_all_single over `ranks`: matrix[i][j] bytes from ranks[i] to ranks[j]."""
    label: str
    ranks: Group
    matrix: tuple[tuple[int, ...], ...]


@dataclass(frozen=True)
class Transfer:
    """Point-to-point sends that run at once: (src, dst, bytes)."""
    label: str
    flows: tuple[tuple[int, int, int], ...]


Phase = Compute | AllReduce | AllToAll | Transfer


def consecutive_groups(world: int, size: int) -> tuple[Group, ...]:
    """Ranks in groups of `size` consecutive ranks: ranks are numbered domain by domain, so a
    group fills one domain (a node, a satellite) before it spans the next, as a user lays out
    tensor parallelism.  Ranks beyond the last whole group are left out."""
    return tuple(tuple(range(g * size, (g + 1) * size)) for g in range(world // size))
