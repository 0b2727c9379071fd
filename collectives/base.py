"""What every collective declares, nccl-tests style: the size rule, the bus-bandwidth factor,
the schedule gloo follows (for the α-β model), and how one rank runs and checks it.

A collective file stays small: subclass Collective, fill in these few methods.  The rank
harness (collectives/rank.py) passes torch in, so this module and the pure side of each
collective (size, bus factor, schedule) import without torch.
"""
from __future__ import annotations

from typing import Any

Flow = tuple[int, int, int]          # (source rank, destination rank, bytes)
Step = list[Flow]                    # flows that run at the same time


class Collective:
    name: str = ""
    dtype: str = "float32"           # the element type on the wire (4 bytes)
    min_ranks: int = 2
    per_rank_chunks: bool = False    # the size is split into n equal chunks (all_gather, ...)
    algorithm: str = ""              # what gloo does, one line, shown by `fabric plan`

    ITEM = 4

    def bus_factor(self, n: int) -> float:
        raise NotImplementedError

    def size(self, nbytes: int, n: int) -> int:
        """The nccl-tests size actually used: whole elements, and whole chunks per rank."""
        unit = self.ITEM * (n if self.per_rank_chunks else 1)
        return max(unit, nbytes // unit * unit)

    def schedule(self, n: int, nbytes: int, spec: Any) -> list[Step]:
        """The flows gloo sends, step by step; nbytes is already size()-aligned."""
        raise NotImplementedError

    # ---- rank side: torch and torch.distributed are passed in -------------------------
    def prepare(self, torch, rank: int, n: int, nbytes: int, spec: Any) -> dict:
        """Buffers and expected result for one size."""
        raise NotImplementedError

    def reset(self, state: dict) -> None:
        """Restore the input before an iteration (outside the timed region)."""

    def run(self, dist, state: dict) -> None:
        raise NotImplementedError

    def check(self, torch, state: dict) -> bool:
        return bool(torch.equal(state["out"], state["expect"]))


def ring(n: int, nbytes: int, steps: int) -> list[Step]:
    """`steps` rounds in which every rank sends nbytes to rank+1."""
    return [[(r, (r + 1) % n, nbytes) for r in range(n)] for _ in range(steps)]


def pattern(torch, count: int, period: int = 65536):
    """A position-dependent pattern, so a misplaced element fails the check."""
    return torch.arange(count, dtype=torch.int64).remainder_(period)
